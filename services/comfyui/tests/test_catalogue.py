"""The node catalogue the worker publishes for the gateway's check at submission: read from
ComfyUI's /object_info (the replay serves the recorded entries, in ComfyUI's format), written
to a real redis-server, kept current while ComfyUI comes and goes, and what the check makes
of the recorded graphs is what ComfyUI made of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from genstack.comfyui.catalogue import CataloguePublisher, EmptyCatalogueError
from genstack.comfyui.client import ComfyUIClient, ComfyUIUnavailableError
from genstack.core.contracts.comfyui_nodes import (
    NODES_KEY,
    UNKNOWN_NODE,
    NodeClass,
    PublishedNodes,
    fresh_nodes,
    workflow_problems,
)
from genstack.core.redis_client import connect
from genstack.testing.comfyui_replay import ComfyReplay, load_recordings
from genstack.testing.stack import start_comfyui_worker
from genstack.testing.waiting import wait_until

RECORDINGS = Path(__file__).parent / "recordings"
FIELD = "gpu-1 http://comfyui:8188"


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return connect(redis_url)


@pytest.fixture
def client(replay: ComfyReplay) -> Iterator[ComfyUIClient]:
    comfy = ComfyUIClient(replay.url, timeout_s=5)
    try:
        yield comfy
    finally:
        comfy.close()


def published(redis: Redis) -> dict[str, NodeClass] | None:
    """What the gateway reads now (genstack.gateway.published does the same)."""
    seconds, micros = redis.time()
    return fresh_nodes(redis.hgetall(NODES_KEY).values(), seconds + micros / 1e6)


def test_the_published_catalogue_judges_the_recordings_as_comfyui_did(
    client: ComfyUIClient, redis: Redis
) -> None:
    publisher = CataloguePublisher(client, redis, field=FIELD, refresh_s=60)
    assert publisher.publish() == 16
    entry = PublishedNodes.model_validate_json(redis.hget(NODES_KEY, FIELD) or "")
    assert entry.stale_after_s == 180
    assert 0 < redis.ttl(NODES_KEY) <= 181
    nodes = published(redis)
    assert nodes is not None
    assert nodes["EmptyImage"].required == ("width", "height", "batch_size", "color")
    assert nodes["CreateVideo"].optional == ("audio",)
    assert nodes["SaveImage"].output_node and nodes["SaveImage"].outputs == 0
    for name, recording in load_recordings(RECORDINGS).items():
        problems = workflow_problems(recording["prompt"], nodes)
        if name == "unknown_node":
            # ComfyUI refused it at once, naming node 1; so does the check.
            assert recording["submit"]["body"]["error"]["details"] == "Node ID '#1'"
            assert [(p.code, p.param) for p in problems] == [
                (UNKNOWN_NODE, "params.workflow.1.class_type")
            ]
        else:
            assert problems == [], name  # accepted, or refused for a value (ComfyUI's call)


def test_an_empty_catalogue_is_never_published(
    replay: ComfyReplay, client: ComfyUIClient, redis: Redis
) -> None:
    replay.object_info = {}
    with pytest.raises(EmptyCatalogueError):
        CataloguePublisher(client, redis, field=FIELD, refresh_s=60).publish()
    assert not redis.exists(NODES_KEY)


def test_the_hash_outlives_the_shortest_interval_of_its_publishers(
    client: ComfyUIClient, redis: Redis
) -> None:
    CataloguePublisher(client, redis, field="slow", refresh_s=600).publish()
    CataloguePublisher(client, redis, field="fast", refresh_s=1).publish()
    assert redis.ttl(NODES_KEY) > 1000
    assert set(redis.hkeys(NODES_KEY)) == {"slow", "fast"}


def test_published_once_comfyui_answers_then_refreshed(tmp_path: Path, redis: Redis) -> None:
    replay = ComfyReplay(tmp_path / "outputs", RECORDINGS)  # its port chosen, not listening
    client = ComfyUIClient(replay.url, timeout_s=2)
    publisher = CataloguePublisher(client, redis, field=FIELD, refresh_s=0.3, retry_s=0.1)
    with pytest.raises(ComfyUIUnavailableError):
        publisher.publish()
    publisher.start()
    try:
        assert not publisher.published.wait(0.5)
        assert not redis.exists(NODES_KEY)
        replay.start()
        try:
            assert publisher.published.wait(5)
            nodes = published(redis)
            assert nodes is not None and "Custom" not in nodes
            # A ComfyUI restarted with another node: seen at the next refresh.
            extra: dict[str, Any] = {"input": {"required": {"x": ["INT"]}}, "output": []}
            replay.object_info = {**replay.object_info, "Custom": extra}
            wait_until(lambda: "Custom" in (published(redis) or {}), 5, "the new node published")
        finally:
            replay.stop()
    finally:
        publisher.stop()
        client.close()


def test_the_worker_process_publishes_its_comfyuis_catalogue(
    replay: ComfyReplay, redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    worker = start_comfyui_worker(redis_url, tmp_path, replay.output_dir, replay.url)
    try:
        field = f"test-node {replay.url}"  # NODE_ID and COMFYUI_URL
        wait_until(lambda: redis.hexists(NODES_KEY, field), 10, "the worker's catalogue")
        entry = json.loads(redis.hget(NODES_KEY, field) or "{}")
        assert set(entry["nodes"]) == set(replay.object_info)
    finally:
        worker.stop()
