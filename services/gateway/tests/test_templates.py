"""ComfyUI's typed jobs at the gateway: a real gateway process, a real redis-server, local
storage and a real HTTP file server on loopback. Templates are published into Redis exactly
as a comfyui worker writes them (genstack.core.contracts.comfyui_templates); no worker runs,
so a test finishes a job as a worker and the uploader would (JobStore + the storage).

- ``GET /v1/templates``: nothing published, then the merged list with schemas and defaults;
- ``image`` / ``video`` / ``tts`` jobs refused at submission, naming the param, before
  anything is queued; let through when nothing is published;
- input files: a URL fetched, checked and stored under ``inputs/<job-id>/``; a URL that is
  no image, refused by the SSRF guard, too large or missing; a key the caller may not use;
- OpenAI routes with the official client: images.generate on a template, images.edit
  (multipart) up to the queued job and its answer, speech on VibeVoice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from PIL import Image
from redis import Redis

from genstack.core.contracts.comfyui_templates import (
    TEMPLATES_KEY,
    PublishedTemplate,
    PublishedTemplates,
    TemplateParam,
)
from genstack.core.jobs import Artifact, Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.core.storage import LocalStorage
from genstack.testing.file_server import FileServer
from genstack.testing.job_worker import png_bytes, wav_bytes
from genstack.testing.redis_server import RedisServer
from genstack.testing.stack import API_KEY, RunningGateway, start_gateway

T = TypeVar("T")
OTHER_KEY = "gs-other-key-0123456789abcdef"
MAX_MB = 1


def size(step: int = 8, high: int = 2048) -> TemplateParam:
    return TemplateParam(
        schema={"type": "integer", "minimum": 64, "maximum": high, "x-step": {"step": step}},
        default=1024,
    )


TEXT = TemplateParam(schema={"type": "string"})
FILE = TemplateParam(schema={"type": "string", "description": "http(s) URL or an artifact's key."})
TEMPLATES = {
    "txt2img": PublishedTemplate(
        name="txt2img",
        type=JobType.IMAGE,
        title="Checkpoint text to image",
        rank=10,
        available=True,
        params={
            "prompt": TemplateParam(schema={"type": "string"}, required=True),
            "negative_prompt": TemplateParam(schema={"type": "string"}, default=""),
            "width": size(),
            "height": size(),
            "n": TemplateParam(schema={"type": "integer", "minimum": 1, "maximum": 8}, default=1),
            "seed": TemplateParam(schema={"type": "integer"}),
            "checkpoint": TemplateParam(
                schema={"type": "string", "enum": ["sdxl.safetensors", "pony.safetensors"]},
                default="sdxl.safetensors",
            ),
        },
    ),
    "qwen-edit": PublishedTemplate(
        name="qwen-edit",
        type=JobType.IMAGE,
        title="Qwen-Image-Edit",
        rank=5,
        available=True,
        params={
            "prompt": TemplateParam(schema={"type": "string"}, required=True),
            "image": FILE.model_copy(update={"required": True}),
            "image2": FILE,
            "n": TemplateParam(schema={"type": "integer", "minimum": 1, "maximum": 4}, default=1),
            "width": size(16),
            "height": size(16),
        },
    ),
    "wan-5b": PublishedTemplate(
        name="wan-5b",
        type=JobType.VIDEO,
        title="Wan 2.2 TI2V 5B",
        rank=10,
        available=True,
        params={
            "prompt": TemplateParam(schema={"type": "string"}, required=True),
            "image": FILE,
            "frames": TemplateParam(
                schema={
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 121,
                    "x-step": {"from": 1, "step": 4},
                },
                default=121,
            ),
            "width": size(32, 1280),
            "height": size(32, 1280),
        },
    ),
    "wan-14b": PublishedTemplate(
        name="wan-14b",
        type=JobType.VIDEO,
        title="Wan 2.2 14B",
        rank=20,
        available=False,
        reason="model file wan2.2_t2v_high_noise_14B_fp8.safetensors is missing "
        "(WAN_720P=true provisions it)",
        params={"prompt": TemplateParam(schema={"type": "string"}, required=True)},
    ),
    "vibevoice": PublishedTemplate(
        name="vibevoice",
        type=JobType.TTS,
        title="VibeVoice, one speaker",
        rank=10,
        available=True,
        params={
            "text": TemplateParam(schema={"type": "string"}, required=True),
            "voice": TemplateParam(schema={"type": "string"}),
            "seed": TemplateParam(schema={"type": "integer"}),
        },
    ),
    "vibevoice-multi": PublishedTemplate(
        name="vibevoice-multi",
        type=JobType.TTS,
        title="VibeVoice, up to four speakers",
        rank=5,
        available=True,
        params={
            "text": TemplateParam(schema={"type": "string"}, required=True),
            "voices": TemplateParam(
                schema={"type": "array", "items": {"type": "string"}, "maxItems": 4},
                required=True,
            ),
        },
    ),
}


def publish(redis: Redis, templates: dict[str, PublishedTemplate], field: str = "gpu-1") -> None:
    """This worker's field of TEMPLATES_KEY, as CataloguePublisher writes it."""
    seconds, micros = redis.time()
    entry = PublishedTemplates(
        published_at=seconds + micros / 1e6, stale_after_s=180, templates=templates
    )
    redis.hset(TEMPLATES_KEY, field, entry.model_dump_json(by_alias=True))


