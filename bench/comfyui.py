"""ComfyUI bridge benchmark: a workflow straight against ComfyUI and as a job through the
stack, in one run.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \\
        .venvs/stack/bin/python bench/comfyui.py --comfyui real     # about 2 minutes on CPU
    .venvs/stack/bin/python bench/comfyui.py --comfyui replay --quick   # smoke run, no ComfyUI

The workflow is model-free: ``EmptyImage`` 64x64, batch 1 -> ``SaveImage`` (the replay, which
answers only graphs recorded from a real ComfyUI, runs the recorded ``image_batch`` graph:
batch 2, with an ``ImageInvert`` between). Every part is a real process, started the way
tests/test_comfyui_stack.py starts them: redis-server, an S3 server (moto), ComfyUI
(`genstack-comfyui start` from COMFYUI_DIR with COMFYUI_PYTHON, or genstack.testing's replay
of recorded exchanges), `genstack-uploader run`, `genstack-comfyui worker`, and
`genstack-gateway serve`.

1. Latency per job, one job at a time, direct and through the stack alternating round by
   round so both see the same machine:
   - direct: what a careful client of ComfyUI alone does. One websocket kept open (its
     client id), ``POST /prompt`` with a prompt id, the end of the prompt taken from the
     websocket (``execution_success`` or ``executing`` with node None, whichever comes
     first), then ``GET /history/<id>`` for the outputs. Its files go to a hidden folder of
     the outputs volume (``.bench-direct/...``) so the uploader leaves them alone.
   - stack: ``POST /v1/jobs`` (type workflow) to the gateway, then the job's event stream
     (``GET /v1/jobs/<id>/events``, server-sent events) until ``succeeded``. Measured until
     the job is ``uploading`` (the worker is done: files checked, handed to the uploader;
     the target compares this point, "before upload": under 50 ms added p50) and until it is
     ``succeeded`` (the uploader has PUT every artifact and seen it answer HEAD with its
     size and sha256, so this is also the moment the artifact is visible in S3). Each
     artifact is then HEADed from here, untimed, to prove it is there.
   Added latency is paired: per round, the stack's time minus the direct one, then its p50
   and p95. The breakdown comes from the job's Redis event stream, whose ids are the Redis
   server's clock in milliseconds (the same clock as this process's).
2. Jobs per second, a backlog of N jobs submitted at once: direct one at a time and all
   queued in ComfyUI at once (its own ceiling: it runs one prompt at a time); through the
   stack, until the last job is ``succeeded`` (and ``uploading``), with one
   `genstack-comfyui worker` process at COMFYUI_WORKER_CONCURRENCY 1, then at 4 (one
   process, four jobs at once: ComfyUI's queue kept fed while the worker collects the
   previous job's outputs), then four processes at concurrency 1. ComfyUI bounds every row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from mypy_boto3_s3 import S3Client
from websockets.sync.client import connect

from genstack.comfyui.client import ws_url
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect as redis_connect
from genstack.testing.comfyui_replay import ComfyReplay, load_recordings
from genstack.testing.process import ServiceProcess
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.sse import read_sse
from genstack.testing.stack import (
    RunningGateway,
    start_comfyui_worker,
    start_gateway,
    start_uploader,
)
from genstack.testing.stack import start_comfyui as start_real_comfyui

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT / "services" / "comfyui" / "tests" / "recordings"
DIRECT_FOLDER = ".bench-direct"  # hidden: the uploader skips dot folders
# The cheapest graph that writes a file: no model, one tiny PNG.
REAL_GRAPH: dict[str, dict[str, Any]] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 3368652},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "img"}},
}
MS = 1000.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stamp(event_id: str) -> float:
    """A Redis stream id's time (``<ms>-<seq>``) in seconds since the epoch."""
    return int(event_id.split("-", 1)[0]) / MS


def graph_for(source: str) -> dict[str, dict[str, Any]]:
    if source == "real":
        return with_prefix(REAL_GRAPH, "img")
    recorded = load_recordings(RECORDINGS)["image_batch"]["prompt"]
    graph: dict[str, dict[str, Any]] = json.loads(json.dumps(recorded).replace("{{job}}/", ""))
    return graph


def with_prefix(graph: dict[str, dict[str, Any]], prefix: str) -> dict[str, dict[str, Any]]:
    copy: dict[str, dict[str, Any]] = json.loads(json.dumps(graph))
    for node in copy.values():
        if "filename_prefix" in node.get("inputs", {}):
            node["inputs"]["filename_prefix"] = prefix
    return copy


