"""Workflow jobs checked at submission against the ComfyUI node catalogue the comfyui workers
publish in Redis: a real gateway process and redis-server; the catalogue is written as a
worker writes it (genstack.core.contracts.comfyui_nodes). What ComfyUI would refuse at once
is a 400 naming the node, its class and input, with ``param`` pointing into the workflow;
without a fresh catalogue the job is queued as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from genstack.core.contracts.comfyui_nodes import NODES_KEY, PublishedNodes, node_classes
from genstack.testing.redis_server import RedisServer
from genstack.testing.stack import RunningGateway, start_gateway

# /object_info entries in ComfyUI's format (trimmed to what matters here).
OBJECT_INFO: dict[str, Any] = {
    "EmptyImage": {
        "input": {
            "required": {
                "width": ["INT", {"default": 512, "min": 1}],
                "height": ["INT", {"default": 512, "min": 1}],
                "batch_size": ["INT", {"default": 1, "min": 1}],
                "color": ["INT", {"default": 0, "min": 0}],
            }
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "ImageInvert": {"input": {"required": {"image": ["IMAGE"]}}, "output": ["IMAGE"]},
    "SaveImage": {
        "input": {
            "required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        },
        "output": [],
        "output_node": True,
    },
}


def workflow(**changes: Any) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "inverted"},
        },
    }
    graph.update({key.removeprefix("n"): node for key, node in changes.items()})
    return {"type": "workflow", "params": {"workflow": graph}}


def publish(
    redis: Redis, info: dict[str, Any], *, field: str = "gpu-1", age_s: float = 0.0
) -> None:
    seconds, micros = redis.time()
    entry = PublishedNodes(
        published_at=seconds + micros / 1e6 - age_s, stale_after_s=180, nodes=node_classes(info)
    )
    redis.hset(NODES_KEY, field, entry.to_json())


def start(redis: RedisServer, folder: Path, name: str, cache_s: float) -> RunningGateway:
    return start_gateway(
        redis.url,
        folder,
        name=name,
        env={
            "GATEWAY_ENABLED_BACKENDS": "comfyui",
            "GATEWAY_NODE_CATALOGUE_CACHE_S": str(cache_s),
        },
    )


@pytest.fixture(scope="module")
def gateway(module_redis: RedisServer, module_dir: Path) -> Iterator[RunningGateway]:
    running = start(module_redis, module_dir, "gateway-uncached", 0)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=10) as client:
        yield client


@pytest.fixture
def redis(module_redis: RedisServer) -> Iterator[Redis]:
    client = module_redis.client()
    client.delete(NODES_KEY)
    try:
        yield client
    finally:
        client.delete(NODES_KEY)


def refused(response: httpx.Response, code: str, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == (code, param)
    message: str = error["message"]
    return message


def test_without_a_catalogue_any_well_formed_workflow_is_queued(
    http: httpx.Client, redis: Redis
) -> None:
    unknown = workflow(n4={"class_type": "NoSuchNode", "inputs": {}})
    assert http.post("/v1/jobs", json=unknown).status_code == 201
    # A catalogue no worker has refreshed for longer than it said is no catalogue.
    publish(redis, OBJECT_INFO, age_s=181)
    assert http.post("/v1/jobs", json=unknown).status_code == 201


def test_an_unknown_node_is_a_400_naming_it_and_nothing_is_queued(
    http: httpx.Client, redis: Redis
) -> None:
    publish(redis, OBJECT_INFO)
    queued = redis.llen("comfyui")
    response = http.post("/v1/jobs", json=workflow(n4={"class_type": "NoSuchNode"}))
    message = refused(response, "unknown_node", "params.workflow.4.class_type")
    assert message.startswith("node 4: class_type 'NoSuchNode' is not a node of this ComfyUI")
    assert redis.llen("comfyui") == queued
    assert http.post("/v1/jobs", json=workflow()).status_code == 201
    assert redis.llen("comfyui") == queued + 1


def test_a_missing_input_and_a_bad_link_name_node_class_and_input(
    http: httpx.Client, redis: Redis
) -> None:
    publish(redis, OBJECT_INFO)
    no_width = {"class_type": "EmptyImage", "inputs": {"height": 8, "batch_size": 1, "color": 0}}
    message = refused(
        http.post("/v1/jobs", json=workflow(n1=no_width)),
        "missing_input",
        "params.workflow.1.inputs.width",
    )
    assert message == "node 1 (EmptyImage): required input 'width' is missing"
    dangling = {"class_type": "ImageInvert", "inputs": {"image": ["7", 0]}}
    message = refused(
        http.post("/v1/jobs", json=workflow(n2=dangling)),
        "bad_link",
        "params.workflow.2.inputs.image",
    )
    assert (
        message
        == "node 2 (ImageInvert) input 'image' links to node '7', which is not in the workflow"
    )
    # Every problem is told, the first is the param.
    both = workflow(n1=no_width, n3={"class_type": "SaveImage", "inputs": {"images": ["2", 3]}})
    message = refused(
        http.post("/v1/jobs", json=both), "missing_input", "params.workflow.1.inputs.width"
    )
    assert "'filename_prefix' is missing" in message and "links to output 3 of node 2" in message


def test_a_node_any_worker_has_passes(http: httpx.Client, redis: Redis) -> None:
    custom = {"Custom": {"input": {"required": {"image": ["IMAGE"]}}, "output_node": True}}
    publish(redis, OBJECT_INFO, field="gpu-1")
    publish(redis, {**OBJECT_INFO, **custom}, field="gpu-2")
    graph = workflow(n4={"class_type": "Custom", "inputs": {"image": ["1", 0]}})
    assert http.post("/v1/jobs", json=graph).status_code == 201
    publish(redis, {**OBJECT_INFO, **custom}, field="gpu-2", age_s=600)  # gpu-2 is gone
    refused(http.post("/v1/jobs", json=graph), "unknown_node", "params.workflow.4.class_type")


def test_the_catalogue_is_read_again_only_after_its_cache_time(
    module_redis: RedisServer, module_dir: Path, redis: Redis
) -> None:
    running = start(module_redis, module_dir, "gateway-cached", 60)
    try:
        with httpx.Client(base_url=running.url, headers=running.headers, timeout=10) as client:
            unknown = workflow(n4={"class_type": "NoSuchNode"})
            publish(redis, OBJECT_INFO)
            refused(
                client.post("/v1/jobs", json=unknown),
                "unknown_node",
                "params.workflow.4.class_type",
            )
            redis.delete(NODES_KEY)  # read a minute ago: still the one in force
            refused(
                client.post("/v1/jobs", json=unknown),
                "unknown_node",
                "params.workflow.4.class_type",
            )
    finally:
        running.stop()
