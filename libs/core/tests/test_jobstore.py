"""JobStore and AsyncJobStore against a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import pytest
from redis.asyncio import Redis as AsyncRedis

from genstack.core.jobs import Artifact, Job, JobError, JobEvent, JobStatus, JobType
from genstack.core.jobstore import (
    AsyncJobStore,
    InvalidTransitionError,
    JobNotFoundError,
    JobStore,
    terminal_job_id,
)
from genstack.core.redis_client import connect

SHA = "a" * 64
T = TypeVar("T")


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(connect(redis_url), ttl_s=60)


def new_job(store: JobStore) -> Job:
    return store.create(Job(type=JobType.TTS, backend="xtts", params={"input": "hi"}))


def artifact(key: str, size: int = 3) -> Artifact:
    return Artifact(
        key=key, url=f"http://x/{key}", content_type="audio/wav", bytes=size, sha256=SHA
    )


def test_create_get_and_events_in_order(store: JobStore) -> None:
    job = new_job(store)
    assert store.require(job.id) == job
    store.set_status(job.id, JobStatus.RUNNING)
    store.set_progress(job.id, 0.5, "half")
    store.set_status(job.id, JobStatus.UPLOADING)
    events = store.events(job.id)
    assert [(e.type, e.data.get("status"), e.data.get("progress")) for e in events] == [
        ("status", "queued", 0.0),
        ("status", "running", 0.0),
        ("progress", None, 0.5),
        ("status", "uploading", 0.5),
    ]
    # Resuming after an event id gives exactly the rest (SSE Last-Event-ID).
    assert [e.id for e in store.events(job.id, after=events[1].id)] == [e.id for e in events[2:]]


def test_create_twice_is_refused(store: JobStore) -> None:
    job = new_job(store)
    with pytest.raises(ValueError, match="already exists"):
        store.create(job)


def test_transitions_are_guarded(store: JobStore) -> None:
    job = new_job(store)
    store.set_status(job.id, JobStatus.RUNNING)
    store.set_status(job.id, JobStatus.FAILED, error=JobError(code="boom", message="it broke"))
    with pytest.raises(InvalidTransitionError, match="failed; it cannot become running"):
        store.set_status(job.id, JobStatus.RUNNING)
    failed = store.require(job.id)
    assert failed.error == JobError(code="boom", message="it broke")
    # Progress after the end changes nothing.
    assert store.set_progress(job.id, 0.9).progress == 0.0


def test_unknown_job(store: JobStore) -> None:
    assert store.get("nope") is None
    with pytest.raises(JobNotFoundError, match="job nope not found"):
        store.set_status("nope", JobStatus.RUNNING)


def test_artifacts_are_idempotent_and_complete_the_job(store: JobStore) -> None:
    job = new_job(store)
    store.set_status(job.id, JobStatus.RUNNING)
    store.set_status(job.id, JobStatus.UPLOADING)
    store.add_artifact(job.id, artifact("a"), complete_at=2)
    # A redelivered upload of the same file (new presigned URL) adds nothing.
    again = store.add_artifact(
        job.id, artifact("a").model_copy(update={"url": "u2"}), complete_at=2
    )
    assert len(again.artifacts) == 1
    assert again.status == JobStatus.UPLOADING
    done = store.add_artifact(job.id, artifact("b"), complete_at=2)
    assert done.status == JobStatus.SUCCEEDED
    assert done.progress == 1.0
    assert [a.key for a in done.artifacts] == ["a", "b"]
    assert [e.type for e in store.events(job.id)].count("artifact") == 2


def test_last_artifacts_racing_finish_the_job_once(store: JobStore) -> None:
    job = new_job(store)
    store.set_status(job.id, JobStatus.RUNNING)
    store.set_status(job.id, JobStatus.UPLOADING)
    keys = [f"k{i}" for i in range(8)]
    threads = [
        threading.Thread(
            target=store.add_artifact, args=(job.id, artifact(k)), kwargs={"complete_at": 8}
        )
        for k in keys
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.require(job.id)
    assert final.status == JobStatus.SUCCEEDED
    assert sorted(a.key for a in final.artifacts) == keys
    statuses = [e.data["status"] for e in store.events(job.id) if e.type == "status"]
    assert statuses.count("succeeded") == 1
    terminal = store.redis.xrange(store.terminal_key)
    assert [fields["job_id"] for _, fields in terminal] == [job.id]


def test_cancel_queued_at_once_running_by_flag(store: JobStore) -> None:
    queued = new_job(store)
    assert store.request_cancel(queued.id).status == JobStatus.CANCELLED
    assert not store.cancel_requested(queued.id)

    running = new_job(store)
    store.set_status(running.id, JobStatus.RUNNING)
    assert store.request_cancel(running.id).status == JobStatus.RUNNING
    assert store.cancel_requested(running.id)
    assert store.events(running.id)[-1].type == "cancel_requested"
    store.set_status(running.id, JobStatus.CANCELLED)
    assert not store.cancel_requested(running.id)  # the flag goes with the terminal state

    finished = new_job(store)
    store.set_status(finished.id, JobStatus.FAILED)
    assert store.request_cancel(finished.id).status == JobStatus.FAILED
    assert not store.cancel_requested(finished.id)


def test_terminal_stream_gets_each_finished_job_once(store: JobStore) -> None:
    a, b = new_job(store), new_job(store)
    store.set_status(a.id, JobStatus.RUNNING)
    store.set_status(a.id, JobStatus.FAILED)
    store.request_cancel(b.id)
    with pytest.raises(InvalidTransitionError):
        store.set_status(a.id, JobStatus.SUCCEEDED)
    rows = [(f["job_id"], f["status"]) for _, f in store.redis.xrange(store.terminal_key)]
    assert rows == [(a.id, "failed"), (b.id, "cancelled")]


def test_blocking_read_wakes_on_new_event(store: JobStore) -> None:
    job = new_job(store)
    last = store.events(job.id)[-1].id
    timer = threading.Timer(0.2, store.set_progress, args=(job.id, 0.3))
    timer.start()
    started = time.monotonic()
    events = store.events(job.id, after=last, block_ms=5000)
    assert [e.type for e in events] == ["progress"]
    assert time.monotonic() - started < 4


def test_records_and_events_expire(redis_url: str) -> None:
    store = JobStore(connect(redis_url), ttl_s=1)
    job = new_job(store)
    assert store.redis.ttl(store.job_key(job.id)) > 0
    assert store.redis.ttl(store.events_key(job.id)) > 0
    time.sleep(1.5)
    assert store.get(job.id) is None
    assert store.events(job.id) == []
    assert store.recent() == []  # the index is trimmed lazily


def test_recent_pages_newest_first(store: JobStore) -> None:
    jobs = [new_job(store) for _ in range(5)]
    page = store.recent(limit=3)
    assert [j.id for j in page] == [j.id for j in reversed(jobs)][:3]
    rest = store.recent(limit=3, before=page[-1].created_at.timestamp())
    assert [j.id for j in rest] == [jobs[1].id, jobs[0].id]


def test_recent_of_one_owner_and_the_owner_survives_updates(store: JobStore) -> None:
    alice = [store.create(Job(type=JobType.TTS, backend="xtts", owner="alice")) for _ in range(3)]
    bob = store.create(Job(type=JobType.TTS, backend="xtts", owner="bob"))
    nobody = new_job(store)
    assert [j.id for j in store.recent(owner="alice")] == [j.id for j in reversed(alice)]
    assert [j.id for j in store.recent(owner="bob")] == [bob.id]
    assert {j.id for j in store.recent()} == {*(j.id for j in alice), bob.id, nobody.id}
    store.set_status(bob.id, JobStatus.RUNNING)
    assert store.require(bob.id).owner == "bob"
    assert store.delete(bob.id)
    assert store.recent(owner="bob") == []
    assert store.redis.zcard(store.owner_index_key("bob")) == 0


def test_delete(store: JobStore) -> None:
    job = new_job(store)
    assert store.delete(job.id)
    assert store.get(job.id) is None
    assert not store.delete(job.id)


# The async store: the gateway's reads, on the same layout ---------------------------------


def run_async(redis_url: str, body: Callable[[AsyncJobStore], Awaitable[T]]) -> T:
    async def main() -> T:
        client = AsyncRedis.from_url(redis_url, decode_responses=True)
        try:
            return await body(AsyncJobStore(client, ttl_s=60))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_async_store_reads_what_the_store_wrote(store: JobStore, redis_url: str) -> None:
    job = new_job(store)
    store.set_status(job.id, JobStatus.RUNNING)
    store.set_progress(job.id, 0.5, "half")
    wanted = store.events(job.id)

    async def read(jobs: AsyncJobStore) -> tuple[Job | None, Job | None, list[JobEvent], list[str]]:
        first = (await jobs.events(job.id))[0].id
        after = [e.id for e in await jobs.events(job.id, after=first)]
        return await jobs.get(job.id), await jobs.get("nope"), await jobs.events(job.id), after

    got, missing, events, after = run_async(redis_url, read)
    assert got == store.require(job.id)
    assert missing is None
    assert events == wanted
    assert after == [e.id for e in wanted[1:]]


def test_async_events_block_until_one_arrives(store: JobStore, redis_url: str) -> None:
    job = new_job(store)
    last = store.events(job.id)[-1].id
    threading.Timer(0.3, store.set_progress, args=(job.id, 0.25)).start()

    async def wait(jobs: AsyncJobStore) -> tuple[list[JobEvent], list[JobEvent], float]:
        started = time.monotonic()
        arrived = await jobs.events(job.id, after=last, block_ms=5000)
        waited = time.monotonic() - started
        nothing = await jobs.events(job.id, after=arrived[-1].id, block_ms=100)
        return arrived, nothing, waited

    arrived, nothing, waited = run_async(redis_url, wait)
    assert [(e.type, e.data["progress"]) for e in arrived] == [("progress", 0.25)]
    assert 0.2 < waited < 4
    assert nothing == []


def test_async_page_by_job_id_cursor(store: JobStore, redis_url: str) -> None:
    jobs = [new_job(store) for _ in range(5)]
    newest = [j.id for j in reversed(jobs)]

    async def pages(
        jobs: AsyncJobStore,
    ) -> list[tuple[list[Job], bool] | None]:
        first = await jobs.page(limit=2)
        assert first is not None
        second = await jobs.page(limit=2, after=first[0][-1].id)
        assert second is not None
        third = await jobs.page(limit=2, after=second[0][-1].id)
        return [first, second, third, await jobs.page(limit=2, after="unknown")]

    first, second, third, unknown = run_async(redis_url, pages)
    assert first is not None and second is not None and third is not None
    assert ([j.id for j in first[0]], first[1]) == (newest[:2], True)
    assert ([j.id for j in second[0]], second[1]) == (newest[2:4], True)
    assert ([j.id for j in third[0]], third[1]) == (newest[4:], False)
    assert unknown is None


def test_async_page_of_one_owner_skips_and_trims_expired_records(
    store: JobStore, redis_url: str
) -> None:
    alice = [store.create(Job(type=JobType.TTS, backend="xtts", owner="alice")) for _ in range(3)]
    new_job(store)
    store.redis.delete(store.job_key(alice[1].id))  # as if its record had expired

    async def page(jobs: AsyncJobStore) -> tuple[list[Job], bool] | None:
        return await jobs.page(limit=10, owner="alice")

    result = run_async(redis_url, page)
    assert result is not None
    assert [j.id for j in result[0]] == [alice[2].id, alice[0].id]
    assert result[1] is False
    assert store.redis.zscore(store.owner_index_key("alice"), alice[1].id) is None
    assert store.redis.zscore(store.index_key, alice[1].id) is not None  # met on its own page


def test_create_commands_on_an_async_transaction(store: JobStore, redis_url: str) -> None:
    job = Job(type=JobType.TTS, backend="xtts", owner="alice", params={"input": "hi"})

    async def create(jobs: AsyncJobStore) -> object:
        pipe = jobs.redis.pipeline(transaction=True)
        jobs.create_commands(pipe, job)
        return (await pipe.execute())[0]

    assert run_async(redis_url, create)
    assert store.require(job.id) == job
    assert [e.data["status"] for e in store.events(job.id)] == ["queued"]
    assert [j.id for j in store.recent(owner="alice")] == [job.id]
    # Its first result says when the id is taken (the gateway's submit script stops there).
    assert not run_async(redis_url, create)


def test_terminal_entries_name_their_job(store: JobStore) -> None:
    job = new_job(store)
    store.set_status(job.id, JobStatus.CANCELLED)
    entries: list[tuple[str, dict[str, str]]] = cast(Any, store.redis.xrange(store.terminal_key))
    [(_, fields)] = entries
    assert terminal_job_id(fields) == job.id
    assert terminal_job_id({}) is None
