"""Sends each finished job's webhook once, whichever replica sees it, across restarts.

Every terminal transition is an entry of the job store's ``terminal_key`` stream. All
gateway replicas read it in one consumer group, so each entry goes to one replica; the
entry is acknowledged only when its delivery is over (delivered, or given up after the
last retry). An entry a dead replica left unacknowledged is claimed by a live one once it
has been idle ``claim_idle_s``; a live replica keeps its own in-flight entries fresh, so
no other replica steals a delivery that is merely waiting for its next retry.

Receivers deduplicate by ``webhook-id`` (one id per job and state), which covers the one
duplicate this allows: a replica dying between a delivery and its acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError, ResponseError

from genstack.core.backoff import backoff_s
from genstack.core.jobs import Job
from genstack.core.jobstore import terminal_job_id
from genstack.core.ssrf import UnsafeUrlError, UrlPolicy
from genstack.gateway.metrics import GatewayMetrics
from genstack.gateway.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

GROUP = "gateway-webhooks"
READ_BATCH = 64
READ_BLOCK_MS = 2000
MAX_TRACKED = 10_000  # deliveries in flight or waiting for a retry, per replica
USER_AGENT = "genstack-gateway/0.1 (Standard Webhooks)"

JobLoader = Callable[[str], Awaitable[Job | None]]
QueueOf = Callable[[Job], str]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_s: float = 2.0
    max_s: float = 900.0
    timeout_s: float = 10.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def payload(job: Job) -> bytes:
    """``{type, timestamp, data}``: the envelope Standard Webhooks recommends."""
    envelope = {
        "type": f"job.{job.status.value}",
        "timestamp": job.updated_at.isoformat(),
        "data": json.loads(job.model_dump_json()),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


class WebhookNotifier:
    def __init__(
        self,
        redis: AsyncRedis,
        *,
        stream: str,
        load_job: JobLoader,
        signer: WebhookSigner | None,
        policy: UrlPolicy,
        http: httpx.AsyncClient,
        metrics: GatewayMetrics,
        retry: RetryPolicy,
        concurrency: int = 32,
        claim_idle_s: float = 60.0,
        queue_of: QueueOf | None = None,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.load_job = load_job
        self.signer = signer
        self.policy = policy
        self.http = http
        self.metrics = metrics
        self.retry = retry
        self.claim_idle_s = claim_idle_s
        self.queue_of = queue_of
        self.consumer = consumer or consumer_name()
        self._slots = asyncio.Semaphore(concurrency)
        self._tracked: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    # lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled; Redis outages are waited out."""
        loops = [self._read_loop(), self._keepalive_loop()]
        try:
            await asyncio.gather(*loops)
        finally:
            self._stopping.set()
            for task in list(self._tracked.values()):
                task.cancel()
            await asyncio.gather(*self._tracked.values(), return_exceptions=True)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_loop(self) -> None:
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                room = MAX_TRACKED - len(self._tracked)
                if room <= 0:
                    await asyncio.sleep(0.5)
                    continue
                await self._claim_abandoned(min(room, READ_BATCH))
                reply: Any = await self.redis.xreadgroup(
                    GROUP,
                    self.consumer,
                    {self.stream: ">"},
                    count=min(room, READ_BATCH),
                    block=READ_BLOCK_MS,
                )
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        self._track(entry_id, fields)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                group_ready = False
                log.warning("webhook stream unreadable, retrying", extra={"err": str(exc)})
                await asyncio.sleep(1.0)

    async def _claim_abandoned(self, count: int) -> None:
        """Take entries other (dead) consumers left unacknowledged for too long."""
        reply: Any = await self.redis.xautoclaim(
            self.stream,
            GROUP,
            self.consumer,
            min_idle_time=int(self.claim_idle_s * 1000),
            start_id="0-0",
            count=count,
        )
        for entry_id, fields in reply[1]:
            if fields is not None and entry_id not in self._tracked:
                log.info("claimed an abandoned webhook", extra={"entry": entry_id})
                self._track(entry_id, fields)

    async def _keepalive_loop(self) -> None:
        """Reset the idle time of the entries this replica holds (see the module doc)."""
        interval = max(self.claim_idle_s / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            held: list[Any] = list(self._tracked)
            if not held:
                continue
            try:
                await self.redis.xclaim(
                    self.stream,
                    GROUP,
                    self.consumer,
                    min_idle_time=0,
                    message_ids=held,
                    justid=True,
                )
            except (RedisError, OSError) as exc:
                log.warning("webhook keep-alive failed", extra={"err": str(exc)})

    def _track(self, entry_id: str, fields: dict[str, str]) -> None:
        task = asyncio.create_task(self._handle(entry_id, fields), name=f"webhook-{entry_id}")
        self._tracked[entry_id] = task
        task.add_done_callback(lambda _: self._tracked.pop(entry_id, None))

    # one entry ----------------------------------------------------------------------------
    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        job_id = terminal_job_id(fields)
        try:
            job = await self.load_job(job_id) if job_id else None
            if job is not None:
                if self.queue_of is not None:
                    self.metrics.jobs_finished.labels(self.queue_of(job), job.status.value).inc()
                if job.webhook_url:
                    await self._deliver(job)
            await self._ack(entry_id)
        except asyncio.CancelledError:
            raise  # left pending: claimed again after a restart
        except Exception:
            # Never lose the entry to a bug: it stays pending and is claimed again later.
            log.exception("webhook handling failed", extra={"job_id": job_id})

    async def _ack(self, entry_id: str) -> None:
        while True:
            try:
                await self.redis.xack(self.stream, GROUP, entry_id)
            except (RedisError, OSError) as exc:
                log.warning("webhook ack failed, retrying", extra={"err": str(exc)})
                await asyncio.sleep(1.0)
            else:
                return

    async def _deliver(self, job: Job) -> None:
        assert job.webhook_url is not None
        if self.signer is None:
            log.warning("webhook skipped: no GATEWAY_WEBHOOK_SECRET", extra={"job_id": job.id})
            self.metrics.webhooks.labels("refused").inc()
            return
        msg_id = f"job_{job.id}_{job.status.value}"
        body = payload(job)
        for attempt in range(self.retry.max_attempts):
            if attempt:
                await asyncio.sleep(backoff_s(attempt - 1, self.retry.base_s, self.retry.max_s))
            try:
                target = await self.policy.check(job.webhook_url)
            except UnsafeUrlError as exc:
                log.warning("webhook refused", extra={"job_id": job.id, "err": str(exc)})
                self.metrics.webhooks.labels("refused").inc()
                return
            headers = {
                **self.signer.headers(msg_id, int(time.time()), body),
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "host": target.host_header,
            }
            extensions = {"sni_hostname": target.host} if target.parts.scheme == "https" else {}
            outcome = "error"
            try:
                async with self._slots:
                    response = await self.http.post(
                        target.pinned_url(),
                        content=body,
                        headers=headers,
                        extensions=extensions,
                        timeout=self.retry.timeout_s,
                        follow_redirects=False,
                    )
                outcome = f"{response.status_code // 100}xx"
            except httpx.HTTPError as exc:
                log.info(
                    "webhook attempt failed",
                    extra={"job_id": job.id, "attempt": attempt + 1, "err": repr(exc)},
                )
            self.metrics.webhook_attempts.labels(outcome).inc()
            if outcome == "2xx":
                self.metrics.webhooks.labels("delivered").inc()
                log.info("webhook delivered", extra={"job_id": job.id, "attempts": attempt + 1})
                return
            if outcome != "error":
                log.info(
                    "webhook receiver refused",
                    extra={
                        "job_id": job.id,
                        "attempt": attempt + 1,
                        "status": response.status_code,
                    },
                )
        self.metrics.webhooks.labels("gave_up").inc()
        log.warning(
            "webhook given up", extra={"job_id": job.id, "attempts": self.retry.max_attempts}
        )
