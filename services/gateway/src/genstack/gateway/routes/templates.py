"""GET /v1/templates: ComfyUI's typed templates as the comfyui workers publish them (merged
across workers: a template runs if any worker's ComfyUI runs it), with the params each takes
as a JSON schema, and which one a job of each type gets by default."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from genstack.core.contracts.comfyui_templates import PublishedTemplate, default_template
from genstack.core.jobs import JobType
from genstack.gateway.routes.common import JSON, errors, services

router = APIRouter(prefix="/v1/templates", tags=["templates"])

NOT_PUBLISHED = (
    "no ComfyUI worker has published its templates (none runs, none has reached its "
    "ComfyUI yet, or COMFYUI_CATALOGUE_REFRESH_S=0); jobs are checked by the worker alone"
)
TEMPLATED_TYPES = (JobType.IMAGE, JobType.VIDEO, JobType.TTS)


class TemplateInfo(BaseModel):
    name: str
    type: JobType
    title: str
    available: bool
    reason: str | None = Field(description="Why it cannot run here (a missing node or model).")
    default: bool = Field(description="A job of its type that names no template runs this one.")
    rank: int
    notes: str
    params: dict[str, Any] = Field(
        description="JSON schema of the params it takes: per param its type, limits (minimum, "
        "maximum, x-step: from + k * step), choices (enum: e.g. the checkpoints present) and "
        "default; required lists those it needs."
    )


class TemplateList(BaseModel):
    object: str = "list"
    published: bool = Field(description="Whether any ComfyUI worker publishes its templates.")
    message: str | None = None
    defaults: dict[str, str | None] = Field(
        description="Per job type, the template a job that names none runs."
    )
    data: list[TemplateInfo]


def params_schema(template: PublishedTemplate) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, param in template.params.items():
        schema = dict(param.schema_)
        if param.default is not None:
            schema["default"] = param.default
        properties[name] = schema
    required = sorted(
        name for name, p in template.params.items() if p.required and p.default is None
    )
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


@router.get(
    "",
    response_model=TemplateList,
    summary="ComfyUI's templates: which run here, and the params each takes",
    responses=errors(400, 401),
)
async def list_templates(
    request: Request,
    type: Annotated[
        Literal["image", "video", "tts"] | None,
        Query(description="Only templates of this job type."),
    ] = None,
) -> Response:
    templates = await services(request).templates.templates()
    types = [t for t in TEMPLATED_TYPES if type in (None, t.value)]
    if templates is None:
        listing = TemplateList(
            published=False,
            message=NOT_PUBLISHED,
            defaults={t.value: None for t in types},
            data=[],
        )
        return Response(listing.model_dump_json(), media_type=JSON)
    defaults = {t: default_template(templates, t) for t in types}
    chosen = {t.name for t in defaults.values() if t is not None}
    data = [
        TemplateInfo(
            name=t.name,
            type=t.type,
            title=t.title,
            available=t.available,
            reason=t.reason,
            default=t.name in chosen,
            rank=t.rank,
            notes=t.notes,
            params=params_schema(t),
        )
        for t in sorted(templates.values(), key=lambda t: (t.type.value, -t.rank, t.name))
        if t.type in types
    ]
    listing = TemplateList(
        published=True,
        defaults={t.value: d.name if d else None for t, d in defaults.items()},
        data=data,
    )
    return Response(listing.model_dump_json(), media_type=JSON)
