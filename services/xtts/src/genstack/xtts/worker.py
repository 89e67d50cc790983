"""``genstack-xtts worker``: runs `tts` jobs of queue tts.xtts against the XTTS server."""

from __future__ import annotations

from genstack.core.contracts.xtts import QUEUE, XttsSpeechParams
from genstack.tts.job import serve_speech_jobs
from genstack.xtts.settings import XttsSettings


def run(settings: XttsSettings) -> int:
    return serve_speech_jobs(
        settings,
        name="xtts",
        queue=QUEUE,
        params_model=XttsSpeechParams,
        server_url=settings.xtts_url,
        concurrency=settings.xtts_worker_concurrency,
        busy_retry_s=settings.xtts_busy_retry_s,
    )
