"""Job records and per-job event streams in Redis.

A job is one JSON value; every change is a WATCH/MULTI transaction that also appends an
event to the job's stream, so a reader of the stream never sees a state the record skipped.
Both keys expire ``ttl_s`` after the last change.

Every transition into a terminal state is also appended, in the same transaction, to one
stream for all jobs (``terminal_key``): the gateway reads it with a consumer group to send
webhooks, so a notification survives a gateway restart and is sent by one replica only.

The key layout, the record and stream-entry formats are this module's alone (``JobLayout``,
``parse_job``, ``parse_events``, ``terminal_job_id``). Workers and the uploader use the
blocking :class:`JobStore`; the gateway, on its event loop, reads through
:class:`AsyncJobStore` (same layout, redis.asyncio) and queues :meth:`create_commands` in
its own submit script.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from genstack.core.jobs import (
    ALLOWED_TRANSITIONS,
    Artifact,
    Job,
    JobError,
    JobEvent,
    JobStatus,
    utcnow,
)

# Commands queued on a pipeline are buffered the same way by both clients.
AnyPipeline = Pipeline | AsyncPipeline

DEFAULT_TTL_S = 7 * 24 * 3600
STREAM_MAXLEN = 10_000
TERMINAL_STREAM_MAXLEN = 100_000


class JobNotFoundError(KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"job {self.job_id} not found"


class InvalidTransitionError(ValueError):
    def __init__(self, job_id: str, current: JobStatus, wanted: JobStatus) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {wanted}")
        self.current = current
        self.wanted = wanted


def parse_job(raw: str | bytes | None) -> Job | None:
    """A job record as stored under :meth:`JobLayout.job_key` (None: no record)."""
    return None if raw is None else Job.model_validate_json(raw)


def parse_events(rows: list[tuple[str, dict[str, str]]]) -> list[JobEvent]:
    """Entries of a job's event stream (XRANGE / one stream of an XREAD reply)."""
    return [
        JobEvent(id=event_id, type=fields["type"], data=json.loads(fields.get("data", "{}")))
        for event_id, fields in rows
    ]


def terminal_job_id(fields: Mapping[str, str]) -> str | None:
    """The job an entry of :attr:`JobLayout.terminal_key` is about."""
    return fields.get("job_id") or None


def _last_events(reply: Any) -> list[tuple[str, dict[str, str]]]:
    # An XREAD of one stream: [[key, rows]], or nothing when it timed out.
    return cast(list[tuple[str, dict[str, str]]], reply[0][1]) if reply else []


class JobLayout:
    """Where and how jobs live in Redis: key names, the TTL and the commands that create a
    job. Shared by :class:`JobStore` and :class:`AsyncJobStore`, so both read and write the
    same layout."""

    def __init__(self, *, prefix: str = "genstack", ttl_s: int = DEFAULT_TTL_S) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s

    # keys ---------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:jobs"

    def owner_index_key(self, owner: str) -> str:
        """The jobs of one owner, newest last (the same scores as :attr:`index_key`)."""
        return f"{self.prefix}:jobs:owner:{owner}"

    @property
    def terminal_key(self) -> str:
        return f"{self.prefix}:jobs:terminal"

    def listing_key(self, owner: str | None) -> str:
        """The index a listing reads: every job's, or one owner's."""
        return self.index_key if owner is None else self.owner_index_key(owner)

    # writes, as commands ------------------------------------------------------------------
    def create_commands(self, pipe: AnyPipeline, job: Job) -> None:
        """Queue what :meth:`create` writes on ``pipe`` (redis-py or redis.asyncio, made
        with ``transaction=True``), for a caller that adds its own commands to the same
        transaction (the gateway: the job's queue message). The first result is falsy when
        a job with this id exists already."""
        pipe.set(self.job_key(job.id), job.model_dump_json(), nx=True, ex=self.ttl_s)
        pipe.zadd(self.index_key, {job.id: job.created_at.timestamp()})
        if job.owner is not None:
            pipe.zadd(self.owner_index_key(job.owner), {job.id: job.created_at.timestamp()})
        self._add_event(pipe, job.id, "status", {"status": job.status, "progress": job.progress})

    @staticmethod
    def _status_data(job: Job) -> dict[str, Any]:
        data: dict[str, Any] = {"status": job.status, "progress": job.progress}
        if job.error is not None:
            data["error"] = job.error.model_dump()
        return data

    def _add_event(self, pipe: AnyPipeline, job_id: str, event_type: str, data: Any) -> None:
        key = self.events_key(job_id)
        pipe.xadd(
            key,
            {"type": event_type, "data": json.dumps(data, default=str)},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )
        pipe.expire(key, self.ttl_s)


