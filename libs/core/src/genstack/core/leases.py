"""Job leases: which worker holds which job, so a job whose worker died is run again soon.

Celery with Redis redelivers an unacknowledged task only after the visibility timeout, which
must stay above the longest job (hours). A pod that dies mid-job would leave its job
``running`` that long. So a worker holds a lease on the job it runs (a Redis key with a short
TTL that a thread renews) and lists the job in its queue's active set; a reaper in every
worker of the queue dispatches again any active job whose lease has lapsed. The lease also
keeps two deliveries of one job from running side by side: the second one finds it held.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from genstack.core.jobstore import JobStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0

# Renew or drop the lease only if it is still ours (it may have lapsed and been taken).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseHeldError(RuntimeError):
    """Another worker holds the job's lease: it is running there."""


class JobLeases:
    def __init__(
        self, store: JobStore, *, queue: str, owner: str, ttl_s: float = DEFAULT_LEASE_S
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.queue = queue
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)

    def lease_key(self, job_id: str) -> str:
        return f"{self.store.job_key(job_id)}:lease"

    @property
    def active_key(self) -> str:
        return f"{self.store.prefix}:queue:{self.queue}:active"

    def acquire(self, job_id: str) -> bool:
        if not self.redis.set(self.lease_key(job_id), self.owner, nx=True, px=self.ttl_ms):
            return False
        self.redis.sadd(self.active_key, job_id)
        return True

    def renew(self, job_id: str) -> bool:
        return bool(self.redis.eval(_RENEW, 1, self.lease_key(job_id), self.owner, self.ttl_ms))

    def release(self, job_id: str) -> None:
        # Leave the active set first: a reaper never sees a finished job without a lease.
        self.redis.srem(self.active_key, job_id)
        self.redis.eval(_RELEASE, 1, self.lease_key(job_id), self.owner)

    @contextlib.contextmanager
    def held(self, job_id: str) -> Iterator[threading.Event]:
        """Hold the lease while the block runs; the event is set if it is lost (Redis away
        longer than the TTL, the job taken over): the holder should stop."""
        if not self.acquire(job_id):
            raise LeaseHeldError(job_id)
        lost = threading.Event()
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.ttl_ms / 3000):
                try:
                    if not self.renew(job_id):
                        lost.set()
                        log.warning("job lease lost", extra={"job_id": job_id})
                        return
                except Exception as exc:  # Redis away for a moment: try again next round
                    log.warning("job lease renewal failed", extra={"err": str(exc)})

        beat = threading.Thread(target=renew, name=f"lease-{job_id[:8]}", daemon=True)
        beat.start()
        try:
            yield lost
        finally:
            done.set()
            beat.join()
            with contextlib.suppress(Exception):
                self.release(job_id)

    def orphans(self) -> list[str]:
        """Active jobs of this queue whose worker stopped renewing their lease."""
        members = cast(list[str], list(cast(Any, self.redis.smembers(self.active_key))))
        if not members:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in members:
            pipe.exists(self.lease_key(job_id))
        alive = pipe.execute()
        return [job_id for job_id, held in zip(members, alive, strict=True) if not held]

    def forget(self, job_id: str) -> bool:
        """Take an orphan off the active set; True for the one caller that did (so only one
        reaper dispatches it again)."""
        return bool(self.redis.srem(self.active_key, job_id))


class Reaper:
    """Every ``interval_s``, dispatch again the jobs of this queue whose worker died."""

    def __init__(
        self, leases: JobLeases, redispatch: Callable[[str], None], *, interval_s: float = 15.0
    ) -> None:
        self.leases = leases
        self.redispatch = redispatch
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sweep(self) -> list[str]:
        revived: list[str] = []
        for job_id in self.leases.orphans():
            job = self.leases.store.get(job_id)
            if not self.leases.forget(job_id) or job is None or job.status.terminal:
                continue
            self.redispatch(job_id)
            revived.append(job_id)
            log.warning(
                "job's worker died; dispatched again",
                extra={"job_id": job_id, "queue": self.leases.queue, "status": job.status},
            )
        return revived

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:
                log.exception("job reaper sweep failed")
