"""COMFYUI_WARMUP: run each available template once, at its smallest size, right after the
worker first sees ComfyUI, so the first user job does not pay for loading models from disk.

Each run is a prompt of its own (not a job): the template bound with its tiny params
(:func:`tiny_params`), its outputs under ``OUTPUT_DIR/.warmup/`` (a dot folder: the uploader
ignores it) and deleted afterwards. A template whose run fails is logged and skipped; warm-up
never stops the worker. Readiness shows ``warmup``: "ok" once done (or when off), else how
far it is.
"""

from __future__ import annotations

import logging
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genstack.comfyui.client import ComfyUIClient, ComfyUIError
from genstack.comfyui.template_registry import TemplateRegistry
from genstack.comfyui.workflow import prefix_outputs
from genstack.core.contracts.comfyui_templates import PublishedTemplate
from genstack.core.health import OK

log = logging.getLogger(__name__)

WARMUP_FOLDER = ".warmup"
# What a warm-up run asks for, where the template takes it: the least work that still loads
# every model (sampler, text encoder, VAE) once.
TINY: dict[str, Any] = {
    "prompt": "warm-up",
    "text": "Warm-up.",
    "width": 64,
    "height": 64,
    "n": 1,
    "frames": 1,
    "steps": 1,
    "seed": 0,
}


def tiny_params(template: PublishedTemplate) -> dict[str, Any]:
    """The TINY values this template takes, each raised to its published minimum and onto
    its step (Wan's frames: 1 + 4k; widths in multiples of 16 or 32)."""
    params: dict[str, Any] = {}
    for name, value in TINY.items():
        spec = template.params.get(name)
        if spec is None:
            continue
        schema = spec.schema_
        if isinstance(value, int):
            value = max(value, int(schema.get("minimum", value)))
            step = schema.get("x-step")
            if isinstance(step, Mapping) and int(step.get("step", 1)) > 1:
                start, every = int(step.get("from", 0)), int(step["step"])
                value = start + -(-(value - start) // every) * every  # up onto the step
        params[name] = value
    return params


def tiny_png(size: int = 64) -> bytes:
    """A grey ``size`` x ``size`` RGB PNG: the input image of a warm-up run."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * (3 * size) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Warmup:
    def __init__(
        self,
        client: ComfyUIClient,
        registry: TemplateRegistry,
        output_dir: Path,
        *,
        enabled: bool,
        timeout_s: float,
    ) -> None:
        self.client = client
        self.registry = registry
        self.output_dir = output_dir
        self.enabled = enabled
        self.timeout_s = timeout_s
        self.done: dict[str, str] = {}  # template -> "ok" or why it failed
        self._total: int | None = None
        self._finished = threading.Event()
        if not enabled:
            self._finished.set()

    def readiness(self) -> str:
        """The /readyz check: "ok" when warm (or off)."""
        if self._finished.is_set():
            return OK
        if self._total is None:
            return "warm-up not started (waiting for ComfyUI's catalogue)"
        return f"warming up: {len(self.done)} of {self._total} templates run"

    def start(self) -> None:
        if self.enabled:
            threading.Thread(target=self.run, name="comfyui-warmup", daemon=True).start()

    def run(self) -> dict[str, str]:
        """Wait for ComfyUI's catalogue, then run every available template once."""
        while True:
            try:
                self.registry.ensure(self.client.object_info)
                break
            except ComfyUIError:
                time.sleep(2.0)
        listing = [t for t in self.registry.published().values() if t.available]
        self._total = len(listing)
        started = time.monotonic()
        for template in sorted(listing, key=lambda t: t.name):
            self.done[template.name] = self._run_one(template)
        shutil.rmtree(self.output_dir / WARMUP_FOLDER, ignore_errors=True)
        log.info(
            "warm-up done",
            extra={"templates": self.done, "elapsed_s": round(time.monotonic() - started, 1)},
        )
        self._finished.set()
        return self.done

    def _run_one(self, template: PublishedTemplate) -> str:
        started = time.monotonic()
        params = {**tiny_params(template), "template": template.name}
        specs = self.registry.templates[template.name].params
        try:
            for name, spec in specs.items():
                if spec.required and spec.load == "LoadImage":
                    # An image in ComfyUI's input folder (a warm-up binds names there, not keys).
                    params[name] = self.client.upload(
                        tiny_png(), "warm.png", subfolder=WARMUP_FOLDER, content_type="image/png"
                    )
                elif spec.required and spec.default is None and name not in params:
                    return f"skipped: needs {name}"
            _, graph = self.registry.graph_for(template.type, params)
            graph = prefix_outputs(graph, f"{WARMUP_FOLDER}/{template.name}")
            self.client.run(graph, str(uuid.uuid4()), timeout_s=self.timeout_s)
        except Exception as exc:  # one template's failure must not stop the others
            log.warning("warm-up of template %s failed", template.name, extra={"err": str(exc)})
            return f"failed: {exc}"
        log.info(
            "template %s warm", template.name, extra={"s": round(time.monotonic() - started, 1)}
        )
        return OK