def jpeg_bytes(width: int = 32, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, format="JPEG")
    return out.getvalue()


FLAC = b"fLaC\x00\x00\x00\x22" + bytes(34) + b"genstack test audio"


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer().start()
    server.add("/cat.png", png_bytes(16, 16))
    server.add("/cat.jpg", jpeg_bytes())
    server.add("/page.png", b"<!doctype html><title>not an image</title>")
    server.add("/truncated.png", png_bytes(64, 64)[:60])
    server.add("/big.png", png_bytes(8, 8) + bytes(MAX_MB * 2**20))
    server.add("/clip.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64))
    server.add("/voice.wav", wav_bytes(0.1))
    server.redirects["/moved.png"] = "/cat.png"
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(module_redis: RedisServer, module_dir: Path) -> Iterator[RunningGateway]:
    running = start_gateway(
        module_redis.url,
        module_dir,
        env={
            "GATEWAY_API_KEYS": f"{API_KEY},{OTHER_KEY}",
            "GATEWAY_NODE_CATALOGUE_CACHE_S": "0",
            # The file server's address only: 127.0.0.2 is loopback and stays refused.
            "GATEWAY_INPUT_ALLOW_NETWORKS": "127.0.0.1/32",
            "GATEWAY_INPUT_MAX_MB": str(MAX_MB),
            "GATEWAY_INPUT_TIMEOUT_S": "5",
            "GATEWAY_IMAGE_WAIT_S": "20",
            "GATEWAY_SPEECH_WAIT_S": "20",
            "XTTS_URL": "http://127.0.0.1:9",
            "CHATTERBOX_URL": "http://127.0.0.1:9",
        },
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30) as client:
        yield client


@pytest.fixture
def other(gateway: RunningGateway) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {OTHER_KEY}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def redis(module_redis: RedisServer) -> Iterator[Redis]:
    client = module_redis.client()
    client.delete(TEMPLATES_KEY)
    try:
        yield client
    finally:
        client.delete(TEMPLATES_KEY)


@pytest.fixture
def published(redis: Redis) -> Redis:
    publish(redis, TEMPLATES)
    return redis


@pytest.fixture(scope="module")
def store(module_redis: RedisServer) -> JobStore:
    return JobStore(connect(module_redis.url))


@pytest.fixture(scope="module")
def storage(module_dir: Path) -> LocalStorage:
    return LocalStorage(module_dir / "storage")  # the gateway's STORAGE_DIR


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.api_key, max_retries=0)


