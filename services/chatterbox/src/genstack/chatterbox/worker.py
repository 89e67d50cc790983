"""``genstack-chatterbox worker``: runs `tts` jobs of queue tts.chatterbox against the server."""

from __future__ import annotations

from genstack.chatterbox.settings import ChatterboxSettings
from genstack.core.contracts.chatterbox import QUEUE, ChatterboxSpeechParams
from genstack.tts.job import serve_speech_jobs


def run(settings: ChatterboxSettings) -> int:
    return serve_speech_jobs(
        settings,
        name="chatterbox",
        queue=QUEUE,
        params_model=ChatterboxSpeechParams,
        server_url=settings.chatterbox_url,
        concurrency=settings.chatterbox_worker_concurrency,
        busy_retry_s=settings.chatterbox_busy_retry_s,
    )
