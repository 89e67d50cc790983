"""The gateway over real HTTP against a real Redis: auth, limits, validation, the job API.

No worker consumes the queues here, so jobs stay queued unless a test moves them (as a
worker would, through genstack.core's JobStore)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genstack.core.jobs import JobStatus
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.testing.redis_server import RedisServer
from genstack.testing.sse import read_sse
from genstack.testing.stack import API_KEY, RunningGateway, start_gateway

OTHER_KEY = "gs-other-key-0123456789abcdef"
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
JOB_LIMIT = 64 * 1024
BODY_LIMIT = 8 * 1024


@pytest.fixture(scope="module")
def gateway(module_redis: RedisServer, module_dir: Path) -> Iterator[RunningGateway]:
    running = start_gateway(
        module_redis.url,
        module_dir,
        env={
            "GATEWAY_API_KEYS": f"{API_KEY},{OTHER_KEY}",
            "GATEWAY_MAX_JOB_BODY_BYTES": str(JOB_LIMIT),
            "GATEWAY_MAX_BODY_BYTES": str(BODY_LIMIT),
            "GATEWAY_WEBHOOK_SECRET": SECRET,
            "XTTS_URL": "http://127.0.0.1:9",  # nothing listens: speech answers 503
            "CHATTERBOX_URL": "http://127.0.0.1:9",
        },
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def store(module_redis: RedisServer) -> JobStore:
    return JobStore(connect(module_redis.url))


def assert_openai_error(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


def tts(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"type": "tts", "params": {"input": text, "voice": "alice"}, **extra}


# auth ---------------------------------------------------------------------------------------
def every_route(gateway: RunningGateway) -> list[tuple[str, str]]:
    schema = httpx.get(f"{gateway.url}/openapi.json", headers=gateway.headers).json()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = path.replace("{job_id}", "0" * 32).replace("{key}", "a/b.wav")
        concrete = concrete.replace("{model_id}", "xtts")
        routes += [(method.upper(), concrete) for method in operations]
    return [*routes, ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]


def raw_request(
    gateway: RunningGateway, method: str, path: str, header: bytes
) -> tuple[int, bytes]:
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n".encode()
            + header
            + b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_every_route_but_the_probes_needs_a_key(gateway: RunningGateway) -> None:
    routes = every_route(gateway)
    assert len(routes) >= 14
    wrong = {"Authorization": "Bearer gs-wrong-key-0123456789abcdef"}
    for method, path in routes:
        url = f"{gateway.url}{path}"
        if path in {"/healthz", "/readyz"}:
            assert httpx.request(method, url).status_code == 200
            continue
        for headers, code in (
            ({}, "missing_api_key"),
            (wrong, "invalid_api_key"),
            ({"Authorization": "Bearer"}, "missing_api_key"),
            ({"Authorization": f"Basic {API_KEY}"}, "missing_api_key"),
        ):
            response = httpx.request(method, url, headers=headers, json={})
            assert_openai_error(response, 401, code)
            assert response.headers["www-authenticate"].startswith("Bearer")
        # An empty bearer ("Bearer " and nothing after it) is no key; httpx will not send it.
        status, body = raw_request(gateway, method, path, b"Authorization: Bearer \r\n")
        assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key"
        # With a key the same request gets past auth (whatever the route makes of it).
        response = httpx.request(method, url, headers=gateway.headers, json={}, timeout=10)
        assert response.status_code != 401, (method, path)


def test_both_keys_work_and_the_key_never_shows_in_the_log(gateway: RunningGateway) -> None:
    for key in (API_KEY, OTHER_KEY):
        response = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
    httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": "Bearer gs-leak-me-0123456789"})
    log = gateway.process.logs()
    assert API_KEY not in log and OTHER_KEY not in log and "gs-leak-me" not in log


# limits and validation ----------------------------------------------------------------------
def test_body_size_limits(http: httpx.Client) -> None:
    big = tts("x" * JOB_LIMIT)
    assert_openai_error(http.post("/v1/jobs", json=big), 413, "request_too_large")
    speech = {"model": "xtts", "input": "x" * BODY_LIMIT, "voice": "alice"}
    assert_openai_error(http.post("/v1/audio/speech", json=speech), 413, "request_too_large")

    # Without Content-Length (chunked), the limit holds while the body streams in.
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "tts", "params": {"voice": "alice", "input": "'
        for _ in range(JOB_LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}}'

    response = http.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert_openai_error(response, 413, "request_too_large")
    # Just under the limit is fine (the job's own text limit is larger).
    ok = tts("x" * (JOB_LIMIT - 200))
    assert http.post("/v1/jobs", json=ok).status_code == 201


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ('{"type": "tts", "params": ', None, "not valid JSON"),
        ("[1, 2]", None, "object"),
        ('{"type": "sing"}', "type", "type"),
        ('{"type": "tts", "params": "hello"}', "params", "params"),
        ('{"type": "tts", "params": {"input": 5, "voice": "a"}}', "params.input", "params.input"),
        ('{"type": "tts", "params": {"voice": "a"}}', "params.input", "Field required"),
        (
            '{"type": "tts", "params": {"input": "x", "voice": "a", "speed": "x"}}',
            "params.speed",
            "speed",
        ),
        ('{"type": "tts", "params": {"input": "x", "voice": "../x"}}', "params.voice", "plain"),
        ('{"type": "image", "backend": "xtts", "params": {}}', "type", "does not take image"),
        ('{"type": "tts", "backend": "comfyui", "params": {}}', "params.input", "required"),
        ('{"type": "tts", "backend": "nope", "params": {}}', "backend", "unknown backend"),
        ('{"type": "tts", "params": {"input": "x"}, "extra": 1}', "extra", "extra"),
    ],
)
def test_malformed_and_mistyped_bodies_get_a_400_saying_what(
    http: httpx.Client, body: str, param: str | None, fragment: str
) -> None:
    response = http.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(response, 400)
    assert fragment in error["message"]
    if param is not None:
        assert error["param"] == param


def test_form_bodies_are_told_to_send_json(http: httpx.Client) -> None:
    response = http.post("/v1/jobs", data={"type": "tts"})
    error = assert_openai_error(response, 400, "invalid_content_type")
    assert "application/json" in error["message"]
    # No Content-Type at all: read as JSON.
    raw = json.dumps(tts()).encode()
    assert http.post("/v1/jobs", content=raw, headers={"content-type": ""}).status_code == 201


def test_bad_path_and_query_values(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/jobs/not a job!"), 400)
    assert_openai_error(http.get("/v1/jobs", params={"limit": 0}), 400)
    assert_openai_error(http.get("/v1/jobs", params={"limit": "many"}), 400)
    assert_openai_error(http.get("/v1/jobs", params={"after": "0" * 32}), 400)
    assert_openai_error(http.get(f"/v1/jobs/{'0' * 32}"), 404, "job_not_found")
    assert_openai_error(http.delete(f"/v1/jobs/{'0' * 32}"), 404, "job_not_found")
    assert_openai_error(http.get(f"/v1/jobs/{'0' * 32}/events"), 404, "job_not_found")


# the job API --------------------------------------------------------------------------------
def test_submit_read_and_list(http: httpx.Client, module_redis: RedisServer) -> None:
    created = http.post("/v1/jobs", json=tts("first", backend="chatterbox"))
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["backend"] == "chatterbox" and job["type"] == "tts"
    assert job["params"]["response_format"] == "mp3"  # the params model's defaults filled in
    assert "exaggeration" not in job["params"]  # unset engine fields: the engine's defaults
    assert http.get(f"/v1/jobs/{job['id']}").json() == job
    # The job's Celery message waits in the backend's queue, its task id the job id.
    redis = connect(module_redis.url)
    messages = [json.loads(m) for m in redis.lrange("tts.chatterbox", 0, -1)]
    assert any(m["headers"]["id"] == job["id"] for m in messages)
    assert all(m["headers"]["task"] == "genstack.job.run" for m in messages)


def test_list_pages_newest_first_without_gaps(http: httpx.Client) -> None:
    made = [http.post("/v1/jobs", json=tts(f"page {i}")).json()["id"] for i in range(5)]
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
        page = http.get("/v1/jobs", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [job["id"] for job in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(seen) == len(set(seen))
    positions = [seen.index(job_id) for job_id in made]
    assert positions == sorted(positions, reverse=True)  # newest first


def test_idempotency_key(http: httpx.Client, gateway: RunningGateway) -> None:
    body = tts("only once")
    first = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    again = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = http.post(
        "/v1/jobs", json=tts("something else"), headers={"Idempotency-Key": "order-42"}
    )
    assert_openai_error(other, 409, "idempotency_key_reused")
    # Keys are per API key: another client's "order-42" is its own.
    theirs = httpx.post(
        f"{gateway.url}/v1/jobs",
        json=body,
        headers={"Authorization": f"Bearer {OTHER_KEY}", "Idempotency-Key": "order-42"},
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_a_key_sees_only_its_own_jobs(
    http: httpx.Client,
    gateway: RunningGateway,
    module_redis: RedisServer,
    module_dir: Path,
    store: JobStore,
) -> None:
    mine = http.post("/v1/jobs", json=tts("mine")).json()
    other = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=10
    )
    with other:
        theirs = other.post("/v1/jobs", json=tts("theirs")).json()
        assert mine["owner"] and theirs["owner"] and mine["owner"] != theirs["owner"]
        assert API_KEY not in json.dumps(mine)  # an id of the key, never the key
        # Another key's job answers exactly like a missing one, and cannot be cancelled.
        for response in (
            other.get(f"/v1/jobs/{mine['id']}"),
            other.delete(f"/v1/jobs/{mine['id']}"),
            other.get(f"/v1/jobs/{mine['id']}/events"),
        ):
            assert_openai_error(response, 404, "job_not_found")
        assert store.require(mine["id"]).status == JobStatus.QUEUED
        listed_by_other = {
            j["id"] for j in other.get("/v1/jobs", params={"limit": 100}).json()["data"]
        }
        assert theirs["id"] in listed_by_other and mine["id"] not in listed_by_other
    listed_by_me = {j["id"] for j in http.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    assert mine["id"] in listed_by_me and theirs["id"] not in listed_by_me
    assert http.get(f"/v1/jobs/{mine['id']}").status_code == 200

    # GATEWAY_SHARED_JOBS: one pool of jobs for every key (a gateway on the same Redis).
    shared = start_gateway(
        module_redis.url,
        module_dir,
        name="gateway-shared",
        env={"GATEWAY_API_KEYS": f"{API_KEY},{OTHER_KEY}", "GATEWAY_SHARED_JOBS": "true"},
    )
    try:
        with httpx.Client(
            base_url=shared.url, headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=10
        ) as client:
            assert client.get(f"/v1/jobs/{mine['id']}").json()["id"] == mine["id"]
            listed = {j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]}
            assert {mine["id"], theirs["id"]} <= listed
    finally:
        shared.stop()


def test_concurrent_requests_with_one_idempotency_key_make_one_job(
    gateway: RunningGateway,
) -> None:
    body = tts("race")
    ids: list[str] = []

    def post() -> None:
        response = httpx.post(
            f"{gateway.url}/v1/jobs",
            json=body,
            headers={**gateway.headers, "Idempotency-Key": "race-1"},
            timeout=10,
        )
        assert response.status_code in (200, 201), response.text
        ids.append(response.json()["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_cancel_a_queued_job(http: httpx.Client, module_redis: RedisServer) -> None:
    job = http.post("/v1/jobs", json=tts("never")).json()
    redis = connect(module_redis.url)

    def queued_messages() -> int:
        return sum(job["id"] in m for m in redis.lrange("tts.xtts", 0, -1))

    assert queued_messages() == 1
    depth = redis.llen("tts.xtts")
    cancelled = http.delete(f"/v1/jobs/{job['id']}")
    # The message leaves the queue at once: it holds no place against the depth limit.
    assert queued_messages() == 0 and redis.llen("tts.xtts") == depth - 1
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert http.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    # Cancelling again changes nothing.
    assert http.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        events = list(read_sse(response))
    assert [e.event for e in events] == ["status", "status"]
    assert [e.json()["status"] for e in events] == ["queued", "cancelled"]


def test_events_stream_in_order_and_resume_after_last_event_id(
    http: httpx.Client, store: JobStore
) -> None:
    job_id = http.post("/v1/jobs", json=tts("followed")).json()["id"]

    def worker() -> None:  # what a backend worker does to a job, through the same JobStore
        time.sleep(0.3)
        store.set_status(job_id, JobStatus.RUNNING)
        for step in range(1, 6):
            time.sleep(0.05)
            store.set_progress(job_id, step / 10, f"step {step}")
        time.sleep(0.5)  # the client reconnects in this pause
        for step in range(6, 9):
            store.set_progress(job_id, step / 10, f"step {step}")
        store.set_status(job_id, JobStatus.FAILED, error=None)

    thread = threading.Thread(target=worker)
    thread.start()
    first: list[Any] = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in read_sse(response):
            first.append(event)
            if event.event == "progress" and event.json()["message"] == "step 3":
                break  # the client goes away mid-stream
    last_id = first[-1].id
    with http.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": last_id}
    ) as response:
        rest = list(read_sse(response))
    thread.join()
    events = first + rest
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    messages = [e.json().get("message") for e in events if e.event == "progress"]
    assert messages == [f"step {i}" for i in range(1, 9)], "an event was lost"
    statuses = [e.json()["status"] for e in events if e.event == "status"]
    assert statuses == ["queued", "running", "failed"]
    assert rest[-1].event == "status"  # the stream ended with the terminal state
    # A client that already saw the end gets nothing more, at once.
    started = time.monotonic()
    with http.stream(
        "GET", f"/v1/jobs/{job_id}/events", params={"last_event_id": rest[-1].id}
    ) as response:
        assert list(read_sse(response)) == []
    assert time.monotonic() - started < 5


def test_webhook_urls_must_not_reach_inside(http: httpx.Client) -> None:
    for url in (
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://8.8.8.8/hook",
    ):
        error = assert_openai_error(
            http.post("/v1/jobs", json=tts(webhook_url=url)), 400, "unsafe_webhook_url"
        )
        assert error["param"] == "webhook_url"


# operations ---------------------------------------------------------------------------------
def test_request_ids(http: httpx.Client) -> None:
    generated = http.get("/v1/models").headers["x-request-id"]
    assert len(generated) == 32
    given = http.get("/v1/models", headers={"X-Request-ID": "client-id-1"})
    assert given.headers["x-request-id"] == "client-id-1"
    odd = http.get("/v1/models", headers={"X-Request-ID": "bad id\twith spaces"})
    assert odd.headers["x-request-id"] != "bad id\twith spaces"


def test_metrics(http: httpx.Client) -> None:
    http.post("/v1/jobs", json=tts("counted"))
    text = http.get("/metrics").text
    assert 'genstack_gateway_requests_total{method="POST",route="/v1/jobs",status="201"}' in text
    assert 'genstack_gateway_queue_depth{queue="tts.xtts"}' in text
    assert 'genstack_gateway_jobs{queue="tts.xtts",status="queued"}' in text
    assert "genstack_gateway_request_latency_seconds_bucket" in text
    assert (
        'genstack_gateway_jobs_submitted_total{backend="xtts",queue="tts.xtts",type="tts"}' in text
    )


def test_openapi_documents_bearer_auth_and_400s(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    post = schema["paths"]["/v1/jobs"]["post"]
    assert "422" not in post["responses"] and "400" in post["responses"]
    assert http.get("/docs").status_code == 200


def test_a_backend_that_is_not_enabled_is_a_400_not_a_queued_job(
    module_redis: RedisServer, module_dir: Path, store: JobStore
) -> None:
    # compose.yaml enables only the backends it runs; an image job must not wait in a queue
    # that no worker consumes.
    running = start_gateway(
        module_redis.url,
        module_dir,
        name="gateway-xtts-only",
        env={"GATEWAY_ENABLED_BACKENDS": "xtts", "XTTS_URL": "http://127.0.0.1:9"},
    )
    try:
        with httpx.Client(base_url=running.url, headers=running.headers, timeout=10) as client:
            before = module_redis.client().llen("comfyui")
            job = client.post("/v1/jobs", json={"type": "image", "params": {"prompt": "a cat"}})
            assert_openai_error(job, 400, "unsupported_type")
            image = client.post("/v1/images/generations", json={"prompt": "a cat"})
            assert_openai_error(image, 400, "unsupported_type")
            named = client.post(
                "/v1/images/generations", json={"prompt": "a cat", "model": "dall-e-3"}
            )
            assert_openai_error(named, 404, "model_not_found")
            assert module_redis.client().llen("comfyui") == before
            models = {m["id"] for m in client.get("/v1/models").json()["data"]}
            assert "xtts" in models and "chatterbox" not in models
    finally:
        running.stop()
