"""Webhooks over real HTTP: Standard Webhooks signatures, retries, one delivery per job
across replicas and restarts. A cancelled job is a finished job, so cancelling queued jobs
makes terminal transitions here without a worker."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from genstack.testing.redis_server import RedisServer
from genstack.testing.stack import RunningGateway, start_gateway
from genstack.testing.webhook_receiver import Receiver

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    try:
        yield running
    finally:
        running.stop()


def hook_env(**extra: str) -> dict[str, str]:
    return {
        "GATEWAY_WEBHOOK_SECRET": SECRET,
        "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        "GATEWAY_WEBHOOK_RETRY_BASE_S": "0.2",
        "GATEWAY_WEBHOOK_RETRY_MAX_S": "0.5",
        "GATEWAY_WEBHOOK_CLAIM_IDLE_S": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(module_redis: RedisServer, module_dir: Path) -> Iterator[RunningGateway]:
    running = start_gateway(module_redis.url, module_dir, env=hook_env())
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def module_gateway_stopped(
    gateway: RunningGateway, redis_url: str, log_dir: Path
) -> Iterator[None]:
    """Replicas share one consumer group: a test that needs its own replica to get the
    deliveries stops the module's gateway meanwhile (and starts it again after)."""
    gateway.process.stop()
    try:
        yield
    finally:
        restarted = start_gateway(redis_url, log_dir, env=hook_env(), name="gw-restarted")
        gateway.process = restarted.process
        gateway.url = restarted.url


def cancelled_job(gateway: RunningGateway, webhook_url: str) -> dict[str, Any]:
    body = {"type": "tts", "params": {"input": "hi", "voice": "alice"}, "webhook_url": webhook_url}
    created = httpx.post(f"{gateway.url}/v1/jobs", json=body, headers=gateway.headers)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["webhook_url"] == webhook_url
    cancelled = httpx.delete(f"{gateway.url}/v1/jobs/{job['id']}", headers=gateway.headers)
    assert cancelled.json()["status"] == "cancelled"
    return dict(cancelled.json())


def test_signed_the_standard_webhooks_way(gateway: RunningGateway, receiver: Receiver) -> None:
    job = cancelled_job(gateway, receiver.url("/signed"))
    (delivery,) = receiver.wait("/signed", 1)
    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "job.cancelled"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["status"] == "cancelled"
    assert delivery.headers["webhook-id"] == f"job_{job['id']}_cancelled"
    assert delivery.headers["content-type"] == "application/json"
    # A forged or replayed-with-changes body does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(delivery.body.replace(b"cancelled", b"succeeded"), delivery.headers)


def test_a_failing_receiver_is_retried_and_the_job_is_unaffected(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    receiver.plan["/flaky"] = [500, 500, 503]
    job = cancelled_job(gateway, receiver.url("/flaky"))
    deliveries = receiver.wait("/flaky", 4)
    assert [d.status for d in deliveries] == [500, 500, 503, 200]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1  # one message, retried
    gaps = [b.at - a.at for a, b in itertools.pairwise(deliveries)]
    assert all(gap < 5 for gap in gaps)
    after = httpx.get(f"{gateway.url}/v1/jobs/{job['id']}", headers=gateway.headers).json()
    assert after["status"] == "cancelled" and after["updated_at"] == job["updated_at"]
    time.sleep(1.0)
    assert len(receiver.to("/flaky")) == 4  # nothing more once it got through


def test_a_receiver_that_never_answers_well_is_given_up_and_the_gateway_carries_on(
    module_redis: RedisServer, module_dir: Path, receiver: Receiver, gateway: RunningGateway
) -> None:
    with module_gateway_stopped(gateway, module_redis.url, module_dir):
        giving_up = start_gateway(
            module_redis.url,
            module_dir,
            env=hook_env(GATEWAY_WEBHOOK_MAX_ATTEMPTS="3"),
            name="gw-giveup",
        )
        try:
            given_up(giving_up, receiver)
        finally:
            giving_up.stop()


def given_up(gateway: RunningGateway, receiver: Receiver) -> None:
    receiver.plan["/down"] = [500] * 10
    cancelled_job(gateway, receiver.url("/down"))
    assert len(receiver.wait("/down", 3)) == 3
    time.sleep(1.5)
    assert len(receiver.to("/down")) == 3
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200
    metrics = httpx.get(f"{gateway.url}/metrics", headers=gateway.headers).text
    assert 'genstack_gateway_webhooks_total{result="gave_up"} 1.0' in metrics


def test_one_delivery_per_job_across_replicas(
    module_redis: RedisServer, module_dir: Path, receiver: Receiver, gateway: RunningGateway
) -> None:
    second = start_gateway(module_redis.url, module_dir, env=hook_env(), name="gw-replica")
    try:
        jobs = [cancelled_job(g, receiver.url("/replicas")) for g in (gateway, second) * 5]
        deliveries = receiver.wait("/replicas", len(jobs))
        time.sleep(1.5)  # room for a duplicate to show up
        ids = [d.headers["webhook-id"] for d in receiver.to("/replicas")]
        assert sorted(ids) == sorted(f"job_{j['id']}_cancelled" for j in jobs)
        assert len(deliveries) == len(jobs)
    finally:
        second.stop()


def test_a_delivery_survives_the_death_of_its_replica(
    module_redis: RedisServer, module_dir: Path, receiver: Receiver, gateway: RunningGateway
) -> None:
    with module_gateway_stopped(gateway, module_redis.url, module_dir):
        survived(module_redis.url, module_dir, receiver)


def survived(redis_url: str, module_dir: Path, receiver: Receiver) -> None:
    first = start_gateway(
        redis_url,
        module_dir,
        env=hook_env(GATEWAY_WEBHOOK_RETRY_BASE_S="30", GATEWAY_WEBHOOK_RETRY_MAX_S="30"),
        name="gw-dies",
    )
    later: RunningGateway | None = None
    try:
        receiver.plan["/survives"] = [500]
        job = cancelled_job(first, receiver.url("/survives"))
        receiver.wait("/survives", 1)  # first attempt failed; the next is 30 s away
        first.process.kill()  # SIGKILL: no chance to hand anything over
        later = start_gateway(redis_url, module_dir, env=hook_env(), name="gw-takes-over")
        deliveries = receiver.wait("/survives", 2, timeout=30)
        assert [d.status for d in deliveries] == [500, 200]
        assert deliveries[1].headers["webhook-id"] == f"job_{job['id']}_cancelled"
        Webhook(SECRET).verify(deliveries[1].body, deliveries[1].headers)
    finally:
        first.stop()
        if later is not None:
            later.stop()


def test_webhooks_need_a_secret(module_redis: RedisServer, module_dir: Path) -> None:
    gateway = start_gateway(module_redis.url, module_dir, name="gw-nosecret")
    try:
        body = {
            "type": "tts",
            "params": {"input": "x", "voice": "a"},
            "webhook_url": "https://8.8.8.8/h",
        }
        response = httpx.post(f"{gateway.url}/v1/jobs", json=body, headers=gateway.headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "webhooks_disabled"
    finally:
        gateway.stop()


def test_payload_is_compact_json(gateway: RunningGateway, receiver: Receiver) -> None:
    cancelled_job(gateway, receiver.url("/shape"))
    (delivery,) = receiver.wait("/shape", 1)
    payload = json.loads(delivery.body)
    assert set(payload) == {"type", "timestamp", "data"}
    assert set(payload["data"]) >= {"id", "status", "artifacts", "error", "params"}
