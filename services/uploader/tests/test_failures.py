"""The uploader under faults: a flaky store, SIGKILL and SIGTERM mid-upload, a Redis restart,
bad input. Real processes, real Redis, real S3 server behind a FaultProxy."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from conftest import NODE, Rig, sha256

from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.core.uploads import UploadRequest, enqueue_upload, upload_queue
from genstack.testing.waiting import wait_until

MiB = 1024 * 1024


def test_flaky_store_every_file_arrives_and_nothing_is_deleted_unverified(rig: Rig) -> None:
    rig.proxy.set_faults(error_rate=0.3, drop_rate=0.1)
    rig.start(upload_delete_after_verify="true", r2_max_attempts="3")
    files: dict[Path, str] = {}
    for i in range(30):
        data = os.urandom(4096 + i)
        files[rig.output_dir / f"img{i:02d}.png"] = sha256(data)
        (rig.output_dir / f"img{i:02d}.png").write_bytes(data)
    big = os.urandom(12 * MiB)  # multipart: 3 parts, each exposed to the faults
    files[rig.output_dir / "clip.mp4"] = sha256(big)
    (rig.output_dir / "clip.mp4").write_bytes(big)
    keys = {path: rig.key_for(path) for path in files}

    # Watch the disk: the moment a file disappears, its object must already be verified.
    violations: list[str] = []
    direct = rig.s3.client()
    stop = threading.Event()

    def watch() -> None:
        present = set(files)
        while present and not stop.is_set():
            for path in list(present):
                if not path.exists():
                    present.discard(path)
                    head = direct.head_object(Bucket=rig.bucket, Key=keys[path])
                    if head["Metadata"].get("sha256") != files[path]:
                        violations.append(str(path))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_until(
            lambda: not any(p.exists() for p in files), 180, "every local file verified and deleted"
        )
    finally:
        stop.set()
        watcher.join()
    assert violations == []
    assert rig.objects() == {keys[p]: digest for p, digest in files.items()}
    assert rig.proxy.errors > 0 and rig.proxy.drops > 0  # the faults really happened
    rig.proxy.set_faults(error_rate=0, drop_rate=0)
    assert rig.s3.client().list_multipart_uploads(Bucket=rig.bucket).get("Uploads", []) == []


def test_sigkill_during_multipart_then_restart(rig: Rig) -> None:
    data = os.urandom(200 * MiB)
    path = rig.output_dir / "long.mp4"
    path.write_bytes(data)
    rig.proxy.set_faults(delay_s=0.25)  # 40 parts of 5 MiB at 4 at a time: ~3 s at least
    process = rig.start(r2_concurrency="4")
    wait_until(
        lambda: sum("partNumber=" in t for _, t in rig.proxy.seen) >= 6, 60, "parts in flight"
    )
    process.kill()
    direct = rig.s3.client()
    assert direct.list_multipart_uploads(Bucket=rig.bucket).get("Uploads"), "no upload in flight?"
    assert rig.object_keys() == set()

    rig.proxy.set_faults(delay_s=0)
    rig.start()
    key = rig.key_for(path)
    wait_until(lambda: key in rig.object_keys(), 120, "the 200 MB object after the restart")
    body = direct.get_object(Bucket=rig.bucket, Key=key)["Body"].read()
    assert sha256(body) == sha256(data)
    wait_until(
        lambda: not direct.list_multipart_uploads(Bucket=rig.bucket).get("Uploads"),
        30,
        "the killed process's multipart upload to be aborted",
    )


def test_sigterm_mid_upload_requeues_and_leaves_nothing_half_done(rig: Rig) -> None:
    data = os.urandom(60 * MiB)
    path = rig.output_dir / "slow.mp4"
    path.write_bytes(data)
    rig.proxy.set_faults(delay_s=0.5)  # 12 parts at 1 at a time: far longer than the grace
    process = rig.start(
        r2_concurrency="1", celery_soft_shutdown_s="2", upload_rescan_interval_s="3600"
    )
    wait_until(lambda: any("partNumber=" in t for _, t in rig.proxy.seen), 60, "the first part")
    process.terminate()
    assert process.wait(timeout=30) == 0
    direct = rig.s3.client()
    assert not direct.list_multipart_uploads(Bucket=rig.bucket).get("Uploads")
    assert rig.object_keys() == set()
    assert "requeued" in process.logs()

    rig.proxy.set_faults(delay_s=0)
    rig.start()
    key = rig.key_for(path)
    wait_until(lambda: key in rig.object_keys(), 60, "the object after the restart")
    assert rig.objects() == {key: sha256(data)}


def test_redis_restart_with_50_tasks_queued(rig: Rig) -> None:
    # Files only a task can bring: the rescan ignores them (not still long enough), and
    # they were written before the watcher started.
    files = {}
    for i in range(50):
        data = os.urandom(2048)
        path = rig.output_dir / f"q{i:02d}.wav"
        path.write_bytes(data)
        files[path] = sha256(data)
    rig.proxy.set_faults(delay_s=0.2)
    rig.start(upload_stable_s="3600", upload_workers="1")
    producer = rig.celery()
    for path in files:
        enqueue_upload(producer, str(path), node_id=NODE)
    wait_until(lambda: len(rig.object_keys()) >= 2, 30, "the first uploads")
    queued = connect(rig.redis.url).llen(upload_queue(NODE))
    assert queued > 30
    rig.redis.restart()
    rig.proxy.set_faults(delay_s=0)
    expected = {rig.key_for(p): d for p, d in files.items()}
    wait_until(lambda: rig.object_keys() >= expected.keys(), 120, "all 50 after the restart")
    assert rig.objects() == expected


def test_bad_input_is_refused_and_the_worker_keeps_going(rig: Rig, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    (rig.output_dir / "adir.png").mkdir()
    (rig.output_dir / "link.png").symlink_to(outside)
    good = rig.output_dir / "good.png"
    good.write_bytes(b"fine")
    process = rig.start(upload_stable_s="3600")
    producer = rig.celery()
    bad_paths = [
        str(outside),
        str(rig.output_dir / "missing.png"),
        str(rig.output_dir / "adir.png"),
        str(rig.output_dir / "link.png"),
        str(rig.output_dir / ".." / "secret.png"),
        "relative/path.png",
    ]
    for bad in bad_paths:
        enqueue_upload(producer, bad, node_id=NODE)
    producer.send_task("genstack.upload.file", args=[{"no_path": True}], queue=upload_queue(NODE))
    enqueue_upload(producer, str(good), node_id=NODE)
    wait_until(lambda: rig.key_for(good) in rig.object_keys(), 30, "the good file")
    time.sleep(1)
    assert rig.object_keys() == {rig.key_for(good)}
    assert process.is_running()
    logs = process.logs()
    for phrase in (
        "outside the upload folders",
        "does not exist",
        "is not a regular file",
        "points outside",
        "path must be absolute",
        "malformed upload task dropped",
    ):
        assert phrase in logs, phrase


def test_job_files_become_artifacts_and_finish_the_job(rig: Rig) -> None:
    store = JobStore(connect(rig.redis.url))
    job = store.create(Job(type=JobType.IMAGE, backend="comfyui"))
    store.set_status(job.id, JobStatus.RUNNING)
    store.set_status(job.id, JobStatus.UPLOADING)
    folder = rig.output_dir / job.id
    folder.mkdir()
    payloads = {"a.png": b"first image", "b.png": b"second image"}
    for name, data in payloads.items():
        (folder / name).write_bytes(data)
    rig.start(upload_stable_s="3600")
    producer = rig.celery()
    for name in payloads:
        enqueue_upload(
            producer,
            str(folder / name),
            node_id=NODE,
            job_id=job.id,
            job_files=2,
            date="2026-01-17",
        )
    wait_until(
        lambda: store.require(job.id).status == JobStatus.SUCCEEDED, 30, "the job to succeed"
    )
    done = store.require(job.id)
    assert sorted(a.key for a in done.artifacts) == [
        f"outputs/2026-01-17/{job.id}/a.png",
        f"outputs/2026-01-17/{job.id}/b.png",
    ]
    for art in done.artifacts:
        assert art.sha256 == sha256(payloads[art.key.rsplit("/", 1)[1]])
        assert art.content_type == "image/png"
    # A duplicate delivery changes nothing.
    enqueue_upload(
        producer, str(folder / "a.png"), node_id=NODE, job_id=job.id, job_files=2, date="2026-01-17"
    )
    time.sleep(1.5)
    assert len(store.require(job.id).artifacts) == 2
    assert rig.writes() == {a.key: 1 for a in done.artifacts}


def test_upload_request_contract_is_what_producers_send() -> None:
    request = UploadRequest(path="/data/outputs/j/a.wav", job_id="j", job_files=1)
    assert UploadRequest.model_validate(request.model_dump(mode="json")) == request
