"""``genstack-comfyui record``: run workflows against a real ComfyUI and write its HTTP and
websocket exchanges as JSON, the fixtures the replay stand-in serves in CI.

Most are model-free. ``sd15_txt2img`` needs the random-weight SD1.5 checkpoint of
genstack.testing.checkpoints in ComfyUI's checkpoints folder as :data:`SD15_CHECKPOINT`; a
scenario whose checkpoint ComfyUI does not list is skipped (the recording never holds the
checkpoint, only the exchange and the output files).

Each recording holds the graph, the upload (if any), the answer to ``POST /prompt``, every
websocket event of the prompt (with its time offset), the final ``/history`` entry and the
output files (base64). The prompt id and the job folder are replaced by ``{{prompt_id}}``
and ``{{job}}``, so a replay serves them for any job. Beside them: ``system_stats.json``,
and ``object_info.json``, ComfyUI's ``/object_info`` entries (its own format) of the node
classes the scenarios use and of :data:`CATALOGUE_EXTRA` (the whole answer is megabytes),
read before any scenario runs, so the loaders' file lists are those of an empty input
folder.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import struct
import threading
import time
import uuid
import wave
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from genstack.comfyui.client import EventSocket, ws_url
from genstack.comfyui.templates import load_templates
from genstack.comfyui.workflow import prefix_outputs

log = logging.getLogger(__name__)

PROMPT = "{{prompt_id}}"
JOB = "{{job}}"
STATS = "system_stats"
OBJECT_INFO = "object_info"
# Node classes recorded in object_info.json beyond the scenarios': a text-to-image graph and
# an output node, for tests that check workflows against the catalogue.
CATALOGUE_EXTRA = (
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "LoadImage",
    "PreviewImage",
)

# The name the SD1.5 checkpoint with random weights (genstack.testing.checkpoints) is given in
# ComfyUI's checkpoints folder, by the recording and by the tests that replay it alike.
SD15_CHECKPOINT = "genstack-sd15-random.safetensors"


def tone_wav(seconds: float = 0.5, rate: int = 16000, hz: float = 440.0) -> bytes:
    """A mono 16-bit sine: a real, non-silent audio input."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def _image(width: int, height: int, batch: int, color: int = 0x3366CC) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": batch, "color": color},
    }


# The params of the recorded txt2img job: what a test submits to get the recorded graph.
TXT2IMG_PARAMS: dict[str, Any] = {
    "prompt": "a lighthouse on a cliff at dusk",
    "negative_prompt": "blurry",
    "width": 64,
    "height": 64,
    "steps": 1,
    "seed": 0,
    "sampler": "euler",
    "scheduler": "normal",
}


def txt2img(
    checkpoint: str,
    *,
    width: int = 64,
    height: int = 64,
    steps: int = 1,
    seed: int = 0,
    prefix: str = JOB,
) -> dict[str, dict[str, Any]]:
    """The built-in ``txt2img`` template bound as an `image` job with TXT2IMG_PARAMS (and
    this checkpoint, size, steps and seed) binds it, its outputs under ``prefix``."""
    params = {
        **TXT2IMG_PARAMS,
        "checkpoint": checkpoint,
        "width": width,
        "height": height,
        "steps": steps,
        "seed": seed,
    }
    return prefix_outputs(load_templates()["txt2img"].bind(params), prefix)


