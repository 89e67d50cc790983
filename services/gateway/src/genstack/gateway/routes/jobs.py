"""The durable job API: submit, read, list, cancel, follow (SSE)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response, StreamingResponse

from genstack.core.contracts.comfyui import TEMPLATE_PARAMS, WorkflowParams
from genstack.core.jobs import Job, JobStatus, JobType, new_job_id
from genstack.core.jobstore import JobNotFoundError
from genstack.core.ssrf import MAX_URL_CHARS, UnsafeUrlError
from genstack.gateway.backends import Backend
from genstack.gateway.events import STREAM_ID, job_events
from genstack.gateway.inputs import InputResolver, Rename, same_param
from genstack.gateway.routes.common import (
    JSON,
    api_key_id,
    errors,
    job_response,
    job_scope,
    request_base,
    services,
)
from genstack.gateway.services import SSE_HEARTBEAT_S, Services
from genstack.gateway.submit import (
    DispatchError,
    Idempotency,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    QueueFullError,
    Submission,
)
from genstack.http.errors import ApiError, validation_message

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JOB_ID = r"^[A-Za-z0-9_-]{1,128}$"
JobId = Annotated[str, Path(pattern=JOB_ID, description="The job's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key and body: the same job again. Same key, other body: 409.",
    ),
]


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: JobType
    backend: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Which backend runs it; default: the configured one for the type.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Validated by the backend's params model."
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="Notified (Standard Webhooks signature) when the job finishes.",
    )


class JobList(BaseModel):
    object: str = "list"
    data: list[Job]
    first_id: str | None
    last_id: str | None
    has_more: bool


def pick_backend(svc: Services, job_type: JobType, name: str | None) -> Backend:
    if name is None:
        backend = svc.registry.default_for(job_type)
        if backend is None:
            raise ApiError(
                400, f"no backend serves {job_type.value} jobs here", code="unsupported_type"
            )
        return backend
    backend = svc.registry.get(name)
    if backend is None:
        known = ", ".join(sorted(svc.registry.backends)) or "none"
        raise ApiError(
            400,
            f"unknown backend {name!r} (known: {known})",
            code="unknown_backend",
            param="backend",
        )
    if job_type not in backend.types:
        raise ApiError(
            400,
            f"backend {name} does not take {job_type.value} jobs "
            f"(it takes {', '.join(sorted(t.value for t in backend.types))})",
            code="unsupported_type",
            param="type",
        )
    return backend


def validated_params(
    backend: Backend, job_type: JobType, params: Any, rename: Rename = same_param
) -> dict[str, Any]:
    try:
        return backend.validate_params(job_type, params)
    except ValidationError as exc:
        prefixed = [{**e, "loc": ("params", *e["loc"])} for e in exc.errors()]
        message, param = validation_message(prefixed)
        raise ApiError(
            400, message, code="invalid_params", param=None if param is None else rename(param)
        ) from None


class Problem(Protocol):
    @property
    def param(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...


def refusal(problems: Sequence[Problem], rename: Rename = same_param) -> ApiError:
    """A 400 telling up to five problems, ``param`` and ``code`` from the first."""
    message = "; ".join(p.message for p in problems[:5])
    if len(problems) > 5:
        message += f" (and {len(problems) - 5} more)"
    return ApiError(400, message, code=problems[0].code, param=rename(problems[0].param))


async def check_nodes(
    svc: Services, backend: Backend, job_type: JobType, params: dict[str, Any]
) -> None:
    """A ComfyUI workflow against the node catalogue its workers publish: a 400 for what
    ComfyUI would refuse at once (an unknown node, a missing input, a bad link), with
    ``param`` at the first; nothing when no worker publishes one."""
    if not issubclass(backend.params[job_type], WorkflowParams):
        return
    problems = await svc.node_catalogue.problems(params["workflow"])
    if problems:
        raise refusal(problems)


def templated(backend: Backend, job_type: JobType) -> bool:
    """Whether ``backend`` runs ``job_type`` from ComfyUI's published templates."""
    model = backend.params.get(job_type)
    return model is not None and issubclass(model, TEMPLATE_PARAMS)