# the stack's processes -------------------------------------------------------------------
def start_comfyui(
    source: str, work: Path, outputs: Path, comfyui_dir: str, comfyui_python: str
) -> tuple[str, Any]:
    """ComfyUI's URL and the thing to stop: the replay, or `genstack-comfyui start`."""
    if source == "replay":
        replay = ComfyReplay(outputs, RECORDINGS).start()
        return replay.url, replay
    env = {"COMFYUI_DIR": comfyui_dir}
    if comfyui_python:
        env["COMFYUI_PYTHON"] = comfyui_python
    return start_real_comfyui(work, outputs, env=env, timeout=300)


def start_bridge(
    redis_url: str, work: Path, outputs: Path, comfyui_url: str, concurrency: int, name: str = ""
) -> ServiceProcess:
    return start_comfyui_worker(
        redis_url,
        work,
        outputs,
        comfyui_url,
        concurrency=concurrency,
        name=f"comfyui-worker-c{concurrency}{name}",
    )


# direct: ComfyUI alone --------------------------------------------------------------------
@dataclass
class DirectRun:
    submitted: float  # before POST /prompt
    executed: float = 0.0  # the last save node's `executed` event
    ended: float = 0.0  # the websocket's end of the prompt
    outputs: float = 0.0  # GET /history answered with the outputs


class DirectClient:
    """A careful client of ComfyUI alone: one websocket for all its prompts, each prompt's
    end from it, then the outputs from /history (see the module's docstring)."""

    def __init__(self, url: str, outputs: Path, graph: dict[str, dict[str, Any]]) -> None:
        self.outputs = outputs
        self.graph = graph
        self.saves = sum(1 for n in graph.values() if "filename_prefix" in n.get("inputs", {}))
        self.client_id = uuid.uuid4().hex
        self.http = httpx.Client(base_url=url, timeout=120, trust_env=False)
        self._exit = ExitStack()  # websockets wants its connection used as a context
        # No keep-alive pings: the socket idles through the stack's rows, and ComfyUI does not
        # answer the close frame, which the ping thread would report as an error.
        socket = connect(
            ws_url(url, self.client_id), max_size=2**26, ping_interval=None, close_timeout=1
        )
        self.ws = self._exit.enter_context(socket)
        self.runs: dict[str, DirectRun] = {}
        self._saved: dict[str, int] = {}

    def close(self) -> None:
        self._exit.close()
        self.http.close()

    def submit(self) -> str:
        prompt_id = str(uuid.uuid4())
        graph = with_prefix(self.graph, f"{DIRECT_FOLDER}/{uuid.uuid4().hex}/img")
        self.runs[prompt_id] = DirectRun(time.time())
        body = {"prompt": graph, "prompt_id": prompt_id, "client_id": self.client_id}
        response = self.http.post("/prompt", json=body)
        if response.status_code != 200 or response.json().get("node_errors"):
            raise SystemExit(f"ComfyUI refused the graph: {response.text[:500]}")
        return prompt_id

    def wait(self, prompt_ids: Iterable[str], timeout_s: float = 120) -> None:
        """Read the websocket until every one of ``prompt_ids`` has ended."""
        waiting = {p for p in prompt_ids if not self.runs[p].ended}
        deadline = time.monotonic() + timeout_s
        while waiting:
            message = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            now = time.time()
            if isinstance(message, bytes):
                continue  # a preview image
            event = json.loads(message)
            data = event.get("data") or {}
            prompt_id = data.get("prompt_id")
            if prompt_id not in self.runs:
                continue
            run = self.runs[prompt_id]
            kind = event.get("type")
            if kind == "execution_error":
                raise SystemExit(f"ComfyUI failed the prompt: {data}")
            if kind == "executed":
                self._saved[prompt_id] = self._saved.get(prompt_id, 0) + 1
                if self._saved[prompt_id] == self.saves:
                    run.executed = now
            ended = kind == "execution_success" or (
                kind == "executing" and data.get("node") is None
            )
            if ended and not run.ended:
                run.ended = now
                waiting.discard(prompt_id)

    def fetch_outputs(self, prompt_id: str) -> list[Path]:
        """The prompt's files, from /history (asked again while it is not there yet: ComfyUI
        may send `execution_success` just before it records the history)."""
        while True:
            response = self.http.get(f"/history/{prompt_id}")
            response.raise_for_status()
            entry = response.json().get(prompt_id)
            if entry:
                break
            time.sleep(0.001)
        self.runs[prompt_id].outputs = time.time()
        files = []
        for node in entry["outputs"].values():
            for item in node.get("images", []):
                path = self.outputs / item.get("subfolder", "") / item["filename"]
                if not path.is_file() or path.stat().st_size == 0:
                    raise SystemExit(f"ComfyUI listed {path}, which is missing or empty")
                files.append(path)
        if not files:
            raise SystemExit(f"prompt {prompt_id} has no output: {entry}")
        return files

    def one(self) -> DirectRun:
        prompt_id = self.submit()
        self.wait([prompt_id])
        self.fetch_outputs(prompt_id)
        return self.runs[prompt_id]


