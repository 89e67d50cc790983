"""ComfyUI bridge benchmark: a workflow straight against ComfyUI and as a job through the
stack, in one run.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \\
        .venvs/stack/bin/python bench/comfyui.py --comfyui real     # about 2 minutes on CPU
    .venvs/stack/bin/python bench/comfyui.py --comfyui replay --quick   # smoke run, no ComfyUI
    # the txt2img template on a full-size SD1.5 with random weights (see "--workload txt2img"
    # below): 64x64/1 step 10 rounds, 256x256/4 steps 3 rounds: about 5 minutes on 2 vCPUs
    COMFYUI_DIR=... COMFYUI_PYTHON=... .venvs/stack/bin/python bench/comfyui.py \\
        --comfyui real --workload txt2img
    # on a GPU: SD1.5 at 512x512/20 steps, SDXL (built on first use, 6.9 GB) at 1024x1024
    ... --workload txt2img --sizes 512x512x20:10
    ... --workload txt2img --checkpoint sdxl --sizes 1024x1024x20:10
    .venvs/stack/bin/python bench/comfyui.py --comfyui replay --workload txt2img  # smoke run

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

``--workload txt2img``: the built-in ``txt2img`` template on a full-size checkpoint with random
weights (genstack.testing.checkpoints; ComfyUI's compute does not depend on the weights'
values, so the times are a real SD1.5's or SDXL's; the images are noise), linked into
ComfyUI's checkpoints folder. Per size (``--sizes WxHxSTEPS[:ROUNDS]``), rounds alternate:
   - direct: the graph the template binds for the run's params, ``POST /prompt`` and waited
     for by the same careful client, until its outputs are known (the websocket's end, then
     ``GET /history``: a client needs the file names, and the worker reads them the same way;
     after a prompt, when it last did over 10 s before, ComfyUI's prompt thread collects
     garbage, holding the GIL, which delays that answer by about 0.3 s on a 2-vCPU VM, for
     either kind);
   - stack: an ``image`` job with those params (template txt2img, the checkpoint, seed,
     sampler euler, scheduler normal), followed through its events until ``uploading`` and
     ``succeeded``; then, untimed, ComfyUI's /history shows it ran the very graph the direct
     client sends (its own folder aside), and each PNG (direct and in S3) has the size asked.
   Each run has its own seed and prompt text: ComfyUI reuses a node's output when its inputs
   did not change, which would skip the sampler. A pause (``--settle``) comes before every
   run. The first run of each kind is reported apart: the direct one is ComfyUI's first
   prompt, which loads the checkpoint (read once beforehand, so from the page cache); the
   stack's is the worker's first job. Added time is paired per round; the ratio is stack p50
   over direct p50. A second table takes ComfyUI's own execution of each prompt (its
   ``execution_start`` and ``execution_success`` stamps, from /history) out of both: what is
   left is the clients' and the stack's own time, which other work on a shared machine
   disturbs far less than it does the sampling.
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
from genstack.comfyui.recorder import SD15_CHECKPOINT, TXT2IMG_PARAMS
from genstack.comfyui.templates import load_templates
from genstack.comfyui.workflow import prefix_outputs
from genstack.core.contracts.comfyui_templates import template_values
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect as redis_connect
from genstack.testing.checkpoints import cached_checkpoint
from genstack.testing.comfyui_replay import ComfyReplay, load_recordings
from genstack.testing.png import read_png
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


@dataclass(frozen=True)
class Execution:
    """A prompt's execution in ComfyUI: its ``execution_start`` and ``execution_success``,
    stamped by ComfyUI in ms (time.time(): the clock of this process too), seconds."""

    start: float = 0.0
    end: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def execution(entry: dict[str, Any]) -> Execution:
    """The execution stamps of a prompt's /history entry."""
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    return Execution(stamps["execution_start"] / MS, stamps["execution_success"] / MS)


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
    comfyui: Execution = Execution()  # the prompt's own execution in ComfyUI (its /history)