async def check_templates(
    svc: Services,
    backend: Backend,
    job_type: JobType,
    params: dict[str, Any],
    rename: Rename = same_param,
) -> None:
    """An `image`, `video` or `tts` job on ComfyUI against the templates its workers
    publish: a 400 for an unknown or unavailable template (with the reason), a param the
    template does not take or a value it does not accept, a required one missing. Nothing
    when no worker publishes templates (the worker checks again anyway)."""
    if not templated(backend, job_type):
        return
    problems = await svc.templates.problems(job_type, params)
    if problems:
        raise refusal(problems, rename)


async def submit_with_inputs(
    svc: Services,
    request: Request,
    resolver: InputResolver,
    *,
    job_type: JobType,
    backend: Backend,
    params: dict[str, Any],
    webhook_url: str | None,
    idempotency_key: str | None,
    fingerprint_body: dict[str, Any],
) -> Submission:
    """:func:`submit_job` after the job's input files are settled (fetched, checked and
    stored, or found to be the caller's); what was stored goes again if no job is made."""
    if templated(backend, job_type):
        params = await resolver.resolve(job_type, params)
    try:
        submission = await submit_job(
            svc,
            request,
            job_type=job_type,
            backend=backend,
            params=params,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            fingerprint_body=fingerprint_body,
            job_id=resolver.job_id,
        )
    except Exception:
        await resolver.discard()
        raise
    if not submission.created:  # an idempotent replay: the first request's job stands
        await resolver.discard()
    return submission


def input_resolver(svc: Services, request: Request, rename: Rename = same_param) -> InputResolver:
    """A new job id, and the settling of its input files for the caller."""
    return InputResolver(svc, job_id=new_job_id(), scope=job_scope(svc, request), rename=rename)


async def submit_job(
    svc: Services,
    request: Request,
    *,
    job_type: JobType,
    backend: Backend,
    params: dict[str, Any],
    webhook_url: str | None,
    idempotency_key: str | None,
    fingerprint_body: dict[str, Any],
    job_id: str | None = None,
) -> Submission:
    """Everything after validation: webhook check, idempotency, backpressure, queueing."""
    if webhook_url is not None:
        if svc.webhook_signer is None:
            raise ApiError(
                400,
                "webhooks are not configured on this gateway (GATEWAY_WEBHOOK_SECRET)",
                code="webhooks_disabled",
                param="webhook_url",
            )
        try:
            await svc.url_policy.check(webhook_url)
        except UnsafeUrlError as exc:
            raise ApiError(
                400, f"webhook_url refused: {exc}", code="unsafe_webhook_url", param="webhook_url"
            ) from None
    job = Job(
        id=job_id or new_job_id(),
        type=job_type,
        backend=backend.name,
        params=params,
        webhook_url=webhook_url,
        owner=api_key_id(request),
    )
    idem = (
        Idempotency.of(svc.store.prefix, api_key_id(request), idempotency_key, fingerprint_body)
        if idempotency_key
        else None
    )
    try:
        submission = await svc.submitter.submit(job, backend.queue, backend.max_queue_depth, idem)
    except QueueFullError as exc:
        svc.metrics.jobs_rejected.labels(exc.queue, "queue_full").inc()
        raise ApiError(
            429,
            f"the {backend.name} queue is full ({exc.depth} jobs waiting); retry later",
            code="queue_full",
            headers={"Retry-After": str(svc.settings.gateway_retry_after_s)},
        ) from None
    except IdempotencyConflictError as exc:
        raise ApiError(409, str(exc), code="idempotency_key_reused") from None
    except IdempotencyInProgressError as exc:
        raise ApiError(
            409, str(exc), code="idempotency_in_progress", headers={"Retry-After": "1"}
        ) from None
    except DispatchError:
        svc.metrics.jobs_rejected.labels(backend.queue, "dispatch_failed").inc()
        raise ApiError(
            503, "the job queue is unavailable; retry later", code="queue_unavailable"
        ) from None
    if submission.created:
        svc.metrics.jobs_submitted.labels(job_type.value, backend.name, backend.queue).inc()
    return submission


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_CREATE_DOCS: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
    },
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Same key and body: the same job again. Same key, other body: 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        }
    ],
}


