"""Operations: /healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from genstack.http.readiness import Readiness, readiness_response
from genstack.tts.server import Server

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
async def readyz(server: Server) -> Response:
    return readiness_response(server.checks())


@router.get("/metrics", response_class=Response)
async def metrics(server: Server) -> Response:
    server.metrics.queue_depth.set(server.model_thread.waiting)
    return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)
