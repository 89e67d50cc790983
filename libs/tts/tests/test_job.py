"""The shared `tts` job handler with the real job runtime (real Redis) against a real tone
server: parts, progress, every format, cancel, a busy server, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tts_helpers import ToneServer

from genstack.core.contracts.speech import SpeechParams
from genstack.core.job_runner import JobFailedError, JobRunner
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.leases import JobLeases
from genstack.core.redis_client import connect
from genstack.testing.audio import probe
from genstack.testing.ports import free_port
from genstack.tts.job import PART_CHARS, SpeechJobHandler, split_parts

Handed = list[tuple[str, str, int, str]]


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(connect(redis_url), ttl_s=600)


def runner_for(
    store: JobStore, tmp_path: Path, url: str, **options: float
) -> tuple[JobRunner, Handed]:
    handed: Handed = []
    runner = JobRunner(
        store=store,
        handler=SpeechJobHandler(url, SpeechParams, **options),
        output_dir=tmp_path / "outputs",
        hand_over=lambda *args: handed.append(args),
        leases=JobLeases(store, queue="test", owner="test-worker", ttl_s=30),
    )
    return runner, handed


def submit(store: JobStore, **params: object) -> Job:
    return store.create(Job(type=JobType.TTS, backend="tone", params=params))


def test_split_parts_packs_sentences_within_the_limit() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(60))
    parts = split_parts(text)
    assert len(parts) > 1
    assert all(len(p) <= PART_CHARS for p in parts)
    assert " ".join(parts) == text


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_a_job_becomes_one_playable_file_with_progress(
    store: JobStore, tmp_path: Path, tone: ToneServer, fmt: str
) -> None:
    runner, handed = runner_for(store, tmp_path, tone.url)
    text = " ".join(f"Part of the job number {i}." for i in range(40))
    job = submit(store, input=text, voice="alto", response_format=fmt, seed=3)
    assert runner.run(job.id) == "handed_over"
    [(path, job_id, count, _)] = handed
    assert (job_id, count) == (job.id, 1)
    assert Path(path).name == f"speech.{fmt}"
    result = probe(Path(path).read_bytes())
    # One file, as long as all the parts spoken one after another.
    alone = httpx.post(
        f"{tone.url}/v1/audio/speech",
        json={"input": text, "voice": "alto", "response_format": "pcm"},
    )
    assert result.duration_s == pytest.approx(len(alone.content) / 2 / 24_000, abs=0.25)
    progress = [e.data["progress"] for e in store.events(job.id) if e.type == "progress"]
    assert len(progress) == len(split_parts(text)) and progress[-1] == 1.0
    assert store.require(job.id).status == JobStatus.UPLOADING


def test_cancel_stops_within_a_part_and_frees_the_server(
    store: JobStore, tmp_path: Path, start_tone: Callable[..., ToneServer]
) -> None:
    server = start_tone(char_delay_ms=20)  # ~8 s per 400-character part
    runner, handed = runner_for(store, tmp_path, server.url)
    job = submit(store, input="A long sentence that goes on. " * 40, voice="bass")
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(runner.run(job.id)))
    worker.start()
    time.sleep(1.5)
    store.request_cancel(job.id)
    worker.join(timeout=10)
    assert result == ["cancelled"]
    assert handed == []
    assert store.require(job.id).status == JobStatus.CANCELLED
    assert not (tmp_path / "outputs" / job.id).exists()
    quick = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "x", "voice": "alto"})
    assert quick.status_code == 200


def test_a_busy_server_is_waited_out(
    store: JobStore, tmp_path: Path, start_tone: Callable[..., ToneServer]
) -> None:
    server = start_tone(char_delay_ms=10, env={"TTS_MAX_QUEUE": "0"})
    runner, handed = runner_for(store, tmp_path, server.url)
    hog = threading.Thread(
        target=httpx.post,
        args=(f"{server.url}/v1/audio/speech",),
        kwargs={"json": {"input": "Busy busy busy. " * 15, "voice": "alto"}, "timeout": 60},
    )
    hog.start()
    time.sleep(0.5)
    job = submit(store, input="Waiting for my turn.", voice="alto", response_format="wav")
    started = time.monotonic()
    assert runner.run(job.id) == "handed_over"
    assert time.monotonic() - started > 1.0  # it had to wait for the hog
    hog.join()
    assert len(handed) == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"voice": "alto"}, "invalid_params"),
        ({"input": "", "voice": "alto"}, "invalid_params"),
        ({"input": "Hi.", "voice": "nobody"}, "voice_not_found"),
        # The contract refuses a path, and a field it does not name, before the server.
        ({"input": "Hi.", "voice": "/etc/passwd"}, "invalid_params"),
        ({"input": "Hi.", "voice": "alto", "vibrato": 5}, "invalid_params"),
    ],
)
def test_bad_params_fail_the_job_with_the_servers_code(
    store: JobStore, tmp_path: Path, tone: ToneServer, params: dict[str, object], code: str
) -> None:
    runner, handed = runner_for(store, tmp_path, tone.url)
    job = submit(store, **params)
    assert runner.run(job.id) == "failed"
    error = store.require(job.id).error
    assert error is not None and error.code == code
    assert handed == []


def test_an_unreachable_server_is_a_retryable_failure(store: JobStore, tmp_path: Path) -> None:
    runner, _ = runner_for(store, tmp_path, f"http://127.0.0.1:{free_port()}")
    job = submit(store, input="Hi.", voice="alto")
    with pytest.raises(JobFailedError) as raised:
        runner.run(job.id, final_attempt=False)
    assert raised.value.retryable and raised.value.code == "backend_unavailable"
    assert runner.run(job.id, final_attempt=True) == "failed"
