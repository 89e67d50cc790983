"""A backend worker for tests: the real worker runtime (genstack.core.worker) around a handler
that writes files instead of calling a model server. Job params steer it:
``files`` (how many), ``sleep_s`` (per file, polling cancel), ``fail`` (an error code),
``busy_times`` (raise a retryable error this many times first, counted in Redis)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from genstack.core.celery_app import create_celery_app
from genstack.core.jobstore import JobStore
from genstack.core.leases import JobLeases
from genstack.core.logging import configure_logging
from genstack.core.redis_client import connect
from genstack.core.worker import (
    JobContext,
    JobFailedError,
    JobRunner,
    register_job_task,
    run_worker,
    uploader_hand_over,
)


def main() -> int:
    redis_url = os.environ["REDIS_URL"]
    node_id = os.environ["NODE_ID"]
    queue = os.environ.get("DEMO_QUEUE", "demo")
    configure_logging("demo-worker", "INFO", "text")
    redis = connect(redis_url)
    store = JobStore(redis)
    app = create_celery_app("demo-worker", redis_url)

    def handler(ctx: JobContext) -> Sequence[Path]:
        params = ctx.params
        busy = int(params.get("busy_times", 0))
        if busy and redis.incr(f"demo:busy:{ctx.job.id}") <= busy:
            raise JobFailedError("backend_unavailable", "demo backend is busy", retryable=True)
        if params.get("fail"):
            raise JobFailedError(str(params["fail"]), f"demo failure {params['fail']}")
        count = int(params.get("files", 1))
        files = []
        for i in range(count):
            deadline = time.monotonic() + float(params.get("sleep_s", 0))
            while time.monotonic() < deadline:
                ctx.check_cancelled()
                time.sleep(0.05)
            path = ctx.output_dir / f"out{i}.wav"
            path.write_bytes(f"{ctx.job.id}:{i}".encode() * 100)
            files.append(path)
            ctx.progress((i + 1) / count, f"file {i + 1} of {count}")
        return files

    hostname = f"demo-{os.getpid()}@{node_id}"
    leases = JobLeases(store, queue=queue, owner=hostname, ttl_s=2.0)
    runner = JobRunner(
        store=store,
        handler=handler,
        output_dir=Path(os.environ["OUTPUT_DIR"]),
        hand_over=uploader_hand_over(app, node_id),
        leases=leases,
    )
    register_job_task(app, runner, max_retries=5, retry_base_s=0.1, retry_max_s=0.5)
    return run_worker(
        app,
        queue=queue,
        hostname=hostname,
        concurrency=2,
        loglevel="INFO",
        leases=leases,
        reap_interval_s=1.0,
    )


if __name__ == "__main__":
    sys.exit(main())