class JobStore(JobLayout):
    """Job records and events through a blocking client (workers, uploader, gateway threads)."""

    def __init__(self, redis: Redis, *, prefix: str = "genstack", ttl_s: int = DEFAULT_TTL_S):
        super().__init__(prefix=prefix, ttl_s=ttl_s)
        self.redis = redis

    # reads --------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        return parse_job(cast(str | None, self.redis.get(self.job_key(job_id))))

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def events(
        self, job_id: str, *, after: str = "0-0", count: int = 100, block_ms: int | None = None
    ) -> list[JobEvent]:
        """Events strictly after stream id ``after``; blocks up to ``block_ms`` if none."""
        key = self.events_key(job_id)
        if block_ms is None:
            return parse_events(cast(Any, self.redis.xrange(key, min=f"({after}", count=count)))
        reply: Any = self.redis.xread({key: after}, count=count, block=block_ms)
        return parse_events(_last_events(reply))

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.cancel_key(job_id)))

    def recent(
        self, *, limit: int = 20, before: float | None = None, owner: str | None = None
    ) -> list[Job]:
        """Newest first; ``before`` is a created_at timestamp cursor (exclusive); ``owner``
        lists only that owner's jobs."""
        top = f"({before}" if before is not None else "+inf"
        index = self.listing_key(owner)
        ids: list[str] = cast(
            Any, self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit)
        )
        jobs: list[Job] = []
        expired: list[str] = []
        for job_id in ids:
            job = self.get(job_id)
            if job is None:
                expired.append(job_id)
            else:
                jobs.append(job)
        if expired:  # records expire on their own; the index is trimmed lazily
            self.redis.zrem(index, *expired)
        return jobs

    # writes -------------------------------------------------------------------------------
    def create(self, job: Job) -> Job:
        pipe = self.redis.pipeline(transaction=True)
        self.create_commands(pipe, job)
        created, *_ = pipe.execute()
        if not created:
            raise ValueError(f"job {job.id} already exists")
        return job

    def set_status(
        self,
        job_id: str,
        status: JobStatus,
        *,
        progress: float | None = None,
        error: JobError | None = None,
    ) -> Job:
        def change(job: Job) -> tuple[Job, list[tuple[str, dict[str, Any]]]]:
            if job.status == status:
                return job, []
            if status not in ALLOWED_TRANSITIONS[job.status]:
                raise InvalidTransitionError(job_id, job.status, status)
            job.status = status
            if progress is not None:
                job.progress = progress
            elif status == JobStatus.SUCCEEDED:
                job.progress = 1.0
            if error is not None:
                job.error = error
            return job, [("status", self._status_data(job))]

        return self._mutate(job_id, change)

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once (its worker skips it), a running or uploading
        one by raising a flag its worker polls (it stops its backend and ends the job
        ``cancelled``). A finished job is returned unchanged."""

        def change(job: Job) -> tuple[Job, list[tuple[str, dict[str, Any]]]]:
            if job.status == JobStatus.QUEUED:
                job.status = JobStatus.CANCELLED
                return job, [("status", self._status_data(job))]
            return job, []

        job = self._mutate(job_id, change)
        if not job.status.terminal:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.cancel_key(job_id), "1", ex=self.ttl_s)
            self._add_event(pipe, job_id, "cancel_requested", {})
            pipe.execute()
        return job

    def set_progress(self, job_id: str, progress: float, message: str | None = None) -> Job:
        def change(job: Job) -> tuple[Job, list[tuple[str, dict[str, Any]]]]:
            if job.status.terminal:
                return job, []
            job.progress = min(max(progress, 0.0), 1.0)
            data: dict[str, Any] = {"progress": job.progress}
            if message:
                data["message"] = message
            return job, [("progress", data)]

        return self._mutate(job_id, change)

    def add_artifact(
        self, job_id: str, artifact: Artifact, *, complete_at: int | None = None
    ) -> Job:
        """Idempotent by key: a redelivered upload replaces, never duplicates, its artifact.

        ``complete_at``: the number of artifacts the job makes; when an ``uploading`` job
        reaches it, it becomes ``succeeded`` in the same transaction (so exactly one
        uploader task finishes the job, whichever file arrives last)."""

        def change(job: Job) -> tuple[Job, list[tuple[str, dict[str, Any]]]]:
            events: list[tuple[str, dict[str, Any]]] = []
            existing = [a for a in job.artifacts if a.key == artifact.key]
            if not (
                existing
                and existing[0].model_dump(exclude={"url"}) == artifact.model_dump(exclude={"url"})
            ):
                job.artifacts = [a for a in job.artifacts if a.key != artifact.key] + [artifact]
                events.append(("artifact", artifact.model_dump()))
            if (
                complete_at is not None
                and job.status == JobStatus.UPLOADING
                and len(job.artifacts) >= complete_at
            ):
                job.status = JobStatus.SUCCEEDED
                job.progress = 1.0
                events.append(("status", self._status_data(job)))
            return job, events

        return self._mutate(job_id, change)

    def emit(self, job_id: str, event_type: str, data: dict[str, Any]) -> str:
        pipe = self.redis.pipeline(transaction=True)
        self._add_event(pipe, job_id, event_type, data)
        event_id, *_ = pipe.execute()
        return str(event_id)

    def delete(self, job_id: str) -> bool:
        job = self.get(job_id)
        removed = self.redis.delete(
            self.job_key(job_id), self.events_key(job_id), self.cancel_key(job_id)
        )
        self.redis.zrem(self.index_key, job_id)
        if job is not None and job.owner is not None:
            self.redis.zrem(self.owner_index_key(job.owner), job_id)
        return bool(removed)

    # internals ----------------------------------------------------------------------------
    def _mutate(
        self,
        job_id: str,
        change: Callable[[Job], tuple[Job, list[tuple[str, dict[str, Any]]]]],
    ) -> Job:
        key = self.job_key(job_id)
        result: list[Job] = []

        def transaction(pipe: Pipeline) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise JobNotFoundError(job_id)
            current = Job.model_validate_json(raw)
            was_terminal = current.status.terminal
            job, events = change(current)
            result[:] = [job]
            if not events:
                return
            job.updated_at = utcnow()
            pipe.multi()
            pipe.set(key, job.model_dump_json(), ex=self.ttl_s)
            for event_type, data in events:
                self._add_event(pipe, job_id, event_type, data)
            if not was_terminal and job.status.terminal:
                pipe.xadd(
                    self.terminal_key,
                    {"job_id": job_id, "status": job.status.value},
                    maxlen=TERMINAL_STREAM_MAXLEN,
                    approximate=True,
                )
                pipe.delete(self.cancel_key(job_id))

        self.redis.transaction(transaction, key)
        return result[0]


class AsyncJobStore(JobLayout):
    """The gateway's reads, on its event loop (redis.asyncio, ``decode_responses=True``):
    the same layout as :class:`JobStore`, which does the writes (in a thread) save the
    create commands the gateway queues itself (:meth:`JobLayout.create_commands`)."""

    def __init__(
        self, redis: AsyncRedis, *, prefix: str = "genstack", ttl_s: int = DEFAULT_TTL_S
    ) -> None:
        super().__init__(prefix=prefix, ttl_s=ttl_s)
        self.redis = redis

    async def get(self, job_id: str) -> Job | None:
        return parse_job(await self.redis.get(self.job_key(job_id)))

    async def events(
        self, job_id: str, *, after: str = "0-0", count: int = 100, block_ms: int | None = None
    ) -> list[JobEvent]:
        """Events strictly after stream id ``after``; blocks up to ``block_ms`` if none."""
        key = self.events_key(job_id)
        if block_ms is None:
            rows: Any = await self.redis.xrange(key, min=f"({after}", count=count)
            return parse_events(rows)
        reply: Any = await self.redis.xread({key: after}, count=count, block=block_ms)
        return parse_events(_last_events(reply))

    async def page(
        self, *, limit: int, after: str | None = None, owner: str | None = None
    ) -> tuple[list[Job], bool] | None:
        """Newest first, ``limit`` jobs of ``owner`` (None: all) after the job ``after``,
        and whether more follow; None if ``after`` is not (or no longer) in the listing.
        (:meth:`JobStore.recent` pages by time instead; this cursor is a job id.)"""
        index = self.listing_key(owner)
        start = 0
        if after is not None:
            rank: int | None = cast(Any, await self.redis.zrevrank(index, after))
            if rank is None:
                return None
            start = rank + 1
        ids: list[str] = cast(Any, await self.redis.zrevrange(index, start, start + limit))
        has_more = len(ids) > limit
        ids = ids[:limit]
        raws: list[str | None] = (
            cast(Any, await self.redis.mget([self.job_key(i) for i in ids])) if ids else []
        )
        expired = [job_id for job_id, raw in zip(ids, raws, strict=True) if raw is None]
        if expired:  # records expire on their own; the index is trimmed as we meet them
            await self.redis.zrem(index, *expired)
        return [Job.model_validate_json(raw) for raw in raws if raw is not None], has_more
