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

from genstack.core.jobs import Job, JobEvent, JobStatus
from genstack.core.jobstore import AsyncJobStore

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
BATCH = 100


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
    store: AsyncJobStore,
    job_id: str,
    *,
    after: str = "0-0",
    heartbeat_s: float = 15.0,
    max_s: float = 3600.0,
) -> AsyncIterator[bytes]:
    """SSE frames for the job's events after stream id ``after``, then the end. After
    ``max_s`` the stream ends anyway; a client reconnects and resumes (Last-Event-ID)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    yield b"retry: 2000\n\n"
    while True:
        job = await store.get(job_id)
        if job is None:
            return  # deleted or expired
        if job.status.terminal:
            # Over: whatever the client has not seen yet, then the end.
            while True:
                tail = await store.events(job_id, after=after, count=BATCH)
                if not tail:
                    return
                for event in tail:
                    after = event.id
                    yield sse_frame(event)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        block_ms = max(1, int(min(heartbeat_s, remaining) * 1000))
        events = await store.events(job_id, after=after, count=BATCH, block_ms=block_ms)
        for event in events:
            after = event.id
            yield sse_frame(event)
            if is_terminal(event):
                return
        if not events and deadline > loop.time():
            yield b": keep-alive\n\n"  # through proxies that cut idle connections


async def wait_for_end(store: AsyncJobStore, job_id: str, timeout_s: float) -> Job | None:
    """The job once terminal, or as it is when ``timeout_s`` runs out; None if it is gone.
    Wakes on the job's events rather than polling the record."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    after = "0-0"
    while True:
        job = await store.get(job_id)
        if job is None:
            return None
        remaining = deadline - loop.time()
        if job.status.terminal or remaining <= 0:
            return job
        events = await store.events(
            job_id, after=after, count=BATCH, block_ms=max(1, int(min(remaining, 5.0) * 1000))
        )
        if events:
            after = events[-1].id
