"""POST /v1/images/generations (OpenAI-compatible): an ``image`` job on the default
ComfyUI template, awaited up to GATEWAY_IMAGE_WAIT_S and answered in OpenAI's shape."""

from __future__ import annotations

import base64
import os
import re
import tempfile
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from genstack.core.contracts.comfyui import MAX_PROMPT_CHARS
from genstack.core.jobs import Artifact, Job, JobStatus, JobType
from genstack.core.storage import Storage
from genstack.gateway.events import wait_for_end
from genstack.gateway.routes.common import JSON, errors, request_base, services
from genstack.gateway.routes.jobs import IdempotencyKey, submit_job, validated_params
from genstack.gateway.services import Services
from genstack.http.errors import ApiError

router = APIRouter(prefix="/v1/images", tags=["openai"])

_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class ImageRequest(BaseModel):
    """OpenAI's image request; fields genstack has no use for (quality, style, user, ...)
    are accepted and ignored, as OpenAI's own models ignore what they do not support."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, max_length=128)
    n: int = Field(default=1, ge=1, le=8)
    size: str | None = Field(default=None, max_length=16, description="WIDTHxHEIGHT or auto.")
    response_format: Literal["url", "b64_json"] | None = None


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


def _size(size: str | None) -> dict[str, int]:
    if size in (None, "auto"):
        return {}
    match = _SIZE.match(size)
    if match is None:
        raise ApiError(
            400, f"size must be WIDTHxHEIGHT, e.g. 1024x1024 (got {size!r})", param="size"
        )
    return {"width": int(match[1]), "height": int(match[2])}


def _read_bytes(storage: Storage, key: str, limit: int) -> bytes:
    info = storage.head(key)
    if info is not None and info.size > limit:
        raise ApiError(
            502,
            f"the image is larger than {limit} bytes; ask for response_format=url",
            code="image_too_large",
        )
    fd, path = tempfile.mkstemp(prefix="genstack-b64-")
    os.close(fd)
    try:
        storage.download(key, path)
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    finally:
        os.unlink(path)


async def _image_data(
    svc: Services, request: Request, artifact: Artifact, response_format: str, prompt: str
) -> ImageData:
    if response_format == "b64_json":
        data = await svc.run_sync(
            _read_bytes, svc.storage, artifact.key, svc.settings.gateway_max_b64_image_bytes
        )
        return ImageData(b64_json=base64.b64encode(data).decode(), revised_prompt=prompt)
    url = svc.links.url(artifact.key, svc.base_url(request_base(request)))
    return ImageData(url=url, revised_prompt=prompt)


def _job_error(job: Job) -> ApiError:
    headers = {"X-Genstack-Job-Id": job.id}
    if job.status == JobStatus.CANCELLED:
        return ApiError(
            409, f"image job {job.id} was cancelled", code="job_cancelled", headers=headers
        )
    error = job.error
    message = error.message if error else "the image job failed"
    return ApiError(
        502,
        f"image job {job.id} failed: {message}",
        code=error.code if error else "job_failed",
        headers=headers,
    )


@router.post(
    "/generations",
    response_model=ImagesResponse,
    summary="Create images (OpenAI-compatible), run as an image job",
    responses=errors(400, 401, 404, 409, 413, 429, 502, 503, 504),
)
async def create_images(
    body: ImageRequest, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    svc = services(request)
    backend_name = (
        svc.registry.image_models.get(body.model)
        if body.model
        else svc.registry.defaults.get(JobType.IMAGE)
    )
    backend = svc.registry.get(backend_name) if backend_name else None
    if backend is None and not body.model:
        raise ApiError(
            400,
            "no image backend is enabled here (GATEWAY_ENABLED_BACKENDS)",
            code="unsupported_type",
        )
    if backend is None:
        known = ", ".join(sorted(svc.registry.image_models)) or "none"
        raise ApiError(
            404,
            f"The model `{body.model}` does not exist here (image models: {known}).",
            code="model_not_found",
            param="model",
        )
    params_in: dict[str, Any] = {"prompt": body.prompt, "n": body.n, **_size(body.size)}
    params = validated_params(backend, JobType.IMAGE, params_in)
    submission = await submit_job(
        svc,
        request,
        job_type=JobType.IMAGE,
        backend=backend,
        params=params,
        webhook_url=None,
        idempotency_key=idempotency_key,
        fingerprint_body=body.model_dump(mode="json"),
    )
    job_id = submission.job.id
    job = await wait_for_end(svc.jobs, job_id, svc.settings.gateway_image_wait_s)
    if job is None:
        raise ApiError(502, f"image job {job_id} vanished (expired or deleted)", code="job_lost")
    if not job.status.terminal:
        raise ApiError(
            504,
            f"image job {job_id} is still {job.status.value} after "
            f"{svc.settings.gateway_image_wait_s:g} s; follow it at GET /v1/jobs/{job_id}",
            code="job_timeout",
            headers={"X-Genstack-Job-Id": job_id},
        )
    if job.status != JobStatus.SUCCEEDED:
        raise _job_error(job)
    images = sorted(
        (a for a in job.artifacts if a.content_type.startswith("image/")), key=lambda a: a.key
    )
    response_format = body.response_format or "url"
    data = [await _image_data(svc, request, a, response_format, body.prompt) for a in images]
    answer = ImagesResponse(created=int(job.created_at.timestamp()), data=data)
    return Response(
        answer.model_dump_json(exclude_none=True),
        media_type=JSON,
        headers={"X-Genstack-Job-Id": job_id},
    )
