"""Helpers the route modules share."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from genstack.core.jobs import Job, JobStatus
from genstack.gateway.events import wait_for_end
from genstack.gateway.services import Services
from genstack.http.errors import ApiError, ErrorResponse

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


def _job_error(job: Job, what: str) -> ApiError:
    headers = {"X-Genstack-Job-Id": job.id}
    if job.status == JobStatus.CANCELLED:
        return ApiError(
            409, f"{what} job {job.id} was cancelled", code="job_cancelled", headers=headers
        )
    error = job.error
    message = error.message if error else f"the {what} job failed"
    return ApiError(
        502,
        f"{what} job {job.id} failed: {message}",
        code=error.code if error else "job_failed",
        headers=headers,
    )


async def succeeded_job(svc: Services, job_id: str, wait_s: float, what: str) -> Job:
    """The job once it has succeeded, for a route that answers with its result (OpenAI's
    images and speech); a 504 naming the job when it runs longer than ``wait_s``, a 502 with
    its error when it fails, a 409 when it is cancelled."""
    job = await wait_for_end(svc.jobs, job_id, wait_s)
    if job is None:
        raise ApiError(502, f"{what} job {job_id} vanished (expired or deleted)", code="job_lost")
    if not job.status.terminal:
        raise ApiError(
            504,
            f"{what} job {job_id} is still {job.status.value} after {wait_s:g} s; follow it at "
            f"GET /v1/jobs/{job_id}",
            code="job_timeout",
            headers={"X-Genstack-Job-Id": job_id},
        )
    if job.status != JobStatus.SUCCEEDED:
        raise _job_error(job, what)
    return job


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
