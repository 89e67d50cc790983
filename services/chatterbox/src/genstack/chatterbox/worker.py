"""``genstack-chatterbox worker``: runs `tts` jobs of queue tts.chatterbox against the server."""

from __future__ import annotations

from genstack.chatterbox.settings import ChatterboxSettings
from genstack.core.contracts.chatterbox import QUEUE, ChatterboxSpeechParams
from genstack.core.health import http_check
from genstack.core.worker import serve_jobs
from genstack.tts.job import SpeechJobHandler


def run(settings: ChatterboxSettings) -> int:
    keys = settings.tts_api_keys
    handler = SpeechJobHandler(
        settings.chatterbox_url,
        ChatterboxSpeechParams,
        api_key=keys[0].get_secret_value() if keys else None,
        busy_retry_s=settings.chatterbox_busy_retry_s,
    )
    return serve_jobs(
        settings,
        name="chatterbox",
        queues=[QUEUE],
        handler=handler,
        concurrency=settings.chatterbox_worker_concurrency,
        checks={"chatterbox": http_check(f"{settings.chatterbox_url.rstrip('/')}/readyz")},
    )
