#!/usr/bin/env python3
"""Provisioning benchmark: genstack-provision against aria2c and curl, resume after SIGKILL,
restart with a 100 GB set present; and the same against servers that cap each connection.

    .venvs/stack/bin/python bench/provision.py [--size-gib 2] [--runs 3] [--restart-gb 100]
    .venvs/stack/bin/python bench/provision.py --capped [--sizes-mib 512,2048] \
        [--caps-mb 8,32] [--rounds 3] [--cap-mode request,connection] [--total-cap-mb N]

Default (uncapped):

1. A 2 GiB random file served by a local nginx (Debian package) on 127.0.0.1. Each tool fetches
   it ``--runs`` times, interleaved, from a warm page cache; the table shows the median time,
   MB/s and the ratio to ``aria2c -x16 -s16``. genstack-provision runs as the console script
   (process start-up included) and checks the file's sha256 before renaming it; aria2c and curl
   check nothing, so "aria2c + sha256sum" is shown for reference. Targets: >= 0.9x aria2c and
   faster than curl.
2. Resume: genstack-provision is SIGKILLed half-way, then run again; nginx's access log says
   how many bytes were sent in all. Target: under 5 % of the file re-fetched.
3. Restart: 50 sparse files of 2 GB (100 GB) in a manifest with their sha256 and in the ledger;
   the time for genstack-provision to find everything present (process and in-process).
   Target: under 2 s. No request may reach nginx.

``--capped``: files of each ``--sizes-mib`` from servers that cap each connection at each of
``--caps-mb`` MB/s (and uncapped, a row with cap 0), as a CDN does. Per round genstack-provision
(sha256 verified) and ``aria2c -x16 -s16`` (nothing verified) alternate, the first of the pair
alternating too; curl (one connection) runs once per row, stopped after ``--curl-max-s`` and
reported from the bytes it had by then. Per tool: median seconds, MB/s, ratio to aria2c, CPU
seconds per GB (user + system of the process, from rusage) and the requests nginx logged.
Then the resume check above on the largest file, uncapped. Two ways to cap (``--cap-mode``):

- ``request``: nginx's ``limit_rate`` in the http server. nginx applies it per *request*,
  and each request may send one second's worth at once before the limit bites (its write
  filter allows rate x (elapsed seconds + 1)), so a client that makes more requests gets
  more than the cap: the table gives each tool's request count.
- ``connection``: nginx's stream module (``proxy_download_rate``) in front of the http server,
  a limit per TCP connection whatever the requests on it (what a CDN's per-connection cap
  is). Needs ``libnginx-mod-stream``.

``--total-cap-mb`` adds a cap on all connections together (a link), by a relay in this
process (splice, one shared token bucket) in front of nginx.

genstack-provision runs with a bytecode cache (PYTHONPYCACHEPREFIX in the work folder, filled by
a first untimed run), as installed in the images (UV_COMPILE_BYTECODE=1): without one every
run would compile ~1000 modules first.

nginx (and its stream module), aria2 and curl are installed with apt-get when missing. Results
also go to bench/.results/provision.json (--capped: provision-capped.json).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genstack.provision import ensure_models, parse_manifest
from genstack.provision.gpu import resolve_profile
from genstack.provision.ledger import ModelLedger
from genstack.provision.plan import part_bytes

GiB = 2**30
MiB = 2**20
TOOLS = {"nginx": "nginx-light", "aria2c": "aria2", "curl": "curl"}
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
RESULTS = Path(__file__).resolve().parent / ".results"
PROVISION = str(Path(sys.executable).parent / "genstack-provision")


def find(cmd: str) -> str | None:
    return shutil.which(cmd) or next(
        (p for p in (f"/usr/sbin/{cmd}", f"/sbin/{cmd}") if os.access(p, os.X_OK)), None
    )


def ensure_tools(stream: bool = False) -> dict[str, str]:
    missing = [pkg for cmd, pkg in TOOLS.items() if find(cmd) is None]
    if stream and not STREAM_MODULE.exists():
        missing.append("libnginx-mod-stream")
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], check=True)
    return {cmd: str(find(cmd)) for cmd in TOOLS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, error: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(error.read_text() if error.exists() else "no server") from None
            time.sleep(0.05)


class Nginx:
    """nginx serving ``www`` on 127.0.0.1: plain, with ``limit_rate`` per request
    (``per_request``), or behind its stream proxy capping each connection
    (``per_connection``); bytes/s. ``url`` is where clients connect."""

    def __init__(
        self,
        binary: str,
        work: Path,
        www: Path,
        *,
        per_request: int = 0,
        per_connection: int = 0,
    ) -> None:
        self.work, self.port = work, free_port()
        self.log = work / "access.log"
        limit = f"limit_rate {per_request};" if per_request else ""
        stream, load, self.front = "", "", self.port
        if per_connection:
            self.front = free_port()
            load = f"load_module {STREAM_MODULE};"
            stream = f"""
