"""`genstack-comfyui start`: what it checks, provisions and writes, and the argv it execs
(the contract with ComfyUI), with the exec captured instead of run."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Upstream, git, node_source

from genstack.comfyui.settings import ComfyUISettings
from genstack.comfyui.start import start
from genstack.provision import ProvisionReport, SourceError, ensure_models
from genstack.provision.gpu import GpuDevice, GpuInfo, resolve_profile


class Exec:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, path: str, argv: Sequence[str]) -> None:
        self.calls.append((path, list(argv)))


# The comfyui manifest with every default model off: the real ensure_models selects nothing.
NO_MODELS = {
    "ENABLE_VIBEVOICE": "false",
    "ENABLE_CONTROLNET": "false",
    "WAN_720P": "false",
    "WAN_480P": "false",
}


class Ensure:
    """The real ensure_models, its calls recorded (or an error raised instead)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error = error

    def __call__(self, manifest: str, root: Path, env: Any, **kw: Any) -> ProvisionReport:
        self.calls.append((manifest, root, env, kw))
        if self.error:
            raise self.error
        return ensure_models(manifest, root, env, **kw)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text("# ComfyUI\n")
    return folder


def settings(checkout: Path, tmp_path: Path, **env: str) -> ComfyUISettings:
    values: dict[str, Any] = {
        "comfyui_dir": checkout,
        "comfyui_python": Path(sys.executable),
        "models_dir": tmp_path / "models",
        "output_dir": tmp_path / "outputs",
    }
    values.update(env)
    return ComfyUISettings(**values)


def gpu(gb: float) -> GpuInfo:
    device = GpuDevice(0, "Test GPU", "GPU-1", int(gb * 1e9), int(gb * 1e9), "8.9")
    return GpuInfo(devices=(device,), driver_version="550")


@pytest.fixture(autouse=True)
def _stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.chdir", lambda _: None)  # start() enters the checkout


def run(s: ComfyUISettings, env: dict[str, str], info: GpuInfo) -> tuple[int, Exec, Ensure]:
    exec_, ensure = Exec(), Ensure()
    env = {**NO_MODELS, **env}
    code = start(s, env, exec_=exec_, ensure=ensure, profile=resolve_profile(env, info))
    return code, exec_, ensure


def test_without_a_gpu_comfyui_runs_on_the_cpu_with_outputs_models_and_args(
    checkout: Path, tmp_path: Path
) -> None:
    s = settings(
        checkout,
        tmp_path,
        comfyui_port="18188",
        comfyui_listen="0.0.0.0",
        comfyui_args="--preview-method auto --front-end-root '/a b'",
    )
    code, exec_, ensure = run(s, {}, GpuInfo(error="no GPU"))
    assert code == 0
    [(path, argv)] = exec_.calls
    extra = Path(argv[argv.index("--extra-model-paths-config") + 1])
    assert path == sys.executable
    assert argv == [
        sys.executable,
        str(checkout / "main.py"),
        "--output-directory",
        str(tmp_path / "outputs"),
        "--listen",
        "0.0.0.0",
        "--port",
        "18188",
        "--extra-model-paths-config",
        str(extra),
        "--cpu",
        "--preview-method",
        "auto",
        "--front-end-root",
        "/a b",
    ]
    [(manifest, root, _env, _kw)] = ensure.calls
    assert (manifest, root) == ("comfyui", tmp_path / "models")
    paths = yaml.safe_load(extra.read_text())["genstack"]
    assert paths["base_path"] == str(tmp_path / "models")
    assert paths["is_default"] is True
    assert paths["checkpoints"] == "checkpoints"
    assert paths["text_encoders"].split() == ["text_encoders", "clip"]
    assert (tmp_path / "outputs").is_dir()
    assert (tmp_path / "models" / ".genstack").is_dir()  # the real provisioning ran there


