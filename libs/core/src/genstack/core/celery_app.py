"""The Celery app every genstack worker and producer shares, with reliability defaults.

Why each default (DESIGN.md, "Lessons from peers"):
- acks_late + reject_on_worker_lost: a task is acknowledged only after it finished, so a
  worker killed mid-task leaves the message to be redelivered, not lost.
- prefetch 1: a worker holds no more than the task it runs; the rest stays in Redis for
  other workers (and survives this worker's death untouched).
- visibility timeout above the longest task: otherwise Redis hands a running task to a
  second worker.
- soft shutdown: on SIGTERM running tasks get a window to finish, then go back to the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from genstack.core.settings import CelerySettings


def create_celery_app(
    name: str,
    broker_url: str,
    settings: CelerySettings | None = None,
    **overrides: Any,
) -> Celery:
    settings = settings or CelerySettings()
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # job state lives in the job store, not in a result backend
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout_s,
            # Survive a Redis restart without dropping the consumer.
            "socket_keepalive": True,
            "retry_on_timeout": True,
            "health_check_interval": 10,
        },
        broker_heartbeat=0,
        worker_soft_shutdown_timeout=settings.celery_soft_shutdown_s,
        worker_enable_soft_shutdown_on_idle=True,
        # Tasks are idempotent, so a task cut off by a lost connection may run again safely.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_create_missing_queues=True,
        task_default_delivery_mode="persistent",
    )
    app.conf.update(overrides)
    return app


def run_celery_worker(
    app: Celery, *, hostname: str, queues: Sequence[str], concurrency: int, loglevel: str
) -> int:
    """Consume ``queues`` in this process until SIGTERM (soft shutdown: running tasks get
    the grace window, then go back to the queue); returns the exit code.

    Threads: every genstack worker waits on I/O (HTTP to a model server, S3), not the CPU.
    No gossip or mingle: workers need no news of each other (the job store and the leases
    in Redis are their shared state), and mingling slows every start-up."""
    worker = app.Worker(
        hostname=hostname,
        queues=list(queues),
        pool="threads",
        concurrency=concurrency,
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    worker.start()
    return int(getattr(worker, "exitcode", 0) or 0)
