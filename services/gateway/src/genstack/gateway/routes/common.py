"""Helpers the route modules share."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from genstack.core.jobs import Job
from genstack.gateway.services import Services
from genstack.http.errors import ErrorResponse

JSON = "application/json"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def api_key_id(request: Request) -> str:
    """The caller's key id (set by the middleware), or 'anonymous' with auth disabled."""
    state: dict[str, Any] = request.scope.get("state", {})
    return str(state.get("api_key_id") or "anonymous")


def job_scope(svc: Services, request: Request) -> str | None:
    """The owner whose jobs the caller may see; None: every job (GATEWAY_SHARED_JOBS)."""
    return None if svc.settings.gateway_shared_jobs else api_key_id(request)


def request_base(request: Request) -> str:
    return str(request.base_url)


def job_response(svc: Services, request: Request, job: Job, status: int = 200) -> Response:
    rendered = svc.links.render(job, svc.base_url(request_base(request)))
    return Response(rendered.model_dump_json(), status_code=status, media_type=JSON)


def errors(
    *codes: int, extra: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for ``extra`` answers and error answers, all in OpenAI's shape."""
    descriptions = {
        400: "Malformed JSON or invalid values",
        403: "Invalid or expired link",
        401: "No or wrong API key",
        404: "Not found",
        409: "Conflict",
        413: "Body too large",
        429: "Queue full; retry after Retry-After seconds",
        502: "The backend failed",
        503: "A dependency is unavailable",
        504: "Timed out",
    }
    documented: dict[int | str, dict[str, Any]] = dict(extra or {})
    for code in codes:
        documented[code] = {"model": ErrorResponse, "description": descriptions[code]}
    return documented