@router.post(
    "",
    status_code=201,
    response_model=Job,
    summary="Submit a job",
    responses=errors(
        400,
        401,
        409,
        413,
        429,
        503,
        extra={200: {"model": Job, "description": "Idempotent replay"}},
    ),
    openapi_extra=_CREATE_DOCS,
)
async def create_job(request: Request) -> Response:
    # The body and header are read here rather than declared as parameters: the busiest
    # route skips FastAPI's parameter machinery (a fifth of its CPU); _CREATE_DOCS and
    # JobRequest document exactly what is read.
    try:
        body = JobRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiError(
            400,
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            param="Idempotency-Key",
        )
    svc = services(request)
    backend = pick_backend(svc, body.type, body.backend)
    params = validated_params(backend, body.type, body.params)
    await check_nodes(svc, backend, body.type, params)
    await check_templates(svc, backend, body.type, params)
    submission = await submit_with_inputs(
        svc,
        request,
        input_resolver(svc, request),
        job_type=body.type,
        backend=backend,
        params=params,
        webhook_url=body.webhook_url,
        idempotency_key=idempotency_key,
        fingerprint_body=body.model_dump(mode="json"),
    )
    response = job_response(svc, request, submission.job, 201 if submission.created else 200)
    response.headers["Location"] = f"/v1/jobs/{submission.job.id}"
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get(
    "", response_model=JobList, summary="List jobs, newest first", responses=errors(400, 401, 503)
)
async def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None, Query(pattern=JOB_ID, description="The last job id of the previous page.")
    ] = None,
) -> Response:
    svc = services(request)
    page = await svc.jobs.page(limit=limit, after=after, owner=job_scope(svc, request))
    if page is None:
        raise ApiError(400, f"unknown or expired job {after!r} in 'after'", param="after")
    jobs, has_more = page
    base = svc.base_url(request_base(request))
    listing = JobList(
        data=[svc.links.render(job, base) for job in jobs],
        first_id=jobs[0].id if jobs else None,
        last_id=jobs[-1].id if jobs else None,
        has_more=has_more,
    )
    return Response(listing.model_dump_json(), media_type=JSON)


async def _require(svc: Services, request: Request, job_id: str) -> Job:
    """The job, if the caller may see it. Another key's job is a 404 like a missing one, so
    ids of other keys' jobs cannot be probed."""
    job = await svc.get_job(job_id)
    scope = job_scope(svc, request)
    if job is None or (scope is not None and job.owner is not None and job.owner != scope):
        raise ApiError(404, f"job {job_id} not found (or expired)", code="job_not_found")
    return job


@router.get(
    "/{job_id}", response_model=Job, summary="Get a job", responses=errors(400, 401, 404, 503)
)
async def get_job(job_id: JobId, request: Request) -> Response:
    svc = services(request)
    return job_response(svc, request, await _require(svc, request, job_id))


@router.delete(
    "/{job_id}",
    response_model=Job,
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running one is signalled and its worker "
    "stops its backend (the job then ends `cancelled`). A finished job is returned as is.",
    responses=errors(400, 401, 404, 503),
)
async def cancel_job(job_id: JobId, request: Request) -> Response:
    svc = services(request)
    await _require(svc, request, job_id)
    try:
        job = await svc.run_sync(svc.store.request_cancel, job_id)
    except JobNotFoundError:
        raise ApiError(404, f"job {job_id} not found (or expired)", code="job_not_found") from None
    backend = svc.registry.get(job.backend)
    if job.status == JobStatus.CANCELLED and backend is not None:
        # Cancelled while queued (or just now): its message leaves the queue too.
        await svc.submitter.withdraw(job.id, backend.queue)
    return job_response(svc, request, job)


@router.get(
    "/{job_id}/events",
    summary="Follow a job (server-sent events)",
    description="Events `status`, `progress`, `artifact`, ... with the Redis stream id as SSE "
    "`id`; reconnect with `Last-Event-ID` (or `?last_event_id=`) to resume. The stream ends "
    "after the terminal status (or after GATEWAY_SSE_MAX_S; reconnect to resume).",
    response_class=StreamingResponse,
    responses=errors(400, 401, 404, 503, extra={200: {"content": {"text/event-stream": {}}}}),
)
async def job_events_route(
    job_id: JobId,
    request: Request,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=64)
    ] = None,
    last_event_id: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    svc = services(request)
    await _require(svc, request, job_id)
    after = last_event_id_header or last_event_id or "0-0"
    if not STREAM_ID.match(after):
        raise ApiError(400, "Last-Event-ID must be an event id like 1700000000000-0")
    return StreamingResponse(
        job_events(
            svc.jobs,
            job_id,
            after=after,
            heartbeat_s=SSE_HEARTBEAT_S,
            max_s=svc.settings.gateway_sse_max_s,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
