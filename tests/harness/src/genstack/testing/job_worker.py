"""A small real job worker for tests: genstack.core's job runtime (``register_job_task``,
``JobRunner``, hand-over to the uploader) on a real Celery worker process, with a handler
that writes small valid files instead of calling a model server.

    python -m genstack.testing.job_worker --queue tts.xtts [--queue comfyui ...]

Environment: REDIS_URL, NODE_ID, OUTPUT_DIR, JOB_TTL_S (genstack.core's settings). Needs
genstack-core in the environment (imported when run, not by the pytest plugin).

What a job does is steered by its params, so tests can ask for every outcome:
- ``fail_code`` (+ ``fail_message``): the job fails with that code;
- ``steps`` (default 2) progress steps, ``sleep_s`` (default 0) seconds each, checking for
  cancellation between steps (a long ``sleep_s`` makes a job to cancel while it runs);
- ``n`` or ``files``: how many files it makes (default 1); tts jobs make WAV files,
  image jobs PNG files, others text files.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def wav_bytes(seconds: float = 0.25, rate: int = 16000) -> bytes:
    """A valid mono 16-bit PCM WAV with a 440 Hz tone."""
    frames = int(seconds * rate)
    pcm = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm


def png_bytes(width: int = 8, height: int = 8, shade: int = 0) -> bytes:
    """A valid RGB PNG filled with one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes((shade % 256, 128, 255 - shade % 256)) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def make_handler() -> Any:
    from genstack.core.worker import JobContext, JobFailedError

    def handle(ctx: JobContext) -> Sequence[Path]:
        params: dict[str, Any] = ctx.params
        # Backends' own params (an image job's "steps": None) may share these names.
        steps = int(params.get("steps") or 0) if "sleep_s" in params else 2
        sleep_s = float(params.get("sleep_s") or 0.0)
        for step in range(steps):
            deadline = time.monotonic() + sleep_s
            while True:
                ctx.check_cancelled()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.05))
            ctx.progress((step + 1) / (steps + 1), f"step {step + 1} of {steps}")
        if params.get("fail_code"):
            raise JobFailedError(
                str(params["fail_code"]), str(params.get("fail_message", "asked to fail"))
            )
        count = int(params.get("n") or params.get("files") or 1)
        kind = ctx.job.type.value
        files = []
        for index in range(count):
            if kind == "tts":
                path, data = ctx.output_dir / f"speech-{index}.wav", wav_bytes()
            elif kind == "image":
                path, data = ctx.output_dir / f"image-{index}.png", png_bytes(shade=index * 40)
            else:
                path, data = (
                    ctx.output_dir / f"output-{index}.txt",
                    f"{ctx.job.id} {index}".encode(),
                )
            path.write_bytes(data)
            files.append(path)
        return files

    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queue", action="append", required=True, help="queue(s) to consume")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)

    from genstack.core.celery_app import create_celery_app
    from genstack.core.jobstore import JobStore
    from genstack.core.leases import JobLeases
    from genstack.core.logging import configure_logging
    from genstack.core.redis_client import connect
    from genstack.core.settings import CelerySettings, CoreSettings
    from genstack.core.worker import JobRunner, register_job_task, uploader_hand_over

    class Settings(CoreSettings, CelerySettings):
        pass

    settings = Settings()
    configure_logging("test-worker", settings.log_level, settings.log_format)
    app = create_celery_app("genstack-test-worker", settings.redis_url, settings)
    store = JobStore(connect(settings.redis_url), ttl_s=settings.job_ttl_s)
    hostname = f"test-worker-{os.getpid()}@{settings.node_id}"
    runner = JobRunner(
        store=store,
        handler=make_handler(),
        output_dir=settings.output_dir,
        hand_over=uploader_hand_over(app, settings.node_id),
        # Leases keep two deliveries of a job apart; no reaper runs here (it re-dispatches
        # to one queue, and this worker may serve several), so a dead test worker's job
        # is not taken over.
        leases=JobLeases(store, queue="+".join(args.queue), owner=hostname),
    )
    register_job_task(app, runner, max_retries=1, retry_base_s=0.1, retry_max_s=0.5)
    worker = app.Worker(
        hostname=hostname,
        queues=args.queue,
        pool="threads",
        concurrency=args.concurrency,
        loglevel=settings.log_level,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    worker.start()
    return int(getattr(worker, "exitcode", 0) or 0)


if __name__ == "__main__":
    sys.exit(main())
