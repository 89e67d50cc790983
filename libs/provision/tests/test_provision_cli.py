"""The genstack-provision console script as a real process: SIGKILL and resume, dry-run
plans, the gpu report, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genstack.provision import parse_manifest
from genstack.provision.plan import part_bytes
from genstack.testing.file_server import FileServer, add_hf_file, sha256
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.process import console_script

MiB = 2**20

# The seed's docker-compose environment (seed section 3).
SEED_COMPOSE_ENV = {
    "ENABLE_VIBEVOICE": "true",
    "ENABLE_CONTROLNET": "true",
    "ENABLE_ILLUSTRIOUS": "false",
    "ENABLE_ZIMAGE": "false",
    "VIBEVOICE_MODEL": "Large",
    "STORAGE_MODE": "persistent",
    "COMFYUI_PORT": "8188",
    "GPU_TIER": "consumer",
    "GPU_MEMORY_MODE": "auto",
    "ENABLE_GENFOCUS": "true",
    "ENABLE_QWEN_EDIT": "true",
    "QWEN_EDIT_MODEL": "Q4_K_M",
    "ENABLE_MVINVERSE": "true",
    "ENABLE_FLASHPORTRAIT": "false",
    "ENABLE_STORYMEM": "false",
    "ENABLE_INFCAM": "false",
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ENABLE_", "GPU_", "WAN_"))}
    return subprocess.run(
        [console_script("genstack-provision"), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sigkill_mid_download_then_rerun_fetches_only_what_was_missing(
    hub: FileServer,
    cdn: FileServer,
    env: dict[str, str],
    tmp_path: Path,
    service_process: StartServiceProcess,
) -> None:
    data = os.urandom(40 * MiB)
    add_hf_file(hub, cdn, "org/big", "model.safetensors", data)
    blob = "/blobs/org/big/model.safetensors"
    cdn.rate_bps = 2.5 * MiB  # per connection: 4 connections, ~4 s for the file
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "schema: 1\nname: kill\nmodels:\n"
        "  - id: big\n"
        "    source: hf://org/big/model.safetensors@main\n"
        "    dest: diffusion_models/model.safetensors\n"
        "    approx_size: 40 MB\n"
    )
    root = tmp_path / "models"
    dest = root / "diffusion_models/model.safetensors"
    argv = [console_script("genstack-provision"), "-m", str(manifest), "--models-dir", str(root)]
    run_env = {**env, "PROVISION_PIECE_MB": "1", "PROVISION_PROGRESS": "log"}

    first = service_process(argv, env=run_env, name="provision-1")
    deadline = time.monotonic() + 60
    while part_bytes(dest) < len(data) * 0.4:
        assert first.is_running(), first.log_tail()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    first.kill()
    assert first.returncode == -9
    had = part_bytes(dest)
    assert had < len(data) and not dest.exists()
    sent_before = cdn.sent[blob]

    cdn.rate_bps = None
    second = service_process(argv, env=run_env, name="provision-2")
    assert second.wait(timeout=60) == 0, second.log_tail()
    assert dest.read_bytes() == data
    assert not dest.with_name(dest.name + ".part").exists()
    # Bytes fetched over both runs: the file plus what was in flight at the kill, < 5 %.
    total = cdn.sent[blob]
    assert total <= len(data) * 1.05, (sent_before, had, total)
    assert "resuming diffusion_models/model.safetensors" in second.logs()


def test_dry_run_for_a_24gb_gpu_with_the_seed_compose_defaults() -> None:
    result = run_cli(
        "--dry-run", "--vram-gb", "24", "--models-dir", "/nonexistent/models", env=SEED_COMPOSE_ENV
    )
    # ~96 GB to fetch: 0 where the disk has room for it, 3 (with the advice) where not.
    assert result.returncode in (0, 3), result.stderr
    out = result.stdout
    assert "tier consumer (GPU_TIER)" in out
    assert "ComfyUI flags: --normalvram" in out
    for entry in (
        "vibevoice-large",
        "controlnet-canny",
        "controlnet-depth",
        "controlnet-openpose",
        "genfocus-bokehnet",
        "genfocus-flux1-dev",
        "qwen-edit-2511-gguf-q4-k-m",
        "mvinverse",
        "wan21-t2v-1.3b-480p",
    ):
        assert entry in out
    # GPU_TIER=consumer caps the auto WAN choice at 480p; FLASHPORTRAIT etc. stay off.
    assert "wan21-t2v-14b-720p" not in out and "flashportrait" not in out


def test_dry_run_json_lists_rows_sizes_and_disk() -> None:
    result = run_cli("--dry-run", "--json", "--vram-gb", "12", "--models-dir", "/tmp/x-models")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    ids = {row["id"] for row in plan["rows"]}
    assert "vibevoice-large-q8" in ids and "wan21-t2v-1.3b-480p" in ids
    assert plan["gpu"]["tier"] == "consumer"
    assert plan["disks"][0]["fits"] is True
    assert all(row["vram"] in ("ok", "-") for row in plan["rows"])


def test_each_manifest_goes_to_its_own_root_variable_unless_models_dir_is_given() -> None:
    """xtts declares `root: {env: XTTS_MODEL_DIR}`; comfyui has no root, so MODELS_DIR."""
    env = {"XTTS_MODEL_DIR": "/tmp/x-xtts", "MODELS_DIR": "/tmp/x-models"}
    args = ("--dry-run", "--json", "--vram-gb", "12", "-m", "xtts", "-m", "comfyui")
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    dests = {row["manifest"]: Path(row["dest"]) for row in json.loads(result.stdout)["rows"]}
    assert dests["xtts"].parent == Path("/tmp/x-xtts")
    assert Path("/tmp/x-models") in dests["comfyui"].parents
    chatterbox = run_cli("--dry-run", "--json", "-m", "chatterbox", env={})
    assert chatterbox.returncode == 0, chatterbox.stderr
    rows = json.loads(chatterbox.stdout)["rows"]
    assert {Path(row["dest"]).parent for row in rows} == {Path("/data/models/chatterbox")}
    forced = run_cli(*args, "--models-dir", "/tmp/x-all", env=env)
    assert {Path(row["dest"]).parts[:3] for row in json.loads(forced.stdout)["rows"]} == {
        ("/", "tmp", "x-all")
    }


def test_gpu_command_prints_json_and_no_gpu_is_not_a_crash() -> None:
    result = run_cli("gpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    if report["gpu_found"]:  # on a GPU host
        assert report["tier"] in ("consumer", "prosumer", "datacenter")
    else:
        assert report["comfyui_flags"] == ["--cpu"]
        assert report["tier"] == "none" and report["error"]


def test_gpu_command_with_overrides() -> None:
    result = run_cli("gpu", "--vram-gb", "80", env={"GPU_MEMORY_MODE": "full"})
    report = json.loads(result.stdout)
    assert report["tier"] == "datacenter"
    assert report["comfyui_flags"] == ["--gpu-only"]
    assert report["auto_values"]["QWEN_EDIT_MODEL"] == "full"


def test_a_bad_manifest_exits_2_naming_entry_and_field(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "schema: 1\nname: bad\nmodels:\n"
        "  - id: escape\n    source: hf://a/b/c.bin@main\n    dest: ../../etc/passwd\n"
        "    approx_size: 1 KB\n"
    )
    result = run_cli("--dry-run", "-m", str(manifest), "--models-dir", str(tmp_path))
    assert result.returncode == 2
    assert "models[0] (id 'escape') field 'dest'" in result.stderr
    assert "escapes the models root" in result.stderr


def test_a_bad_variable_value_exits_2_naming_it() -> None:
    result = run_cli("--dry-run", "--models-dir", "/tmp/x", env={"QWEN_EDIT_MODEL": "Q9_X"})
    assert result.returncode == 2
    assert "QWEN_EDIT_MODEL='Q9_X' is not one of" in result.stderr


def test_a_plan_too_big_for_the_disk_exits_3_with_what_to_turn_off(tmp_path: Path) -> None:
    result = run_cli(
        "--dry-run",
        "--vram-gb",
        "80",
        "--models-dir",
        str(tmp_path),
        env={"PROVISION_MIN_FREE_GB": "1000000", "ENABLE_VACE": "true"},
    )
    assert result.returncode == 3
    assert "DOES NOT FIT" in result.stdout
    assert "WAN 2.1 VACE 14B: 34.7 GB (enabled by: ENABLE_VACE=true)" in result.stdout
    assert "WAN 2.1 T2V 14B 720p: 14.3 GB (enabled by: WAN_720P=true (auto))" in result.stdout


def test_a_run_with_everything_present_prints_a_json_summary(
    hub: FileServer, cdn: FileServer, env: dict[str, str], tmp_path: Path
) -> None:
    data = os.urandom(MiB)
    add_hf_file(hub, cdn, "org/x", "w.bin", data)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "schema: 1\nname: small\nmodels:\n"
        f"  - id: w\n    source: hf://org/x/w.bin@main\n    dest: w.bin\n"
        f"    size: {len(data)}\n    sha256: {sha256(data)}\n"
    )
    args = ("-m", str(manifest), "--models-dir", str(tmp_path / "m"), "--json")
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["fetched"] == ["w.bin"]
    second = run_cli(*args, env=env)
    summary = json.loads(second.stdout)
    assert summary["fetched"] == [] and summary["bytes_fetched"] == 0


def test_schema_command_prints_the_manifest_json_schema() -> None:
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    assert "models" in schema["properties"] and "schema" in schema["properties"]


@pytest.mark.skipif(sys.platform != "linux", reason="signals")
def test_sigterm_stops_cleanly_keeping_the_part(
    hub: FileServer,
    cdn: FileServer,
    env: dict[str, str],
    tmp_path: Path,
    service_process: StartServiceProcess,
) -> None:
    data = os.urandom(16 * MiB)
    add_hf_file(hub, cdn, "org/t", "w.bin", data)
    cdn.rate_bps = MiB
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "schema: 1\nname: t\nmodels:\n"
        "  - id: w\n    source: hf://org/t/w.bin@main\n    dest: w.bin\n    approx_size: 16 MB\n"
    )
    root = tmp_path / "models"
    proc = service_process(
        [console_script("genstack-provision"), "-m", str(manifest), "--models-dir", str(root)],
        env={**env, "PROVISION_PIECE_MB": "1"},
    )
    while part_bytes(root / "w.bin") < MiB:
        assert proc.is_running(), proc.log_tail()
        time.sleep(0.05)
    proc.terminate()
    assert proc.wait(timeout=30) == 143
    assert (root / "w.bin.part").exists()
    assert "resumes on the next run" in proc.logs()


def test_pin_prints_a_manifest_that_loads(
    hub: FileServer, cdn: FileServer, env: dict[str, str], tmp_path: Path
) -> None:
    data = os.urandom(MiB)
    add_hf_file(hub, cdn, "org/x", "w.bin", data)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "schema: 1\nname: small\nmodels:\n"
        "  - id: w\n    source: hf://org/x/w.bin@main\n    dest: w.bin\n    approx_size: 1 MB\n"
    )
    result = run_cli("pin", "-m", str(manifest), env=env)
    assert result.returncode == 0, result.stderr
    pinned = parse_manifest(result.stdout)
    assert pinned.models[0].size == len(data) and pinned.models[0].sha256 == sha256(data)
    assert pinned.models[0].source == "hf://org/x/w.bin@" + "0" * 40


def test_a_plain_download_does_not_look_for_a_gpu(
    hub: FileServer, env: dict[str, str], tmp_path: Path
) -> None:
    data = os.urandom(MiB)
    url = hub.add("/files/plain.bin", data)
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        "schema: 1\nname: plain\nmodels:\n"
        f"  - id: plain\n    source: {url}\n    dest: plain.bin\n"
        f"    size: {len(data)}\n    sha256: {sha256(data)}\n"
    )
    root = tmp_path / "models"
    result = run_cli("-m", str(plain), "--models-dir", str(root), env=env)
    assert result.returncode == 0, result.stderr
    assert (root / "plain.bin").read_bytes() == data
    assert "GPU" not in result.stderr and "NVML" not in result.stderr, result.stderr

    # A manifest whose choice the GPU decides does look, and says when there is none.
    chosen = tmp_path / "auto.yaml"
    chosen.write_text(
        "schema: 1\nname: auto\nvariables:\n"
        "  VIBEVOICE_MODEL: {type: choice, choices: ['1.5B', Large], default: auto, auto: true,"
        " doc: by VRAM}\n"
        "models:\n"
        f"  - id: small\n    source: {url}\n    dest: small.bin\n"
        f"    size: {len(data)}\n    sha256: {sha256(data)}\n"
        "    when: VIBEVOICE_MODEL == '1.5B'\n"
    )
    result = run_cli("-m", str(chosen), "--models-dir", str(root), env=env)
    assert result.returncode == 0, result.stderr
    if not json.loads(run_cli("gpu").stdout)["gpu_found"]:
        assert "no GPU found" in result.stderr
        assert (root / "small.bin").read_bytes() == data  # the smallest variant
