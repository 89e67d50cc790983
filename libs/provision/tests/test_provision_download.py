"""ensure_models against real HTTP servers on loopback: multi-range downloads, verification,
the ledger, faults (drops, stalls, wrong bytes, errors), tokens across redirects."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from genstack.provision import (
    DiskSpaceError,
    DownloadError,
    DownloadInterruptedError,
    ProvisionError,
    SourceError,
    ensure_models,
    parse_manifest,
)
from genstack.provision import ensure as provision_ensure
from genstack.provision.gpu import GpuProfile
from genstack.provision.progress import NullProgress
from genstack.testing.file_server import Fault, FileServer, add_hf_file, add_hf_tree, sha256

MiB = 2**20


def manifest(models: str, variables: str = "") -> object:
    text = "schema: 1\nname: test\n"
    if variables:
        text += "variables:\n" + variables
    return parse_manifest(text + "models:\n" + models)


def ledger(root: Path) -> dict[str, dict[str, object]]:
    data = json.loads((root / ".genstack" / "ledger.json").read_text())
    files: dict[str, dict[str, object]] = data["files"]
    return files


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".part.state"))]


@pytest.fixture
def published(hub: FileServer, cdn: FileServer) -> dict[str, bytes]:
    """An LFS weight file (sha256 from the hub), a git config file (no sha256 anywhere), a
    plain URL whose sha256 the manifest pins."""
    files = {
        "big": os.urandom(12 * MiB + 12345),
        "config": b'{"hidden_size": 64}\n',
        "plain": os.urandom(3 * MiB + 7),
    }
    add_hf_file(hub, cdn, "org/model", "weights/big.safetensors", files["big"])
    add_hf_file(hub, cdn, "org/model", "config.json", files["config"], lfs=False)
    hub.add("/files/plain.bin", files["plain"])
    return files


def three_files(hub: FileServer, plain: bytes) -> object:
    return manifest(
        f"""
  - id: big
    source: hf://org/model/weights/big.safetensors@main
    dest: diffusion_models/big.safetensors
    approx_size: 12 MB
  - id: config
    source: hf://org/model/config.json@main
    dest: diffusion_models/config.json
    approx_size: 1 KB
  - id: plain
    source: {hub.url}/files/plain.bin
    dest: vae/plain.bin
    size: {len(plain)}
    sha256: {sha256(plain)}
"""
    )


BLOB = "/blobs/org/model/weights/big.safetensors"


def test_multi_file_manifest_downloads_verifies_renames_then_restart_does_nothing(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**env, "PROVISION_PIECE_MB": "1"}
    m = three_files(hub, published["plain"])

    report = ensure_models(m, models_root, env, profile=gpu24)

    assert (models_root / "diffusion_models/big.safetensors").read_bytes() == published["big"]
    assert (models_root / "diffusion_models/config.json").read_bytes() == published["config"]
    assert (models_root / "vae/plain.bin").read_bytes() == published["plain"]
    assert leftovers(models_root) == []
    assert sorted(r.item.key for r in report.fetched) == [
        "diffusion_models/big.safetensors",
        "diffusion_models/config.json",
        "vae/plain.bin",
    ]
    # Several byte ranges of the big file, each asked for once, together the whole file.
    ranges = [r.range for r in cdn.requests_for(BLOB, "GET")]
    assert len(ranges) == 13 and all(r and r.startswith("bytes=") for r in ranges)
    assert cdn.sent[BLOB] == len(published["big"])
    records = ledger(models_root)
    assert records["diffusion_models/big.safetensors"]["sha256_origin"] == "hub"
    assert records["diffusion_models/config.json"]["sha256_origin"] == "computed"
    assert records["diffusion_models/config.json"]["sha256"] == sha256(published["config"])
    assert records["vae/plain.bin"]["sha256_origin"] == "manifest"

    # Restart with everything present: no request, no hashing, well under a second.
    hub.clear()
    cdn.clear()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(provision_ensure, "_sha256_file", no_hashing)
    started = time.monotonic()
    again = ensure_models(m, models_root, env, profile=gpu24)
    elapsed = time.monotonic() - started
    assert again.plan.all_present and again.fetched == []
    assert hub.requests == [] and cdn.requests == []
    assert elapsed < 1.0


def test_a_browser_like_user_agent_is_sent(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    agents = {r.headers.get("User-Agent", "") for r in hub.requests + cdn.requests}
    assert agents and all(a.startswith("Mozilla/5.0") for a in agents)


def test_hf_token_is_sent_to_the_hub_and_not_across_the_redirect(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {**env, "HF_TOKEN": "hf_test_secret_123"}
    ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)

    hub_hf = [r for r in hub.requests if "/resolve/" in r.path]
    assert hub_hf, "the hub saw no request"
    assert all(r.headers.get("Authorization") == "Bearer hf_test_secret_123" for r in hub_hf)
    assert cdn.requests, "the CDN saw no request"
    assert all("Authorization" not in r.headers for r in cdn.requests)
    assert "hf_test_secret_123" not in caplog.text


def test_civitai_key_goes_to_civitai_not_to_presigned_storage(
    hub: FileServer,
    cdn: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    data = os.urandom(2 * MiB)
    hub.json_routes["/api/v1/model-versions/4242"] = {
        "id": 4242,
        "files": [
            {"name": "other.yaml", "primary": False, "hashes": {}},
            {
                "name": "lora.safetensors",
                "primary": True,
                "sizeKB": len(data) / 1024,
                "hashes": {"SHA256": sha256(data).upper()},
            },
        ],
    }
    hub.redirects["/api/download/models/4242"] = cdn.url + "/presigned/lora.safetensors?sig=x"
    cdn.add("/presigned/lora.safetensors", data)
    m = manifest(
        """
  - id: civitai-lora-{item}
    for_each: CIVITAI_LORAS
    source: civitai://{item}
    dest: loras/civitai_{item}.safetensors
    approx_size: 150 MB