class DirectClient:
    """A careful client of ComfyUI alone: one websocket for all its prompts, each prompt's
    end from it, then the outputs from /history (see the module's docstring)."""

    def __init__(
        self, url: str, outputs: Path, graph: dict[str, dict[str, Any]], timeout_s: float = 120
    ) -> None:
        self.outputs = outputs
        self.graph = graph
        self.timeout_s = timeout_s
        self.client_id = uuid.uuid4().hex
        self.http = httpx.Client(base_url=url, timeout=timeout_s, trust_env=False)
        self._exit = ExitStack()  # websockets wants its connection used as a context
        # No keep-alive pings: the socket idles through the stack's rows, and ComfyUI does not
        # answer the close frame, which the ping thread would report as an error.
        socket = connect(
            ws_url(url, self.client_id), max_size=2**26, ping_interval=None, close_timeout=1
        )
        self.ws = self._exit.enter_context(socket)
        self.runs: dict[str, DirectRun] = {}
        self._saves: dict[str, int] = {}  # prompt id -> its save nodes
        self._saved: dict[str, int] = {}

    def close(self) -> None:
        self._exit.close()
        self.http.close()

    def submit(self, graph: dict[str, dict[str, Any]] | None = None) -> str:
        """Queue ``graph`` (its outputs already under DIRECT_FOLDER), or the client's own."""
        prompt_id = str(uuid.uuid4())
        if graph is None:
            graph = with_prefix(self.graph, f"{DIRECT_FOLDER}/{uuid.uuid4().hex}/img")
        self._saves[prompt_id] = sum(
            1 for n in graph.values() if "filename_prefix" in n.get("inputs", {})
        )
        self.runs[prompt_id] = DirectRun(time.time())
        body = {"prompt": graph, "prompt_id": prompt_id, "client_id": self.client_id}
        response = self.http.post("/prompt", json=body)
        if response.status_code != 200 or response.json().get("node_errors"):
            raise SystemExit(f"ComfyUI refused the graph: {response.text[:500]}")
        return prompt_id

    def wait(self, prompt_ids: Iterable[str]) -> None:
        """Read the websocket until every one of ``prompt_ids`` has ended."""
        waiting = {p for p in prompt_ids if not self.runs[p].ended}
        deadline = time.monotonic() + self.timeout_s
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
                if self._saved[prompt_id] == self._saves[prompt_id]:
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
        self.runs[prompt_id].comfyui = execution(entry)
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

    def one(self, graph: dict[str, dict[str, Any]] | None = None) -> DirectRun:
        return self.one_with_outputs(graph)[0]

    def one_with_outputs(
        self, graph: dict[str, dict[str, Any]] | None = None
    ) -> tuple[DirectRun, list[Path]]:
        prompt_id = self.submit(graph)
        self.wait([prompt_id])
        files = self.fetch_outputs(prompt_id)
        return self.runs[prompt_id], files


# through the stack ------------------------------------------------------------------------
@dataclass
class StackRun:
    job_id: str
    submitted: float  # before POST /v1/jobs
    accepted: float = 0.0  # POST /v1/jobs answered
    seen: dict[str, float] = field(default_factory=dict)  # status -> SSE receipt here
    stamps: dict[str, float] = field(default_factory=dict)  # status -> Redis stream time
    keys: list[str] = field(default_factory=list)  # artifact keys
    comfyui: Execution = Execution()  # its prompt's own execution in ComfyUI (txt2img)


class StackClient:
    """A client of the gateway: submit a workflow job, follow its event stream."""

    def __init__(
        self,
        gateway: RunningGateway,
        store: JobStore,
        s3: S3Client,
        bucket: str,
        graph: dict[str, dict[str, Any]],
        timeout_s: float = 120,
    ) -> None:
        self.http = httpx.Client(
            base_url=gateway.url, headers=gateway.headers, timeout=timeout_s, trust_env=False
        )
        self.store = store
        self.s3 = s3
        self.bucket = bucket
        self.body = {"type": "workflow", "params": {"workflow": graph}}

    def close(self) -> None:
        self.http.close()

    def submit(self, body: dict[str, Any] | None = None) -> StackRun:
        """Submit ``body`` (a job request), or the client's own workflow job."""
        submitted = time.time()
        response = self.http.post("/v1/jobs", json=body or self.body)
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

    def one(self, body: dict[str, Any] | None = None) -> StackRun:
        run = self.submit(body)
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