# through the stack ------------------------------------------------------------------------
@dataclass
class StackRun:
    job_id: str
    submitted: float  # before POST /v1/jobs
    accepted: float = 0.0  # POST /v1/jobs answered
    seen: dict[str, float] = field(default_factory=dict)  # status -> SSE receipt here
    stamps: dict[str, float] = field(default_factory=dict)  # status -> Redis stream time
    keys: list[str] = field(default_factory=list)  # artifact keys


class StackClient:
    """A client of the gateway: submit a workflow job, follow its event stream."""

    def __init__(
        self,
        gateway: RunningGateway,
        store: JobStore,
        s3: S3Client,
        bucket: str,
        graph: dict[str, dict[str, Any]],
    ) -> None:
        self.http = httpx.Client(
            base_url=gateway.url, headers=gateway.headers, timeout=120, trust_env=False
        )
        self.store = store
        self.s3 = s3
        self.bucket = bucket
        self.body = {"type": "workflow", "params": {"workflow": graph}}

    def close(self) -> None:
        self.http.close()

    def submit(self) -> StackRun:
        submitted = time.time()
        response = self.http.post("/v1/jobs", json=self.body)
        accepted = time.time()
        if response.status_code not in (200, 201, 202):
            raise SystemExit(f"the gateway refused the job: {response.text[:500]}")
        return StackRun(response.json()["id"], submitted, accepted)

    def follow(self, run: StackRun) -> None:
        """Read the job's events until it ends; then its stamps, and a HEAD per artifact."""
        with self.http.stream("GET", f"/v1/jobs/{run.job_id}/events") as response:
            for event in read_sse(response):
                if event.event != "status":
                    continue
                status = event.json()["status"]
                run.seen.setdefault(status, time.time())
                if status in ("failed", "cancelled"):
                    raise SystemExit(f"job {run.job_id} ended {status}: {event.data}")
        if "succeeded" not in run.seen:
            raise SystemExit(f"job {run.job_id}'s event stream ended early: {run.seen}")
        for entry in self.store.events(run.job_id, count=1000):
            if entry.type == "status":
                run.stamps.setdefault(str(entry.data["status"]), stamp(entry.id))
            elif entry.type == "artifact":
                run.keys.append(str(entry.data["key"]))
                run.stamps.setdefault("artifact", stamp(entry.id))
        if not run.keys:
            raise SystemExit(f"job {run.job_id} succeeded without an artifact")
        for key in run.keys:
            self.s3.head_object(Bucket=self.bucket, Key=key)  # raises when it is not there

    def one(self) -> StackRun:
        run = self.submit()
        self.follow(run)
        return run


# the measurements -------------------------------------------------------------------------
def latency(
    direct: DirectClient, stack: StackClient, rounds: int
) -> tuple[list[DirectRun], list[StackRun]]:
    direct_runs, stack_runs = [], []
    for _ in range(rounds):
        direct_runs.append(direct.one())
        stack_runs.append(stack.one())
    return direct_runs, stack_runs


@dataclass
class Throughput:
    label: str
    jobs: int
    seconds: float
    uploading_s: float | None = None  # until the last job was `uploading`

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def direct_sequential(direct: DirectClient, jobs: int) -> Throughput:
    started = time.time()
    for _ in range(jobs):
        direct.one()
    return Throughput("direct, one prompt at a time", jobs, time.time() - started)


def direct_queued(direct: DirectClient, jobs: int) -> Throughput:
    started = time.time()
    prompt_ids = [direct.submit() for _ in range(jobs)]
    direct.wait(prompt_ids)
    for prompt_id in prompt_ids:
        direct.fetch_outputs(prompt_id)
    last = max(direct.runs[p].outputs for p in prompt_ids)
    return Throughput(
        f"direct, all {jobs} queued in ComfyUI at once (its ceiling)", jobs, last - started
    )


def stack_backlog(stack: StackClient, jobs: int, label: str) -> Throughput:
    started = time.time()
    runs = [stack.submit() for _ in range(jobs)]
    for run in runs:
        stack.follow(run)
    succeeded = max(r.stamps["succeeded"] for r in runs)
    uploading = max(r.stamps["uploading"] for r in runs)
    return Throughput(label, jobs, succeeded - started, uploading - started)


