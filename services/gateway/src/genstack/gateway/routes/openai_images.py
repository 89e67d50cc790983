"""POST /v1/images/generations and /v1/images/edits (OpenAI-compatible): an ``image`` job on
a ComfyUI template, awaited up to GATEWAY_IMAGE_WAIT_S and answered in OpenAI's shape.

``model`` is an image model name (``comfyui``, or dall-e-2 / dall-e-3 / gpt-image-1, which
pick the default template) or the name of a published image template. An edit runs the
named template, else the best available one that needs an ``image`` (Qwen-Image-Edit);
the uploaded images are checked and stored as the job's inputs. A 400 names the request's
own field (``size`` for a width the template refuses, ``model`` for a template that cannot
run here)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from genstack.core.contracts.comfyui import MAX_PROMPT_CHARS
from genstack.core.contracts.comfyui_templates import edit_template
from genstack.core.jobs import Artifact, JobType
from genstack.core.storage import Storage
from genstack.gateway.backends import Backend
from genstack.gateway.inputs import InputRef
from genstack.gateway.routes.common import JSON, errors, request_base, services, succeeded_job
from genstack.gateway.routes.jobs import (
    IdempotencyKey,
    check_templates,
    input_resolver,
    submit_with_inputs,
    templated,
    validated_params,
)
from genstack.gateway.services import Services
from genstack.http.errors import ApiError, validation_message

router = APIRouter(prefix="/v1/images", tags=["openai"])

_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
# The input images an image job takes (ImageParams): the first is the one edited.
IMAGE_PARAMS = ("image", "image2", "image3")
_OPENAI_FIELDS = {
    "params.width": "size",
    "params.height": "size",
    "params.template": "model",
    **{f"params.{name}": "image" for name in IMAGE_PARAMS},
}


def openai_param(param: str) -> str:
    """The request field a 400 names, from the job's param."""
    return _OPENAI_FIELDS.get(param, param.removeprefix("params."))


# Template params a client may add to OpenAI's request (the openai client's ``extra_body``);
# checked as the image job's params are (genstack.core.contracts.comfyui.ImageParams).
TEMPLATE_EXTRAS = (
    "negative_prompt",
    "seed",
    "steps",
    "cfg",
    "sampler",
    "scheduler",
    "shift",
    "checkpoint",
    "loras",
    "strength",
)


class ImageRequest(BaseModel):
    """OpenAI's image request, plus the template params of TEMPLATE_EXTRAS; other fields
    genstack has no use for (quality, style, user, ...) are accepted and ignored, as OpenAI's
    own models ignore what they do not support."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, max_length=128)
    n: int = Field(default=1, ge=1, le=8)
    size: str | None = Field(default=None, max_length=16, description="WIDTHxHEIGHT or auto.")
    response_format: Literal["url", "b64_json"] | None = None


class EditFields(ImageRequest):
    """The text fields of an edit's form."""

    stream: bool = False


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


async def _image_target(
    svc: Services, model: str | None, *, edit: bool
) -> tuple[Backend, str | None]:
    """The backend and template an image request runs on (None: the default template)."""
    registry = svc.registry
    name = registry.image_models.get(model) if model else registry.defaults.get(JobType.IMAGE)
    backend = registry.get(name) if name else None
    if backend is None and not model:
        raise ApiError(
            400,
            "no image backend is enabled here (GATEWAY_ENABLED_BACKENDS)",
            code="unsupported_type",
        )
    templates = await svc.templates.templates() if backend is None or edit else None
    if backend is not None:  # a model name: the default template, or for an edit the best
        if not edit or not templated(backend, JobType.IMAGE):
            return backend, None
        if templates is None:
            raise ApiError(
                400,
                "no ComfyUI worker has published its templates, so none can be chosen to "
                "edit with; name an edit template in model (GET /v1/templates)",
                code="no_template",
                param="model",
            )
        chosen = edit_template(templates)
        if chosen is None:
            raise ApiError(
                400,
                "no available image template here takes an image to edit "
                "(GET /v1/templates says why)",
                code="no_template",
                param="model",
            )
        return backend, chosen.name
    assert model is not None
    template = templates.get(model) if templates is not None else None
    comfy = [b for b in registry.backends.values() if templated(b, JobType.IMAGE)]
    if template is not None and template.type == JobType.IMAGE and comfy:
        default = registry.default_for(JobType.IMAGE)
        return (default if default is not None and default in comfy else comfy[0]), template.name
    known = sorted(registry.image_models)
    if templates is not None:
        known += sorted(t.name for t in templates.values() if t.type == JobType.IMAGE)
    tail = "" if templates is not None else "; no ComfyUI worker has published its templates"
    raise ApiError(
        404,
        f"The model `{model}` does not exist here "
        f"(image models and templates: {', '.join(known) or 'none'}{tail}).",
        code="model_not_found",
        param="model",
    )


async def _answer(
    svc: Services, request: Request, job_id: str, response_format: str | None, prompt: str
) -> Response:
    """Wait for the image job, then OpenAI's ImagesResponse: a link or the bytes of each."""
    job = await succeeded_job(svc, job_id, svc.settings.gateway_image_wait_s, "image")
    images = sorted(
        (a for a in job.artifacts if a.content_type.startswith("image/")), key=lambda a: a.key
    )
    data = [await _image_data(svc, request, a, response_format or "url", prompt) for a in images]
    answer = ImagesResponse(created=int(job.created_at.timestamp()), data=data)
    return Response(
        answer.model_dump_json(exclude_none=True),
        media_type=JSON,
        headers={"X-Genstack-Job-Id": job_id},
    )