stream {{
  server {{ listen 127.0.0.1:{self.front}; proxy_pass 127.0.0.1:{self.port};
           proxy_download_rate {per_connection}; }}
}}"""
        conf = work / "nginx.conf"
        conf.write_text(
            f"""
{load}
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bench '$request_uri $status $body_bytes_sent';
  access_log {self.log} bench;
  sendfile on; tcp_nopush on;
  keepalive_requests 100000; keepalive_timeout 65;
  server {{ listen 127.0.0.1:{self.port}; root {www}; {limit} }}
}}{stream}
"""
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(work), "-g", "daemon off;"],
            start_new_session=True,
        )
        for port in {self.port, self.front}:
            wait_for_port(port, self.proc, work / "error.log")
        self.version = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, check=False
        ).stderr.strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front}"

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def lines_since(self, mark: int) -> list[str]:
        with self.log.open("rb") as f:
            f.seek(mark)
            return f.read().decode().splitlines()

    def bytes_since(self, mark: int, uri: str) -> int:
        total = 0
        for line in self.lines_since(mark):
            parts = line.split()
            if len(parts) == 3 and parts[0] == uri:
                total += int(parts[2])
        return total

    def requests_since(self, mark: int, uri: str) -> int:
        return sum(1 for line in self.lines_since(mark) if line.split()[:1] == [uri])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class TotalCap:
    """A TCP relay capping all its connections together at ``rate`` bytes/s (a link): bytes
    from the upstream go through a pipe with ``splice`` (no copy into this process) in
    pieces paid from one token bucket. Requests go the other way uncapped."""

    PIECE = 256 * 1024

    def __init__(self, upstream: int, rate: int) -> None:
        self.upstream, self.rate = upstream, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.tokens, self.at = 0.0, time.monotonic()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _take(self, n: int) -> None:
        with self.lock:  # one bucket for every connection; at most a piece of burst
            now = time.monotonic()
            self.tokens = min(float(self.PIECE), self.tokens + (now - self.at) * self.rate)
            self.at = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, capped: bool) -> None:
        read, write = os.pipe()
        try:
            while True:
                n = os.splice(src.fileno(), write, self.PIECE)
                if n == 0:
                    break
                if capped:
                    self._take(n)
                while n:
                    n -= os.splice(read, dst.fileno(), n)
        except OSError:
            pass
        finally:
            os.close(read)
            os.close(write)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.listener.close()


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    chunk = 64 * 2**20
    with path.open("wb") as out:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            digest.update(data)
            out.write(data)
            left -= len(data)
    path.chmod(0o644)
    return digest.hexdigest()


def timed(
    cmd: list[str], env: dict[str, str] | None = None, *, ok: tuple[int, ...] = (0,)
) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of the command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        cmd, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if done.returncode not in ok:
        raise SystemExit(f"{cmd[0]} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISION_", "HF_"))}
    return {**env, "PROVISION_PROGRESS": "off", "LOG_LEVEL": "WARNING", **extra}


def throughput(
    args: argparse.Namespace, tools: dict[str, str], nginx: Nginx, work: Path, size: int, sha: str
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    url = f"{nginx.url}/big.bin"
    manifest = work / "bench.yaml"
    manifest.write_text(
        f"schema: 1\nname: bench\nmodels:\n  - id: big\n    source: {url}\n"
        f"    dest: big.bin\n    size: {size}\n    sha256: {sha}\n"
    )
    out = work / "out"
    times: dict[str, list[float]] = {"genstack": [], "aria2c": [], "curl": [], "sha256sum": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    for run in range(args.runs):
        for tool in ("genstack", "aria2c", "curl"):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run(["sync"], check=True)  # each tool starts with no dirty pages
            if tool == "genstack":
                cmd = [PROVISION, "-m", str(manifest), "--models-dir", str(out)]
                seconds, used = timed(cmd, clean_env())
                target = out / "big.bin"
            elif tool == "aria2c":
                cmd = [
                    tools["aria2c"],
                    "-x16",
                    "-s16",
                    "-q",
                    "--allow-overwrite=true",
                    "-d",
                    str(out),
                    "-o",
                    "big.bin",
                    url,
                ]
                seconds, used = timed(cmd)
                target = out / "big.bin"
                hash_s, hash_cpu = timed(["sha256sum", str(target)])
                times["sha256sum"].append(hash_s)
                cpu["sha256sum"].append(hash_cpu)
            else:
                target = out / "big.bin"
                seconds, used = timed([tools["curl"], "-sS", "-o", str(target), url])
            if sha256_file(target) != sha:
                raise SystemExit(f"{tool} produced a wrong file")
            times[tool].append(seconds)
            cpu[tool].append(used)
            print(f"  run {run + 1} {tool:9s} {seconds:6.2f} s, {used:5.2f} CPU s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return times, cpu


def resume(nginx: Nginx, manifest: Path, work: Path, size: int, uri: str) -> dict[str, float]:
    out = work / "resume"
    shutil.rmtree(out, ignore_errors=True)
    dest = out / "big.bin"
    mark = nginx.mark()
    first = subprocess.Popen(
        [PROVISION, "-m", str(manifest), "--models-dir", str(out)],
        env=clean_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while part_bytes(dest) < size // 2:
        if first.poll() is not None:
            raise SystemExit("genstack-provision ended before it could be killed")
        time.sleep(0.002)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    written = part_bytes(dest)
    time.sleep(0.5)  # nginx logs the cut connections
    sent_first = nginx.bytes_since(mark, uri)
    started = time.perf_counter()
    subprocess.run(
        [PROVISION, "-m", str(manifest), "--models-dir", str(out)], env=clean_env(), check=True
    )
    second_s = time.perf_counter() - started
    time.sleep(0.2)
    total = nginx.bytes_since(mark, uri)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "killed_at_fraction": written / size,
        "sent_before_kill": sent_first,
        "sent_total": total,
        "refetched_fraction": (total - size) / size,
        "second_run_s": second_s,
    }


def restart(nginx: Nginx, work: Path, total_gb: int, files: int) -> dict[str, float]:
    root = work / "restart"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    each = total_gb * 10**9 // files
    digest = hashlib.sha256()
    zeros = bytes(64 * 2**20)
    left = each
    while left:
        digest.update(zeros[: min(len(zeros), left)])
        left -= min(len(zeros), left)
    sha = digest.hexdigest()  # sparse files read as zeros
    lines = ["schema: 1", "name: restart", "models:"]
    for i in range(files):
        rel = f"diffusion_models/model-{i:03d}.safetensors"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.truncate(each)
        lines += [
            f"  - id: m{i:03d}",
            f"    source: {nginx.url}/never/{i}.bin",
            f"    dest: {rel}",
            f"    size: {each}",
            f"    sha256: {sha}",
        ]
    manifest_path = work / "restart.yaml"
    manifest_path.write_text("\n".join(lines) + "\n")
    ledger = ModelLedger(root)
    for i in range(files):
        rel = f"diffusion_models/model-{i:03d}.safetensors"
        ledger.record(rel, sha, f"{nginx.url}/never/{i}.bin", "manifest")
    mark = nginx.mark()
    process = []
    for _ in range(3):
        started = time.perf_counter()
        result = subprocess.run(
            [PROVISION, "-m", str(manifest_path), "--models-dir", str(root), "--json"],
            env=clean_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        process.append(time.perf_counter() - started)
        if json.loads(result.stdout)["fetched"]:
            raise SystemExit("the restart fetched something")
    manifest = parse_manifest(manifest_path.read_text())
    profile = resolve_profile({}, assume_vram_gb=24)
    inproc = []
    for _ in range(3):
        started = time.perf_counter()
        report = ensure_models(manifest, root, clean_env(), profile=profile)
        inproc.append(time.perf_counter() - started)
        assert report.plan.all_present
    if nginx.lines_since(mark):
        raise SystemExit(f"the restart made requests: {nginx.lines_since(mark)}")
    shutil.rmtree(root, ignore_errors=True)
    return {
        "files": files,
        "bytes": each * files,
        "process_s": statistics.median(process),
        "in_process_s": statistics.median(inproc),
    }


def uncapped(args: argparse.Namespace, work: Path) -> None:
    tools = ensure_tools()
    www = work / "www"
    www.mkdir(mode=0o755)
    size = int(args.size_gib * GiB)
    print(f"creating a {args.size_gib:g} GiB file in {work}", flush=True)
    sha = make_file(www / "big.bin", size)
    with (www / "big.bin").open("rb") as f:  # warm the page cache for every tool alike
        while f.read(64 * 2**20):
            pass
    nginx = Nginx(tools["nginx"], work, www)
    try:
        print(f"{nginx.version} on {nginx.url}; {args.runs} runs per tool", flush=True)
        times, cpu = throughput(args, tools, nginx, work, size, sha)
        print("resume after SIGKILL", flush=True)
        resumed = resume(nginx, work / "bench.yaml", work, size, "/big.bin")
        print(f"restart with {args.restart_gb} GB present", flush=True)
        restarted = restart(nginx, work, args.restart_gb, args.restart_files)
    finally:
        nginx.stop()

    med = {k: statistics.median(v) for k, v in times.items() if v}
    mcpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    aria = size / med["aria2c"] / 1e6
    rows = [
        ("genstack-provision (sha256 verified)", med["genstack"], mcpu["genstack"]),
        ("aria2c -x16 -s16", med["aria2c"], mcpu["aria2c"]),
        (
            "aria2c -x16 -s16, then sha256sum",
            med["aria2c"] + med["sha256sum"],
            mcpu["aria2c"] + mcpu["sha256sum"],
        ),
        ("curl (single stream)", med["curl"], mcpu["curl"]),
    ]
    load = os.getloadavg()[0]
    print()
    print(
        f"Provisioning: {args.size_gib:g} GiB from {nginx.version} on 127.0.0.1, "
        f"median of {args.runs} runs ({os.cpu_count()} CPUs {platform.machine()}, "
        f"load {load:.1f})"
    )
    print(f"{'tool':40s} {'seconds':>8s} {'MB/s':>7s} {'vs aria2c':>10s} {'CPU s':>7s}")
    for name, seconds, used in rows:
        rate = size / seconds / 1e6
        print(f"{name:40s} {seconds:8.2f} {rate:7.0f} {rate / aria:9.2f}x {used:7.2f}")
    print()
    print(
        f"resume after SIGKILL at {resumed['killed_at_fraction']:.0%}: nginx sent "
        f"{resumed['sent_total'] / GiB:.3f} GiB in all for a {size / GiB:g} GiB file, "
        f"{resumed['refetched_fraction']:.2%} re-fetched (target < 5%)"
    )
    print(
        f"restart with {restarted['bytes'] / 1e9:.0f} GB present ({restarted['files']} files, "
        f"ledger): {restarted['process_s']:.2f} s for the genstack-provision process, "
        f"{restarted['in_process_s'] * 1000:.0f} ms in-process (target < 2 s); no requests"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "provision.json").write_text(
        json.dumps(
            {
                "size": size,
                "runs": times,
                "cpu": cpu,
                "median": med,
                "resume": resumed,
                "restart": restarted,
                "load": load,
            },
            indent=2,
        )
    )


# ---------------------------------------------------------------------- capped


def manifest_for(work: Path, name: str, url: str, size: int, sha: str) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(
        f"schema: 1\nname: bench\nmodels:\n  - id: big\n    source: {url}\n"
        f"    dest: big.bin\n    size: {size}\n    sha256: {sha}\n"
    )
    return path


def fetch_once(
    tool: str, tools: dict[str, str], url: str, manifest: Path, out: Path, curl_max_s: float
) -> tuple[float, float, int]:
    """One fetch into a fresh ``out``: wall s, CPU s, bytes on disk."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(["sync"], check=True)  # each tool starts with no dirty pages
    target = out / "big.bin"
    if tool == "genstack":
        cmd = [PROVISION, "-m", str(manifest), "--models-dir", str(out)]
        seconds, used = timed(cmd, clean_env())
    elif tool == "aria2c":
        cmd = [tools["aria2c"], "-x16", "-s16", "-q", "--allow-overwrite=true"]
        seconds, used = timed([*cmd, "-d", str(out), "-o", "big.bin", url])
    else:  # curl: rc 28 is its --max-time
        cmd = [tools["curl"], "-sS", "--max-time", f"{curl_max_s:g}", "-o", str(target), url]
        seconds, used = timed(cmd, ok=(0, 28))
    return seconds, used, target.stat().st_size if target.exists() else 0


