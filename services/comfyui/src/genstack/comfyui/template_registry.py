"""``TemplateRegistry``: this worker's templates and whether each runs on its ComfyUI.

Refreshed from ComfyUI's ``/object_info`` whenever the worker reads it (at start, on every
catalogue refresh, and so after ComfyUI restarts with new models or nodes): each template
is checked (``templates.check``), a failing one is marked unavailable with the reason and
never stops the worker. ``graph_for`` turns an `image` / `video` / `tts` job's params into
the graph to run; ``published`` is what the gateway reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from genstack.comfyui.templates import (
    Availability,
    Graph,
    ParamsError,
    Template,
    check,
    published,
)
from genstack.core.contracts.comfyui_templates import (
    PublishedTemplate,
    default_template,
    template_values,
)
from genstack.core.job_runner import JobFailedError
from genstack.core.jobs import JobType

log = logging.getLogger(__name__)


class TemplateRegistry:
    def __init__(self, templates: Mapping[str, Template]) -> None:
        self.templates = dict(templates)
        self._lock = threading.Lock()
        self._checked: dict[str, Availability] = {}
        self._published: dict[str, PublishedTemplate] = {}

    def refresh(self, object_info: Mapping[str, Any]) -> dict[str, PublishedTemplate]:
        """Check every template against ``object_info``; log what changed."""
        checked: dict[str, Availability] = {}
        described: dict[str, PublishedTemplate] = {}
        for name, template in self.templates.items():
            try:
                result = check(template, object_info)
                described[name] = published(result, object_info)
            except Exception as exc:  # a broken template must not stop the worker
                log.exception("template %s could not be checked", name)
                result = Availability(template)
                described[name] = PublishedTemplate(
                    name=name,
                    type=template.type,
                    title=template.title,
                    rank=template.rank,
                    available=False,
                    reason=f"could not be checked: {exc}",
                )
            checked[name] = result
        with self._lock:
            before = {n: p.available for n, p in self._published.items()}
            self._checked, self._published = checked, described
        for name, entry in described.items():
            if before.get(name) != entry.available:
                if entry.available:
                    log.info("template %s is available", name)
                else:
                    log.info("template %s is not available: %s", name, entry.reason)
        return described

    def ensure(self, read_object_info: Callable[[], Mapping[str, Any]]) -> None:
        """Check the templates now if they never were (the catalogue is not published:
        COMFYUI_CATALOGUE_REFRESH_S=0, or its first read has not happened yet)."""
        with self._lock:
            known = bool(self._published)
        if not known:
            self.refresh(read_object_info())

    def published(self) -> dict[str, PublishedTemplate]:
        with self._lock:
            return dict(self._published)

    def graph_for(self, job_type: JobType, params: Mapping[str, Any]) -> tuple[str, Graph]:
        """The template's name and its graph with the job's params. Raises JobFailedError
        naming what is wrong (the gateway refuses most of it at submission already)."""
        with self._lock:
            listing, checked = dict(self._published), dict(self._checked)
        if not listing:
            raise JobFailedError(
                "templates_unknown",
                "this worker has not read ComfyUI's node catalogue yet",
                retryable=True,
            )
        name = params.get("template")
        if name is None:
            chosen = default_template(listing, job_type)
            if chosen is None:
                raise JobFailedError(
                    "no_template", f"no {job_type.value} template can run on this ComfyUI"
                )
            name = chosen.name
        entry = listing.get(str(name))
        if entry is None or entry.type != job_type:
            raise JobFailedError("unknown_template", f"no {job_type.value} template {name!r}")
        if not entry.available:
            raise JobFailedError(
                "template_unavailable", f"template {name!r} cannot run here: {entry.reason}"
            )
        result = checked[str(name)]
        try:
            graph = result.template.bind(template_values(params), defaults=result.defaults)
        except ParamsError as exc:
            raise JobFailedError("invalid_params", f"{exc} (param {exc.param})") from exc
        return str(name), graph