# reporting --------------------------------------------------------------------------------
def row(name: str, values: list[float], base: list[float] | None, note: str = "") -> str:
    p50, p95 = percentile(values, 0.5) * MS, percentile(values, 0.95) * MS
    added = ""
    if base is not None:
        paired = [v - b for v, b in zip(values, base, strict=True)]
        added = f"{percentile(paired, 0.5) * MS:.1f} | {percentile(paired, 0.95) * MS:.1f}"
    else:
        added = " | "
    return f"| {name} | {p50:.1f} | {p95:.1f} | {added} | {note} |"


def report(
    direct_runs: list[DirectRun], stack_runs: list[StackRun], rates: list[Throughput]
) -> None:
    def since(runs: Iterable[Any], attr: str) -> list[float]:
        return [getattr(r, attr) - r.submitted for r in runs]

    def seen(status: str) -> list[float]:
        return [r.seen[status] - r.submitted for r in stack_runs]

    def stamped(status: str) -> list[float]:
        return [r.stamps[status] - r.submitted for r in stack_runs]

    base = since(direct_runs, "ended")
    print(
        f"\n| per job, one at a time ({len(direct_runs)} rounds) | p50 ms | p95 ms "
        "| added p50 ms | added p95 ms | |\n|---|---:|---:|---:|---:|---|"
    )
    rows: list[tuple[str, list[float], list[float] | None, str]] = [
        ("direct: last save node `executed` (websocket)", since(direct_runs, "executed"), None, ""),
        ("direct: prompt ended (websocket) = baseline", base, None, ""),
        ("direct: + GET /history (outputs known)", since(direct_runs, "outputs"), base, ""),
        ("stack: POST /v1/jobs answered", since(stack_runs, "accepted"), None, ""),
        ("stack: job `running` (SSE)", seen("running"), None, ""),
        (
            "stack: job `uploading`: worker done, before upload (SSE)",
            seen("uploading"),
            base,
            "target: added p50 < 50",
        ),
        ("stack: job `succeeded` = artifact verified in S3 (SSE)", seen("succeeded"), base, ""),
    ]
    for name, values, against, note in rows:
        print(row(name, values, against, note))

    # Where the stack's time goes, from the job's Redis event stamps (1 ms resolution).
    def p50(values: list[float]) -> float:
        return statistics.median(values) * MS

    queued = stamped("queued")
    running = stamped("running")
    uploading = stamped("uploading")
    succeeded = stamped("succeeded")
    pairs = list(zip(stack_runs, direct_runs, strict=True))
    in_comfy = [
        (r.stamps["uploading"] - r.stamps["running"]) - (d.ended - d.submitted) for r, d in pairs
    ]
    print("\n| where the stack's time goes (Redis event stamps) | p50 ms |\n|---|---:|")
    print(f"| submission: POST /v1/jobs to the job recorded `queued` | {p50(queued):.1f} |")
    print(
        "| queue: `queued` to `running` (Celery delivery, lease, record) "
        f"| {p50([r - q for r, q in zip(running, queued, strict=True)]):.1f} |"
    )
    print(
        "| worker: `running` to `uploading`, minus the direct prompt's time (websocket, "
        f"POST /prompt, /history, file checks) | {p50(in_comfy):.1f} |"
    )
    print(
        "| uploader: `uploading` to `succeeded` (hash, PUT, HEAD, record) "
        f"| {p50([s - u for s, u in zip(succeeded, uploading, strict=True)]):.1f} |"
    )
    lag = [r.seen["succeeded"] - r.stamps["succeeded"] for r in stack_runs]
    print(f"| client: `succeeded` recorded to its SSE event read here | {p50(lag):.1f} |")

    ceiling = max(r.rate for r in rates if r.label.startswith("direct"))
    print("\n| jobs per second, a backlog | jobs | seconds | jobs/s | vs ComfyUI's ceiling |")
    print("|---|---:|---:|---:|---:|")
    for r in rates:
        print(
            f"| {r.label} | {r.jobs} | {r.seconds:.2f} | {r.rate:.2f} | {r.rate / ceiling:.2f}x |"
        )
        if r.uploading_s is not None:
            rate = r.jobs / r.uploading_s
            print(
                f"| ... the same, until the last job was `uploading` | {r.jobs} "
                f"| {r.uploading_s:.2f} | {rate:.2f} | {rate / ceiling:.2f}x |"
            )


