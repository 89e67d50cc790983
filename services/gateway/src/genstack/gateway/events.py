"""Server-sent events from a job's Redis stream.

Each SSE event carries the stream entry id as its ``id``, so a client that reconnects with
``Last-Event-ID`` gets exactly the entries after the last one it saw. The stream ends after
the event that puts the job in a terminal state (or at once, when a resumed client already
saw it)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from genstack.core.jobs import Job, JobEvent, JobStatus
from genstack.core.jobstore import JobStore

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
BATCH = 100


def parse_rows(rows: list[tuple[str, dict[str, str]]]) -> list[JobEvent]:
    return [
        JobEvent(id=event_id, type=fields["type"], data=json.loads(fields.get("data", "{}")))
        for event_id, fields in rows
    ]


def is_terminal(event: JobEvent) -> bool:
    if event.type != "status":
        return False
    try:
        return JobStatus(str(event.data.get("status"))).terminal
    except ValueError:
        return False


def sse_frame(event: JobEvent) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def job_events(
    redis: AsyncRedis,
    store: JobStore,
    job_id: str,
    *,
    after: str = "0-0",
    heartbeat_s: float = 15.0,
    max_s: float = 3600.0,
) -> AsyncIterator[bytes]:
    """SSE frames for the job's events after stream id ``after``, then the end. After
    ``max_s`` the stream ends anyway; a client reconnects and resumes (Last-Event-ID)."""
    key = store.events_key(job_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    yield b"retry: 2000\n\n"
    while True:
        raw = await redis.get(store.job_key(job_id))
        if raw is None:
            return  # deleted or expired
        if JobStatus(json.loads(raw)["status"]).terminal:
            # Over: whatever the client has not seen yet, then the end.
            while True:
                tail: Any = await redis.xrange(key, min=f"({after}", count=BATCH)
                if not tail:
                    return
                for event in parse_rows(tail):
                    after = event.id
                    yield sse_frame(event)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        block_ms = max(1, int(min(heartbeat_s, remaining) * 1000))
        reply: Any = await redis.xread({key: after}, count=BATCH, block=block_ms)
        events = parse_rows(reply[0][1]) if reply else []
        for event in events:
            after = event.id
            yield sse_frame(event)
            if is_terminal(event):
                return
        if not events and deadline > loop.time():
            yield b": keep-alive\n\n"  # through proxies that cut idle connections


async def wait_for_end(
    redis: AsyncRedis, store: JobStore, job_id: str, timeout_s: float
) -> Job | None:
    """The job once terminal, or as it is when ``timeout_s`` runs out; None if it is gone.
    Wakes on the job's events rather than polling the record."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    key = store.events_key(job_id)
    after = "0-0"
    while True:
        raw = await redis.get(store.job_key(job_id))
        if raw is None:
            return None
        job = Job.model_validate_json(raw)
        remaining = deadline - loop.time()
        if job.status.terminal or remaining <= 0:
            return job
        reply: Any = await redis.xread(
            {key: after}, count=BATCH, block=max(1, int(min(remaining, 5.0) * 1000))
        )
        if reply:
            after = reply[0][1][-1][0]
