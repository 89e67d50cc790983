"""Real generation: SD1.5 text to image through the ComfyUI client, against the replay of its
recording (CI) and against a real ComfyUI on CPU loading a full-size SD1.5 checkpoint with
random weights (the sd15_checkpoint fixture; COMFYUI_DIR and COMFYUI_PYTHON). The picture is
noise, but a real PNG of the requested size made by the real loader, sampler and VAE."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genstack.comfyui.cli import main
from genstack.comfyui.client import ComfyUIClient, Progress
from genstack.comfyui.recorder import SD15_CHECKPOINT, txt2img
from genstack.testing.comfyui_replay import ComfyReplay
from genstack.testing.png import Png, read_png
from genstack.testing.stack import start_comfyui

REAL = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="COMFYUI_DIR is not set"),
]


@dataclasses.dataclass
class Comfy:
    url: str
    outputs: Path


@pytest.fixture(scope="module")
def real_comfyui(
    tmp_path_factory: pytest.TempPathFactory, sd15_checkpoint: Path
) -> Iterator[Comfy]:
    root = tmp_path_factory.mktemp("comfyui-sd15")
    checkpoints = root / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # A link, not a copy: the cached file is 2.1 GB.
    (checkpoints / SD15_CHECKPOINT).symlink_to(sd15_checkpoint)
    url, process = start_comfyui(root, root / "outputs")
    try:
        yield Comfy(url, root / "outputs")
    finally:
        process.stop()


@pytest.fixture(params=["replay", pytest.param("real", marks=REAL)])
def comfy(request: pytest.FixtureRequest) -> Comfy:
    if request.param == "replay":
        replay: ComfyReplay = request.getfixturevalue("replay")
        return Comfy(replay.url, replay.output_dir)
    real: Comfy = request.getfixturevalue("real_comfyui")
    return real


def generate(comfy: Comfy, graph: dict[str, Any]) -> tuple[Png, list[Progress]]:
    job = uuid.uuid4().hex
    graph = json.loads(json.dumps(graph).replace("{{job}}", job))
    seen: list[Progress] = []
    client = ComfyUIClient(comfy.url, poll_s=0.5, grace_s=10)
    try:
        # The first prompt of a real ComfyUI loads the checkpoint: tens of seconds on CPU.
        result = client.run(
            graph, on_progress=lambda p: seen.append(dataclasses.replace(p)), timeout_s=600
        )
    finally:
        client.close()
    [images] = [o["images"] for o in result.outputs.values() if "images" in o]  # SaveImage
    assert [i["subfolder"] for i in images] == [job]
    return read_png((comfy.outputs / job / images[0]["filename"]).read_bytes()), seen


def test_txt2img_makes_a_real_png_of_the_requested_size(comfy: Comfy) -> None:
    png, seen = generate(comfy, txt2img(SD15_CHECKPOINT, width=64, height=64, steps=1))
    assert (png.width, png.height, png.channels) == (64, 64, 3)
    # Noise: many values, not one flat colour (a NaN latent decodes to all black).
    assert png.distinct_values() > 64
    assert 16 < png.mean() < 240
    assert any(p.class_type == "KSampler" and p.steps == 1 for p in seen)


@pytest.mark.comfyui
@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="COMFYUI_DIR is not set")
def test_the_size_and_steps_asked_for_are_the_ones_made(real_comfyui: Comfy) -> None:
    png, seen = generate(real_comfyui, txt2img(SD15_CHECKPOINT, width=96, height=64, steps=2))
    assert (png.width, png.height) == (96, 64)
    assert png.distinct_values() > 64
    assert max(p.step or 0 for p in seen if p.class_type == "KSampler") == 2


def test_recording_an_unknown_scenario_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["record", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), "--output-dir"]
    assert main([*argv, str(tmp_path), "--only", "sd15_txt2im"]) == 2
    assert "nothing to record named ['sd15_txt2im']" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@REAL[0]
@REAL[1]
def test_warmup_runs_each_available_template_on_a_real_comfyui(real_comfyui: Comfy) -> None:
    """COMFYUI_WARMUP on a real ComfyUI: every available built-in template (here txt2img, on
    the one checkpoint present) runs once at its smallest size and leaves no file; a job
    runs normally after it."""
    from genstack.comfyui.template_registry import TemplateRegistry
    from genstack.comfyui.templates import load_templates
    from genstack.comfyui.warmup import WARMUP_FOLDER, Warmup

    client = ComfyUIClient(real_comfyui.url, poll_s=0.5, grace_s=10)
    try:
        warmup = Warmup(
            client,
            TemplateRegistry(load_templates()),
            real_comfyui.outputs,
            enabled=True,
            timeout_s=600,
        )
        done = warmup.run()
    finally:
        client.close()
    assert done == {"txt2img": "ok"}  # the only template whose models are all here
    assert warmup.readiness() == "ok"
    assert not (real_comfyui.outputs / WARMUP_FOLDER).exists()
    png, _ = generate(real_comfyui, txt2img(SD15_CHECKPOINT, width=64, height=64, steps=1))
    assert (png.width, png.height) == (64, 64)