@dataclass
class Row:
    size: int
    mode: str  # uncapped | request | connection
    cap: int  # bytes/s per connection, 0: none
    runs: dict[str, list[tuple[float, float, int]]]  # tool -> (seconds, CPU s, requests)
    curl_partial: bool = False
    load: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        if not self.cap:
            return f"{self.size // MiB} MiB, uncapped"
        return f"{self.size // MiB} MiB, {self.mode} {self.cap / 1e6:g} MB/s"


def capped(args: argparse.Namespace, work: Path) -> None:
    modes = [m.strip() for m in args.cap_mode.split(",") if m.strip()]
    tools = ensure_tools(stream="connection" in modes)
    www = work / "www"
    www.mkdir(mode=0o755)
    sizes = [int(s) * MiB for s in args.sizes_mib.split(",")]
    caps = [int(float(c) * 1e6) for c in args.caps_mb.split(",")]
    files: dict[int, str] = {}
    for size in sizes:
        print(f"creating a {size // MiB} MiB file", flush=True)
        files[size] = make_file(www / f"f{size // MiB}.bin", size)
        with (www / f"f{size // MiB}.bin").open("rb") as f:  # warm the page cache
            while f.read(64 * MiB):
                pass
    # Fill the bytecode cache (untimed).
    subprocess.run([PROVISION, "schema"], env=clean_env(), stdout=subprocess.DEVNULL, check=True)
    rows: list[Row] = []
    resumed: dict[str, float] | None = None
    settings = [("uncapped", 0)] if args.uncapped else []
    settings += [(mode, cap) for mode in modes for cap in caps]
    version = ""
    for mode, cap in settings:
        server_dir = work / f"nginx-{mode}-{cap}"
        server_dir.mkdir(mode=0o755)
        nginx = Nginx(
            tools["nginx"],
            server_dir,
            www,
            per_request=cap if mode == "request" else 0,
            per_connection=cap if mode == "connection" else 0,
        )
        version = nginx.version
        relay = TotalCap(nginx.front, int(args.total_cap_mb * 1e6)) if args.total_cap_mb else None
        base = relay.url if relay else nginx.url
        try:
            for size in sizes:
                row = Row(size, mode, cap, {"genstack": [], "aria2c": []})
                rows.append(row)
                measure(args, tools, nginx, work, row, base, files[size])
            if mode == "uncapped" and args.resume:
                size = max(sizes)
                uri = f"/f{size // MiB}.bin"
                manifest = manifest_for(work, "resume", base + uri, size, files[size])
                print(f"resume after SIGKILL, {size // MiB} MiB, uncapped", flush=True)
                resumed = resume(nginx, manifest, work, size, uri)
        finally:
            if relay:
                relay.stop()
            nginx.stop()
    report(args, rows, resumed, version)


