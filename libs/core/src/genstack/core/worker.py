"""A job worker process: one handler on one or more queues, the Celery start-up written once.

A backend's worker (``genstack-xtts worker``, ...) is its handler and one call::

    serve_jobs(settings, name="xtts", queues=["tts.xtts"], handler=handler, concurrency=1,
               checks={"xtts": http_check(f"{settings.xtts_url}/readyz")})

which runs, until SIGTERM:

- a Celery worker (:func:`genstack.core.celery_app.run_celery_worker`) with ``JOB_TASK``
  registered over a :class:`~genstack.core.job_runner.JobRunner` per queue; retryable
  failures (a backend down or busy) are retried with backoff;
- a lease on every job it runs and a :class:`~genstack.core.leases.Reaper` per queue, so a
  job whose worker died is dispatched again within about a minute (each queue's leases keep
  their own active set, so its reaper dispatches to that queue);
- the health port (``WORKER_HEALTH_HOST``/``WORKER_HEALTH_PORT``): ``/healthz``; ``/readyz``
  (Redis, the Celery consumer, and the service's ``checks``, e.g. its model server); and
  ``/metrics`` (jobs by queue and outcome, job duration, jobs running).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from genstack.core.backoff import backoff_s
from genstack.core.celery_app import create_celery_app, run_celery_worker
from genstack.core.health import OK, Check, HealthServer, redis_check, run_checks
from genstack.core.job_runner import (
    JobFailedError,
    JobHandler,
    JobRunner,
    uploader_hand_over,
)
from genstack.core.job_task import JOB_TASK, dispatch_job
from genstack.core.jobstore import JobStore
from genstack.core.leases import DEFAULT_LEASE_S, JobLeases, Reaper
from genstack.core.redis_client import connect
from genstack.core.settings import JobWorkerSettings

log = logging.getLogger(__name__)

# Metric labels beside JobOutcome's: a delivery that will be retried, one that raised.
RETRIED = "retried"
ERROR = "error"
_DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)


@dataclass(frozen=True)
class JobPolicy:
    """Retries of a job whose backend is not available, and how fast a dead worker's job
    is taken over (a lease lapses after ``lease_s``; reapers look every ``reap_interval_s``)."""

    max_retries: int = 5
    retry_base_s: float = 2.0
    retry_max_s: float = 60.0
    # Redis (the job records) unreachable or still loading its AOF: about 12 h at the cap.
    redis_max_retries: int = 720
    lease_s: float = DEFAULT_LEASE_S
    reap_interval_s: float = 15.0


DEFAULT_POLICY = JobPolicy()


class JobMetrics:
    """Prometheus metrics of one job worker process (its own registry: no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "genstack_jobs",
            "Job deliveries this worker ran, by queue and outcome (handed_over, failed, "
            "cancelled, ..., retried = will run again after a backoff, error = raised).",
            ["queue", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "genstack_job_duration_seconds",
            "Time one job delivery took in this worker (the backend's work and the hand-over).",
            ["queue"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.running = Gauge(
            "genstack_jobs_running",
            "Jobs this worker is running now.",
            ["queue"],
            registry=self.registry,
        )

    def observe(self, queue: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(queue=queue, outcome=outcome).inc()
        self.duration.labels(queue=queue).observe(seconds)


def register_job_task(
    app: Celery,
    runners: Mapping[str, JobRunner],
    *,
    metrics: JobMetrics | None = None,
    max_retries: int = 5,
    retry_base_s: float = 2.0,
    retry_max_s: float = 60.0,
    redis_max_retries: int = 720,
) -> Task[Any, Any]:
    """Register JOB_TASK on ``app``: a delivery from queue Q runs ``runners[Q]``; retryable
    failures back off.

    A delivery that cannot reach the job records (Redis unreachable, timing out or loading
    its AOF) is retried too, up to ``redis_max_retries`` times, counted apart from the
    backend's ``max_retries``: failing the task would acknowledge its message and leave the
    job ``queued`` with nothing left to run it."""
    if not runners:
        raise ValueError("register_job_task needs a runner for at least one queue")
    metrics = metrics or JobMetrics()
    first = next(iter(runners))

    @app.task(name=JOB_TASK, bind=True, max_retries=max_retries + redis_max_retries)
    def run_job(self: Task[Any, Any], job_id: str, redis_retries: int = 0) -> str:
        routed = (self.request.delivery_info or {}).get("routing_key")
        # Only a message routed by hand names no queue of ours; run it anyway.
        queue = routed if isinstance(routed, str) and routed in runners else first
        attempt = self.request.retries - redis_retries  # the backend's retries so far
        started = time.monotonic()
        outcome: str = ERROR
        try:
            with metrics.running.labels(queue=queue).track_inprogress():
                outcome = runners[queue].run(job_id, final_attempt=attempt >= max_retries)
        except JobFailedError as exc:
            outcome = RETRIED
            log.warning(
                "backend not available, job retried",
                extra={"job_id": job_id, "attempt": attempt + 1, "err": exc.message},
            )
            raise self.retry(
                exc=exc,
                countdown=backoff_s(attempt, retry_base_s, retry_max_s),
                max_retries=max_retries + redis_retries,
            ) from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            outcome = RETRIED
            log.warning(
                "job records unreachable, job retried",
                extra={"job_id": job_id, "attempt": redis_retries + 1, "err": str(exc)},
            )
            raise self.retry(
                exc=exc,
                kwargs={"redis_retries": redis_retries + 1},
                countdown=backoff_s(redis_retries, retry_base_s, retry_max_s),
                max_retries=attempt + redis_max_retries,
            ) from exc
        finally:
            metrics.observe(queue, outcome, time.monotonic() - started)
        return outcome

    return run_job


class JobWorker:
    """The parts :func:`serve_jobs` runs; built at construction, started by :meth:`run`."""

    def __init__(
        self,
        settings: JobWorkerSettings,
        *,
        name: str,
        queues: Sequence[str],
        handler: JobHandler,
        concurrency: int,
        checks: Mapping[str, Check] | None = None,
        policy: JobPolicy = DEFAULT_POLICY,
    ) -> None:
        if not queues:
            raise ValueError("a job worker needs at least one queue")
        self.settings = settings
        self.queues = list(queues)
        self.concurrency = concurrency
        # Unique per process: several workers may share a host, and a lease names its owner.
        self.hostname = f"{name}-{os.getpid()}@{settings.node_id}"
        self.app = create_celery_app(f"genstack-{name}-worker", settings.redis_url, settings)
        self.store = JobStore(connect(settings.redis_url), ttl_s=settings.job_ttl_s)
        self.metrics = JobMetrics()
        hand_over = uploader_hand_over(self.app, settings.node_id)
        self.leases = {
            queue: JobLeases(self.store, queue=queue, owner=self.hostname, ttl_s=policy.lease_s)
            for queue in self.queues
        }
        runners = {
            queue: JobRunner(
                store=self.store,
                handler=handler,
                output_dir=settings.output_dir,
                hand_over=hand_over,
                leases=leases,
            )
            for queue, leases in self.leases.items()
        }
        register_job_task(
            self.app,
            runners,
            metrics=self.metrics,
            max_retries=policy.max_retries,
            retry_base_s=policy.retry_base_s,
            retry_max_s=policy.retry_max_s,
            redis_max_retries=policy.redis_max_retries,
        )
        self.reapers = [
            Reaper(leases, self._redispatcher(queue), interval_s=policy.reap_interval_s)
            for queue, leases in self.leases.items()
        ]
        self.consuming = threading.Event()
        self.readiness = run_checks(
            {"redis": redis_check(settings.redis_url), "worker": self._consumer, **(checks or {})}
        )
        self.health: HealthServer | None = None
        if settings.worker_health_port:
            self.health = HealthServer(
                settings.worker_health_host,
                settings.worker_health_port,
                self.metrics.registry,
                self.readiness,
            )

    def run(self) -> int:
        log.info(
            "job worker starting",
            extra={
                "queues": self.queues,
                "hostname": self.hostname,
                "health_port": self.health.port if self.health else None,
            },
        )
        signals.worker_ready.connect(self._on_ready, weak=False)
        if self.health is not None:
            self.health.start()
        for reaper in self.reapers:
            reaper.start()
        try:
            return run_celery_worker(
                self.app,
                hostname=self.hostname,
                queues=self.queues,
                concurrency=self.concurrency,
                loglevel=self.settings.log_level,
            )
        finally:
            for reaper in self.reapers:
                reaper.stop()
            if self.health is not None:
                self.health.stop()

    def _redispatcher(self, queue: str) -> Callable[[str], None]:
        return lambda job_id: dispatch_job(self.app, job_id, queue)

    def _on_ready(self, **_: Any) -> None:
        self.consuming.set()
        log.info("job worker ready", extra={"queues": self.queues})

    def _consumer(self) -> str:
        return OK if self.consuming.is_set() else "starting"


def serve_jobs(
    settings: JobWorkerSettings,
    *,
    name: str,
    queues: Sequence[str],
    handler: JobHandler,
    concurrency: int,
    checks: Mapping[str, Check] | None = None,
    policy: JobPolicy = DEFAULT_POLICY,
) -> int:
    """Run ``handler`` on the jobs of ``queues`` until SIGTERM; returns the exit code.

    ``name`` names the process (Celery app ``genstack-<name>-worker``, hostname
    ``<name>-<pid>@<NODE_ID>``); ``checks`` are added to /readyz (name -> "ok" or what is
    wrong), e.g. the model server the handler calls."""
    return JobWorker(
        settings,
        name=name,
        queues=queues,
        handler=handler,
        concurrency=concurrency,
        checks=checks,
        policy=policy,
    ).run()