# the run ----------------------------------------------------------------------------------
@contextmanager
def running_stack(
    source: str, work: Path, comfyui_dir: str, comfyui_python: str
) -> Iterator[tuple[str, str, RunningGateway, S3Server, str]]:
    """(ComfyUI's URL, Redis's URL, the gateway, the S3 server, its bucket), the uploader
    running; the worker is started by the caller (it is restarted between measurements)."""
    outputs = work / "outputs"  # what start_gateway and start_uploader use under work
    with ExitStack() as stack:
        s3 = S3Server()
        s3.start()
        stack.callback(s3.stop)
        bucket = s3.create_bucket()
        r2 = {
            "R2_ENDPOINT": s3.endpoint_url,
            "R2_BUCKET": bucket,
            "R2_ACCESS_KEY_ID": s3.access_key,
            "R2_SECRET_ACCESS_KEY": s3.secret_key,
            "R2_REGION": s3.region,
            "ENABLE_R2_SYNC": "true",
        }
        redis = RedisServer(work / "redis")
        redis.start()
        stack.callback(redis.close)
        print(f"starting ComfyUI ({source})", flush=True)
        url, comfyui = start_comfyui(source, work, outputs, comfyui_dir, comfyui_python)
        stack.callback(comfyui.stop)
        uploader = start_uploader(redis.url, work, env=r2)
        stack.callback(uploader.stop)
        gateway = start_gateway(redis.url, work, env={**r2, "GATEWAY_ENABLED_BACKENDS": "comfyui"})
        stack.callback(gateway.stop)
        yield url, redis.url, gateway, s3, bucket


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", choices=["real", "replay"], default="real")
    parser.add_argument("--quick", action="store_true", help="few jobs, for a smoke run")
    parser.add_argument("--rounds", type=int, help="latency rounds (default 100, quick 4)")
    parser.add_argument("--jobs", type=int, help="jobs per throughput row (default 150, quick 6)")
    parser.add_argument("--comfyui-dir", default=os.environ.get("COMFYUI_DIR", ""))
    parser.add_argument("--comfyui-python", default=os.environ.get("COMFYUI_PYTHON", ""))
    args = parser.parse_args()
    if args.comfyui == "real" and not args.comfyui_dir:
        parser.error("--comfyui real needs COMFYUI_DIR (or --comfyui-dir): a ComfyUI checkout")
    rounds = args.rounds or (4 if args.quick else 100)
    jobs = args.jobs or (6 if args.quick else 150)
    warmup = 2 if args.quick else 5
    graph = graph_for(args.comfyui)
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"python {sys.version.split()[0]}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-comfyui-") as tmp,
        running_stack(args.comfyui, Path(tmp), args.comfyui_dir, args.comfyui_python) as (
            url,
            redis_url,
            gateway,
            s3,
            bucket,
        ),
    ):
        work = Path(tmp)
        outputs = work / "outputs"
        stats = httpx.get(f"{url}/system_stats", trust_env=False).json()
        system = stats.get("system", {})
        devices = [d.get("type") for d in stats.get("devices", [])]
        print(f"ComfyUI {system.get('comfyui_version')} on {devices}", flush=True)
        store = JobStore(redis_connect(redis_url))
        direct = DirectClient(url, outputs, graph)
        client = StackClient(gateway, store, s3.client(), bucket, graph)
        rates: list[Throughput] = []
        try:
            worker = start_bridge(redis_url, work, outputs, url, 1)
            try:
                for _ in range(warmup):  # first prompts import and allocate
                    direct.one()
                    client.one()
                print(f"latency: {rounds} rounds, direct then through the stack", flush=True)
                direct_runs, stack_runs = latency(direct, client, rounds)
                print(f"throughput: {jobs} jobs per row", flush=True)
                rates.append(direct_sequential(direct, jobs))
                rates.append(direct_queued(direct, jobs))
                rates.append(
                    stack_backlog(
                        client, jobs, "stack, 1 worker process, COMFYUI_WORKER_CONCURRENCY=1"
                    )
                )
            finally:
                worker.stop()
            for processes, concurrency in ((1, 4), (4, 1)):
                workers = [
                    start_bridge(redis_url, work, outputs, url, concurrency, name=f"{i}")
                    for i in range(processes)
                ]
                try:
                    for _ in range(processes):
                        client.one()  # warm-up of the new processes
                    label = (
                        f"stack, {processes} worker process{'es' if processes > 1 else ''}, "
                        f"COMFYUI_WORKER_CONCURRENCY={concurrency}"
                    )
                    rates.append(stack_backlog(client, jobs, label))
                finally:
                    for worker in workers:
                        worker.stop()
        finally:
            direct.close()
            client.close()
    report(direct_runs, stack_runs, rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
