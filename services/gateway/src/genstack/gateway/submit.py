"""Accepting a job: idempotency, the queue depth limit, the record and its queue message.

On the event loop, no thread, one Redis round trip (two with an Idempotency-Key): a script
checks the queue's depth, then writes the job's record exactly as ``JobStore.create`` does
(its commands, recorded from ``JobStore.create_commands``) and pushes the job's Celery
message, all atomically. So the depth limit is exact under any concurrency, and there is
never a record without its message or a message without its record. The message is the one
``dispatch_job`` would publish (genstack.core's ``job_message``, filled in from a template by
messages.py), pushed where Celery's Redis transport keeps the queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from genstack.core.jobs import Job
from genstack.core.jobstore import AsyncJobStore
from genstack.gateway.messages import JobMessages

log = logging.getLogger(__name__)

# KEYS[1]: the queue. ARGV: the depth limit, the message, then the record's commands, each
# as its argument count followed by its arguments. Answers -1 - depth when the queue is
# full, 0 when the job id is taken (nothing written), else the queue's new length.
SUBMIT_SCRIPT = """
local depth = redis.call('LLEN', KEYS[1])
if depth >= tonumber(ARGV[1]) then return -1 - depth end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local result = redis.call(unpack(ARGV, i + 1, i + n))
  if i == 3 and not result then return 0 end
  i = i + n + 1
end
return redis.call('LPUSH', KEYS[1], ARGV[2])
"""

REPLAY_WAIT_S = 2.0
# Removes the first queue message that names the job (job ids are unique, so only its own
# message can); one atomic step, so a worker never pops half a removal.
WITHDRAW_SCRIPT = """
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.find(item, ARGV[1], 1, true) then
    return redis.call('LREM', KEYS[1], 1, item)
  end
end
return 0
"""
# A claim whose job is missing this long after it was made belongs to a job that is gone.
CLAIM_STALE_S = 30.0


class QueueFullError(Exception):
    def __init__(self, queue: str, depth: int, limit: int) -> None:
        super().__init__(f"queue {queue} holds {depth} jobs (limit {limit})")
        self.queue = queue
        self.depth = depth
        self.limit = limit


class DispatchError(Exception):
    """The record was written but the queue message could not be sent."""


class IdempotencyConflictError(Exception):
    pass


class IdempotencyInProgressError(Exception):
    pass


@dataclass(frozen=True)
class Idempotency:
    key: str  # the Redis key (scoped by API key)
    fingerprint: str  # of the request body

    @classmethod
    def of(cls, prefix: str, scope: str, header: str, body: dict[str, Any]) -> Idempotency:
        digest = hashlib.sha256(header.encode()).hexdigest()
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return cls(
            key=f"{prefix}:idem:{scope}:{digest}",
            fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
        )


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False: an earlier request with the same Idempotency-Key made it


class JobSubmitter:
    def __init__(
        self, redis: AsyncRedis, store: AsyncJobStore, celery: Celery, *, idempotency_ttl_s: int
    ) -> None:
        self.redis = redis
        self.store = store  # its create commands, its TTL, its records
        self.messages = JobMessages(celery)  # Celery's message format; nothing sent through it
        # A key must not outlive its job, or a replay would find nothing to return.
        self.idempotency_ttl_s = min(idempotency_ttl_s, store.ttl_s)
        self._script = redis.register_script(SUBMIT_SCRIPT)

    async def submit(
        self, job: Job, queue: str, max_depth: int, idem: Idempotency | None = None
    ) -> Submission:
        if idem is not None:
            claim = json.dumps(
                {"job_id": job.id, "fingerprint": idem.fingerprint, "at": time.time()}
            )
            if not await self.redis.set(idem.key, claim, nx=True, ex=self.idempotency_ttl_s):
                replay = await self._replay(idem)
                if replay is not None:
                    return replay
                # The key outlived its job (expired or deleted): this request takes it over.
                await self.redis.set(idem.key, claim, ex=self.idempotency_ttl_s)
        recorder = self.redis.pipeline(transaction=True)  # records commands, never runs
        self.store.create_commands(recorder, job)
        args: list[Any] = [max_depth, self.messages.render(job.id, queue)]
        for command, _options in recorder.command_stack:
            args += [len(command), *command]
        try:
            result = int(await self._script(keys=[queue], args=args))
        except (RedisError, OSError) as exc:
            log.warning(
                "job could not be queued", extra={"job_id": job.id, "queue": queue, "err": str(exc)}
            )
            await self._release(idem)
            raise DispatchError(str(exc)) from exc
        if result < 0:
            await self._release(idem)
            raise QueueFullError(queue, -result - 1, max_depth)
        if result == 0:
            raise DispatchError(f"job id {job.id} is taken")
        return Submission(job, created=True)

    async def withdraw(self, job_id: str, queue: str) -> bool:
        """Take a cancelled job's message off its queue, so it holds no place there (the
        worker would skip it anyway); False if a worker has taken it already."""
        removed: Any = await self.redis.eval(WITHDRAW_SCRIPT, 1, queue, job_id)
        return bool(removed)

    async def _replay(self, idem: Idempotency) -> Submission | None:
        """The job an earlier request with this key made; None if that job is gone."""
        deadline = time.monotonic() + REPLAY_WAIT_S
        while True:
            raw: Any = await self.redis.get(idem.key)
            if raw is None:
                return None
            claim = json.loads(raw)
            if claim["fingerprint"] != idem.fingerprint:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was used with a different request body"
                )
            job = await self.store.get(claim["job_id"])
            if job is not None:
                return Submission(job, created=False)
            if time.time() - float(claim.get("at", 0)) > CLAIM_STALE_S:
                return None  # the job expired or was deleted
            # The first request holds the key but has not written its record yet.
            if time.monotonic() >= deadline:
                raise IdempotencyInProgressError(
                    "a request with this Idempotency-Key is still being processed"
                )
            await asyncio.sleep(0.02)

    async def _release(self, idem: Idempotency | None) -> None:
        if idem is not None:
            try:
                await self.redis.delete(idem.key)
            except (RedisError, OSError):  # the claim then expires on its own
                log.warning("idempotency claim not released", exc_info=True)
