#!/usr/bin/env python3
"""Provisioning benchmark: genstack-provision against aria2c and curl, resume after SIGKILL,
restart with a 100 GB set present.

    .venvs/stack/bin/python bench/provision.py [--size-gib 2] [--runs 3] [--restart-gb 100]

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

nginx, aria2 and curl are installed with apt-get when missing. Results also go to
bench/.results/provision.json.
"""

from __future__ import annotations

import argparse
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
import time
from pathlib import Path

from genstack.provision import ensure_models, parse_manifest
from genstack.provision.gpu import resolve_profile
from genstack.provision.ledger import ModelLedger
from genstack.provision.plan import part_bytes

GiB = 2**30
TOOLS = {"nginx": "nginx-light", "aria2c": "aria2", "curl": "curl"}
RESULTS = Path(__file__).resolve().parent / ".results"
PROVISION = str(Path(sys.executable).parent / "genstack-provision")


def find(cmd: str) -> str | None:
    return shutil.which(cmd) or next(
        (p for p in (f"/usr/sbin/{cmd}", f"/sbin/{cmd}") if os.access(p, os.X_OK)), None
    )


def ensure_tools() -> dict[str, str]:
    missing = [pkg for cmd, pkg in TOOLS.items() if find(cmd) is None]
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


class Nginx:
    def __init__(self, binary: str, work: Path, www: Path) -> None:
        self.work, self.port = work, free_port()
        self.log = work / "access.log"
        conf = work / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bench '$request_uri $status $body_bytes_sent';
  access_log {self.log} bench;
  sendfile on; tcp_nopush on;
  keepalive_requests 100000; keepalive_timeout 65;
  server {{ listen 127.0.0.1:{self.port}; root {www}; }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(work), "-g", "daemon off;"],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((work / "error.log").read_text()) from None
                time.sleep(0.05)
        self.version = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, check=False
        ).stderr.strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of the command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def resume(nginx: Nginx, work: Path, size: int) -> dict[str, float]:
    manifest = work / "bench.yaml"
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
    sent_first = nginx.bytes_since(mark, "/big.bin")
    started = time.perf_counter()
    subprocess.run(
        [PROVISION, "-m", str(manifest), "--models-dir", str(out)], env=clean_env(), check=True
    )
    second_s = time.perf_counter() - started
    time.sleep(0.2)
    total = nginx.bytes_since(mark, "/big.bin")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--restart-gb", type=int, default=100)
    parser.add_argument("--restart-files", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    tools = ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="genstack-bench-", dir=args.workdir))
    work.chmod(0o755)  # nginx workers run as another user
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
        resumed = resume(nginx, work, size)
        print(f"restart with {args.restart_gb} GB present", flush=True)
        restarted = restart(nginx, work, args.restart_gb, args.restart_files)
    finally:
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)

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


if __name__ == "__main__":
    main()
