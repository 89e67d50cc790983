"""A tiny app behind genstack.http's edge, as a service would build one (the tests' subject)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import FastAPI, Form, Request
from pydantic import BaseModel, Field
from starlette.responses import Response, StreamingResponse

from genstack.http.auth import ApiKeys
from genstack.http.cors import add_cors
from genstack.http.errors import ApiError, install_error_handlers
from genstack.http.middleware import EdgeMiddleware, EdgePolicy, open_paths, request_id_var
from genstack.http.readiness import readiness_response

KEY = "edge-test-key-0123456789"
BODY_LIMIT = 1000
UPLOAD_LIMIT = 5000


class Address(BaseModel):
    city: str = Field(min_length=2)


class Order(BaseModel):
    item: str = Field(min_length=1)
    qty: int = Field(ge=1, le=10)
    address: Address | None = None


@dataclass
class SeenRequests:
    """genstack.http's RequestMetrics, recording what it is told."""

    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def observe_request(
        self, method: str, route: str, status: int, first_byte_s: float | None
    ) -> None:
        self.seen.append((method, route, status))


def build_app(metrics: SeenRequests | None = None, *, auth: bool = True) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(broken: bool = False) -> Response:
        return readiness_response({"thing": "down" if broken else "ok", "other": "ok"})

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response("metrics 1\n", media_type="text/plain")

    @app.post("/orders")
    async def order(body: Order, request: Request) -> dict[str, object]:
        state = request.scope.get("state", {})
        return {"qty": body.qty, "key_id": state.get("api_key_id")}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/form")
    async def form(name: Annotated[str, Form(max_length=5)]) -> dict[str, str]:
        return {"name": name}

    @app.get("/teapot")
    async def teapot() -> None:
        raise ApiError(
            409, "the pot is busy", code="pot_busy", param="pot", headers={"Retry-After": "3"}
        )

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    @app.get("/request-id")
    async def request_id() -> dict[str, str | None]:
        return {"id": request_id_var.get()}

    @app.get("/files/{name}")
    async def files(name: str) -> dict[str, str]:
        return {"name": name}

    @app.get("/slow")
    async def slow(parts: int = 5, delay: float = 0.3) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for index in range(parts):
                await asyncio.sleep(delay)
                yield f"part {index}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    policy = EdgePolicy(
        keys=ApiKeys([KEY]) if auth else None,
        open_paths=open_paths(docs=False, metrics=True),
        default_body_limit=BODY_LIMIT,
        body_limits=[("POST", "/upload", UPLOAD_LIMIT)],
        signed_link=lambda path, query: path.startswith("/files/") and b"signature=" in query,
        access_log=logging.getLogger("edge-test.access"),
    )
    app.add_middleware(EdgeMiddleware, policy=policy, metrics=metrics)
    add_cors(app, ["http://example.test"])
    return app


def app_from_env() -> FastAPI:
    """For ``serve``'s test: the app a server process runs."""
    return build_app()
