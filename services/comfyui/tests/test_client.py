"""The ComfyUI client against the replay of recorded ComfyUI 0.3.64 exchanges: results,
node-named refusals, execution errors, progress, cancel, and the faults a websocket and a
restart bring (history wins; a forgotten prompt is reported, never waited on)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from genstack.comfyui.client import (
    ComfyUIClient,
    ComfyUIUnavailableError,
    ExecutionFailedError,
    Progress,
    PromptInterruptedError,
    PromptLostError,
    PromptRejectedError,
)
from genstack.testing.comfyui_replay import ComfyReplay
from genstack.testing.ports import free_port


def graph_of(replay: ComfyReplay, name: str, job: str) -> dict[str, Any]:
    text = json.dumps(replay.recordings[name]["prompt"]).replace("{{job}}", job)
    graph: dict[str, Any] = json.loads(text)
    return graph


@pytest.fixture
def client(replay: ComfyReplay) -> ComfyUIClient:
    return ComfyUIClient(replay.url, poll_s=0.2, grace_s=2)


def test_a_batch_of_two_images_ends_with_both_files_and_progress(
    replay: ComfyReplay, client: ComfyUIClient
) -> None:
    prompt_id = str(uuid.uuid4())
    seen: list[Progress] = []
    result = client.run(graph_of(replay, "image_batch", "job1"), prompt_id, on_progress=seen.append)
    images = result.outputs["3"]["images"]
    assert [i["filename"] for i in images] == ["img_00001_.png", "img_00002_.png"]
    assert {i["subfolder"] for i in images} == {"job1"}
    assert (replay.output_dir / "job1" / "img_00002_.png").stat().st_size > 0
    assert replay.submitted[0]["prompt_id"] == prompt_id
    assert any(p.node == "3" and p.class_type == "SaveImage" for p in seen)
    assert max(p.fraction for p in seen) < 1.0


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("invalid_input", "node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1"),
        (
            "unknown_node",
            "node 1 (NoSuchNode): Cannot execute because node NoSuchNode does not exist",
        ),
    ],
)
def test_a_refused_graph_names_the_node_its_class_and_input(
    replay: ComfyReplay, client: ComfyUIClient, name: str, text: str
) -> None:
    with pytest.raises(PromptRejectedError) as caught:
        client.run(graph_of(replay, name, "job2"))
    assert text in str(caught.value)
    assert caught.value.problems[0].node_id == "1"


def test_an_execution_error_carries_the_node_and_the_exception(
    replay: ComfyReplay, client: ComfyUIClient
) -> None:
    with pytest.raises(ExecutionFailedError) as caught:
        client.run(graph_of(replay, "execution_error", "job3"))
    error = caught.value
    assert (error.node_id, error.class_type) == ("1", "LoadAudio")
    assert error.exception_message
    assert "node 1 (LoadAudio) failed" in str(error)


@pytest.mark.parametrize("mode", ["silent", "drop"])
def test_a_silent_or_dropped_websocket_never_hangs_the_prompt(
    replay: ComfyReplay, client: ComfyUIClient, mode: str
) -> None:
    replay.ws_mode = mode
    started = time.monotonic()
    result = client.run(graph_of(replay, "video", "job4"), timeout_s=20)
    assert result.outputs["3"]["images"][0]["filename"].endswith(".mp4")
    assert time.monotonic() - started < 5


def test_cancel_interrupts_the_running_prompt_by_its_id(
    replay: ComfyReplay, client: ComfyUIClient
) -> None:
    prompt_id = str(uuid.uuid4())
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(PromptInterruptedError):
        client.run(graph_of(replay, "interrupt", "job5"), prompt_id, cancelled=stop.is_set)
    assert replay.interrupts == [prompt_id]
    assert replay.deleted == [prompt_id]


def test_a_restart_mid_prompt_ends_it_as_lost(replay: ComfyReplay, client: ComfyUIClient) -> None:
    threading.Timer(0.5, replay.restart).start()
    started = time.monotonic()
    with pytest.raises(PromptLostError, match="restarted"):
        client.run(graph_of(replay, "interrupt", "job6"), timeout_s=20)
    assert time.monotonic() - started < 5


def test_comfyui_down_is_unavailable_not_a_hang() -> None:
    client = ComfyUIClient(f"http://127.0.0.1:{free_port()}", poll_s=0.2, grace_s=1)
    with pytest.raises(ComfyUIUnavailableError):
        client.run({"1": {"class_type": "EmptyImage", "inputs": {}}})