""",
        variables="""  CIVITAI_LORAS: {type: list, item_pattern: '^[0-9]+$', doc: LoRAs}
""",
    )
    env = {**env, "CIVITAI_LORAS": "4242", "CIVITAI_API_KEY": "civ_test_key"}
    ensure_models(m, models_root, env, profile=gpu24)

    assert (models_root / "loras/civitai_4242.safetensors").read_bytes() == data
    assert ledger(models_root)["loras/civitai_4242.safetensors"]["sha256_origin"] == "hub"
    assert hub.requests and all(
        r.headers.get("Authorization") == "Bearer civ_test_key" for r in hub.requests
    )
    assert cdn.requests and all("Authorization" not in r.headers for r in cdn.requests)


def test_dropped_connections_are_retried(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    cdn.fault(BLOB, Fault("drop", after_bytes=100_000, times=4))
    ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    assert (models_root / "diffusion_models/big.safetensors").read_bytes() == published["big"]
    # 1 probe-free range per piece plus one retry per drop; dropped bytes were kept.
    assert len(cdn.requests_for(BLOB, "GET")) >= 5
    assert cdn.sent[BLOB] == len(published["big"])


def test_a_stalled_transfer_is_cut_and_resumed(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    env = {**env, "PROVISION_STALL_TIMEOUT_S": "1", "PROVISION_CONNECTIONS": "1"}
    cdn.fault(BLOB, Fault("stall", after_bytes=300_000))
    ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    assert (models_root / "diffusion_models/big.safetensors").read_bytes() == published["big"]
    assert "stalled" in caplog.text
    # The bytes before the stall were kept: the retry asked from where it stopped (the
    # connection went on with the blocks after it meanwhile), and no byte came twice.
    ranges = [r.range or "" for r in cdn.requests_for(BLOB, "GET")]
    assert ranges[0].startswith("bytes=0-")
    assert [r for r in ranges[1:] if r.startswith("bytes=300000-")]
    assert cdn.sent[BLOB] == len(published["big"])


def test_server_errors_are_retried_with_retry_after(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    cdn.fault(BLOB, Fault("status", status=503, retry_after="0", times=3))
    ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    assert (models_root / "diffusion_models/big.safetensors").read_bytes() == published["big"]


def test_wrong_bytes_once_are_fetched_again(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    cdn.fault(BLOB, Fault("corrupt", times=1))
    report = ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    assert (models_root / "diffusion_models/big.safetensors").read_bytes() == published["big"]
    attempts = {r.item.key: r.attempts for r in report.fetched}
    assert attempts["diffusion_models/big.safetensors"] == 2


def test_wrong_bytes_every_time_fail_naming_the_file(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    cdn.fault(BLOB, Fault("corrupt", times=1000))
    with pytest.raises(DownloadError) as info:
        ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    message = str(info.value)
    assert "diffusion_models/big.safetensors" in message
    assert "sha256 mismatch after 3 download(s)" in message
    assert sha256(published["big"]) in message
    assert [k for k, _ in info.value.failures] == ["diffusion_models/big.safetensors"]
    assert not (models_root / "diffusion_models/big.safetensors").exists()
    assert leftovers(models_root) == []
    # The other files were fetched and recorded regardless.
    assert (models_root / "vae/plain.bin").read_bytes() == published["plain"]
    assert "vae/plain.bin" in ledger(models_root)


def test_a_hub_sha256_that_the_bytes_do_not_match_is_an_error(
    hub: FileServer,
    cdn: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    data = os.urandom(MiB)
    add_hf_file(hub, cdn, "org/x", "w.bin", data, advertised_sha="ab" * 32)
    m = manifest("""
  - id: w
    source: hf://org/x/w.bin@main
    dest: w.bin
    approx_size: 1 MB
