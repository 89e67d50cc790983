"""ComfyUI's typed templates as the comfyui workers publish them and the gateway serves and
checks them (``GET /v1/templates``, `image` / `video` / `tts` jobs on backend comfyui).

Each worker checks its templates against its ComfyUI's node catalogue and model files and
writes the result as one field of the Redis hash :data:`TEMPLATES_KEY` (like the node
catalogue, :mod:`genstack.core.contracts.comfyui_nodes`): per template its type, whether it
runs here and why not, and per param the JSON schema a value must meet (narrowed by what
ComfyUI's node accepts: its range, its step, the files present). The gateway merges the fresh
fields (a template is available if any worker's ComfyUI runs it) and refuses a job whose
template is unknown or unavailable, or whose params the template does not take or accept,
naming the param, before anything is queued.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genstack.core.jobs import JobType

log = logging.getLogger(__name__)

TEMPLATES_KEY = "genstack:comfyui:templates"


class TemplateParam(BaseModel):
    """One param of a published template: its JSON schema (``type``, ``minimum``,
    ``maximum``, ``enum``, ``default``, ...) plus ``x-step`` where ComfyUI's input takes
    only ``from + k * step`` (Wan's frame counts: 1, 5, 9, ...; widths in steps of 16)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    required: bool = False
    default: Any = None


class PublishedTemplate(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: JobType
    title: str = ""
    rank: int = 0
    available: bool
    reason: str | None = None
    params: dict[str, TemplateParam] = Field(default_factory=dict)
    notes: str = ""


class PublishedTemplates(BaseModel):
    """One worker's field in :data:`TEMPLATES_KEY`."""

    published_at: float = Field(description="Redis server time (seconds).")
    stale_after_s: float = Field(gt=0)
    templates: dict[str, PublishedTemplate]

    def fresh(self, now: float) -> bool:
        return now - self.published_at <= self.stale_after_s


def fresh_templates(fields: Iterable[str], now: float) -> dict[str, PublishedTemplate] | None:
    """The merged templates of the fresh fields (an available copy wins over an unavailable
    one); None when no field is fresh (then templates are not checked at submission)."""
    merged: dict[str, PublishedTemplate] = {}
    seen = False
    for value in fields:
        try:
            published = PublishedTemplates.model_validate_json(value)
        except ValidationError as exc:
            log.warning("unreadable ComfyUI template list ignored", extra={"err": str(exc)})
            continue
        if not published.fresh(now):
            continue
        seen = True
        for name, template in published.templates.items():
            if name not in merged or (template.available and not merged[name].available):
                merged[name] = template
    return merged if seen else None


def default_template(
    templates: Mapping[str, PublishedTemplate], job_type: JobType
) -> PublishedTemplate | None:
    """The available template of ``job_type`` with the highest rank (ties: by name); one
    ranked below 0 (an edit, an image-to-video: it needs an input) is never the default."""
    return _best(
        t for t in templates.values() if t.type == job_type and t.available and t.rank >= 0
    )


def _best(candidates: Iterable[PublishedTemplate]) -> PublishedTemplate | None:
    ranked = sorted(candidates, key=lambda t: (-t.rank, t.name))
    return ranked[0] if ranked else None


def edit_template(templates: Mapping[str, PublishedTemplate]) -> PublishedTemplate | None:
    """The template ``POST /v1/images/edits`` runs when the request names none: the
    available `image` template of the highest rank that takes an ``image`` and needs it (an
    edit, e.g. Qwen-Image-Edit; a text-to-image template that merely accepts a starting
    image is no edit)."""
    return _best(
        t
        for t in templates.values()
        if t.type == JobType.IMAGE
        and t.available
        and "image" in t.params
        and t.params["image"].required
    )


def template_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """A job's params as its template's params: the set ones, less the choice of template
    and the answer's format; a speech job's ``input`` is the templates' ``text``."""
    values = {
        k: v
        for k, v in params.items()
        if v is not None and k not in ("template", "response_format")
    }
    if "input" in values:
        values["text"] = values.pop("input")
    return values


@dataclass(frozen=True)
class ParamProblem:
    param: str  # the offending field of the job request, dotted (params.width)
    code: str
    message: str


def _value_problem(name: str, value: Any, schema: Mapping[str, Any]) -> str | None:
    if isinstance(value, list):  # loras [{name, strength}], voices [...]: each item
        items = schema.get("items")
        items = items if isinstance(items, Mapping) else {}
        names = (items.get("properties") or {}).get("name")
        for index, item in enumerate(value):
            if isinstance(item, Mapping) and isinstance(names, Mapping):
                message = _value_problem(f"{name}[{index}].name", item.get("name"), names)
            else:
                message = _value_problem(f"{name}[{index}]", item, items)
            if message is not None:
                return message
        return None
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        shown = ", ".join(map(str, enum[:20])) or "none here"
        return f"{name} must be one of: {shown} (got {value!r})"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and value < low:
        return f"{name} must be at least {low} for this template (got {value})"
    if high is not None and value > high:
        return f"{name} must be at most {high} for this template (got {value})"
    step = schema.get("x-step")
    if isinstance(step, Mapping) and isinstance(value, int):
        start, every = int(step.get("from", 0)), int(step.get("step", 1))
        if every > 1 and (value - start) % every:
            if start % every == 0:
                return f"{name} must be a multiple of {every} for this template (got {value})"
            return f"{name} must be {start} plus a multiple of {every} (got {value})"
    return None


def template_problems(
    job_type: JobType,
    params: Mapping[str, Any],
    templates: Mapping[str, PublishedTemplate],
    *,
    prefix: str = "params",
) -> list[ParamProblem]:
    """Why the published templates cannot run ``params`` (the job's params as validated by
    the contract, unset fields left out): the template unknown, of another type or not
    available here; a param it does not take, or a value it does not accept; a required
    param missing. Empty: it runs."""
    name = params.get("template")
    where = f"{prefix}.template"
    if name is None:
        template = default_template(templates, job_type)
        if template is None:
            return [
                ParamProblem(
                    where,
                    "no_template",
                    f"no {job_type.value} template can run here (GET /v1/templates says why)",
                )
            ]
    else:
        found = templates.get(str(name))
        if found is None:
            known = ", ".join(sorted(t.name for t in templates.values() if t.type == job_type))
            return [
                ParamProblem(
                    where,
                    "unknown_template",
                    f"no template {name!r} (the {job_type.value} templates: {known or 'none'})",
                )
            ]
        template = found
        if template.type != job_type:
            return [
                ParamProblem(
                    where,
                    "wrong_template_type",
                    f"template {name!r} makes {template.type.value}, not {job_type.value}",
                )
            ]
        if not template.available:
            return [
                ParamProblem(
                    where,
                    "template_unavailable",
                    f"template {name!r} cannot run here: {template.reason}",
                )
            ]
    problems: list[ParamProblem] = []
    values = template_values(params)
    for param, value in values.items():
        spec = template.params.get(param)
        if spec is None:
            takes = ", ".join(sorted(template.params))
            problems.append(
                ParamProblem(
                    f"{prefix}.{param}",
                    "unsupported_param",
                    f"template {template.name!r} does not take {param!r} (it takes: {takes})",
                )
            )
            continue
        message = _value_problem(param, value, spec.schema_)
        if message is not None:
            problems.append(ParamProblem(f"{prefix}.{param}", "invalid_value", message))
    for param, spec in template.params.items():
        if spec.required and spec.default is None and values.get(param) is None:
            problems.append(
                ParamProblem(
                    f"{prefix}.{param}",
                    "missing_param",
                    f"template {template.name!r} needs {param!r}",
                )
            )
    return problems