def refused(response: httpx.Response, code: str, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == (code, param), error
    message: str = error["message"]
    return message


def finish(
    store: JobStore, storage: LocalStorage, job_id: str, outputs: list[tuple[str, bytes, str]]
) -> Job:
    """What the worker and the uploader do: run the job, store its files, record them."""
    store.set_status(job_id, JobStatus.RUNNING)
    store.set_status(job_id, JobStatus.UPLOADING)
    job: Job | None = None
    for name, data, content_type in outputs:
        key = f"outputs/2026-01-01/{job_id}/{name}"
        digest = hashlib.sha256(data).hexdigest()
        storage.put_bytes(key, data, sha256=digest, content_type=content_type)
        artifact = Artifact(key=key, content_type=content_type, bytes=len(data), sha256=digest)
        job = store.add_artifact(job_id, artifact, complete_at=len(outputs))
    assert job is not None and job.status == JobStatus.SUCCEEDED
    return job


def image_job(**params: Any) -> dict[str, Any]:
    return {"type": "image", "params": {"prompt": "a cat", **params}}


def video_job(**params: Any) -> dict[str, Any]:
    return {"type": "video", "params": {"prompt": "waves", **params}}


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


def while_a_job_is_made(
    store: JobStore,
    storage: LocalStorage,
    call: Callable[[], T],
    outputs: list[tuple[str, bytes, str]],
) -> tuple[T, Job]:
    """``call`` (a request that waits for its job) in a thread; the job it makes is finished
    with ``outputs`` as soon as it is queued. Returns the call's answer and the job."""
    before = {job.id for job in store.recent(limit=50)}
    with ThreadPoolExecutor(1) as pool:
        future: Future[T] = pool.submit(call)
        deadline = time.monotonic() + 20
        while True:
            fresh = [j for j in store.recent(limit=50) if j.id not in before]
            if fresh:
                break
            if future.done():
                future.result()  # raises what the call raised
                raise AssertionError("the call answered without making a job")
            assert time.monotonic() < deadline, "no job was queued"
            time.sleep(0.05)
        (job,) = fresh
        finish(store, storage, job.id, outputs)
        return future.result(timeout=20), store.require(job.id)


# GET /v1/templates -----------------------------------------------------------------------
def test_with_nothing_published_the_list_is_empty_and_says_why(
    http: httpx.Client, redis: Redis
) -> None:
    response = http.get("/v1/templates")
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["published"] is False and listing["data"] == []
    assert "no ComfyUI worker has published" in listing["message"]
    assert listing["defaults"] == {"image": None, "video": None, "tts": None}


def test_the_list_has_each_template_its_schema_and_the_defaults(
    http: httpx.Client, published: Redis
) -> None:
    listing = http.get("/v1/templates").json()
    assert listing["published"] is True and listing["message"] is None
    assert listing["defaults"] == {"image": "txt2img", "video": "wan-5b", "tts": "vibevoice"}
    by_name = {t["name"]: t for t in listing["data"]}
    assert set(by_name) == set(TEMPLATES)
    # The higher-ranked 14B cannot run here, so the 5B is the default; it says why.
    wan14 = by_name["wan-14b"]
    assert wan14["available"] is False and "WAN_720P" in wan14["reason"]
    assert wan14["default"] is False and by_name["wan-5b"]["default"] is True
    schema = by_name["txt2img"]["params"]
    assert schema["type"] == "object" and schema["required"] == ["prompt"]
    assert schema["properties"]["checkpoint"] == {
        "type": "string",
        "enum": ["sdxl.safetensors", "pony.safetensors"],
        "default": "sdxl.safetensors",
    }
    frames = by_name["wan-5b"]["params"]["properties"]["frames"]
    assert frames["x-step"] == {"from": 1, "step": 4} and frames["maximum"] == 121
    assert frames["default"] == 121
    videos = http.get("/v1/templates", params={"type": "video"}).json()
    assert [t["name"] for t in videos["data"]] == ["wan-14b", "wan-5b"]
    assert videos["defaults"] == {"video": "wan-5b"}
    refused(http.get("/v1/templates", params={"type": "workflow"}), "invalid_value", "type")


def test_a_stale_publication_counts_as_none(http: httpx.Client, redis: Redis) -> None:
    seconds, _ = redis.time()
    old = PublishedTemplates(published_at=seconds - 600, stale_after_s=180, templates=TEMPLATES)
    redis.hset(TEMPLATES_KEY, "gone", old.model_dump_json(by_alias=True))
    assert http.get("/v1/templates").json()["published"] is False
    assert http.post("/v1/jobs", json=image_job(template="nope")).status_code == 201


# submission checks ---------------------------------------------------------------------
def test_nothing_published_lets_typed_jobs_through(http: httpx.Client, redis: Redis) -> None:
    assert created(http.post("/v1/jobs", json=video_job(template="anything", frames=50)))


@pytest.mark.parametrize(
    ("body", "code", "param", "fragment"),
    [
        (image_job(template="nope"), "unknown_template", "params.template", "txt2img"),
        (image_job(template="wan-5b"), "wrong_template_type", "params.template", "video"),
        (video_job(template="wan-14b"), "template_unavailable", "params.template", "WAN_720P"),
        (image_job(strength=0.5), "unsupported_param", "params.strength", "takes: checkpoint"),
        (video_job(frames=50), "invalid_value", "params.frames", "1 plus a multiple of 4"),
        (video_job(frames=125), "invalid_value", "params.frames", "at most 121"),
        (image_job(width=3000), "invalid_value", "params.width", "at most 2048"),
        (video_job(width=848), "invalid_value", "params.width", "multiple of 32"),
        (
            image_job(checkpoint="other.safetensors"),
            "invalid_value",
            "params.checkpoint",
            "one of: sdxl.safetensors, pony.safetensors",
        ),
        (image_job(template="qwen-edit"), "missing_param", "params.image", "needs 'image'"),
        (
            {"type": "tts", "backend": "comfyui", "params": {"input": "hi", "cfg": 2.0}},
            "unsupported_param",
            "params.cfg",
            "vibevoice",
        ),
    ],
)
def test_a_job_the_templates_refuse_is_a_400_naming_the_param_and_nothing_is_queued(
    http: httpx.Client,
    published: Redis,
    body: dict[str, Any],
    code: str,
    param: str,
    fragment: str,
) -> None:
    queued = published.llen("comfyui")
    message = refused(http.post("/v1/jobs", json=body), code, param)
    assert fragment in message
    assert published.llen("comfyui") == queued


def test_every_problem_is_told_and_the_first_is_the_param(
    http: httpx.Client, published: Redis
) -> None:
    body = video_job(frames=2, fps=8, seed=1, steps=2, cfg=1.0, shift=1.0)
    message = refused(http.post("/v1/jobs", json=body), "unsupported_param", "params.seed")
    assert message.count(";") == 4 and message.endswith("(and 1 more)")


def test_a_job_the_templates_take_is_queued_with_its_params(
    http: httpx.Client, published: Redis
) -> None:
    job = created(http.post("/v1/jobs", json=video_job(frames=49, width=832, height=480)))
    assert job["params"] == {"prompt": "waves", "frames": 49, "width": 832, "height": 480}
    assert job["backend"] == "comfyui"
    multi = {
        "type": "tts",
        "backend": "comfyui",
        "params": {"text": "[1]: hi [2]: hello", "template": "vibevoice-multi", "voices": ["a"]},
    }
    assert created(http.post("/v1/jobs", json=multi))["params"]["voices"] == ["a"]
    # tts without a backend still goes to xtts (GATEWAY_DEFAULT_TTS_BACKEND), unchecked here.
    plain = {"type": "tts", "params": {"input": "x", "voice": "alice"}}
    xtts = created(http.post("/v1/jobs", json=plain))
    assert xtts["backend"] == "xtts"


# input files ---------------------------------------------------------------------------
def test_an_image_url_is_fetched_checked_and_stored_under_the_jobs_inputs(
    http: httpx.Client, published: Redis, files: FileServer, storage: LocalStorage
) -> None:
    body = video_job(image=f"{files.url}/cat.jpg")
    job = created(http.post("/v1/jobs", json=body))
    key = job["params"]["image"]
    assert key == f"inputs/{job['id']}/image.jpg"
    info = storage.head(key)
    assert info is not None and info.content_type == "image/jpeg"
    assert (storage.root / key).read_bytes() == files.files["/cat.jpg"]
    # The job as queued (the worker's copy) holds the key, not the URL.
    assert json.dumps(http.get(f"/v1/jobs/{job['id']}").json()["params"]).count(key) == 1
    assert len(files.requests_for("/cat.jpg", "GET")) == 1


@pytest.mark.parametrize(
    ("url", "code", "fragment"),
    [
        ("{files}/page.png", "invalid_input", "not an image"),
        ("{files}/truncated.png", "invalid_input", "image"),
        ("{files}/big.png", "input_too_large", "larger than"),
        ("{files}/missing.png", "input_unavailable", "404"),
        ("{files}/moved.png", "input_unavailable", "redirects"),
        ("http://10.1.2.3/cat.png", "input_url_refused", "GATEWAY_INPUT_ALLOW_NETWORKS"),
        ("http://127.0.0.2:9/cat.png", "input_url_refused", "loopback"),
    ],
)
def test_an_input_url_that_cannot_be_used_is_a_400_naming_the_param(
    http: httpx.Client,
    published: Redis,
    files: FileServer,
    storage: LocalStorage,
    url: str,
    code: str,
    fragment: str,
) -> None:
    queued = published.llen("comfyui")
    body = video_job(image=url.format(files=files.url))
    message = refused(http.post("/v1/jobs", json=body), code, "params.image")
    assert fragment in message
    assert published.llen("comfyui") == queued


def test_a_refused_job_leaves_no_stored_input(
    http: httpx.Client, published: Redis, files: FileServer, storage: LocalStorage
) -> None:
    inputs = storage.root / "inputs"
    before = set(inputs.rglob("*.png"))
    # The image is fine; the second input is not: nothing of the job stays.
    body = image_job(template="qwen-edit", image=f"{files.url}/cat.png", image2="nope/x.png")
    refused(http.post("/v1/jobs", json=body), "input_not_found", "params.image2")
    assert len(files.requests_for("/cat.png", "GET")) >= 1
    assert set(inputs.rglob("*.png")) == before


def test_a_video_and_voices_by_url_are_stored_too(
    http: httpx.Client, published: Redis, files: FileServer, storage: LocalStorage
) -> None:
    multi = {
        "type": "tts",
        "backend": "comfyui",
        "params": {
            "text": "[1]: hi [2]: hello",
            "template": "vibevoice-multi",
            "voices": ["alice", f"{files.url}/voice.wav"],
            "response_format": "flac",
        },
    }
    job = created(http.post("/v1/jobs", json=multi))
    assert job["params"]["voices"] == ["alice", f"inputs/{job['id']}/voices-1.wav"]
    info = storage.head(job["params"]["voices"][1])
    assert info is not None and info.content_type == "audio/wav"
    not_audio = {**multi, "params": {**multi["params"], "voices": [f"{files.url}/cat.png"]}}
    refused(http.post("/v1/jobs", json=not_audio), "invalid_input", "params.voices.0")


def test_a_stored_key_must_be_the_callers_own(
    http: httpx.Client,
    other: httpx.Client,
    published: Redis,
    files: FileServer,
    store: JobStore,
    storage: LocalStorage,
) -> None:
    theirs = created(other.post("/v1/jobs", json=image_job()))
    done = finish(store, storage, theirs["id"], [("image-0.png", png_bytes(), "image/png")])
    artifact = done.artifacts[0].key
    # Someone else's artifact is refused exactly like one that does not exist.
    message = refused(
        http.post("/v1/jobs", json=video_job(image=artifact)), "input_not_found", "params.image"
    )
    assert "of yours" in message
    refused(
        http.post("/v1/jobs", json=video_job(image="outputs/2026-01-01/nope/x.png")),
        "input_not_found",
        "params.image",
    )
    # Its owner may use it, and the inputs stored for its own jobs.
    mine = created(other.post("/v1/jobs", json=video_job(image=artifact)))
    assert mine["params"]["image"] == artifact
    fetched = created(other.post("/v1/jobs", json=video_job(image=f"{files.url}/cat.png")))
    stored = fetched["params"]["image"]
    assert created(other.post("/v1/jobs", json=video_job(image=stored)))
    refused(http.post("/v1/jobs", json=video_job(image=stored)), "input_not_found", "params.image")
    # An artifact of the wrong kind is refused by what it is.
    audio = created(
        other.post(
            "/v1/jobs", json={"type": "tts", "backend": "comfyui", "params": {"input": "hi"}}
        )
    )
    speech = finish(store, storage, audio["id"], [("speech.flac", FLAC, "audio/flac")])
    message = refused(
        other.post("/v1/jobs", json=video_job(image=speech.artifacts[0].key)),
        "invalid_input",
        "params.image",
    )
    assert "audio/flac, not image" in message


# OpenAI routes ------------------------------------------------------------------------
def test_images_generate_on_a_template_names_size_and_model_in_its_400s(
    client: openai.OpenAI, published: Redis, store: JobStore, storage: LocalStorage
) -> None:
    result, job = while_a_job_is_made(
        store,
        storage,
        lambda: client.images.generate(prompt="a fox", model="txt2img", size="512x768", n=1),
        [("image-0.png", png_bytes(4, 4), "image/png")],
    )
    assert job.params == {
        "prompt": "a fox",
        "width": 512,
        "height": 768,
        "template": "txt2img",
    }
    assert result.data[0].url is not None
    with pytest.raises(openai.BadRequestError) as too_wide:
        client.images.generate(prompt="x", model="txt2img", size="4096x1024")
    assert too_wide.value.body["param"] == "size"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as odd:
        client.images.generate(prompt="x", size="1000x1004")
    assert odd.value.body["param"] == "size"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as edit_only:
        client.images.generate(prompt="x", model="qwen-edit")
    assert edit_only.value.body["param"] == "image"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.images.generate(prompt="x", model="wan-5b")  # a video template
    assert "txt2img" in unknown.value.message


def test_images_edit_with_the_openai_client_runs_the_edit_template(
    client: openai.OpenAI, published: Redis, store: JobStore, storage: LocalStorage
) -> None:
    photo, sketch = png_bytes(24, 16), jpeg_bytes()
    result, job = while_a_job_is_made(
        store,
        storage,
        lambda: client.images.edit(
            image=[("photo.png", photo, "image/png"), ("sketch.jpg", sketch, "image/jpeg")],
            prompt="make the sky purple",
            size="512x512",
            response_format="b64_json",
        ),
        [("image-0.png", png_bytes(8, 8, shade=3), "image/png")],
    )
    assert job.params["template"] == "qwen-edit" and job.params["prompt"] == "make the sky purple"
    assert job.params["image"] == f"inputs/{job.id}/image.png"
    assert job.params["image2"] == f"inputs/{job.id}/image2.jpg"
    assert (job.params["width"], job.params["height"]) == (512, 512)
    assert (storage.root / job.params["image"]).read_bytes() == photo
    assert (storage.root / job.params["image2"]).read_bytes() == sketch
    (image,) = result.data
    assert image.b64_json is not None
    assert base64.b64decode(image.b64_json) == png_bytes(8, 8, shade=3)


def test_images_edit_refusals_name_the_field(
    client: openai.OpenAI, http: httpx.Client, redis: Redis, store: JobStore
) -> None:
    # Nothing published: no edit template can be chosen.
    with pytest.raises(openai.BadRequestError) as unpublished:
        client.images.edit(image=("a.png", png_bytes(), "image/png"), prompt="x")
    assert unpublished.value.body["param"] == "model"  # type: ignore[index]
    publish(redis, TEMPLATES)
    queued = redis.llen("comfyui")
    with pytest.raises(openai.BadRequestError) as mask:
        client.images.edit(
            image=("a.png", png_bytes(), "image/png"),
            mask=("m.png", png_bytes(), "image/png"),
            prompt="x",
        )
    assert mask.value.body["param"] == "mask"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as not_image:
        client.images.edit(image=("a.png", b"GIF? no: text", "image/png"), prompt="x")
    assert not_image.value.body["param"] == "image"  # type: ignore[index]
    too_big = png_bytes() + bytes(MAX_MB * 2**20)
    with pytest.raises(openai.BadRequestError) as big:
        client.images.edit(image=("a.png", too_big, "image/png"), prompt="x")
    assert big.value.body["code"] == "input_too_large"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as no_image_param:
        client.images.edit(image=("a.png", png_bytes(), "image/png"), prompt="x", model="txt2img")
    assert no_image_param.value.body["param"] == "image"  # type: ignore[index]
    assert "does not take 'image'" in no_image_param.value.message
    no_file = http.post("/v1/images/edits", data={"prompt": "x"}, files={"other": ("a", b"x")})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "image"
    as_json = http.post("/v1/images/edits", json={"prompt": "x", "image": "a.png"})
    assert as_json.status_code == 400
    assert as_json.json()["error"]["code"] == "invalid_content_type"
    assert redis.llen("comfyui") == queued


def test_speech_on_vibevoice_is_a_job_answered_whole(
    client: openai.OpenAI,
    http: httpx.Client,
    published: Redis,
    store: JobStore,
    storage: LocalStorage,
    files: FileServer,
) -> None:
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["vibevoice"]["streaming"] is False
    assert models["vibevoice"]["response_formats"] == ["mp3", "opus", "flac"]
    assert models["xtts"]["streaming"] is True
    # A model server takes voice names only: a URL or a hidden file's name stays a 400.
    for voice in (f"{files.url}/voice.wav", ".hidden"):
        proxied = http.post(
            "/v1/audio/speech", json={"model": "xtts", "input": "x", "voice": voice}
        )
        assert proxied.status_code == 400 and proxied.json()["error"]["param"] == "voice"
    answer, job = while_a_job_is_made(
        store,
        storage,
        lambda: client.audio.speech.create(
            model="vibevoice",
            voice=f"{files.url}/voice.wav",
            input="Hello from VibeVoice.",
            response_format="flac",
            extra_body={"seed": 7},
        ),
        [("speech.flac", FLAC, "audio/flac")],
    )
    assert job.type == JobType.TTS and job.backend == "comfyui"
    assert job.params == {
        "input": "Hello from VibeVoice.",
        "voice": f"inputs/{job.id}/voice.wav",
        "response_format": "flac",
        "seed": 7,
    }
    assert answer.content == FLAC
    assert answer.response.headers["content-type"] == "audio/flac"
    assert answer.response.headers["x-genstack-job-id"] == job.id
    # A library voice, the default format.
    _, named = while_a_job_is_made(
        store,
        storage,
        lambda: client.audio.speech.create(model="vibevoice", voice="alice", input="Hi."),
        [("speech.mp3", b"ID3\x04" + bytes(32), "audio/mpeg")],
    )
    assert named.params == {"input": "Hi.", "voice": "alice", "response_format": "mp3"}
    # A tts template by name as the model, with its own fields.
    body = {"model": "vibevoice-multi", "input": "[1]: Hi. [2]: Hello.", "voices": ["a", "b"]}
    spoken, multi = while_a_job_is_made(
        store,
        storage,
        lambda: http.post("/v1/audio/speech", json=body),
        [("speech.mp3", b"ID3\x04" + bytes(32), "audio/mpeg")],
    )
    assert spoken.status_code == 200 and spoken.headers["content-type"] == "audio/mpeg"
    assert multi.params == {
        "template": "vibevoice-multi",
        "input": "[1]: Hi. [2]: Hello.",
        "voices": ["a", "b"],
        "response_format": "mp3",
    }
    queued = published.llen("comfyui")
    with pytest.raises(openai.BadRequestError) as wav:
        client.audio.speech.create(
            model="vibevoice", voice="alice", input="x", response_format="wav"
        )
    assert wav.value.body["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as seed:
        client.audio.speech.create(
            model="vibevoice-multi", voice="alice", input="x", extra_body={"seed": 1}
        )
    assert seed.value.body["param"] == "voice"  # type: ignore[index]
    assert published.llen("comfyui") == queued
