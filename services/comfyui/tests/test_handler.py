"""ComfyJobHandler under the real JobRunner and a real redis-server, against the replay of
recorded ComfyUI exchanges: job states, files, progress, cancel, failures that name the node,
inputs by URL (fetched, uploaded, or refused by the SSRF guard), ComfyUI down or restarted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genstack.comfyui.client import ComfyUIClient
from genstack.comfyui.handler import ComfyJobHandler, prompt_id_of
from genstack.comfyui.inputs import InputFetcher
from genstack.comfyui.recorder import tone_wav
from genstack.core.job_runner import JobOutcome, JobRunner
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.leases import JobLeases
from genstack.core.redis_client import connect
from genstack.core.ssrf import UrlPolicy
from genstack.testing.comfyui_replay import ComfyReplay
from genstack.testing.file_server import FileServer
from genstack.testing.ports import free_port

HandedOver = list[tuple[str, str, int, str]]


class Rig:
    def __init__(self, store: JobStore, replay: ComfyReplay, url: str, allow: list[str]) -> None:
        self.store = store
        self.replay = replay
        self.handed: HandedOver = []
        policy = UrlPolicy(allow, allow_variable="COMFYUI_INPUT_ALLOW_NETWORKS")
        handler = ComfyJobHandler(
            ComfyUIClient(url, poll_s=0.2, grace_s=1),
            InputFetcher(policy, max_bytes=2**20, timeout_s=5),
            output_dir=replay.output_dir,
            job_timeout_s=30,
        )
        self.runner = JobRunner(
            store=store,
            handler=handler,
            output_dir=replay.output_dir,
            hand_over=lambda *args: self.handed.append(args),
            leases=JobLeases(store, queue="comfyui", owner="test", ttl_s=30),
        )

    def job(self, name: str, change: dict[tuple[str, str], Any] | None = None) -> Job:
        graph = json.loads(json.dumps(self.replay.recordings[name]["prompt"]))
        for node in graph.values():  # the client's own prefixes, as a user sends them
            if "filename_prefix" in node["inputs"]:
                node["inputs"]["filename_prefix"] = node["inputs"]["filename_prefix"].split("/")[-1]
        for (node_id, key), value in (change or {}).items():
            graph[node_id]["inputs"][key] = value
        return self.store.create(
            Job(type=JobType.WORKFLOW, backend="comfyui", params={"workflow": graph})
        )

    def run(self, job: Job, *, final_attempt: bool = True) -> JobOutcome:
        return self.runner.run(job.id, final_attempt=final_attempt)


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(connect(redis_url), ttl_s=600)


@pytest.fixture
def rig(store: JobStore, replay: ComfyReplay) -> Rig:
    return Rig(store, replay, replay.url, ["127.0.0.0/8"])


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer(files={"/tone.wav": tone_wav()}).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_workflow_job_hands_over_every_file_in_its_folder(rig: Rig) -> None:
    job = rig.job("image_batch")
    assert rig.run(job) == JobOutcome.HANDED_OVER
    done = rig.store.require(job.id)
    assert done.status == JobStatus.UPLOADING
    folder = rig.replay.output_dir / job.id
    assert sorted(Path(h[0]).name for h in rig.handed) == ["img_00001_.png", "img_00002_.png"]
    assert all(Path(h[0]).parent == folder.resolve() and h[2] == 2 for h in rig.handed)
    submitted = rig.replay.submitted[0]
    assert submitted["prompt_id"] == prompt_id_of(job.id)
    assert submitted["prompt"]["3"]["inputs"]["filename_prefix"] == f"{job.id}/img"
    messages = [e.data.get("message") for e in rig.store.events(job.id) if e.type == "progress"]
    assert any("running 3 (SaveImage)" in (m or "") for m in messages)


@pytest.mark.parametrize(("name", "count"), [("animated_webp", 1), ("video", 1)])
def test_animated_images_and_video_are_collected(rig: Rig, name: str, count: int) -> None:
    job = rig.job(name)
    assert rig.run(job) == JobOutcome.HANDED_OVER
    assert len(rig.handed) == count


def test_an_audio_input_by_url_is_fetched_uploaded_and_its_output_collected(
    rig: Rig, files: FileServer
) -> None:
    job = rig.job("audio", {("1", "audio"): f"{files.url}/tone.wav"})
    assert rig.run(job) == JobOutcome.HANDED_OVER
    [(path, *_)] = rig.handed
    assert path.endswith(".flac")
    [(uploaded, data)] = rig.replay.uploads.items()
    assert uploaded == f"{job.id}/0-tone.wav" and data == tone_wav()
    assert rig.replay.submitted[0]["prompt"]["1"]["inputs"]["audio"] == uploaded


def test_an_input_from_a_refused_address_fails_the_job_naming_the_variable(
    store: JobStore, replay: ComfyReplay, files: FileServer
) -> None:
    rig = Rig(store, replay, replay.url, allow=[])
    job = rig.job("audio", {("1", "audio"): f"{files.url}/tone.wav"})
    assert rig.run(job) == JobOutcome.FAILED
    error = store.require(job.id).error
    assert error is not None and error.code == "input_refused"
    assert "node 1 input 'audio'" in error.message
    assert "COMFYUI_INPUT_ALLOW_NETWORKS" in error.message
    assert replay.submitted == [] and files.requests == []


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        ("invalid_input", "invalid_workflow", "node 1 (EmptyImage) input 'width'"),
        ("unknown_node", "invalid_workflow", "node 1 (NoSuchNode)"),
        ("execution_error", "execution_error", "node 1 (LoadAudio) failed"),
    ],
)
def test_what_comfyui_refuses_fails_the_job_naming_the_node(
    rig: Rig, name: str, code: str, text: str
) -> None:
    job = rig.job(name)
    assert rig.run(job) == JobOutcome.FAILED
    error = rig.store.require(job.id).error
    assert error is not None and error.code == code
    assert text in error.message


def test_a_cancelled_job_is_interrupted_in_comfyui_and_the_next_runs(rig: Rig) -> None:
    job = rig.job("interrupt")
    threading.Timer(0.5, lambda: rig.store.request_cancel(job.id)).start()
    assert rig.run(job) == JobOutcome.CANCELLED
    assert rig.store.require(job.id).status == JobStatus.CANCELLED
    assert rig.replay.interrupts == [prompt_id_of(job.id)]
    following = rig.job("image_batch")
    assert rig.run(following) == JobOutcome.HANDED_OVER


def test_a_comfyui_restart_mid_job_fails_it_clearly(rig: Rig) -> None:
    job = rig.job("interrupt")
    threading.Timer(0.5, rig.replay.restart).start()
    started = time.monotonic()
    assert rig.run(job) == JobOutcome.FAILED
    error = rig.store.require(job.id).error
    assert error is not None and error.code == "backend_restarted"
    assert time.monotonic() - started < 10


def test_comfyui_down_is_retryable_then_fails(store: JobStore, replay: ComfyReplay) -> None:
    rig = Rig(store, replay, f"http://127.0.0.1:{free_port()}", [])
    job = rig.job("image_batch")
    with pytest.raises(Exception, match="did not answer") as caught:
        rig.run(job, final_attempt=False)
    assert getattr(caught.value, "retryable", False)
    assert rig.run(job) == JobOutcome.FAILED
    error = store.require(job.id).error
    assert error is not None and error.code == "backend_unavailable"


def test_an_empty_output_file_fails_the_job(rig: Rig) -> None:
    recording = rig.replay.recordings["image_batch"]
    recording["files"] = dict.fromkeys(recording["files"], "")  # a node that wrote nothing
    job = rig.job("image_batch")
    assert rig.run(job) == JobOutcome.FAILED
    error = rig.store.require(job.id).error
    assert error is not None and error.code == "bad_output" and "empty" in error.message


def test_a_templates_input_given_as_a_stored_key_is_read_from_storage(
    store: JobStore, replay: ComfyReplay, tmp_path: Path
) -> None:
    """A typed job's input file by key (what the gateway stores from a URL or an upload, or
    an earlier artifact): read from storage, uploaded to ComfyUI, the graph run."""
    from genstack.comfyui.inputs import StoredInputs
    from genstack.comfyui.template_registry import TemplateRegistry
    from genstack.comfyui.templates import Template
    from genstack.core.storage import LocalStorage

    # A template whose bound graph is the recorded `audio` one (LoadAudio -> SaveAudio).
    echo = Template.parse(
        "echo",
        {
            "type": "image",
            "params": {"clip": {"to": "1.audio", "required": True}},
            "graph": {
                "1": {"class_type": "LoadAudio", "inputs": {"audio": ""}},
                "2": {
                    "class_type": "SaveAudio",
                    "inputs": {"audio": ["1", 0], "filename_prefix": "aud"},
                },
            },
        },
    )
    storage = LocalStorage(tmp_path / "storage")
    key = "inputs/abc/tone.wav"
    storage.put_bytes(key, tone_wav(), sha256="", content_type="audio/wav")
    rig = Rig(store, replay, replay.url, [])
    registry = TemplateRegistry({"echo": echo})
    handler = rig.runner.handler
    assert isinstance(handler, ComfyJobHandler)
    handler.templates = registry
    handler.stored = StoredInputs(storage, max_bytes=2**20)
    job = store.create(Job(type=JobType.IMAGE, backend="comfyui", params={"clip": key}))
    assert rig.run(job) == JobOutcome.HANDED_OVER, store.require(job.id).error
    [(uploaded, data)] = replay.uploads.items()
    assert uploaded == f"{job.id}/0-tone.wav" and data == tone_wav()
    [(path, *_)] = rig.handed
    assert path.endswith(".flac")
    # A key naming nothing stored fails the job naming the input, before ComfyUI is asked.
    missing = store.create(
        Job(type=JobType.IMAGE, backend="comfyui", params={"clip": "inputs/abc/none.wav"})
    )
    assert rig.run(missing) == JobOutcome.FAILED
    error = store.require(missing.id).error
    assert error is not None and error.code == "input_unavailable"
    assert "node 1 input 'audio'" in error.message and "no stored file" in error.message