def _job_params(body: ImageRequest, template: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"prompt": body.prompt, **_size(body.size)}
    extra = body.model_extra or {}
    params |= {name: extra[name] for name in TEMPLATE_EXTRAS if extra.get(name) is not None}
    if body.n != 1:  # one image is every template's default; a template may not take n
        params["n"] = body.n
    if template is not None:
        params["template"] = template
    return params


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
    backend, template = await _image_target(svc, body.model, edit=False)
    params = validated_params(backend, JobType.IMAGE, _job_params(body, template), openai_param)
    await check_templates(svc, backend, JobType.IMAGE, params, openai_param)
    submission = await submit_with_inputs(
        svc,
        request,
        input_resolver(svc, request, openai_param),
        job_type=JobType.IMAGE,
        backend=backend,
        params=params,
        webhook_url=None,
        idempotency_key=idempotency_key,
        fingerprint_body=body.model_dump(mode="json"),
    )
    return await _answer(svc, request, submission.job.id, body.response_format, body.prompt)


_EDIT_DOCS: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "prompt"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "The image to edit (PNG, JPEG, WebP, ...); up to "
                            "three as image[] (the first is edited, the others are references "
                            "where the template takes them).",
                        },
                        "prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS},
                        "model": {
                            "type": "string",
                            "description": "An image template (GET /v1/templates); default: "
                            "the best available edit template.",
                        },
                        "n": {"type": "integer", "minimum": 1, "maximum": 8},
                        "size": {"type": "string", "description": "WIDTHxHEIGHT or auto."},
                        "response_format": {"type": "string", "enum": ["url", "b64_json"]},
                        "mask": {
                            "type": "string",
                            "format": "binary",
                            "description": "Not supported: no template here takes a mask.",
                        },
                    },
                }
            }
        },
    }
}
MAX_FORM_FIELDS = 32


def _form_fields(form: Any) -> EditFields:
    values = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    try:
        return EditFields.model_validate(values)
    except ValidationError as exc:
        message, param = validation_message(exc.errors())
        raise ApiError(400, message, code="invalid_value", param=param) from None


async def _uploads(form: Any, limit: int) -> list[bytes]:
    files = [v for k, v in form.multi_items() if k in ("image", "image[]")]
    if not files or not all(isinstance(f, UploadFile) for f in files):
        raise ApiError(400, "image: send the image to edit as a file", param="image")
    if len(files) > len(IMAGE_PARAMS):
        raise ApiError(
            400,
            f"image: at most {len(IMAGE_PARAMS)} images (got {len(files)})",
            code="too_many_images",
            param="image",
        )
    found: list[bytes] = []
    for upload in files:
        if upload.size is not None and upload.size > limit:
            raise ApiError(
                400,
                f"image: {upload.filename or 'a file'} is larger than {limit} bytes "
                "(GATEWAY_INPUT_MAX_MB)",
                code="input_too_large",
                param="image",
            )
        found.append(await upload.read(limit + 1))
    return found


@router.post(
    "/edits",
    response_model=ImagesResponse,
    summary="Edit images (OpenAI-compatible), run as an image job on an edit template",
    responses=errors(400, 401, 404, 409, 413, 429, 502, 503, 504),
    openapi_extra=_EDIT_DOCS,
)
async def edit_images(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    svc = services(request)
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise ApiError(
            400,
            "send the edit as multipart/form-data (image file, prompt, ...)",
            code="invalid_content_type",
        )
    limit = svc.settings.input_max_bytes
    async with request.form(
        max_files=len(IMAGE_PARAMS) + 1, max_fields=MAX_FORM_FIELDS, max_part_size=2**20
    ) as form:
        body = _form_fields(form)
        if body.stream:
            raise ApiError(400, "streamed edits are not supported", param="stream")
        if form.get("mask") is not None:
            # No template takes a mask (ImageParams has none): an edit is told by its prompt.
            raise ApiError(
                400,
                "mask is not supported: no image template here takes a mask; describe the "
                "change in the prompt",
                code="unsupported_param",
                param="mask",
            )
        images = await _uploads(form, limit)
    backend, template = await _image_target(svc, body.model, edit=True)
    resolver = input_resolver(svc, request, openai_param)
    # Checked first with placeholders, so a refused request stores nothing.
    placeholders = {
        name: f"inputs/{resolver.job_id}/{name}" for name in IMAGE_PARAMS[: len(images)]
    }
    params = validated_params(
        backend, JobType.IMAGE, {**_job_params(body, template), **placeholders}, openai_param
    )
    await check_templates(svc, backend, JobType.IMAGE, params, openai_param)
    try:
        for name, data in zip(placeholders, images, strict=True):
            params[name] = await resolver.store_upload(InputRef(name, None, "image", name), data)
    except Exception:
        await resolver.discard()
        raise
    fingerprint = {
        **body.model_dump(mode="json"),
        "images": [hashlib.sha256(data).hexdigest() for data in images],
    }
    submission = await submit_with_inputs(
        svc,
        request,
        resolver,
        job_type=JobType.IMAGE,
        backend=backend,
        params=params,
        webhook_url=None,
        idempotency_key=idempotency_key,
        fingerprint_body=fingerprint,
    )
    return await _answer(svc, request, submission.job.id, body.response_format, body.prompt)
