"""job_message (the Celery message dispatch_job publishes, pushed by the caller) and
JobStore.create_commands (create's writes, queued on the caller's transaction)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis as AsyncRedis

from genstack.core.celery_app import create_celery_app
from genstack.core.job_task import JOB_TASK, dispatch_job, job_message
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.testing.stack import start_job_worker


def test_job_message_is_what_dispatch_job_publishes(redis_url: str) -> None:
    redis = connect(redis_url)
    app = create_celery_app("test", redis_url)
    dispatch_job(app, "job-a", "q.one")
    sent = json.loads(redis.lpop("q.one"))  # type: ignore[arg-type]
    built = json.loads(job_message(app, "job-a", "q.one"))
    assert set(built) == set(sent)
    assert base64.b64decode(built["body"]) == base64.b64decode(sent["body"])
    assert built["content-type"] == sent["content-type"] == "application/json"
    assert set(built["headers"]) == set(sent["headers"])
    for name in ("task", "id", "root_id", "argsrepr", "kwargsrepr", "retries", "lang"):
        assert built["headers"][name] == sent["headers"][name], name
    assert built["headers"]["task"] == JOB_TASK
    assert set(built["properties"]) == set(sent["properties"])
    for name in ("delivery_info", "delivery_mode", "priority", "body_encoding", "correlation_id"):
        assert built["properties"][name] == sent["properties"][name], name
    assert built["properties"]["delivery_tag"] != sent["properties"]["delivery_tag"]


def test_create_commands_share_the_callers_transaction(redis_url: str) -> None:
    store = JobStore(connect(redis_url), ttl_s=60)
    job = Job(type=JobType.TTS, backend="xtts", params={"input": "hi"})

    async def create_and_push() -> list[object]:
        redis = AsyncRedis.from_url(redis_url, decode_responses=True)
        try:
            pipe = redis.pipeline(transaction=True)
            store.create_commands(pipe, job)
            pipe.lpush("q.two", "message")
            return list(await pipe.execute())
        finally:
            await redis.aclose()

    first = asyncio.run(create_and_push())
    assert first[0] is True
    assert store.get(job.id) == job
    assert [e.type for e in store.events(job.id)] == ["status"]
    assert store.redis.llen("q.two") == 1
    again = asyncio.run(create_and_push())
    assert not again[0]  # SET NX: the record exists, nothing was overwritten
    with pytest.raises(ValueError, match="exists"):
        store.create(job)


def test_a_real_worker_runs_a_pushed_job_message(redis_url: str, tmp_path: Path) -> None:
    redis = connect(redis_url)
    store = JobStore(redis)
    app = create_celery_app("test", redis_url)
    worker = start_job_worker(redis_url, tmp_path, ["q.pushed"])
    try:
        job = store.create(Job(type=JobType.TTS, backend="xtts", params={"input": "hi"}))
        redis.lpush("q.pushed", job_message(app, job.id, "q.pushed"))
        # It runs the job and hands its file to this node's uploader queue (none runs here);
        # the job is `uploading` an instant before the hand-over lands.
        deadline = time.monotonic() + 30
        while not redis.llen("upload.test-node"):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.1)
        assert store.require(job.id).status == JobStatus.UPLOADING
        assert redis.llen("upload.test-node") == 1
        assert (tmp_path / "outputs" / job.id / "speech-0.wav").is_file()
    finally:
        worker.stop()
