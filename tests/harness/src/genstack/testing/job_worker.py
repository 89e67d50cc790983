"""A small real job worker for tests: genstack.core's job worker (``serve_jobs``: Celery,
``JobRunner``, leases and reapers, hand-over to the uploader, the health port) with a
handler that writes small valid files instead of calling a model server.

    python -m genstack.testing.job_worker --queue tts.xtts [--queue comfyui ...]

Environment: genstack.core's JobWorkerSettings (REDIS_URL, NODE_ID, OUTPUT_DIR, JOB_TTL_S,
WORKER_HEALTH_PORT, ...). Needs genstack-core in the environment (imported when run, not by
the pytest plugin).

What a job does is steered by its params, so tests can ask for every outcome:
- ``fail_code`` (+ ``fail_message``): the job fails with that code;
- ``busy_times``: the first so many deliveries find the "backend" busy (a retryable
  failure, counted in Redis), so the job is retried with backoff;
- ``steps`` (default 2) progress steps, ``sleep_s`` (default 0) seconds each, checking for
  cancellation between steps (a long ``sleep_s`` makes a job to cancel while it runs);
- ``n`` or ``files``: how many files it makes (default 1); tts jobs make WAV files,
  image jobs PNG files, others text files.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis


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


def make_handler(redis: Redis) -> Any:
    from genstack.core.job_runner import JobContext, JobFailedError

    def handle(ctx: JobContext) -> Sequence[Path]:
        params: dict[str, Any] = ctx.params
        busy = int(params.get("busy_times") or 0)
        if busy and int(redis.incr(f"test-worker:busy:{ctx.job.id}")) <= busy:
            raise JobFailedError("backend_unavailable", "the backend is busy", retryable=True)
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
    parser.add_argument(
        "--backend-url", help="a URL /readyz checks as the backend (as a model server's)"
    )
    parser.add_argument("--lease-s", type=float, default=30.0, help="job lease lifetime")
    parser.add_argument("--reap-interval-s", type=float, default=15.0)
    args = parser.parse_args(argv)

    from genstack.core.health import http_check
    from genstack.core.logging import configure_logging
    from genstack.core.redis_client import connect
    from genstack.core.settings import JobWorkerSettings
    from genstack.core.worker import JobPolicy, serve_jobs

    settings = JobWorkerSettings()
    configure_logging("test-worker", settings.log_level, settings.log_format)
    return serve_jobs(
        settings,
        name="test",
        queues=args.queue,
        handler=make_handler(connect(settings.redis_url)),
        concurrency=args.concurrency,
        checks={"backend": http_check(args.backend_url)} if args.backend_url else None,
        # Retries in tenths of seconds, not seconds: tests wait for them.
        policy=JobPolicy(
            max_retries=5,
            retry_base_s=0.1,
            retry_max_s=0.5,
            lease_s=args.lease_s,
            reap_interval_s=args.reap_interval_s,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
