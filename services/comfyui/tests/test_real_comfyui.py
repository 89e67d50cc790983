"""Against a real ComfyUI on CPU, started through `genstack-comfyui start` (COMFYUI_DIR: a
checkout; COMFYUI_PYTHON: its interpreter): the model-free workflows through the real
handler, JobRunner and redis-server. Skipped when COMFYUI_DIR is unset (CI has no ComfyUI)."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genstack.comfyui.catalogue import CataloguePublisher
from genstack.comfyui.client import ComfyUIClient, PromptRejectedError
from genstack.comfyui.handler import ComfyJobHandler
from genstack.comfyui.inputs import InputFetcher
from genstack.comfyui.recorder import record_all, tone_wav
from genstack.core.contracts.comfyui_nodes import (
    NODES_KEY,
    PublishedNodes,
    node_classes,
    workflow_problems,
)
from genstack.core.job_runner import JobOutcome, JobRunner
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.leases import JobLeases
from genstack.core.redis_client import connect
from genstack.core.ssrf import UrlPolicy
from genstack.testing.comfyui_replay import load_recordings
from genstack.testing.file_server import FileServer
from genstack.testing.stack import start_comfyui

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="COMFYUI_DIR is not set"),
]
RECORDINGS = Path(__file__).parent / "recordings"
GRAPHS = load_recordings(RECORDINGS)


class Real:
    def __init__(self, url: str, outputs: Path) -> None:
        self.url = url
        self.outputs = outputs


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    root = tmp_path_factory.mktemp("comfyui")
    url, process = start_comfyui(root, root / "outputs")
    try:
        yield Real(url, root / "outputs")
    finally:
        process.stop()


@pytest.fixture
def runner(comfyui: Real, redis_url: str) -> tuple[JobRunner, JobStore, list[Any]]:
    store = JobStore(connect(redis_url), ttl_s=600)
    handed: list[Any] = []
    handler = ComfyJobHandler(
        ComfyUIClient(comfyui.url, poll_s=0.5, grace_s=5),
        InputFetcher(UrlPolicy(["127.0.0.0/8"]), max_bytes=2**20, timeout_s=10),
        output_dir=comfyui.outputs,
        job_timeout_s=120,
    )
    run = JobRunner(
        store=store,
        handler=handler,
        output_dir=comfyui.outputs,
        hand_over=lambda *args: handed.append(args),
        leases=JobLeases(store, queue="comfyui", owner="real", ttl_s=60),
    )
    return run, store, handed


def job(store: JobStore, name: str, change: dict[tuple[str, str], Any] | None = None) -> Job:
    graph = json.loads(json.dumps(GRAPHS[name]["prompt"]).replace("{{job}}/", ""))
    for (node_id, key), value in (change or {}).items():
        graph[node_id]["inputs"][key] = value
    return store.create(Job(type=JobType.WORKFLOW, backend="comfyui", params={"workflow": graph}))


@pytest.mark.parametrize(
    ("name", "files"), [("image_batch", 2), ("animated_webp", 1), ("video", 1)]
)
def test_model_free_workflows_end_with_their_files(
    runner: tuple[JobRunner, JobStore, list[Any]], name: str, files: int
) -> None:
    run, store, handed = runner
    first, second = job(store, name), job(store, name)
    assert run.run(first.id) == JobOutcome.HANDED_OVER
    assert run.run(second.id) == JobOutcome.HANDED_OVER  # the same graph again: new files
    assert len(handed) == 2 * files
    assert all(Path(h[0]).stat().st_size > 0 for h in handed)
    assert {Path(h[0]).parent.name for h in handed} == {first.id, second.id}


def test_audio_from_a_url(runner: tuple[JobRunner, JobStore, list[Any]]) -> None:
    run, store, handed = runner
    server = FileServer(files={"/tone.wav": tone_wav()}).start()
    try:
        audio = job(store, "audio", {("1", "audio"): f"{server.url}/tone.wav"})
        assert run.run(audio.id) == JobOutcome.HANDED_OVER
    finally:
        server.stop()
    assert [Path(h[0]).suffix for h in handed] == [".flac"]


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        ("invalid_input", "invalid_workflow", "node 1 (EmptyImage) input 'width'"),
        ("unknown_node", "invalid_workflow", "node 1 (NoSuchNode)"),
    ],
)
def test_refusals_name_the_node(
    runner: tuple[JobRunner, JobStore, list[Any]], name: str, code: str, text: str
) -> None:
    run, store, _ = runner
    bad = job(store, name)
    assert run.run(bad.id) == JobOutcome.FAILED
    error = store.require(bad.id).error
    assert error is not None and error.code == code and text in error.message


def test_cancel_interrupts_and_the_next_job_runs(
    runner: tuple[JobRunner, JobStore, list[Any]],
) -> None:
    run, store, _ = runner
    slow = job(store, "interrupt")
    threading.Timer(1.0, lambda: store.request_cancel(slow.id)).start()
    assert run.run(slow.id) == JobOutcome.CANCELLED
    assert store.require(slow.id).status == JobStatus.CANCELLED
    following = job(store, "image_batch")
    assert run.run(following.id) == JobOutcome.HANDED_OVER


def _graph(**changes: Any) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    graph.update({key.removeprefix("n"): node for key, node in changes.items()})
    return graph


def test_the_published_catalogue_refuses_what_comfyui_refuses_and_no_more(
    comfyui: Real, redis_url: str
) -> None:
    client = ComfyUIClient(comfyui.url)
    redis = connect(redis_url)
    try:
        assert CataloguePublisher(client, redis, field="real", refresh_s=60).publish() > 100
        stored = redis.hget(NODES_KEY, "real") or ""
        assert len(stored) * 5 < len(json.dumps(client.object_info()))  # compact
        nodes = PublishedNodes.model_validate_json(stored).nodes
        # The recorded entries (the replay's) are still what this ComfyUI says.
        info = json.loads((RECORDINGS / "object_info.json").read_text())["object_info"]
        assert {name: nodes[name] for name in info} == node_classes(info)
        refused = [
            _graph(n4={"class_type": "NoSuchNode", "inputs": {}}),
            _graph(n1={"class_type": "EmptyImage", "inputs": {"width": 8}}),
            _graph(n2={"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}}),
            _graph(n2={"class_type": "ImageInvert", "inputs": {"image": [1, 0]}}),
            _graph(n2={"class_type": "ImageInvert", "inputs": {"image": ["1", 1]}}),
            _graph(n3={"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}),
        ]
        accepted = [
            _graph(n4={"class_type": "EmptyImage", "inputs": {}}),  # nothing depends on it
            _graph(n2={"class_type": "ImageInvert", "inputs": {"image": ["1", 0], "x": ["9"]}}),
            _graph(n2={"class_type": "ImageInvert", "inputs": {"image": ["1", -1]}}),
        ]
        for graph in refused:
            assert workflow_problems(graph, nodes), graph
            with pytest.raises(PromptRejectedError):
                client.submit(graph, str(uuid.uuid4()), "catalogue-test")
        for graph in accepted:
            assert workflow_problems(graph, nodes) == [], graph
            client.submit(graph, str(uuid.uuid4()), "catalogue-test")
    finally:
        client.close()
        redis.close()


def test_the_recorder_skips_a_scenario_whose_checkpoint_comfyui_lacks(
    comfyui: Real, tmp_path: Path
) -> None:
    # This ComfyUI has no models: sd15_txt2img would record a refusal in place of a picture.
    assert record_all(comfyui.url, tmp_path, comfyui.outputs, ["sd15_txt2img"]) == []
    assert list(tmp_path.iterdir()) == []