def measure(
    args: argparse.Namespace,
    tools: dict[str, str],
    nginx: Nginx,
    work: Path,
    row: Row,
    base: str,
    sha: str,
) -> None:
    """The rounds of one row: genstack-provision and aria2c alternating, then curl once."""
    uri = f"/f{row.size // MiB}.bin"
    url = base + uri
    manifest = manifest_for(work, f"m-{row.mode}-{row.cap}-{row.size}", url, row.size, sha)
    out = work / "out"
    print(f"{row.label}: {args.rounds} rounds", flush=True)
    row.load.append(os.getloadavg()[0])
    for n in range(args.rounds):
        for tool in ["genstack", "aria2c"] if n % 2 == 0 else ["aria2c", "genstack"]:
            mark = nginx.mark()
            seconds, used, got = fetch_once(tool, tools, url, manifest, out, args.curl_max_s)
            if got != row.size or sha256_file(out / "big.bin") != sha:
                raise SystemExit(f"{tool} produced a wrong file ({row.label})")
            time.sleep(0.2)  # nginx logs the last requests
            requests = nginx.requests_since(mark, uri)
            row.runs[tool].append((seconds, used, requests))
            print(
                f"  {n + 1} {tool:9s} {seconds:6.2f} s {used:5.2f} CPU s {requests:4d} requests",
                flush=True,
            )
    mark = nginx.mark()
    seconds, used, got = fetch_once("curl", tools, url, manifest, out, args.curl_max_s)
    time.sleep(0.2)
    share = row.size / max(got, 1)  # a curl stopped by --max-time: scaled to the whole file
    row.runs["curl"] = [(seconds * share, used * share, nginx.requests_since(mark, uri))]
    row.curl_partial = got < row.size
    print(f"  curl {got / MiB:.0f} MiB in {seconds:.2f} s", flush=True)
    row.load.append(os.getloadavg()[0])
    shutil.rmtree(out, ignore_errors=True)