# txt2img: the built-in template on a full-size checkpoint -----------------------------------
TEMPLATE = "txt2img"
# The name each random-weight checkpoint gets in ComfyUI's checkpoints folder (SD1.5's is the
# one the recordings and tests use).
CHECKPOINT_NAMES = {"sd15": SD15_CHECKPOINT, "sdxl": "genstack-sdxl-random.safetensors"}
CPU_SIZES = "64x64x1:10,256x256x4:3"  # about 5 minutes on 2 quiet vCPUs (10 under load)
QUICK_SIZES = "64x64x1:2"
REPLAY_SIZES = "64x64x1:4"  # the replay answers only the recorded graph


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    steps: int
    rounds: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}, {self.steps} step{'s' if self.steps != 1 else ''}"


def parse_sizes(text: str, rounds: int | None) -> list[Size]:
    """``WxHxSTEPS[:ROUNDS]``, comma separated (rounds 5 when not given); ``rounds``
    (--rounds) overrides every size's."""
    sizes = []
    for item in filter(None, text.replace(" ", ",").split(",")):
        shape, _, count = item.partition(":")
        try:
            width, height, steps = (int(v) for v in shape.lower().split("x"))
            sizes.append(Size(width, height, steps, rounds or int(count or 5)))
        except ValueError:
            raise SystemExit(f"--sizes: {item!r} is not WIDTHxHEIGHTxSTEPS[:ROUNDS]") from None
    if not sizes:
        raise SystemExit("--sizes: no size given")
    return sizes


def checkpoint_file(choice: str, comfyui_dir: str, comfyui_python: str) -> tuple[str, Path]:
    """(its name in ComfyUI's checkpoints folder, the file): ``sd15`` or ``sdxl`` with random
    weights (genstack.testing.checkpoints: built through COMFYUI_PYTHON once per machine, then
    cached; SDXL takes minutes and about 8 GB of memory), or a .safetensors file given."""
    if choice in CHECKPOINT_NAMES:
        if not comfyui_python:
            raise SystemExit(f"--checkpoint {choice} needs COMFYUI_PYTHON to build it")
        print(f"the random-weight {choice} checkpoint (built on first use)", flush=True)
        path = cached_checkpoint(choice, comfyui_dir=Path(comfyui_dir), python=Path(comfyui_python))
        return CHECKPOINT_NAMES[choice], path
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"--checkpoint: {choice} is neither sd15, sdxl nor a file")
    return path.name, path


def read_through(path: Path) -> None:
    """Read the file once so the page cache holds it: each kind's first run then loads the
    model from memory, on equal terms, whichever comes first."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def wait_for_template(gateway: RunningGateway, name: str, timeout_s: float = 120) -> None:
    """Until the gateway lists ``name`` as available (the worker has checked the templates
    against ComfyUI's catalogue and its checkpoints, and published them). A gateway without
    the listing is not waited for: the worker checks the templates again for each job."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(
            f"{gateway.url}/v1/templates", headers=gateway.headers, trust_env=False
        )
        if response.status_code == 404:
            print("(this gateway has no GET /v1/templates: not waited for)", flush=True)
            return
        response.raise_for_status()
        listing = {t["name"]: t for t in response.json().get("data", [])}
        entry = listing.get(name)
        if entry is not None and entry["available"]:
            return
        if entry is not None:
            raise SystemExit(f"template {name} cannot run here: {entry.get('reason')}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway did not list template {name} in {timeout_s:g}s")
        time.sleep(0.5)


