"""Operations: /healthz, /readyz, /metrics."""

from __future__ import annotations

import contextlib
from collections import Counter

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.responses import Response

from genstack.core.jobs import JobStatus
from genstack.gateway.routes.common import JSON, errors, services
from genstack.gateway.services import Services
from genstack.http.readiness import Readiness, readiness_response

router = APIRouter(tags=["operations"])

# /metrics counts states among this many newest jobs, not the whole history.
STATE_SAMPLE = 1000


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Redis is reachable",
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
async def readyz(request: Request) -> Response:
    svc = services(request)
    checks: dict[str, str] = {}
    try:
        await svc.aredis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"unreachable: {exc}"
    return readiness_response(checks)


async def _refresh(svc: Services) -> None:
    queues = sorted(svc.registry.queues())
    pipe = svc.aredis.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    depths = await pipe.execute()
    for queue, depth in zip(queues, depths, strict=True):
        svc.metrics.queue_depth.labels(queue).set(depth)
    page = await svc.jobs.page(limit=STATE_SAMPLE)
    counts: Counter[tuple[str, str]] = Counter()
    for job in page[0] if page is not None else []:
        backend = svc.registry.get(job.backend)
        counts[(backend.queue if backend else "unknown", job.status.value)] += 1
    for queue in [*queues, "unknown"]:
        for status in JobStatus:
            svc.metrics.jobs_by_state.labels(queue, status.value).set(counts[(queue, status.value)])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=errors(401, extra={200: {"content": {"text/plain": {}}}}),
)
async def metrics(request: Request) -> Response:
    svc = services(request)
    # On a Redis error the gauges keep their last values; readiness reports Redis.
    with contextlib.suppress(RedisError, OSError):
        await _refresh(svc)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