@dataclass
class Scenario:
    name: str
    graph: dict[str, dict[str, Any]]
    upload: tuple[str, bytes, str] | None = None  # file name, bytes, content type
    upload_into: tuple[str, str] | None = None  # node id, input the uploaded value goes to
    interrupt_on_node: str | None = None
    checkpoint: str | None = None  # the file it needs in ComfyUI's checkpoints folder
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            "image_batch",
            {
                "1": _image(64, 64, 2),
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["2", 0], "filename_prefix": f"{JOB}/img"},
                },
            },
        ),
        Scenario(
            "animated_webp",
            {
                "1": _image(64, 64, 4),
                "2": {
                    "class_type": "SaveAnimatedWEBP",
                    "inputs": {
                        "images": ["1", 0],
                        "filename_prefix": f"{JOB}/anim",
                        "fps": 6.0,
                        "lossless": False,
                        "quality": 80,
                        "method": "default",
                    },
                },
            },
        ),
        Scenario(
            "video",
            {
                "1": _image(64, 64, 8),
                "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
                "3": {
                    "class_type": "SaveVideo",
                    "inputs": {
                        "video": ["2", 0],
                        "filename_prefix": f"{JOB}/vid",
                        "format": "auto",
                        "codec": "auto",
                    },
                },
            },
        ),
        Scenario(
            "audio",
            {
                "1": {"class_type": "LoadAudio", "inputs": {"audio": "tone.wav"}},
                "2": {
                    "class_type": "SaveAudio",
                    "inputs": {"audio": ["1", 0], "filename_prefix": f"{JOB}/aud"},
                },
            },
            upload=("tone.wav", tone_wav(), "audio/wav"),
            upload_into=("1", "audio"),
        ),
        Scenario(
            "invalid_input",
            {
                "1": _image(0, 64, 1),
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": f"{JOB}/img"},
                },
            },
        ),
        Scenario(
            "unknown_node",
            {
                "1": {"class_type": "NoSuchNode", "inputs": {}},
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": f"{JOB}/img"},
                },
            },
        ),
        Scenario(
            "execution_error",
            {
                "1": {"class_type": "LoadAudio", "inputs": {"audio": "broken.wav"}},
                "2": {
                    "class_type": "SaveAudio",
                    "inputs": {"audio": ["1", 0], "filename_prefix": f"{JOB}/aud"},
                },
            },
            upload=("broken.wav", b"RIFF this is not audio" * 8, "audio/wav"),
            upload_into=("1", "audio"),
            notes="a file that is not audio: LoadAudio raises while the prompt runs",
        ),
        Scenario(
            "interrupt",
            {
                "1": _image(1024, 1024, 3),
                "2": {
                    "class_type": "ImageScaleBy",
                    "inputs": {"image": ["1", 0], "upscale_method": "lanczos", "scale_by": 3.0},
                },
                "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
                "4": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["3", 0], "filename_prefix": f"{JOB}/slow"},
                },
            },
            interrupt_on_node="2",
            notes="a slow node on CPU; POST /interrupt {prompt_id} once it runs",
        ),
        Scenario(
            "sd15_txt2img",
            txt2img(SD15_CHECKPOINT),
            checkpoint=SD15_CHECKPOINT,
            notes="SD1.5 with random weights (genstack.testing.checkpoints): 64x64, 1 step, "
            "a real PNG of noise",
        ),
    ]


def _fill(value: Any, prompt_id: str, job: str) -> Any:
    text = json.dumps(value).replace(PROMPT, prompt_id).replace(JOB, job)
    return json.loads(text)


def _blank(value: Any, prompt_id: str, job: str) -> Any:
    text = json.dumps(value).replace(prompt_id, PROMPT).replace(job, JOB)
    return json.loads(text)