""")
    env = {**env, "PROVISION_VERIFY_ATTEMPTS": "1"}
    with pytest.raises(DownloadError, match=r"w\.bin: sha256 mismatch .* expected abab"):
        ensure_models(m, models_root, env, profile=gpu24)


def test_manifest_sha256_disagreeing_with_the_hub_fails_before_download(
    hub: FileServer,
    cdn: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    data = os.urandom(MiB)
    add_hf_file(hub, cdn, "org/x", "w.bin", data)
    m = manifest(f"""
  - id: w
    source: hf://org/x/w.bin@main
    dest: w.bin
    size: {len(data)}
    sha256: {"cd" * 32}
""")
    with pytest.raises(SourceError, match="pin a commit"):
        ensure_models(m, models_root, env, profile=gpu24)
    assert cdn.requests == []


def test_a_missing_file_names_the_entry_and_what_to_check(
    hub: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    m = manifest("""
  - id: gone
    source: hf://org/x/nope.bin@v1
    dest: nope.bin
    approx_size: 1 MB
""")
    with pytest.raises(SourceError, match=r"nope\.bin: HTTP 404 .*revision 'v1'"):
        ensure_models(m, models_root, env, profile=gpu24)


def test_interrupted_run_resumes_without_fetching_finished_ranges(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    cdn.rate_bps = 4 * MiB  # slow enough to stop half-way
    env = {**env, "PROVISION_PIECE_MB": "1", "PROVISION_CONNECTIONS": "2"}
    m = three_files(hub, published["plain"])
    stop = threading.Event()

    class StopHalfway(NullProgress):
        done = 0

        def advance(self, key: str, n: int) -> None:
            if key.endswith("big.safetensors"):
                self.done += n
                if self.done > len(published["big"]) // 2:
                    stop.set()

    with pytest.raises(DownloadInterruptedError):
        ensure_models(m, models_root, env, profile=gpu24, progress=StopHalfway(), stop=stop)
    part = models_root / "diffusion_models/big.safetensors.part"
    assert part.exists() and not (models_root / "diffusion_models/big.safetensors").exists()
    first = cdn.sent[BLOB]
    assert len(published["big"]) // 2 < first < len(published["big"])

    cdn.rate_bps = None
    ensure_models(m, models_root, env, profile=gpu24)
    assert (models_root / "diffusion_models/big.safetensors").read_bytes() == published["big"]
    # Only what the first run had not written was fetched again (one chunk in flight per
    # connection at most).
    assert cdn.sent[BLOB] <= len(published["big"]) + 2 * 64 * 1024
    assert leftovers(models_root) == []


def test_truncated_or_altered_files_are_detected_and_fetched_again(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    m = three_files(hub, published["plain"])
    ensure_models(m, models_root, env, profile=gpu24)
    big = models_root / "diffusion_models/big.safetensors"
    plain = models_root / "vae/plain.bin"
    with big.open("r+b") as f:
        f.truncate(MiB)
    altered = bytearray(plain.read_bytes())
    altered[100] ^= 1
    plain.write_bytes(bytes(altered))
    cdn.clear()
    hub.clear()

    report = ensure_models(m, models_root, env, profile=gpu24)

    assert big.read_bytes() == published["big"]
    assert plain.read_bytes() == published["plain"]
    assert sorted(r.item.key for r in report.fetched) == [
        "diffusion_models/big.safetensors",
        "vae/plain.bin",
    ]
    assert cdn.sent[BLOB] == len(published["big"])


def test_files_already_on_disk_without_a_ledger_are_verified_not_fetched(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    # A models volume from the old system: right files, no ledger; a broken download (wrong
    # size) and someone's own file of the right size but other bytes.
    (models_root / "diffusion_models").mkdir()
    (models_root / "vae").mkdir()
    (models_root / "diffusion_models/big.safetensors").write_bytes(published["big"])
    (models_root / "diffusion_models/config.json").write_bytes(b"{trunc")
    own = os.urandom(len(published["plain"]))
    (models_root / "vae/plain.bin").write_bytes(own)
    report = ensure_models(three_files(hub, published["plain"]), models_root, env, profile=gpu24)
    assert "diffusion_models/big.safetensors" in report.adopted
    assert cdn.requests_for(BLOB, "GET") == []
    assert ledger(models_root)["diffusion_models/big.safetensors"]["sha256_origin"] == "hub"
    assert (models_root / "diffusion_models/config.json").read_bytes() == published["config"]
    assert (models_root / "vae/plain.bin").read_bytes() == published["plain"]
    # Never deleted: the foreign file was moved aside.
    aside = models_root / f"vae/plain.bin.foreign-{sha256(own)[:8]}"
    assert aside.read_bytes() == own


def test_repository_source_takes_the_listed_files_with_their_lfs_sha256(
    hub: FileServer,
    cdn: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    files = {
        "model-00001-of-00002.safetensors": os.urandom(2 * MiB),
        "model-00002-of-00002.safetensors": os.urandom(MiB + 3),
        "config.json": b"{}",
        "README.md": b"# not wanted",
        "sub/tokenizer.json": b'{"v": 1}',
    }
    add_hf_tree(hub, "org/repo", files)
    for path, data in files.items():
        add_hf_file(hub, cdn, "org/repo", path, data, lfs=len(data) > 1024)
    m = manifest("""
  - id: repo
    source: hf://org/repo@main
    dest: vibevoice/Repo/
    include: ["*.safetensors", "*.json"]
    approx_size: 3 MB
