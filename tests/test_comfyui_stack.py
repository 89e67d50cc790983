"""Workflow jobs through the whole stack: gateway -> Redis -> `genstack-comfyui worker` ->
ComfyUI -> uploader -> S3 (a real S3 HTTP server), every part a real process: images, an
animated webp, a video, audio from a URL input, refusals naming the node, cancel, and ComfyUI
killed mid-job.

ComfyUI is either the replay of exchanges recorded from a real ComfyUI (so CI runs the whole
path without one) or a real ComfyUI started through `genstack-comfyui start` when COMFYUI_DIR
names a checkout (marked `comfyui`, skipped otherwise)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mypy_boto3_s3 import S3Client

from genstack.comfyui.recorder import SD15_CHECKPOINT, TXT2IMG_PARAMS, tone_wav
from genstack.testing.comfyui_replay import ComfyReplay, load_recordings
from genstack.testing.file_server import FileServer
from genstack.testing.png import read_png
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.sse import read_sse
from genstack.testing.stack import (
    RunningGateway,
    start_comfyui_worker,
    start_gateway,
    start_uploader,
)
from genstack.testing.stack import start_comfyui as start_real_comfyui

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT / "services" / "comfyui" / "tests" / "recordings"
# The recorded graphs, with the job folder the recorder put in their prefixes taken out (the
# worker puts the job's own in).
GRAPHS: dict[str, dict[str, Any]] = {
    name: json.loads(json.dumps(recording["prompt"]).replace("{{job}}/", ""))
    for name, recording in load_recordings(RECORDINGS).items()
}
TERMINAL = {"succeeded", "failed", "cancelled"}
SOURCES = [
    "replay",
    pytest.param(
        "real",
        marks=[
            pytest.mark.comfyui,
            pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="COMFYUI_DIR is not set"),
        ],
    ),
]


@dataclass
class ComfyStack:
    source: str
    gateway: RunningGateway
    outputs: Path
    s3: S3Client
    bucket: str
    files: FileServer  # input files by URL, on loopback (which the worker is allowed)
    kill_comfyui: Callable[[], None]  # SIGKILL ComfyUI and start it again where it was


def sd15() -> Path:
    from genstack.testing.checkpoints import cached_checkpoint

    return cached_checkpoint(
        "sd15",
        comfyui_dir=Path(os.environ["COMFYUI_DIR"]),
        python=Path(os.environ["COMFYUI_PYTHON"]),
    )


class ComfyUI:
    """The ComfyUI under test: the replay, or a real one through `genstack-comfyui start`."""

    def __init__(self, source: str, root: Path, outputs: Path) -> None:
        self.source, self.root, self.outputs = source, root, outputs
        self.replay: ComfyReplay | None = None
        self.process: Any = None
        if source == "replay":
            self.replay = ComfyReplay(outputs, RECORDINGS).start()
            self.url = self.replay.url
        else:
            # The random-weight SD1.5 checkpoint (built once per machine) where provisioning
            # would put a model, under the name the recordings use.
            checkpoints = root / "models" / "checkpoints"
            checkpoints.mkdir(parents=True, exist_ok=True)
            (checkpoints / SD15_CHECKPOINT).symlink_to(sd15())
            self.url, self.process = start_real_comfyui(root, outputs)

    def kill_and_restart(self) -> None:
        """SIGKILL (the replay, in this process, forgets every prompt and drops its sockets,
        as a restarted ComfyUI does), then back on the same port."""
        if self.replay is not None:
            self.replay.restart()
            return
        self.process.kill()
        self.process.wait(30)
        port = int(self.url.rsplit(":", 1)[1])
        _, self.process = start_real_comfyui(self.root, self.outputs, port=port)

    def stop(self) -> None:
        (self.replay or self.process).stop()


@pytest.fixture(scope="module", params=SOURCES)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: S3Server,
) -> Iterator[ComfyStack]:
    source = str(request.param)
    root = tmp_path_factory.mktemp(f"comfystack-{source}")
    outputs = root / "outputs"  # what start_gateway and start_uploader use for root
    bucket = s3_server.create_bucket()
    r2 = {
        "R2_ENDPOINT": s3_server.endpoint_url,
        "R2_BUCKET": bucket,
        "R2_ACCESS_KEY_ID": s3_server.access_key,
        "R2_SECRET_ACCESS_KEY": s3_server.secret_key,
        "R2_REGION": s3_server.region,
        "ENABLE_R2_SYNC": "true",
    }
    redis = RedisServer(root / "redis")
    redis.start()
    started: list[Any] = []
    try:
        comfyui = ComfyUI(source, root, outputs)
        started.append(comfyui)
        started.append(FileServer(files={"/tone.wav": tone_wav()}).start())
        started.append(start_uploader(redis.url, root, env=r2))
        allow = {"COMFYUI_INPUT_ALLOW_NETWORKS": "127.0.0.0/8"}
        worker_env = {**allow, **r2, "STORAGE_DIR": str(root / "storage")}
        started.append(start_comfyui_worker(redis.url, root, outputs, comfyui.url, env=worker_env))
        gateway = start_gateway(redis.url, root, env={**r2, "GATEWAY_ENABLED_BACKENDS": "comfyui"})
        started.append(gateway)
        yield ComfyStack(
            source,
            gateway,
            outputs,
            s3_server.client(),
            bucket,
            files=started[1],
            kill_comfyui=comfyui.kill_and_restart,
        )
    finally:
        for part in reversed(started):
            part.stop()
        redis.close()


def post(
    stack: ComfyStack, name: str, change: dict[tuple[str, str], Any] | None = None
) -> httpx.Response:
    graph = json.loads(json.dumps(GRAPHS[name]))
    for (node_id, key), value in (change or {}).items():
        graph[node_id]["inputs"][key] = value
    return httpx.post(
        f"{stack.gateway.url}/v1/jobs",
        headers=stack.gateway.headers,
        json={"type": "workflow", "params": {"workflow": graph}},
    )


def submit(stack: ComfyStack, name: str, change: dict[tuple[str, str], Any] | None = None) -> str:
    response = post(stack, name, change)
    assert response.status_code in (200, 201, 202), response.text
    job_id = response.json()["id"]
    assert isinstance(job_id, str)
    return job_id


def get_job(stack: ComfyStack, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.gateway.url}/v1/jobs/{job_id}", headers=stack.gateway.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert isinstance(job, dict)
    return job


def wait_for(
    stack: ComfyStack, job_id: str, statuses: set[str], timeout: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(stack, job_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.05)


def events(stack: ComfyStack, job_id: str) -> list[str]:
    """The job's event types, from the start (the stream ends after the terminal status)."""
    with (
        httpx.Client(base_url=stack.gateway.url, headers=stack.gateway.headers) as http,
        http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=30) as response,
    ):
        return [event.event for event in read_sse(response)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_landed(stack: ComfyStack, job: dict[str, Any], suffixes: list[str]) -> None:
    """Every file ComfyUI wrote into the job's folder is an artifact, byte for byte in S3."""
    assert job["status"] == "succeeded", job
    written = {
        p.name: p.read_bytes() for p in (stack.outputs / job["id"]).rglob("*") if p.is_file()
    }
    assert sorted(Path(name).suffix for name in written) == sorted(suffixes)
    assert all(written.values())
    landed = {}
    for artifact in job["artifacts"]:
        key = artifact["key"]
        assert key.startswith("outputs/") and f"/{job['id']}/" in key
        body = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        assert sha256(body) == artifact["sha256"] and artifact["bytes"] == len(body)
        landed[key.rsplit("/", 1)[1]] = body
    assert landed == written


def test_a_batch_of_two_lands_in_s3_byte_for_byte(stack: ComfyStack) -> None:
    job_id = submit(stack, "image_batch")
    job = wait_for(stack, job_id, TERMINAL)
    assert_landed(stack, job, [".png", ".png"])
    assert len(job["artifacts"]) == 2
    kinds = events(stack, job_id)
    assert "progress" in kinds and "artifact" in kinds


def test_the_same_workflow_twice_gives_two_sets_of_files(stack: ComfyStack) -> None:
    first, second = submit(stack, "image_batch"), submit(stack, "image_batch")
    keys: list[set[str]] = []
    for job_id in (first, second):
        job = wait_for(stack, job_id, TERMINAL)
        assert job["status"] == "succeeded", job
        keys.append({a["key"] for a in job["artifacts"]})
        assert len(keys[-1]) == 2
        assert len([p for p in (stack.outputs / job_id).rglob("*") if p.is_file()]) == 2
    assert not keys[0] & keys[1]
    for key in keys[0] | keys[1]:
        stack.s3.head_object(Bucket=stack.bucket, Key=key)  # raises if it is not there


def test_an_invalid_input_fails_naming_the_node(stack: ComfyStack) -> None:
    job_id = submit(stack, "invalid_input")
    job = wait_for(stack, job_id, TERMINAL)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_workflow"
    assert "node 1 (EmptyImage) input 'width'" in job["error"]["message"]
    assert job["artifacts"] == []


def test_cancel_of_a_running_job_ends_it_cancelled_and_the_next_job_runs(
    stack: ComfyStack,
) -> None:
    # A slow graph (the replay holds it running until it is interrupted).
    job_id = submit(stack, "interrupt")
    wait_for(stack, job_id, {"running"}, timeout=60)
    time.sleep(0.5)  # into ComfyUI, past the worker's submission
    response = httpx.delete(f"{stack.gateway.url}/v1/jobs/{job_id}", headers=stack.gateway.headers)
    assert response.status_code in (200, 202), response.text
    job = wait_for(stack, job_id, TERMINAL)
    assert job["status"] == "cancelled", job
    after = wait_for(stack, submit(stack, "image_batch"), TERMINAL)
    assert after["status"] == "succeeded", after


@pytest.mark.parametrize(("name", "suffixes"), [("animated_webp", [".webp"]), ("video", [".mp4"])])
def test_an_animated_webp_and_a_video_land_in_s3(
    stack: ComfyStack, name: str, suffixes: list[str]
) -> None:
    assert_landed(stack, wait_for(stack, submit(stack, name), TERMINAL), suffixes)


def test_an_audio_input_by_url_is_fetched_and_its_output_lands(stack: ComfyStack) -> None:
    job_id = submit(stack, "audio", {("1", "audio"): f"{stack.files.url}/tone.wav"})
    assert_landed(stack, wait_for(stack, job_id, TERMINAL), [".flac"])
    assert stack.files.requests  # the worker fetched it


def test_an_input_from_a_refused_address_fails_naming_the_node(stack: ComfyStack) -> None:
    # Link-local (the cloud metadata address): refused, as it is outside the allowed networks.
    job_id = submit(stack, "audio", {("1", "audio"): "http://169.254.169.254/latest/tone.wav"})
    job = wait_for(stack, job_id, TERMINAL)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "input_refused"
    assert "node 1 input 'audio'" in job["error"]["message"]
    assert "COMFYUI_INPUT_ALLOW_NETWORKS" in job["error"]["message"]


def test_an_unknown_node_is_a_400_at_submission_naming_the_node(stack: ComfyStack) -> None:
    # The worker publishes ComfyUI's node catalogue as it starts; the gateway reads it at
    # most GATEWAY_NODE_CATALOGUE_CACHE_S (10 s) late.
    body = {"type": "workflow", "params": {"workflow": GRAPHS["unknown_node"]}}
    deadline = time.monotonic() + 30
    while True:
        response = httpx.post(
            f"{stack.gateway.url}/v1/jobs", headers=stack.gateway.headers, json=body
        )
        if response.status_code == 400 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unknown_node", "params.workflow.1.class_type")
    assert error["message"].startswith("node 1: class_type 'NoSuchNode' is not a node")


def test_comfyui_killed_mid_job_ends_the_job_and_the_worker_recovers(stack: ComfyStack) -> None:
    job_id = submit(stack, "interrupt")
    wait_for(stack, job_id, {"running"}, timeout=60)
    time.sleep(0.5)  # into ComfyUI, past the worker's submission
    stack.kill_comfyui()
    job = wait_for(stack, job_id, TERMINAL, timeout=180)
    # Failed with a clear code, or run again once ComfyUI was back; never left running.
    if job["status"] == "failed":
        assert job["error"]["code"] in ("backend_restarted", "backend_unavailable"), job
        assert job["error"]["message"]
    else:
        assert job["status"] == "succeeded", job
    after = wait_for(stack, submit(stack, "image_batch"), TERMINAL)
    assert after["status"] == "succeeded", after


def submit_typed(stack: ComfyStack, job_type: str, params: dict[str, Any]) -> httpx.Response:
    """A typed job; retried while the gateway has not seen the worker's templates yet (it
    reads them at most GATEWAY_NODE_CATALOGUE_CACHE_S late) and so lets it through."""
    return httpx.post(
        f"{stack.gateway.url}/v1/jobs",
        headers=stack.gateway.headers,
        json={"type": job_type, "params": params},
    )


def test_an_image_job_on_the_txt2img_template_makes_a_png_of_the_size(
    stack: ComfyStack,
) -> None:
    # The recorded txt2img job (the replay answers exactly that graph); on a real ComfyUI the
    # random-weight SD1.5 checkpoint, the only one there, is the template's default.
    response = submit_typed(stack, "image", TXT2IMG_PARAMS)
    assert response.status_code in (200, 201, 202), response.text
    job = wait_for(stack, response.json()["id"], TERMINAL, timeout=300)
    assert_landed(stack, job, [".png"])
    [artifact] = job["artifacts"]
    body = stack.s3.get_object(Bucket=stack.bucket, Key=artifact["key"])["Body"].read()
    image = read_png(body)
    assert (image.width, image.height) == (64, 64)
    assert image.distinct_values() > 16  # noise from random weights, not a flat colour


def test_the_templates_are_listed_with_what_runs_here(stack: ComfyStack) -> None:
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{stack.gateway.url}/v1/templates", headers=stack.gateway.headers)
        assert response.status_code == 200, response.text
        listing = {t["name"]: t for t in response.json()["data"]}
        if listing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    txt2img = listing["txt2img"]
    assert txt2img["available"], txt2img
    assert txt2img["params"]["properties"]["checkpoint"]["default"] == SD15_CHECKPOINT
    assert not listing["wan22-5b"]["available"]  # no Wan model here
    # The replay's catalogue holds only the recorded graphs' node classes.
    expected = "wan2.2_ti2v_5B_fp16.safetensors" if stack.source == "real" else "has no node"
    assert expected in listing["wan22-5b"]["reason"]


def test_bad_template_params_are_a_400_naming_the_param(stack: ComfyStack) -> None:
    cases = [
        ({"prompt": "x", "width": 100}, "params.width"),  # not a multiple of 8: the contract
        ({"prompt": "x", "template": "nope"}, "params.template"),
        ({"prompt": "x", "frames": 9}, "params.frames"),  # an image template takes no frames
    ]
    for params, param in cases:
        deadline = time.monotonic() + 30
        while True:  # the last two need the published templates
            response = submit_typed(stack, "image", params)
            if response.status_code == 400 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["param"] == param, response.text


def test_the_openai_client_generates_an_image_on_a_template(stack: ComfyStack) -> None:
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=f"{stack.gateway.url}/v1", api_key=stack.gateway.api_key)
    # The recorded job's params beyond OpenAI's own, as extra_body (see docs/gateway.md).
    extra = {k: v for k, v in TXT2IMG_PARAMS.items() if k not in ("prompt", "width", "height")}
    deadline = time.monotonic() + 30
    while True:  # "txt2img" is a model once the gateway has read the worker's templates
        try:
            result = client.images.generate(
                model="txt2img",
                prompt=TXT2IMG_PARAMS["prompt"],
                size="64x64",  # type: ignore[arg-type]  # any WIDTHxHEIGHT here
                response_format="b64_json",
                extra_body=extra,
                timeout=300,
            )
            break
        except NotFoundError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert result.data is not None
    [image] = result.data
    assert image.b64_json is not None
    png = read_png(base64.b64decode(image.b64_json))
    assert (png.width, png.height) == (64, 64)