class _Listener:
    """Collects every websocket event (with its time offset) in a thread."""

    def __init__(
        self, socket: EventSocket, started: float, on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        self.socket = socket
        self.started = started
        self.events: list[dict[str, Any]] = []
        self.on_event = on_event
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            event = self.socket.receive(0.1)
            if event is not None:
                self.events.append({"t": round(time.monotonic() - self.started, 3), **event})
                self.on_event(event)


def record_one(http: httpx.Client, base_url: str, output_dir: Path, s: Scenario) -> dict[str, Any]:
    prompt_id = str(uuid.uuid4())
    job = uuid.UUID(prompt_id).hex
    client_id = uuid.uuid4().hex
    graph = _fill(s.graph, prompt_id, job)
    exchanges: dict[str, Any] = {"name": s.name, "notes": s.notes}
    if s.upload is not None and s.upload_into is not None:
        name, data, content_type = s.upload
        response = http.post(
            "/upload/image",
            files={"image": (name, data, content_type)},
            data={"type": "input", "subfolder": job, "overwrite": "true"},
        )
        exchanges["upload"] = {"status": response.status_code, "body": response.json()}
        body = response.json()
        node, key = s.upload_into
        graph[node]["inputs"][key] = f"{body['subfolder']}/{body['name']}"
    started = time.monotonic()
    socket = EventSocket(ws_url(base_url, client_id))
    interrupted = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if (
            s.interrupt_on_node
            and event.get("type") == "executing"
            and data.get("node") == s.interrupt_on_node
            and not interrupted.is_set()
        ):
            interrupted.set()
            http.post("/interrupt", json={"prompt_id": prompt_id})

    listener = _Listener(socket, started, on_event)
    try:
        response = http.post(
            "/prompt", json={"prompt": graph, "prompt_id": prompt_id, "client_id": client_id}
        )
        exchanges["submit"] = {"status": response.status_code, "body": response.json()}
        history: dict[str, Any] = {}
        if response.status_code == 200:
            deadline = time.monotonic() + 600  # a checkpoint's first load on CPU is slow
            while time.monotonic() < deadline:
                history = http.get(f"/history/{prompt_id}").json()
                entry = history.get(prompt_id) or {}
                if (entry.get("status") or {}).get("status_str") in ("success", "error"):
                    break
                time.sleep(0.2)
            time.sleep(0.3)  # the last websocket events
        exchanges["history"] = history
    finally:
        listener.stop.set()
        listener.thread.join(2)
        socket.close()
    exchanges["ws"] = [e for e in listener.events if _mine(e, prompt_id)]
    files: dict[str, str] = {}
    folder = output_dir / job
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = base64.b64encode(
                    path.read_bytes()
                ).decode()
    exchanges["files"] = files
    exchanges["prompt"] = graph
    recording: dict[str, Any] = _blank(exchanges, prompt_id, job)
    return recording


def _mine(event: dict[str, Any], prompt_id: str) -> bool:
    data = event.get("data")
    if not isinstance(data, dict):
        return False
    if data.get("prompt_id") == prompt_id:
        return True
    # Queue-length updates carry no prompt id; keep them, they are part of the exchange.
    return event.get("type") == "status"


def _checkpoints(http: httpx.Client) -> set[str]:
    info = http.get("/object_info/CheckpointLoaderSimple").json()
    choices = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    return {str(c) for c in choices}


def recorded_classes() -> list[str]:
    """The node classes object_info.json keeps: the scenarios' and CATALOGUE_EXTRA."""
    used = {str(node["class_type"]) for scenario in scenarios() for node in scenario.graph.values()}
    return sorted(used | set(CATALOGUE_EXTRA))


def record_object_info(http: httpx.Client, version: str | None) -> dict[str, Any]:
    everything = http.get("/object_info").json()
    kept = {name: everything[name] for name in recorded_classes() if name in everything}
    return {
        "name": OBJECT_INFO,
        "notes": f"{len(kept)} of the {len(everything)} node classes of /object_info",
        "comfyui_version": version,
        "object_info": kept,
    }


def names() -> list[str]:
    """What ``record --only`` takes."""
    return [STATS, OBJECT_INFO, *(s.name for s in scenarios())]


def record_all(
    base_url: str, out: Path, output_dir: Path, only: Collection[str] | None = None
) -> list[Path]:
    """Record ``system_stats.json``, ``object_info.json`` and every scenario (or those of
    :func:`names` in ``only``); returns the files written."""
    unknown = set(only or ()) - set(names())
    if unknown:
        raise ValueError(f"nothing to record named {sorted(unknown)} (known: {names()})")
    wanted = set(only or names())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=60, trust_env=False) as http:
        stats = http.get("/system_stats").json()
        version = stats.get("system", {}).get("comfyui_version")
        if STATS in wanted:
            path = out / f"{STATS}.json"
            path.write_text(json.dumps(stats, indent=1) + "\n")
            written.append(path)
        if OBJECT_INFO in wanted:
            path = out / f"{OBJECT_INFO}.json"
            path.write_text(json.dumps(record_object_info(http, version), indent=1) + "\n")
            written.append(path)
        checkpoints = _checkpoints(http)
        for scenario in scenarios():
            if scenario.name not in wanted:
                continue
            if scenario.checkpoint is not None and scenario.checkpoint not in checkpoints:
                log.warning(
                    "skipping %s: ComfyUI lists no checkpoint %s",
                    scenario.name,
                    scenario.checkpoint,
                )
                continue
            log.info("recording %s", scenario.name)
            recording = record_one(http, base_url, output_dir, scenario)
            recording["comfyui_version"] = version
            path = out / f"{scenario.name}.json"
            path.write_text(json.dumps(recording, indent=1) + "\n")
            written.append(path)
    return written
