"""Gateway benchmark: what the gateway costs over doing its work directly, in one run.

    .venvs/stack/bin/python bench/gateway.py            # full run (about a minute)
    .venvs/stack/bin/python bench/gateway.py --quick    # smaller, for a smoke run

1. Job submission. The raw limit: the same record write and Celery message the gateway
   sends (its submit script: depth check, ``JobStore.create_commands``' writes, LPUSH of the
   Celery message), in a tight loop in this process, no HTTP; beside it the same through
   Celery's own publish (``JobStore.create`` + ``dispatch_job``); the ratio is taken to the
   faster of the two. Then
   ``POST /v1/jobs`` to a ``genstack-gateway serve`` process at concurrency 32 over keep-alive
   connections: submissions per second, p50 and p99 latency, and the ratio to the raw limit.
   Targets: at least half of the raw limit, p99 under 50 ms.
2. ``POST /v1/audio/speech`` through the gateway against the same backend called directly
   (genstack.testing's SpeechBackend, a real HTTP server): added p50 latency of a whole
   answer (target under 3 ms), and added time to the first audio byte of a streamed
   (chunked) answer (target under 5 ms). One request at a time, alternating direct and
   gateway, so both see the same machine.

Redis is a real redis-server configured as compose.yaml runs it (AOF, fsync every second).
The gateway runs as deployed: one process, default log level (an access line per request).
The client is a small asyncio HTTP/1.1 client, so the load generator costs little CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genstack.core.celery_app import create_celery_app
from genstack.core.job_task import dispatch_job
from genstack.core.jobs import Job, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.gateway.messages import JobMessages
from genstack.gateway.submit import SUBMIT_SCRIPT
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.speech_backend import SpeechBackend

API_KEY = "bench-key-0123456789abcdef"
JOB_BODY = json.dumps(
    {"type": "tts", "params": {"input": "Hello from the benchmark.", "voice": "alice"}}
)
SPEECH_BODY = json.dumps({"model": "xtts", "input": "Hello there.", "voice": "alice"})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def redis_server(work: Path) -> Iterator[str]:
    """redis-server as compose.yaml runs it: AOF, fsync every second, no RDB."""
    port = free_port()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make install puts it there)")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory-policy", "noeviction"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = connect(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


# a small HTTP/1.1 client ------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    first_byte_s: float  # to the first byte of the body
    total_s: float
    size: int


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> Answer:
        started = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        first = 0.0
        size = 0
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length:
                piece = await self.reader.read(length)
                first = time.perf_counter() - started
                size = len(piece)
                if size < length:
                    size += len(await self.reader.readexactly(length - size))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                chunk = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if chunk == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                data = await self.reader.readexactly(chunk + 2)
                if not first:
                    first = time.perf_counter() - started
                size += len(data) - 2
        return Answer(status, first, time.perf_counter() - started, size)

    def close(self) -> None:
        self.writer.close()


def post(path: str, body: str, host: str) -> bytes:
    data = body.encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


# 1. submissions ---------------------------------------------------------------------------
def raw_submissions(redis_url: str, count: int, *, kombu: bool) -> tuple[float, list[float]]:
    """The job write and its queue message in a tight loop, one after the other.

    ``kombu``: JobStore.create, then dispatch_job (Celery's send_task). Otherwise the very
    Redis work the gateway does per submission: its submit script (queue depth check,
    JobStore.create_commands' writes, LPUSH of the job's Celery message) with redis-py,
    blocking."""
    redis = connect(redis_url)
    store = JobStore(redis)
    app = create_celery_app("bench-raw", redis_url)
    queue = "bench.raw"
    script = redis.register_script(SUBMIT_SCRIPT)
    messages = JobMessages(app)

    def submit() -> None:
        job = Job(type=JobType.TTS, backend="xtts", params={"input": "Hello from the benchmark."})
        if kombu:
            store.create(job)
            dispatch_job(app, job.id, queue)
            return
        recorder = redis.pipeline(transaction=True)
        store.create_commands(recorder, job)
        args: list[object] = [10**9, messages.render(job.id, queue)]
        for command, _options in recorder.command_stack:
            args += [len(command), *command]
        assert int(script(keys=[queue], args=args)) > 0

    for _ in range(50):  # warm-up: connections, kombu's queue declaration
        submit()
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        submit()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    app.close()
    redis.delete(queue)
    return count / elapsed, latencies


async def gateway_submissions(
    port: int, count: int, concurrency: int
) -> tuple[float, list[float], dict[int, int]]:
    raw = post("/v1/jobs", JOB_BODY, f"127.0.0.1:{port}")
    connections = [await Connection.open("127.0.0.1", port) for _ in range(concurrency)]
    for connection in connections:  # warm-up
        for _ in range(10):
            await connection.request(raw)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = count

    async def drive(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answer = await connection.request(raw)
            latencies.append(answer.total_s)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return count / elapsed, latencies, statuses


# 2. speech --------------------------------------------------------------------------------
async def speech(
    direct_port: int, gateway_port: int, count: int
) -> tuple[list[Answer], list[Answer]]:
    direct = await Connection.open("127.0.0.1", direct_port)
    through = await Connection.open("127.0.0.1", gateway_port)
    raw_direct = post("/v1/audio/speech", SPEECH_BODY, f"127.0.0.1:{direct_port}")
    raw_gateway = post("/v1/audio/speech", SPEECH_BODY, f"127.0.0.1:{gateway_port}")
    for _ in range(20):  # warm-up, both paths
        await direct.request(raw_direct)
        await through.request(raw_gateway)
    direct_answers, gateway_answers = [], []
    for _ in range(count):
        direct_answers.append(await direct.request(raw_direct))
        gateway_answers.append(await through.request(raw_gateway))
    direct.close()
    through.close()
    for answer in (*direct_answers, *gateway_answers):
        assert answer.status == 200, answer
    assert {a.size for a in direct_answers} == {a.size for a in gateway_answers}
    return direct_answers, gateway_answers


def start_gateway(
    redis_url: str, work: Path, backend_url: str, workers: int = 1
) -> tuple[ServiceProcess, int]:
    port = free_port()
    env = {
        "REDIS_URL": redis_url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_API_KEYS": API_KEY,
        "GATEWAY_MAX_QUEUE_DEPTH": "100000000",
        "XTTS_URL": backend_url,
        "ENABLE_R2_SYNC": "false",
        "STORAGE_DIR": str(work / "storage"),
        "OUTPUT_DIR": str(work / "outputs"),
        "GATEWAY_WORKERS": str(workers),
    }
    process = ServiceProcess(
        [console_script("genstack-gateway"), "serve"],
        env=env,
        log_path=work / "gateway.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    process.wait_ready(60)
    return process, port


def main() -> int:
    parser = argparse.ArgumentParser(description="gateway benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    submissions = 2000 if args.quick else 10000
    speech_count = 200 if args.quick else 1000
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        with (
            redis_server(work) as redis_url,
            SpeechBackend(chunks=1, chunk_bytes=48_000) as whole,
        ):
            gateway, port = start_gateway(redis_url, work, whole.url)
            try:
                print(f"raw: {submissions} x the gateway's transaction, blocking", flush=True)
                raw_rate, raw_lat = raw_submissions(redis_url, submissions, kombu=False)
                print(f"raw: {submissions} x (JobStore.create + dispatch_job)", flush=True)
                kombu_rate, kombu_lat = raw_submissions(redis_url, submissions, kombu=True)
                print(f"gateway: {submissions} x POST /v1/jobs at c={args.concurrency}", flush=True)
                gw_rate, gw_lat, statuses = asyncio.run(
                    gateway_submissions(port, submissions, args.concurrency)
                )
                if set(statuses) != {201}:
                    raise SystemExit(f"unexpected answers: {statuses}")
                print(f"speech: {speech_count} whole answers, direct and through the gateway")
                direct, through = asyncio.run(speech(whole.port, port, speech_count))
            finally:
                gateway.stop()
            with SpeechBackend(chunks=4, chunk_bytes=12_000, chunk_delay_s=0.02) as streamed:
                gateway, port = start_gateway(redis_url, work, streamed.url)
                try:
                    print(f"speech: {speech_count} streamed answers, first byte", flush=True)
                    s_direct, s_through = asyncio.run(speech(streamed.port, port, speech_count))
                finally:
                    gateway.stop()

    ms = 1000.0
    print("\n| job submission | submissions/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    print(
        f"| raw limit: the gateway's submit script (record + message), tight loop | {raw_rate:.0f} "
        f"| {percentile(raw_lat, 0.5) * ms:.2f} | {percentile(raw_lat, 0.99) * ms:.2f} |"
    )
    print(
        f"| raw: JobStore.create + dispatch_job (Celery send_task), tight loop "
        f"| {kombu_rate:.0f} | {percentile(kombu_lat, 0.5) * ms:.2f} "
        f"| {percentile(kombu_lat, 0.99) * ms:.2f} |"
    )
    print(
        f"| gateway: POST /v1/jobs, concurrency {args.concurrency} | {gw_rate:.0f} "
        f"| {percentile(gw_lat, 0.5) * ms:.2f} | {percentile(gw_lat, 0.99) * ms:.2f} |"
    )
    raw_limit = max(raw_rate, kombu_rate)
    print(
        f"| ratio gateway / raw limit (target >= 0.5; p99 < 50 ms) | {gw_rate / raw_limit:.2f} "
        "| | |"
    )

    def p50(answers: list[Answer], field: str) -> float:
        return statistics.median(getattr(a, field) for a in answers) * ms

    print("\n| /v1/audio/speech | direct p50 ms | gateway p50 ms | added ms | target |")
    print("|---|---:|---:|---:|---|")
    whole_added = p50(through, "total_s") - p50(direct, "total_s")
    print(
        f"| whole answer (48 kB, Content-Length) | {p50(direct, 'total_s'):.2f} "
        f"| {p50(through, 'total_s'):.2f} | {whole_added:.2f} | < 3 |"
    )
    first_added = p50(s_through, "first_byte_s") - p50(s_direct, "first_byte_s")
    print(
        f"| first audio byte, streamed (4 x 12 kB, 20 ms apart) "
        f"| {p50(s_direct, 'first_byte_s'):.2f} | {p50(s_through, 'first_byte_s'):.2f} "
        f"| {first_added:.2f} | < 5 |"
    )
    print(
        f"| whole streamed answer | {p50(s_direct, 'total_s'):.2f} "
        f"| {p50(s_through, 'total_s'):.2f} "
        f"| {p50(s_through, 'total_s') - p50(s_direct, 'total_s'):.2f} | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
