"""What the issue promises of the watched folder, checked against the real process."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import httpx
from conftest import Rig, sha256

from genstack.testing.ports import free_port
from genstack.testing.process import console_script
from genstack.testing.waiting import wait_until


def write_files(root: Path, count: int, *, seed: int, prefix: str = "f") -> dict[Path, str]:
    rng = random.Random(seed)
    written: dict[Path, str] = {}
    for i in range(count):
        folder = root / f"batch{i % 7}"
        folder.mkdir(exist_ok=True)
        path = folder / f"{prefix}{i:04d}.{rng.choice(['png', 'wav', 'mp4', 'jpg'])}"
        data = rng.randbytes(rng.randint(1, 64 * 1024))
        path.write_bytes(data)
        written[path] = sha256(data)
    return written


def test_200_files_arrive_byte_identical_exactly_once(rig: Rig) -> None:
    rig.start()
    written = write_files(rig.output_dir, 200, seed=1)
    # Never uploaded: hidden, temporary and unlisted names.
    (rig.output_dir / ".hidden.png").write_bytes(b"x")
    (rig.output_dir / "partial.png.part").write_bytes(b"x")
    (rig.output_dir / "notes.txt").write_bytes(b"x")
    expected = {rig.key_for(path): digest for path, digest in written.items()}

    wait_until(lambda: rig.object_keys() >= expected.keys(), 90, "200 objects")
    time.sleep(3)  # two more rescans and any straggling event: nothing may be uploaded again
    assert rig.objects() == expected
    writes = rig.writes()
    assert writes == dict.fromkeys(expected, 1)
    metrics = httpx.get(f"http://127.0.0.1:{rig.metrics_port}/metrics").text
    assert 'genstack_uploads_total{result="uploaded"} 200.0' in metrics
    assert "genstack_upload_pending 0.0" in metrics


def test_slowly_written_file_is_uploaded_once_complete(rig: Rig) -> None:
    rig.start()
    path = rig.output_dir / "slow.mp4"
    chunks = [os.urandom(300_000) for _ in range(10)]
    with path.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
            time.sleep(0.35)  # 3.5 s in all: several rescans pass while it grows
    key = rig.key_for(path)
    wait_until(lambda: key in rig.object_keys(), 30, "the slow file")
    time.sleep(2.5)
    assert rig.objects() == {key: sha256(b"".join(chunks))}
    assert rig.writes() == {key: 1}


def test_files_written_while_stopped_are_uploaded_after_start(rig: Rig) -> None:
    process = rig.start()
    first = write_files(rig.output_dir, 5, seed=2, prefix="early")
    wait_until(lambda: len(rig.object_keys()) == 5, 30, "the first five")
    process.terminate()
    assert process.wait(timeout=30) == 0

    later = write_files(rig.output_dir, 20, seed=3, prefix="late")
    early = sorted(first)
    rewritten, touched = early[0], early[1]
    rewritten.write_bytes(b"new content " * 100)  # same path, new bytes: uploaded again
    os.utime(touched)  # same bytes, new mtime: not uploaded again
    time.sleep(1)  # past UPLOAD_STABLE_S, so the start-up rescan takes them all

    rig.start()
    expected = {rig.key_for(p): d for p, d in {**first, **later}.items()}
    expected[rig.key_for(rewritten)] = sha256(b"new content " * 100)
    wait_until(lambda: rig.objects() == expected, 60, "every file, the rewritten one new")
    time.sleep(2.5)
    writes = rig.writes()
    assert writes.pop(rig.key_for(rewritten)) == 2
    assert writes == dict.fromkeys(set(expected) - {rig.key_for(rewritten)}, 1)


def test_atomic_rename_into_the_folder_is_seen(rig: Rig) -> None:
    rig.start(upload_rescan_interval_s="3600")  # only the moved_to event can find it
    staging = rig.output_dir.parent / "staging"
    staging.mkdir()
    source = staging / "img.png"
    source.write_bytes(b"\x89PNG rename")
    time.sleep(0.2)
    target = rig.output_dir / "img.png"
    source.rename(target)
    wait_until(lambda: rig.key_for(target) in rig.object_keys(), 20, "the renamed file")
    assert rig.objects() == {rig.key_for(target): sha256(b"\x89PNG rename")}


def test_readiness_says_what_is_wrong(rig: Rig) -> None:
    rig.env["R2_BUCKET"] = "no-such-bucket"
    port = free_port()
    process = rig.start_process(
        [console_script("genstack-uploader"), "run"],
        env={**rig.env, "UPLOAD_METRICS_PORT": str(port), "R2_MAX_ATTEMPTS": "1"},
        name="uploader",
        cwd=rig.workdir,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if response.json()["checks"].get("worker") == "ok":
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, process.log_tail()
        time.sleep(0.2)
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["redis"] == "ok"
    assert "no-such-bucket" in body["checks"]["storage"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
