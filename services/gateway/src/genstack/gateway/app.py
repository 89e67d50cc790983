"""The FastAPI application: routes, the one middleware, errors, OpenAPI, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from redis.exceptions import RedisError
from starlette.responses import Response

from genstack.core.logging import configure_logging
from genstack.gateway.backends import Registry, build_registry
from genstack.gateway.metrics import GatewayMetrics
from genstack.gateway.routes import files, jobs, openai_audio, openai_images, ops, templates
from genstack.gateway.routes.jobs import JobRequest
from genstack.gateway.services import Services
from genstack.gateway.settings import GatewaySettings
from genstack.gateway.webhooks.notifier import RetryPolicy, WebhookNotifier
from genstack.http.auth import ApiKeys
from genstack.http.cors import add_cors
from genstack.http.errors import error_response, install_error_handlers
from genstack.http.middleware import (
    PROBE_PATHS,
    EdgeMiddleware,
    EdgePolicy,
    log_request_ids,
    open_paths,
)

log = logging.getLogger(__name__)

VERSION = "0.1.0"


def _notifier(svc: Services) -> WebhookNotifier:
    settings = svc.settings

    async def load_job(job_id: str) -> Any:
        job = await svc.get_job(job_id)
        return None if job is None else svc.links.render(job, svc.base_url())

    return WebhookNotifier(
        svc.aredis,
        stream=svc.store.terminal_key,
        load_job=load_job,
        signer=svc.webhook_signer,
        policy=svc.url_policy,
        http=svc.webhook_http,
        metrics=svc.metrics,
        retry=RetryPolicy(
            max_attempts=settings.gateway_webhook_max_attempts,
            base_s=settings.gateway_webhook_retry_base_s,
            max_s=settings.gateway_webhook_retry_max_s,
            timeout_s=settings.gateway_webhook_timeout_s,
        ),
        concurrency=settings.gateway_webhook_concurrency,
        claim_idle_s=settings.gateway_webhook_claim_idle_s,
        queue_of=svc.queue_of,
    )


def _document_params(schema: dict[str, Any], registry: Registry) -> None:
    """The served backends' params models as schemas of their own, named in the description
    of JobRequest.params. (Not as an anyOf there: which one applies depends on ``type`` and
    ``backend``, and a union of them all makes generated clients and fuzzers crawl.)"""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # POST /v1/jobs reads its body itself (see routes/jobs.py) and refers to this schema.
    components.setdefault(
        "JobRequest", JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    lines = []
    for backend in registry.backends.values():
        for job_type, model in backend.params.items():
            name = model.__name__
            if name not in components:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[name] = model_schema
            lines.append(f"`{backend.name}` {job_type.value} jobs: {name}")
    params = components.get("JobRequest", {}).get("properties", {}).get("params")
    if params is not None and lines:
        params["description"] = (
            "Validated by the params model of the job's backend and type ("
            + "; ".join(lines)
            + "; see their schemas below)."
        )


def _signed_file_link(path: str, query: bytes) -> bool:
    """A /v1/files link with a signature: it passes without a key, and the route checks it."""
    return path.startswith("/v1/files/") and b"signature=" in query


def _settle_gc() -> None:
    """Keep the cyclic GC off the request path: everything made at start-up (FastAPI's and
    pydantic's schemas, the app) is frozen out of collections, and young collections run
    less often. Without this, full collections stall the loop now and then for tens of ms,
    the p99 latency of job submissions (bench/gateway.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _openapi(app: FastAPI, registry: Registry) -> dict[str, Any]:
    """FastAPI's schema, plus: bearer auth everywhere but the probes, 400 (OpenAI's error
    shape) where FastAPI would document its 422, and the backends' params models."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _document_params(schema, registry)
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from GATEWAY_API_KEYS.",
    }
    schema["security"] = [{"bearerAuth": []}]
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Malformed JSON or invalid values",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                }
            if path in PROBE_PATHS:
                operation["security"] = []
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema


async def _on_redis_error(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", extra={"path": request.url.path, "err": str(exc)})
    return error_response(
        503,
        "the job store (Redis) is unavailable; retry shortly",
        code="redis_unavailable",
        headers={"Retry-After": "5"},
    )


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()
    keys = ApiKeys(settings.api_keys())
    if not len(keys) and not settings.gateway_auth_disabled:
        raise ValueError(
            "no API keys: set GATEWAY_API_KEYS or GATEWAY_API_KEYS_FILE "
            "(or GATEWAY_AUTH_DISABLED=true behind your own auth)"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Services.create(settings, metrics)
        app.state.services = svc
        notifier = asyncio.create_task(_notifier(svc).run(), name="webhooks")
        _settle_gc()
        log.info(
            "gateway ready",
            extra={
                "backends": sorted(svc.registry.backends),
                "storage": svc.storage.kind,
                "webhooks": svc.webhook_signer is not None,
            },
        )
        try:
            yield
        finally:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier
            await svc.aclose()

    app = FastAPI(
        title="genstack gateway",
        version=VERSION,
        description="One authenticated API for speech, image and video generation: "
        "OpenAI-compatible routes where OpenAI has them, durable jobs where it does not.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        strict_content_type=False,  # a JSON body without Content-Type is still read as JSON
    )
    for router in (
        jobs.router,
        openai_audio.router,
        openai_images.router,
        templates.router,
        files.router,
        ops.router,
    ):
        app.include_router(router)
    install_error_handlers(app)
    app.add_exception_handler(RedisError, _on_redis_error)
    registry = build_registry(settings)
    app.openapi = lambda: _openapi(app, registry)  # type: ignore[method-assign]

    policy = EdgePolicy(
        keys=None if settings.gateway_auth_disabled else keys,
        open_paths=open_paths(
            docs=settings.gateway_public_docs, metrics=settings.gateway_public_metrics
        ),
        default_body_limit=settings.gateway_max_body_bytes,
        body_limits=[
            ("POST", "/v1/jobs", settings.gateway_max_job_body_bytes),
            # Up to three images to edit, each up to GATEWAY_INPUT_MAX_MB, and the form.
            (
                "POST",
                "/v1/images/edits",
                len(openai_images.IMAGE_PARAMS) * settings.input_max_bytes + 2**20,
            ),
        ],
        signed_link=_signed_file_link,
        access_log=logging.getLogger("genstack.gateway.access"),
    )
    app.add_middleware(EdgeMiddleware, policy=policy, metrics=metrics)
    add_cors(
        app,
        settings.gateway_cors_origins,
        allow_headers=["Idempotency-Key", "Last-Event-ID"],
        expose_headers=["Location", "X-Genstack-Job-Id"],
    )
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and each process of GATEWAY_WORKERS > 1 (they start
    fresh, so logging is set up here too)."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    log_request_ids()
    return create_app(settings)