class Txt2Img:
    """One run at a time of the ``txt2img`` template, straight against ComfyUI (the graph the
    template binds, through :class:`DirectClient`) or as an ``image`` job (through
    :class:`StackClient`), each checked untimed: the stack ran the very graph the direct
    client sends (from ComfyUI's /history) and each PNG has the size asked."""

    def __init__(
        self,
        direct: DirectClient,
        stack: StackClient,
        comfyui: httpx.Client,
        checkpoint: str,
        recorded: bool,
        settle_s: float,
    ) -> None:
        self.direct = direct
        self.settle_s = settle_s
        self.stack = stack
        self.comfyui = comfyui
        self.checkpoint = checkpoint
        self.recorded = recorded
        self.template = load_templates()[TEMPLATE]
        self.runs = 0

    def params(self, size: Size) -> dict[str, Any]:
        """The next run's params. ComfyUI reuses a node's output from the previous prompt
        when its inputs did not change, so each run has its own seed and prompt text: all but
        the checkpoint loader runs each time, as for a user's new request. (The replay answers
        only the recorded params.)"""
        self.runs += 1
        params = {**TXT2IMG_PARAMS, "template": TEMPLATE, "checkpoint": self.checkpoint}
        if self.recorded:
            return params
        return {
            **params,
            "prompt": f"{TXT2IMG_PARAMS['prompt']}, take {self.runs}",
            "width": size.width,
            "height": size.height,
            "steps": size.steps,
            "seed": self.runs,
        }

    def graph(self, params: dict[str, Any], folder: str) -> dict[str, dict[str, Any]]:
        """What the worker submits for an image job with ``params``, outputs under ``folder``."""
        return prefix_outputs(self.template.bind(template_values(params)), folder)

    def settle(self) -> None:
        """A pause before each run, whichever kind: ComfyUI's prompt thread collects garbage
        right after a prompt (when 10 s have passed since it last did: after every prompt
        this long), and a prompt queued meanwhile waits; unpaused, the kind submitted sooner
        after the other's prompt ended (the stack, behind the direct client) would wait."""
        time.sleep(self.settle_s)

    def direct_one(self, size: Size) -> DirectRun:
        graph = self.graph(self.params(size), f"{DIRECT_FOLDER}/{uuid.uuid4().hex}")
        self.settle()
        run, files = self.direct.one_with_outputs(graph)
        for path in files:
            check_png(path.read_bytes(), size, str(path))
        return run

    def stack_one(self, size: Size) -> StackRun:
        params = self.params(size)
        self.settle()
        run = self.stack.one({"type": "image", "params": params})
        prompt_id = str(uuid.UUID(run.job_id))  # the worker's prompt id for the job
        entry = self.comfyui.get(f"/history/{prompt_id}").json()[prompt_id]
        if entry["prompt"][2] != self.graph(params, run.job_id):
            raise SystemExit(f"job {run.job_id} ran another graph: {entry['prompt'][2]}")
        run.comfyui = execution(entry)
        for key in run.keys:
            body = self.stack.s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()
            check_png(body, size, key)
        return run


def check_png(data: bytes, size: Size, where: str) -> None:
    image = read_png(data)
    if (image.width, image.height) != (size.width, size.height):
        raise SystemExit(f"{where} is {image.width}x{image.height}, not {size.label}")


@dataclass
class SizeRuns:
    size: Size
    direct: list[DirectRun] = field(default_factory=list)
    stack: list[StackRun] = field(default_factory=list)

    def times(self) -> tuple[list[float], list[float], list[float]]:
        """Seconds per run: direct (until its outputs are known: the websocket's end, then
        /history, as the worker does), stack until `uploading`, until `succeeded`."""
        return (
            [d.outputs - d.submitted for d in self.direct],
            [r.seen["uploading"] - r.submitted for r in self.stack],
            [r.seen["succeeded"] - r.submitted for r in self.stack],
        )

    def around(self) -> dict[str, list[float]]:
        """Seconds per run around ComfyUI's own execution of the prompt (``comfyui``,
        ``stack comfyui``): before it started (the direct client's POST /prompt; the stack's
        gateway, queue, worker and POST /prompt) and after it ended (until the websocket said
        so and /history answered; until `uploading`, `succeeded` and their events read
        here)."""
        return {
            "comfyui": [d.comfyui.seconds for d in self.direct],
            "stack comfyui": [r.comfyui.seconds for r in self.stack],
            "before": [d.comfyui.start - d.submitted for d in self.direct],
            "after": [d.outputs - d.comfyui.end for d in self.direct],
            "stack before": [r.comfyui.start - r.submitted for r in self.stack],
            "stack after uploading": [r.seen["uploading"] - r.comfyui.end for r in self.stack],
            "stack after succeeded": [r.seen["succeeded"] - r.comfyui.end for r in self.stack],
        }