""")
    ensure_models(m, models_root, env, profile=gpu24)
    for path, data in files.items():
        target = models_root / "vibevoice/Repo" / path
        if path == "README.md":
            assert not target.exists()
        else:
            assert target.read_bytes() == data
    records = ledger(models_root)
    assert records["vibevoice/Repo/model-00001-of-00002.safetensors"]["sha256_origin"] == "hub"
    hub.clear()
    cdn.clear()
    again = ensure_models(m, models_root, env, profile=gpu24)
    assert again.plan.all_present and hub.requests == [] and cdn.requests == []


def test_plan_that_cannot_fit_the_disk_fails_before_any_request(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    m = manifest(
        """
  - id: huge
    group: Huge model
    source: hf://org/model/weights/big.safetensors@main
    dest: diffusion_models/big.safetensors
    approx_size: 900 TB
    when: ENABLE_HUGE
  - id: small
    source: hf://org/model/config.json@main
    dest: config.json
    approx_size: 1 KB
""",
        variables="""  ENABLE_HUGE: {type: bool, default: "true", doc: the huge one}
""",
    )
    with pytest.raises(DiskSpaceError) as info:
        ensure_models(m, models_root, env, profile=gpu24)
    message = str(info.value)
    assert "not enough disk" in message and "Turn off" in message
    assert "Huge model: 900.0 TB (enabled by: ENABLE_HUGE=true)" in message
    assert "small" not in message  # no condition: nothing to turn off
    assert hub.requests == [] and cdn.requests == []
    # Turning it off, as the message says, fixes it.
    ensure_models(m, models_root, {**env, "ENABLE_HUGE": "false"}, profile=gpu24)


def test_exact_sizes_from_the_hub_are_checked_before_the_first_byte(
    hub: FileServer,
    cdn: FileServer,
    published: dict[str, bytes],
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    free = shutil.disk_usage(models_root).free
    # The manifest underestimates (1 KB); keep all but 1 MB free: only the hub's 12 MB fails.
    env = {**env, "PROVISION_MIN_FREE_GB": str((free - MiB) / 1e9)}
    m = manifest("""
  - id: big
    source: hf://org/model/weights/big.safetensors@main
    dest: big.safetensors
    approx_size: 1 KB
