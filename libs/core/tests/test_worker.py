"""JobRunner (the runtime every backend worker shares) against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from genstack.core.job_runner import (
    JobCancelledError,
    JobContext,
    JobFailedError,
    JobHandler,
    JobOutcome,
    JobRunner,
)
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.leases import JobLeases, Reaper
from genstack.core.redis_client import connect

HandedOver = list[tuple[str, str, int, str]]


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(connect(redis_url), ttl_s=600)


def make_runner(
    store: JobStore, tmp_path: Path, handler: JobHandler
) -> tuple[JobRunner, HandedOver]:
    handed: HandedOver = []
    runner = JobRunner(
        store=store,
        handler=handler,
        output_dir=tmp_path / "outputs",
        hand_over=lambda *args: handed.append(args),
        leases=JobLeases(store, queue="test", owner="me", ttl_s=5),
    )
    return runner, handed


def queued(store: JobStore) -> Job:
    return store.create(Job(type=JobType.TTS, backend="test", params={"n": 2}))


def two_files(ctx: JobContext) -> Sequence[Path]:
    ctx.progress(0.5, "half way")
    files = []
    for i in range(ctx.params["n"]):
        path = ctx.output_dir / f"out{i}.wav"
        path.write_bytes(b"RIFF" + bytes([i]))
        files.append(path)
    return files


def test_success_hands_every_file_over_with_the_count(store: JobStore, tmp_path: Path) -> None:
    runner, handed = make_runner(store, tmp_path, two_files)
    job = queued(store)
    assert runner.run(job.id) == JobOutcome.HANDED_OVER
    after = store.require(job.id)
    assert after.status == JobStatus.UPLOADING
    assert after.progress == 0.5
    date = job.created_at.strftime("%Y-%m-%d")
    folder = (tmp_path / "outputs" / job.id).resolve()
    assert handed == [
        (str(folder / "out0.wav"), job.id, 2, date),
        (str(folder / "out1.wav"), job.id, 2, date),
    ]
    statuses = [e.data.get("status") for e in store.events(job.id) if e.type == "status"]
    assert statuses == ["queued", "running", "uploading"]


def test_redelivery_after_hand_over_hands_the_same_files_over(
    store: JobStore, tmp_path: Path
) -> None:
    calls: list[str] = []

    def counted(ctx: JobContext) -> Sequence[Path]:
        calls.append(ctx.job.id)
        return two_files(ctx)

    runner, handed = make_runner(store, tmp_path, counted)
    job = queued(store)
    runner.run(job.id)
    assert runner.run(job.id) == JobOutcome.HANDED_OVER_AGAIN
    assert len(calls) == 1  # the backend is not asked twice
    assert handed[2:] == handed[:2]


def test_failure_carries_code_and_message(store: JobStore, tmp_path: Path) -> None:
    def fails(ctx: JobContext) -> Sequence[Path]:
        raise JobFailedError("unknown_voice", "voice 'zed' does not exist")

    runner, handed = make_runner(store, tmp_path, fails)
    job = queued(store)
    assert runner.run(job.id) == JobOutcome.FAILED
    error = store.require(job.id).error
    assert error is not None
    assert (error.code, error.message) == ("unknown_voice", "voice 'zed' does not exist")
    assert handed == []


def test_crash_is_an_internal_error_not_a_lost_job(store: JobStore, tmp_path: Path) -> None:
    def crashes(ctx: JobContext) -> Sequence[Path]:
        raise ZeroDivisionError("division by zero")

    runner, _ = make_runner(store, tmp_path, crashes)
    job = queued(store)
    runner.run(job.id)
    after = store.require(job.id)
    assert after.status == JobStatus.FAILED
    assert after.error is not None
    assert after.error.code == "internal_error"
    assert "ZeroDivisionError" in after.error.message


def test_retryable_failure_is_raised_until_the_last_attempt(
    store: JobStore, tmp_path: Path
) -> None:
    def busy(ctx: JobContext) -> Sequence[Path]:
        raise JobFailedError("backend_unavailable", "xtts is loading", retryable=True)

    runner, _ = make_runner(store, tmp_path, busy)
    job = queued(store)
    with pytest.raises(JobFailedError):
        runner.run(job.id, final_attempt=False)
    assert store.require(job.id).status == JobStatus.RUNNING  # the retry picks it up
    assert runner.run(job.id, final_attempt=True) == JobOutcome.FAILED
    assert store.require(job.id).status == JobStatus.FAILED


def test_cancel_while_running_stops_and_cleans_up(store: JobStore, tmp_path: Path) -> None:
    seen: list[Path] = []

    def slow(ctx: JobContext) -> Sequence[Path]:
        partial = ctx.output_dir / "partial.wav"
        partial.write_bytes(b"half")
        seen.append(partial)
        store.request_cancel(ctx.job.id)  # the client cancels while we work
        ctx._checked_at = 0  # do not wait out the poll interval
        ctx.check_cancelled()
        return [partial]

    runner, handed = make_runner(store, tmp_path, slow)
    job = queued(store)
    assert runner.run(job.id) == JobOutcome.CANCELLED
    assert store.require(job.id).status == JobStatus.CANCELLED
    assert handed == []
    assert not seen[0].parent.exists()


def test_cancelled_while_queued_is_skipped(store: JobStore, tmp_path: Path) -> None:
    def never(ctx: JobContext) -> Sequence[Path]:
        raise AssertionError("a cancelled job must not run")

    runner, _ = make_runner(store, tmp_path, never)
    job = queued(store)
    store.request_cancel(job.id)
    assert runner.run(job.id) == JobOutcome.CANCELLED
    assert runner.run("no-such-job") == JobOutcome.MISSING


def test_a_finished_job_is_not_run_again(store: JobStore, tmp_path: Path) -> None:
    """A late delivery of a job that ended: its end is the answer, and nothing runs."""

    def never(ctx: JobContext) -> Sequence[Path]:
        raise AssertionError("a finished job must not run")

    runner, handed = make_runner(store, tmp_path, never)
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        job = queued(store)
        store.set_status(job.id, JobStatus.RUNNING)
        store.set_status(job.id, status)
        outcome = runner.run(job.id)
        assert type(outcome) is JobOutcome
        assert outcome == JobOutcome(status.value)
    assert handed == []


def test_no_output_and_files_outside_the_folder_fail(store: JobStore, tmp_path: Path) -> None:
    runner, _ = make_runner(store, tmp_path, lambda ctx: [])
    job = queued(store)
    runner.run(job.id)
    assert store.require(job.id).error.code == "no_output"  # type: ignore[union-attr]

    stray = tmp_path / "elsewhere.wav"
    stray.write_bytes(b"x")
    runner, handed = make_runner(store, tmp_path, lambda ctx: [stray])
    job = queued(store)
    runner.run(job.id)
    assert store.require(job.id).error.code == "internal_error"  # type: ignore[union-attr]
    assert handed == []


def test_rerun_after_a_crash_starts_from_a_clean_folder(store: JobStore, tmp_path: Path) -> None:
    job = queued(store)
    store.set_status(job.id, JobStatus.RUNNING)  # a worker died mid-job
    leftover = tmp_path / "outputs" / job.id / "leftover.wav"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")

    runner, handed = make_runner(store, tmp_path, two_files)
    assert runner.run(job.id) == JobOutcome.HANDED_OVER
    assert not leftover.exists()
    assert [Path(p).name for p, *_ in handed] == ["out0.wav", "out1.wav"]


def test_cancelled_error_from_handler(store: JobStore, tmp_path: Path) -> None:
    def stops(ctx: JobContext) -> Sequence[Path]:
        raise JobCancelledError(ctx.job.id)

    runner, _ = make_runner(store, tmp_path, stops)
    job = queued(store)
    assert runner.run(job.id) == JobOutcome.CANCELLED


def test_a_job_held_by_another_worker_is_not_run_twice(store: JobStore, tmp_path: Path) -> None:
    calls: list[str] = []

    def counted(ctx: JobContext) -> Sequence[Path]:
        calls.append(ctx.job.id)
        return two_files(ctx)

    runner, handed = make_runner(store, tmp_path, counted)
    job = queued(store)
    other = JobLeases(store, queue="test", owner="other-worker", ttl_s=5)
    assert other.acquire(job.id)
    assert runner.run(job.id) == JobOutcome.RUNNING_ELSEWHERE
    assert calls == [] and handed == []
    other.release(job.id)
    assert runner.run(job.id) == JobOutcome.HANDED_OVER
    assert store.redis.smembers(other.active_key) == set()  # released after the hand-over


def test_lost_lease_stops_the_handler_without_touching_the_job(
    store: JobStore, tmp_path: Path
) -> None:
    def taken_over(ctx: JobContext) -> Sequence[Path]:
        # Another delivery takes the job over (our lease lapsed while Redis was away).
        store.redis.set(f"{store.job_key(ctx.job.id)}:lease", "someone-else")
        deadline = time.monotonic() + 10
        while not ctx.cancelled():
            assert time.monotonic() < deadline, "the lost lease was never noticed"
            time.sleep(0.05)
        ctx.check_cancelled()
        return []

    handed: HandedOver = []
    runner = JobRunner(
        store=store,
        handler=taken_over,
        output_dir=tmp_path / "outputs",
        hand_over=lambda *args: handed.append(args),
        leases=JobLeases(store, queue="test", owner="me", ttl_s=0.3),
    )
    job = queued(store)
    assert runner.run(job.id) == JobOutcome.LEASE_LOST
    assert store.require(job.id).status == JobStatus.RUNNING  # the new holder finishes it


def test_reaper_redispatches_jobs_whose_worker_died(store: JobStore) -> None:
    dead = JobLeases(store, queue="q", owner="dead-worker", ttl_s=0.2)
    alive = JobLeases(store, queue="q", owner="live-worker", ttl_s=30)
    orphan, running, finished = queued(store), queued(store), queued(store)
    for job in (orphan, finished):
        assert dead.acquire(job.id)
    assert alive.acquire(running.id)
    store.set_status(finished.id, JobStatus.FAILED)
    time.sleep(0.4)  # the dead worker's leases lapse
    redispatched: list[str] = []
    reaper = Reaper(alive, redispatched.append)
    assert reaper.sweep() == [orphan.id]
    assert redispatched == [orphan.id]
    assert reaper.sweep() == []  # dispatched once, not at every sweep
    assert store.redis.smembers(alive.active_key) == {running.id}


def test_a_delivery_that_cannot_reach_the_job_records_is_retried_not_dropped(
    tmp_path: Path,
) -> None:
    """The job records' Redis is down when the delivery comes (the broker's is up): the task
    must be retried until the records are back, not fail and be acknowledged, which would
    leave the job `queued` with no message left to run it. A real Celery worker (threads)
    consumes a real Redis broker; the records live in a second redis-server we stop."""
    from celery.contrib.testing.worker import start_worker

    from genstack.core.celery_app import create_celery_app
    from genstack.core.job_task import dispatch_job
    from genstack.core.worker import JobMetrics, register_job_task
    from genstack.testing.redis_server import RedisServer

    with (
        RedisServer(tmp_path / "broker") as broker,
        RedisServer(tmp_path / "records") as records,
    ):
        store = JobStore(connect(records.url), ttl_s=600)
        job = queued(store)
        runner, handed = make_runner(store, tmp_path, two_files)
        app = create_celery_app("retry-test", broker.url)
        metrics = JobMetrics()
        register_job_task(app, {"q": runner}, metrics=metrics, retry_base_s=0.1, retry_max_s=0.3)
        records.stop()
        with start_worker(
            app, pool="threads", concurrency=1, queues=["q"], perform_ping_check=False
        ):
            dispatch_job(app, job.id, "q")
            deadline = time.monotonic() + 20
            retried = {"queue": "q", "outcome": "retried"}
            while (metrics.registry.get_sample_value("genstack_jobs_total", retried) or 0) < 2:
                assert time.monotonic() < deadline, "the delivery was not retried"
                time.sleep(0.1)
            records.start()  # same port, same AOF: the record is back
            while not handed:
                assert time.monotonic() < deadline, "the job never ran after Redis came back"
                time.sleep(0.1)
        assert store.get(job.id).status == JobStatus.UPLOADING
        assert len(handed) == 2