def txt2img_rounds(bench: Txt2Img, sizes: list[Size]) -> tuple[SizeRuns, list[SizeRuns]]:
    """The first run of each kind (the direct one is ComfyUI's first prompt: it loads the
    checkpoint; the stack's is the worker's first job), then per size its rounds, direct
    then stack."""
    first = SizeRuns(sizes[0])
    print(f"first run of each kind, {sizes[0].label}: ComfyUI loads the model", flush=True)
    first.direct.append(bench.direct_one(sizes[0]))
    first.stack.append(bench.stack_one(sizes[0]))
    print_runs(first, net=not bench.recorded)
    results = []
    for size in sizes:
        print(f"{size.label}: {size.rounds} rounds, direct then through the stack", flush=True)
        runs = SizeRuns(size)
        for _ in range(size.rounds):
            runs.direct.append(bench.direct_one(size))
            runs.stack.append(bench.stack_one(size))
            print_runs(runs, last=True, net=not bench.recorded)
        results.append(runs)
    return first, results


def print_runs(runs: SizeRuns, last: bool = False, net: bool = True) -> None:
    """Each run (the last only, with ``last``); ``net``: with ComfyUI's part (not for the
    replay, whose recorded stamps are the recording's)."""
    direct, uploading, succeeded = runs.times()
    around = runs.around()
    for i in range(len(direct))[-1:] if last else range(len(direct)):
        if not net:
            print(
                f"  direct {direct[i]:.3f} s | stack {uploading[i]:.3f} s until uploading, "
                f"{succeeded[i]:.3f} s until succeeded",
                flush=True,
            )
            continue

        def ms(key: str, i: int = i) -> str:
            return f"{around[key][i] * MS:.0f}"

        print(
            f"  direct {direct[i]:.3f} s (ComfyUI {around['comfyui'][i]:.3f} s, "
            f"{ms('before')} ms before, {ms('after')} after) | stack {uploading[i]:.3f} s "
            f"until uploading, {succeeded[i]:.3f} s until succeeded (ComfyUI "
            f"{around['stack comfyui'][i]:.3f} s, {ms('stack before')} ms before, "
            f"{ms('stack after uploading')} / {ms('stack after succeeded')} after)",
            flush=True,
        )