def report(
    args: argparse.Namespace, rows: list[Row], resumed: dict[str, float] | None, version: str
) -> None:
    names = {
        "genstack": "genstack-provision (sha256 verified)",
        "aria2c": "aria2c -x16 -s16",
        "curl": "curl (one connection)",
    }
    modes = {"request": "limit_rate, per request", "connection": "stream proxy, per connection"}
    total = f", all connections together {args.total_cap_mb:g} MB/s" if args.total_cap_mb else ""
    print()
    print(
        f"Provisioning, capped: {version} on 127.0.0.1{total}; median of {args.rounds} rounds "
        f"({os.cpu_count()} CPUs {platform.machine()})"
    )
    print(
        "| file | cap per connection | tool | seconds | MB/s | vs aria2c | CPU s/GB | requests |",
        end="",
    )
    print(" load |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    table = []
    for row in rows:
        med = {t: statistics.median(r[0] for r in v) for t, v in row.runs.items()}
        aria = row.size / med["aria2c"] / 1e6
        where = f"{row.cap / 1e6:g} MB/s ({modes[row.mode]})" if row.cap else "none"
        for tool in ("genstack", "aria2c", "curl"):
            seconds = med[tool]
            cpu = statistics.median(r[1] for r in row.runs[tool]) / (row.size / 1e9)
            requests = statistics.median(r[2] for r in row.runs[tool])
            rate = row.size / seconds / 1e6
            star = "*" if tool == "curl" and row.curl_partial else ""
            print(
                f"| {row.size // MiB} MiB | {where} | {names[tool]} | {seconds:.2f}{star} | "
                f"{rate:.0f} | {rate / aria:.2f}x | {cpu:.2f} | {requests:.0f} | "
                f"{min(row.load):.1f}-{max(row.load):.1f} |"
            )
            table.append(
                {
                    "size": row.size,
                    "mode": row.mode,
                    "cap": row.cap,
                    "tool": tool,
                    "seconds": seconds,
                    "ratio": rate / aria,
                    "cpu_s_per_gb": cpu,
                    "requests": requests,
                }
            )
    if any(r.curl_partial for r in rows):
        print(f"* curl stopped after {args.curl_max_s:g} s: time scaled from the bytes it had.")
    if resumed:
        print(
            f"resume after SIGKILL at {resumed['killed_at_fraction']:.0%} (uncapped, "
            f"{max(r.size for r in rows) // MiB} MiB): nginx sent "
            f"{resumed['sent_total'] / GiB:.3f} GiB in all, "
            f"{resumed['refetched_fraction']:.2%} re-fetched (target < 5%)"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "provision-capped.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "table": table, "resume": resumed}, indent=2)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--restart-gb", type=int, default=100)
    parser.add_argument("--restart-files", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--capped", action="store_true", help="the capped comparison")
    parser.add_argument("--sizes-mib", default="512,2048")
    parser.add_argument("--caps-mb", default="8,32", help="per connection, MB/s (10^6)")
    parser.add_argument("--cap-mode", default="request,connection")
    parser.add_argument("--total-cap-mb", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--curl-max-s", type=float, default=20.0)
    parser.add_argument("--no-uncapped", dest="uncapped", action="store_false")
    parser.add_argument("--no-resume", dest="resume", action="store_false")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="genstack-bench-", dir=args.workdir))
    work.chmod(0o755)  # nginx workers run as another user
    # genstack-provision as installed in the images, with compiled bytecode (see above).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        if args.capped:
            capped(args, work)
        else:
            uncapped(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
