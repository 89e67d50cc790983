"""``genstack-xtts worker``: runs `tts` jobs of queue tts.xtts against the XTTS server."""

from __future__ import annotations

import os

from genstack.core.celery_app import create_celery_app
from genstack.core.contracts.xtts import QUEUE, XttsSpeechParams
from genstack.core.jobstore import JobStore
from genstack.core.leases import JobLeases
from genstack.core.redis_client import connect
from genstack.core.worker import JobRunner, register_job_task, run_worker, uploader_hand_over
from genstack.tts.job import SpeechJobHandler
from genstack.xtts.settings import XttsSettings


def run(settings: XttsSettings) -> int:
    app = create_celery_app("genstack-xtts-worker", settings.redis_url, settings)
    store = JobStore(connect(settings.redis_url), ttl_s=settings.job_ttl_s)
    # Unique per process: several workers may share a host, and the lease names its owner.
    hostname = f"xtts-{os.getpid()}@{settings.node_id}"
    leases = JobLeases(store, queue=QUEUE, owner=hostname)
    keys = settings.tts_api_keys
    handler = SpeechJobHandler(
        settings.xtts_url,
        XttsSpeechParams,
        api_key=keys[0].get_secret_value() if keys else None,
        busy_retry_s=settings.xtts_busy_retry_s,
    )
    runner = JobRunner(
        store=store,
        handler=handler,
        output_dir=settings.output_dir,
        hand_over=uploader_hand_over(app, settings.node_id),
        leases=leases,
    )
    register_job_task(app, runner)
    return run_worker(
        app,
        queue=QUEUE,
        hostname=hostname,
        concurrency=settings.xtts_worker_concurrency,
        loglevel=settings.log_level,
        leases=leases,
    )