""")
    with pytest.raises(DiskSpaceError, match="not enough disk"):
        ensure_models(m, models_root, env, profile=gpu24)
    assert [r.method for r in hub.requests] == ["HEAD"]
    assert cdn.requests == []


def test_pin_fills_in_exact_sizes_sha256s_and_commits(
    hub: FileServer,
    cdn: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    from genstack.provision.pin import pin_manifest
    from genstack.provision.settings import ProvisionSettings

    commit = "0" * 40  # what the fake hub answers as X-Repo-Commit
    weights, config = os.urandom(2 * MiB), b'{"a": 1}'
    for revision in ("main", commit):
        add_hf_file(hub, cdn, "org/p", "w.safetensors", weights, revision=revision)
        add_hf_file(hub, cdn, "org/p", "config.json", config, lfs=False, revision=revision)
    m = manifest(
        """
  - id: w
    source: hf://org/p/w.safetensors@main
    dest: w.safetensors
    approx_size: 2 MB
  - id: config
    source: hf://org/p/config.json@main
    dest: config.json
    approx_size: 1 KB
  - id: repo
    source: hf://org/p@main
    dest: repo/
    approx_size: 1 GB
    when: ENABLE_REPO
""",
        variables="""  ENABLE_REPO: {type: bool, default: "false", doc: repo}
""",
    )
    pinned = pin_manifest(m, ProvisionSettings.from_env(env))  # type: ignore[arg-type]
    by_id = {e["id"]: e for e in pinned["models"]}
    assert by_id["w"]["size"] == len(weights) and "approx_size" not in by_id["w"]
    assert by_id["w"]["sha256"] == sha256(weights)
    assert by_id["w"]["source"] == f"hf://org/p/w.safetensors@{commit}"
    assert by_id["config"]["size"] == len(config) and "sha256" not in by_id["config"]
    assert by_id["repo"]["source"] == "hf://org/p@main"  # repositories stay as they are

    import yaml

    again = parse_manifest(yaml.safe_dump(pinned, sort_keys=False))
    ensure_models(again, models_root, env, profile=gpu24)
    assert (models_root / "w.safetensors").read_bytes() == weights
    assert ledger(models_root)["w.safetensors"]["sha256_origin"] == "manifest"


@pytest.mark.parametrize("kind", ["no-ranges", "chunked"])
def test_servers_without_ranges_or_length_are_fetched_whole(
    hub: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
    kind: str,
) -> None:
    data = os.urandom(3 * MiB + 5)
    url = hub.add("/plain/file.bin", data)
    (hub.no_ranges if kind == "no-ranges" else hub.chunked).add("/plain/file.bin")
    m = manifest(f"""
  - id: f
    source: {url}
    dest: f.bin
    approx_size: 3 MB
""")
    report = ensure_models(m, models_root, env, profile=gpu24)
    assert (models_root / "f.bin").read_bytes() == data
    assert report.fetched[0].sha256 == sha256(data)
    assert ledger(models_root)["f.bin"]["sha256_origin"] == "computed"
    bodies = [r for r in hub.requests_for("/plain/file.bin", "GET") if r.range != "bytes=0-0"]
    assert len(bodies) == 1  # one whole-file request, not several pieces
    assert hub.sent["/plain/file.bin"] <= 2 * len(data) + 64 * 1024  # probe + the file


def test_a_hub_listing_with_a_path_leaving_the_folder_is_refused(
    hub: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
) -> None:
    add_hf_tree(hub, "org/evil", {"ok.json": b"{}", "../../escape.bin": b"x" * 10})
    m = manifest("""
  - id: evil
    source: hf://org/evil@main
    dest: evil/
    approx_size: 1 KB
""")
    with pytest.raises(SourceError, match=r"unsafe path '\.\./\.\./escape\.bin'"):
        ensure_models(m, models_root, env, profile=gpu24)
    assert not (models_root.parent / "escape.bin").exists()


def test_a_read_only_root_is_used_as_it_is_when_complete(
    hub: FileServer,
    models_root: Path,
    env: dict[str, str],
    gpu24: GpuProfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As root the tests cannot make a folder read-only; the check of the filesystem is the
    # only thing replaced here.
    monkeypatch.setattr(provision_ensure, "_writable", lambda root: False)
    m = manifest("""
  - id: model
    source: hf://org/x/model.pth@main
    dest: model.pth
    size: 4
  - id: config
    source: hf://org/x/config.json@main
    dest: config.json
    approx_size: 1 KB
""")
    (models_root / "model.pth").write_bytes(b"abcd")
    with pytest.raises(ProvisionError, match=r"read-only and lacks config\.json"):
        ensure_models(m, models_root, env, profile=gpu24)
    (models_root / "config.json").write_text("{}")
    report = ensure_models(m, models_root, env, profile=gpu24)
    assert report.fetched == [] and hub.requests == []
    (models_root / "model.pth").write_bytes(b"abc")  # the manifest says 4 bytes
    with pytest.raises(ProvisionError, match=r"lacks model\.pth"):
        ensure_models(m, models_root, env, profile=gpu24)