@pytest.mark.parametrize(
    ("vram_gb", "env", "flag"),
    [
        (80, {}, "--highvram"),
        (24, {}, "--normalvram"),
        (8, {}, "--lowvram"),
        (80, {"GPU_MEMORY_MODE": "sequential_cpu_offload"}, "--lowvram"),
        (80, {"GPU_MEMORY_MODE": "full"}, "--gpu-only"),
        (24, {"GPU_TIER": "datacenter"}, "--highvram"),
    ],
)
def test_the_gpu_profile_picks_comfyuis_memory_flag(
    checkout: Path, tmp_path: Path, vram_gb: float, env: dict[str, str], flag: str
) -> None:
    _, exec_, _ = run(settings(checkout, tmp_path), env, gpu(vram_gb))
    argv = exec_.calls[0][1]
    assert flag in argv
    assert "--cpu" not in argv


def test_comfyui_args_come_last_so_they_can_override(checkout: Path, tmp_path: Path) -> None:
    _, exec_, _ = run(settings(checkout, tmp_path, comfyui_args="--lowvram"), {}, gpu(80))
    assert exec_.calls[0][1][-2:] == ["--highvram", "--lowvram"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"update_nodes_on_start": "true", "comfyui_constraints": "/nonexistent/c.txt"},
            "UPDATE_NODES_ON_START=true needs COMFYUI_CONSTRAINTS, and /nonexistent/c.txt does",
        ),
        ({"comfyui_dir": "/nonexistent"}, "COMFYUI_DIR=/nonexistent has no main.py"),
        ({"comfyui_python": "/nonexistent/python"}, "COMFYUI_PYTHON=/nonexistent/python"),
    ],
)
def test_a_start_that_cannot_work_says_why_and_execs_nothing(
    checkout: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, str],
    message: str,
) -> None:
    code, exec_, ensure = run(settings(checkout, tmp_path, **change), {}, gpu(24))
    assert code == 2
    assert exec_.calls == [] and ensure.calls == []
    assert message in caplog.text


def test_a_provisioning_failure_stops_the_start(
    checkout: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exec_ = Exec()
    ensure = Ensure(SourceError("vae/x.safetensors", "404 at the hub"))
    code = start(
        settings(checkout, tmp_path),
        {},
        exec_=exec_,
        ensure=ensure,
        profile=resolve_profile({}, gpu(24)),
    )
    assert code == 2 and exec_.calls == []
    assert "model provisioning failed" in caplog.text and "vae/x.safetensors" in caplog.text


def test_a_bad_gpu_tier_is_refused_by_name(
    checkout: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "genstack.comfyui.start.resolve_profile", lambda env: resolve_profile(env, gpu(8))
    )
    exec_ = Exec()
    code = start(settings(checkout, tmp_path), {"GPU_TIER": "huge"}, exec_=exec_, ensure=Ensure())
    assert code == 2 and exec_.calls == []
    assert "GPU_TIER='huge'" in caplog.text


def test_update_nodes_on_start_fast_forwards_the_nodes_before_comfyui_starts(
    fake_comfyui: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real git (a bare upstream, a clone in custom_nodes) and the real import check, run with
    # COMFYUI_PYTHON against a ComfyUI stand-in; node_update's own tests cover the rest.
    caplog.set_level(logging.INFO)
    upstream = Upstream(tmp_path, "some-node", {"__init__.py": node_source("SomeNode")})
    node = upstream.clone_into(fake_comfyui / "custom_nodes", "some-node")
    new = upstream.commit({"__init__.py": node_source("SomeNode", "# v2")})
    (tmp_path / "constraints.txt").write_text("")
    s = settings(
        fake_comfyui,
        tmp_path,
        update_nodes_on_start="true",
        comfyui_constraints=str(tmp_path / "constraints.txt"),
    )
    code, exec_, _ = run(s, {}, gpu(24))
    assert code == 0 and len(exec_.calls) == 1
    assert git(node, "rev-parse", "HEAD") == new
    assert "custom nodes: 1 updated (some-node)" in caplog.text


def test_without_update_nodes_on_start_the_nodes_stay_where_they_are(
    fake_comfyui: Path, tmp_path: Path
) -> None:
    upstream = Upstream(tmp_path, "some-node", {"__init__.py": node_source("SomeNode")})
    node = upstream.clone_into(fake_comfyui / "custom_nodes", "some-node")
    upstream.commit({"__init__.py": node_source("SomeNode", "# v2")})
    code, _, _ = run(settings(fake_comfyui, tmp_path), {}, gpu(24))
    assert code == 0
    assert git(node, "rev-parse", "HEAD") == upstream.first
