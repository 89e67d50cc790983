"""Turning a synthesis into an HTTP answer: the whole file, audio bytes as they are made, or
SSE events of base64 audio (OpenAI's ``stream_format=sse``). Encoding runs off the event
loop; the model's items arrive through a :class:`~genstack.tts.model_thread.ModelStream`."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from genstack.http.errors import error_object
from genstack.tts.synthesis import AudioPipeline, SentenceEnd

log = logging.getLogger(__name__)


class SynthesisStreamingResponse(StreamingResponse):
    """A streamed response that always stops its synthesis when it ends, however it ends:
    finished, client gone, or never started because the client left first."""

    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def whole_file(pipeline: AudioPipeline, first: Any, items: AsyncIterator[Any]) -> bytes:
    parts = [pipeline.header()]
    if first is not None:
        parts.append(await asyncio.to_thread(pipeline.feed, first))
    async for item in items:
        parts.append(await asyncio.to_thread(pipeline.feed, item))
    parts.append(await asyncio.to_thread(pipeline.finish))
    return b"".join(parts)


async def _encoded(
    pipeline: AudioPipeline,
    first: Any,
    items: AsyncIterator[Any],
    first_audio: Callable[[], None],
) -> AsyncIterator[bytes]:
    """Container bytes as each model chunk is encoded; calls ``first_audio`` once, when the
    first audio (not a container header) leaves."""
    timed = False

    def mark() -> None:
        nonlocal timed
        if not timed:
            timed = True
            first_audio()

    header = pipeline.header()
    if header:
        yield header
    pending: list[Any] = [] if first is None else [first]
    while True:
        if pending:
            item = pending.pop()
        else:
            try:
                item = await anext(items)
            except StopAsyncIteration:
                break
        data = await asyncio.to_thread(pipeline.feed, item)
        if data:
            if not isinstance(item, SentenceEnd):
                mark()
            yield data
    tail = await asyncio.to_thread(pipeline.finish)
    mark()
    if tail:
        yield tail


async def audio_stream(
    pipeline: AudioPipeline,
    first: Any,
    items: AsyncIterator[Any],
    first_audio: Callable[[], None],
) -> AsyncIterator[bytes]:
    try:
        async for data in _encoded(pipeline, first, items, first_audio):
            yield data
    except Exception:
        # The status line is gone; ending without the last chunk tells the client the
        # audio is incomplete (a clean end would pass truncated audio off as whole).
        log.exception("synthesis failed mid-stream")
        raise


async def sse_stream(
    pipeline: AudioPipeline,
    first: Any,
    items: AsyncIterator[Any],
    first_audio: Callable[[], None],
    input_chars: int,
) -> AsyncIterator[bytes]:
    try:
        async for data in _encoded(pipeline, first, items, first_audio):
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
            yield f"data: {json.dumps(event)}\n\n".encode()
    except Exception as exc:
        log.exception("synthesis failed mid-stream")
        error = {"type": "error", **error_object(500, str(exc), code="synthesis_failed")}
        yield f"data: {json.dumps(error)}\n\n".encode()
        return
    done = {
        "type": "speech.audio.done",
        "usage": {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars},
        "duration_s": round(pipeline.duration_s, 3),
    }
    yield f"data: {json.dumps(done)}\n\n".encode()
