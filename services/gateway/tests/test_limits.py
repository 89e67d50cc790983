"""Backpressure (429 + Retry-After at the queue depth limit) and job expiry (JOB_TTL_S)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from genstack.core.redis_client import connect
from genstack.testing.redis_server import RedisServer
from genstack.testing.sse import read_sse
from genstack.testing.stack import start_gateway

TTS = {"type": "tts", "params": {"input": "hi", "voice": "alice"}}


def test_full_queue_answers_429_with_retry_after(
    module_redis: RedisServer, module_dir: Path
) -> None:
    gateway = start_gateway(
        module_redis.url,
        module_dir,
        env={"GATEWAY_MAX_QUEUE_DEPTH": "3", "GATEWAY_RETRY_AFTER_S": "7"},
        name="gw-backpressure",
    )
    redis = connect(module_redis.url)
    redis.delete("tts.xtts", "comfyui")
    try:
        with httpx.Client(base_url=gateway.url, headers=gateway.headers) as http:
            accepted = [http.post("/v1/jobs", json=TTS).status_code for _ in range(3)]
            assert accepted == [201, 201, 201]
            refused = http.post("/v1/jobs", json=TTS)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "7"
            assert refused.json()["error"]["code"] == "queue_full"
            assert redis.llen("tts.xtts") == 3  # the refused job was never queued
            # Queues are limited one by one: another backend's queue still takes jobs.
            image = {"type": "image", "params": {"prompt": "a cat"}}
            assert http.post("/v1/jobs", json=image).status_code == 201
            # A refused request with an Idempotency-Key does not burn the key.
            keyed = {"Idempotency-Key": "after-the-rush"}
            assert http.post("/v1/jobs", json=TTS, headers=keyed).status_code == 429
            redis.rpop("tts.xtts")  # a worker takes one
            assert http.post("/v1/jobs", json=TTS, headers=keyed).status_code == 201
            assert http.post("/v1/jobs", json=TTS).status_code == 429
            metrics = http.get("/metrics").text
            assert (
                'genstack_gateway_jobs_rejected_total{queue="tts.xtts",reason="queue_full"} 3.0'
                in metrics
            )
    finally:
        gateway.stop()
        redis.delete("tts.xtts", "comfyui")


def test_jobs_and_their_events_expire(module_redis: RedisServer, module_dir: Path) -> None:
    gateway = start_gateway(module_redis.url, module_dir, env={"JOB_TTL_S": "2"}, name="gw-ttl")
    try:
        with httpx.Client(base_url=gateway.url, headers=gateway.headers) as http:
            job = http.post("/v1/jobs", json=TTS, headers={"Idempotency-Key": "ttl"}).json()
            assert http.get(f"/v1/jobs/{job['id']}").status_code == 200
            redis = connect(module_redis.url)
            assert 0 < redis.ttl(f"genstack:job:{job['id']}") <= 2
            assert 0 < redis.ttl(f"genstack:job:{job['id']}:events") <= 2
            time.sleep(3.2)
            assert http.get(f"/v1/jobs/{job['id']}").status_code == 404
            assert http.get(f"/v1/jobs/{job['id']}/events").status_code == 404
            assert not redis.exists(f"genstack:job:{job['id']}:events")
            listed = http.get("/v1/jobs", params={"limit": 100}).json()["data"]
            assert job["id"] not in [j["id"] for j in listed]
            # The idempotency key went with its job: the same key makes a new job now.
            again = http.post("/v1/jobs", json=TTS, headers={"Idempotency-Key": "ttl"})
            assert again.status_code == 201 and again.json()["id"] != job["id"]
    finally:
        gateway.stop()
        connect(module_redis.url).delete("tts.xtts")


def test_a_redis_outage_is_a_503_and_the_gateway_recovers(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    gateway = start_gateway(redis.url, tmp_path, name="gw-outage")
    try:
        with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30) as http:
            job = http.post("/v1/jobs", json=TTS).json()
            redis.stop()
            for method, path, body in (
                ("POST", "/v1/jobs", TTS),
                ("GET", f"/v1/jobs/{job['id']}", None),
                ("GET", "/v1/jobs", None),
                ("DELETE", f"/v1/jobs/{job['id']}", None),
            ):
                response = http.request(method, path, json=body)
                assert response.status_code == 503, (method, path, response.text)
                assert response.json()["error"]["code"] in {
                    "redis_unavailable",
                    "queue_unavailable",
                }
            assert httpx.get(f"{gateway.url}/readyz").status_code == 503
            assert httpx.get(f"{gateway.url}/healthz").status_code == 200
            redis.start()  # same port, same AOF: the job is still there
            deadline = time.monotonic() + 20
            while httpx.get(f"{gateway.url}/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert http.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
            assert http.post("/v1/jobs", json=TTS).status_code == 201
        assert (
            "Traceback" not in gateway.process.logs() or "unhandled" not in gateway.process.logs()
        )
    finally:
        gateway.stop()
        redis.close()


def test_event_streams_end_after_their_maximum_and_resume(
    module_redis: RedisServer, module_dir: Path
) -> None:
    gateway = start_gateway(
        module_redis.url, module_dir, env={"GATEWAY_SSE_MAX_S": "1"}, name="gw-sse-max"
    )
    try:
        with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30) as http:
            job = http.post("/v1/jobs", json=TTS).json()
            started = time.monotonic()
            with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
                first = list(read_sse(response))
            assert 0.9 < time.monotonic() - started < 5
            assert [e.json()["status"] for e in first] == ["queued"]
            http.delete(f"/v1/jobs/{job['id']}")
            resumed = {"Last-Event-ID": first[-1].id or ""}
            with http.stream("GET", f"/v1/jobs/{job['id']}/events", headers=resumed) as response:
                rest = list(read_sse(response))
            assert [e.json()["status"] for e in rest if e.event == "status"] == ["cancelled"]
    finally:
        gateway.stop()
        connect(module_redis.url).delete("tts.xtts")