def report_txt2img(
    first: SizeRuns, results: list[SizeRuns], checkpoint: str, net: bool = True
) -> None:
    """Two tables: the times as a client sees them, and (``net``; not for the replay, whose
    recorded stamps are the recording's) the same net of ComfyUI's own execution of each
    prompt: what is left is the clients' and the stack's own time, which a machine busy with
    other work disturbs far less than it does the sampling."""

    def p50(values: list[float]) -> float:
        return percentile(values, 0.5)

    def paired(values: list[float], base: list[float]) -> float:
        """p50 of the per-round differences, in ms."""
        return p50([v - b for v, b in zip(values, base, strict=True)]) * MS

    rows = [(r.size.label, r) for r in results]
    print(
        f"\n| txt2img, {checkpoint} | rounds | direct p50 s | stack p50 s, until `uploading` "
        "| stack p50 s, until `succeeded` | added p50 ms, until `uploading` "
        "| added p50 ms, until `succeeded` | stack/direct, `succeeded` |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for label, runs in rows:
        direct, uploading, succeeded = runs.times()
        print(
            f"| {label} | {len(direct)} | {p50(direct):.3f} | {p50(uploading):.3f} "
            f"| {p50(succeeded):.3f} | {paired(uploading, direct):.0f} "
            f"| {paired(succeeded, direct):.0f} | {p50(succeeded) / p50(direct):.3f} |"
        )
    if not net:
        return
    direct, uploading, succeeded = first.times()
    a = first.around()
    print(
        f"\n| first run of each kind, {first.size.label} | seconds | ComfyUI's execution s "
        f"| the rest ms |\n|---|---:|---:|---:|\n"
        f"| direct: ComfyUI's first prompt, which loads the checkpoint | {direct[0]:.3f} "
        f"| {a['comfyui'][0]:.3f} | {(a['before'][0] + a['after'][0]) * MS:.0f} |\n"
        f"| stack, until `succeeded`: the worker's first job, the checkpoint loaded "
        f"| {succeeded[0]:.3f} | {a['stack comfyui'][0]:.3f} "
        f"| {(a['stack before'][0] + a['stack after succeeded'][0]) * MS:.0f} |"
    )
    print(
        "\n| net of ComfyUI's execution | ComfyUI p50 s, direct | ComfyUI p50 s, stack "
        "| direct: before + after p50 ms | stack: before p50 ms "
        "| stack: after, until `uploading` p50 ms | ..., until `succeeded` p50 ms "
        "| added p50 ms, until `uploading` | added p50 ms, until `succeeded` "
        "| (direct p50 + added) / direct p50 |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for label, runs in rows:
        direct = runs.times()[0]
        a = runs.around()
        rest = [b + e for b, e in zip(a["before"], a["after"], strict=True)]
        rest_up, rest_done = (
            [b + e for b, e in zip(a["stack before"], a[f"stack after {status}"], strict=True)]
            for status in ("uploading", "succeeded")
        )
        added_done = paired(rest_done, rest)
        print(
            f"| {label} | {p50(a['comfyui']):.3f} | {p50(a['stack comfyui']):.3f} "
            f"| {p50(rest) * MS:.0f} | {p50(a['stack before']) * MS:.0f} "
            f"| {p50(a['stack after uploading']) * MS:.0f} "
            f"| {p50(a['stack after succeeded']) * MS:.0f} "
            f"| {paired(rest_up, rest):.0f} | {added_done:.0f} "
            f"| {(p50(direct) + added_done / MS) / p50(direct):.3f} |"
        )


# the run ----------------------------------------------------------------------------------
@contextmanager
def running_stack(
    source: str,
    work: Path,
    comfyui_dir: str,
    comfyui_python: str,
    checkpoint: tuple[str, Path] | None = None,
) -> Iterator[tuple[str, str, RunningGateway, S3Server, str]]:
    """(ComfyUI's URL, Redis's URL, the gateway, the S3 server, its bucket), the uploader
    running; the worker is started by the caller (it is restarted between measurements).
    ``checkpoint`` (name, file) is linked into ComfyUI's checkpoints folder first, where
    provisioning would put a model (as tests/test_comfyui_stack.py does)."""
    outputs = work / "outputs"  # what start_gateway and start_uploader use under work
    if checkpoint is not None:
        name, path = checkpoint
        folder = work / "models" / "checkpoints"  # start_comfyui's MODELS_DIR is work/models
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(path.resolve())
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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> None:
    print(
        f"machine: {os.cpu_count()} cores, load (1, 5, 15 min) {load()}, "
        f"python {sys.version.split()[0]}",
        flush=True,
    )


def comfyui_version(url: str) -> None:
    stats = httpx.get(f"{url}/system_stats", trust_env=False).json()
    system = stats.get("system", {})
    devices = [d.get("type") for d in stats.get("devices", [])]
    print(f"ComfyUI {system.get('comfyui_version')} on {devices}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", choices=["real", "replay"], default="real")
    parser.add_argument(
        "--workload",
        choices=["workflow", "txt2img"],
        default="workflow",
        help="workflow: the model-free graph (latency and jobs per second); txt2img: the "
        "txt2img template on a full-size checkpoint, direct vs as an image job",
    )
    parser.add_argument("--quick", action="store_true", help="few jobs, for a smoke run")
    parser.add_argument(
        "--rounds", type=int, help="latency rounds (default 100, quick 4; txt2img: per size)"
    )
    parser.add_argument("--jobs", type=int, help="jobs per throughput row (default 150, quick 6)")
    parser.add_argument(
        "--sizes",
        help=f"txt2img: WIDTHxHEIGHTxSTEPS[:ROUNDS], comma separated (default {CPU_SIZES}; "
        f"quick {QUICK_SIZES}; replay {REPLAY_SIZES}, the recorded one)",
    )
    parser.add_argument(
        "--checkpoint",
        default="sd15",
        help="txt2img: sd15 or sdxl (random weights, built and cached on first use) or a "
        ".safetensors file",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="txt2img: seconds one run may take"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="txt2img: seconds of pause before each run, either kind (ComfyUI's garbage "
        "collection between prompts)",
    )
    parser.add_argument("--comfyui-dir", default=os.environ.get("COMFYUI_DIR", ""))
    parser.add_argument("--comfyui-python", default=os.environ.get("COMFYUI_PYTHON", ""))
    args = parser.parse_args()
    if args.comfyui == "real" and not args.comfyui_dir:
        parser.error("--comfyui real needs COMFYUI_DIR (or --comfyui-dir): a ComfyUI checkout")
    if args.workload == "txt2img":
        return txt2img_main(args)
    return workflow_main(args)


def txt2img_main(args: argparse.Namespace) -> int:
    recorded = args.comfyui == "replay"
    default = REPLAY_SIZES if recorded else QUICK_SIZES if args.quick else CPU_SIZES
    sizes = parse_sizes(args.sizes or default, args.rounds)
    if recorded and any((s.width, s.height, s.steps) != (64, 64, 1) for s in sizes):
        raise SystemExit("the replay answers only the recorded txt2img: 64x64x1")
    checkpoint: tuple[str, Path] | None = None
    if recorded:
        name, label = SD15_CHECKPOINT, "replay of SD1.5 (recorded)"
    else:
        checkpoint = checkpoint_file(args.checkpoint, args.comfyui_dir, args.comfyui_python)
        name, label = checkpoint[0], f"{args.checkpoint} with random weights"
        read_through(checkpoint[1])
    started = time.time()
    machine()
    with (
        tempfile.TemporaryDirectory(prefix="bench-comfyui-") as tmp,
        running_stack(
            args.comfyui, Path(tmp), args.comfyui_dir, args.comfyui_python, checkpoint
        ) as (url, redis_url, gateway, s3, bucket),
    ):
        work = Path(tmp)
        outputs = work / "outputs"
        comfyui_version(url)
        store = JobStore(redis_connect(redis_url))
        direct = DirectClient(url, outputs, {}, timeout_s=args.timeout)
        client = StackClient(gateway, store, s3.client(), bucket, {}, timeout_s=args.timeout)
        comfyui = httpx.Client(base_url=url, timeout=60, trust_env=False)
        worker = start_bridge(redis_url, work, outputs, url, 1)
        try:
            wait_for_template(gateway, TEMPLATE)
            bench = Txt2Img(direct, client, comfyui, name, recorded, args.settle)
            first, results = txt2img_rounds(bench, sizes)
        finally:
            worker.stop()
            direct.close()
            client.close()
            comfyui.close()
    print(f"done in {time.time() - started:.0f} s; load (1, 5, 15 min) {load()}", flush=True)
    report_txt2img(first, results, label, net=not recorded)
    return 0


def workflow_main(args: argparse.Namespace) -> int:

    rounds = args.rounds or (4 if args.quick else 100)
    jobs = args.jobs or (6 if args.quick else 150)
    warmup = 2 if args.quick else 5
    graph = graph_for(args.comfyui)
    machine()
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
        comfyui_version(url)
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
