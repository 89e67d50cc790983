"""``genstack-xtts worker``: runs `tts` jobs of queue tts.xtts against the XTTS server."""

from __future__ import annotations

from genstack.core.contracts.xtts import QUEUE, XttsSpeechParams
from genstack.core.health import http_check
from genstack.core.worker import serve_jobs
from genstack.tts.job import SpeechJobHandler
from genstack.xtts.settings import XttsSettings


def run(settings: XttsSettings) -> int:
    keys = settings.tts_api_keys
    handler = SpeechJobHandler(
        settings.xtts_url,
        XttsSpeechParams,
        api_key=keys[0].get_secret_value() if keys else None,
        busy_retry_s=settings.xtts_busy_retry_s,
    )
    return serve_jobs(
        settings,
        name="xtts",
        queues=[QUEUE],
        handler=handler,
        concurrency=settings.xtts_worker_concurrency,
        checks={"xtts": http_check(f"{settings.xtts_url.rstrip('/')}/readyz")},
    )
