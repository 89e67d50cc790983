"""Uploader benchmark: latency and throughput against the same local S3 server, in one run.

    .venvs/stack/bin/python bench/uploader.py            # full run (needs ~6 GB free disk)
    .venvs/stack/bin/python bench/uploader.py --quick    # smaller, for a smoke run

1. Latency from a 1 MiB file's close to its object being visible (HEAD answers), p50/p95 over
   N files, for `genstack-uploader run` and for the seed's design reproduced as the baseline:
   `inotifywait -m -r -e close_write` + `sleep 1` + one `python upload_to_r2.py FILE &` per file
   (the seed's r2_sync.sh and upload_to_r2.py, section 7).
2. Throughput for 4 x 512 MiB + 200 x 1 MiB, for the uploader and for `rclone copy` with tuned
   transfers and chunk size: MB/s and CPU seconds per GB (the uploader's or rclone's process
   tree, not the S3 server's); the median of ``--rounds`` rounds (3), each starting with
   another tool.

Both sides talk to the same moto S3 server on loopback; Redis is a real redis-server.
Installs inotify-tools and rclone with apt when they are missing.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.waiting import wait_until

MiB = 1024 * 1024
RESULTS = Path(__file__).parent / ".results"

# The seed's upload_to_r2.py (section 7), verbatim but for the shebang.
SEED_UPLOAD = textwrap.dedent(
    """
    import boto3
    import os
    import sys
    from datetime import datetime

    def upload_to_r2(filepath):
        s3_client = boto3.client(
            's3',
            endpoint_url=os.environ['R2_ENDPOINT'],
            aws_access_key_id=os.environ['R2_ACCESS_KEY_ID'],
            aws_secret_access_key=os.environ['R2_SECRET_ACCESS_KEY'],
            region_name='auto'
        )
        date_str = datetime.now().strftime('%Y-%m-%d')
        filename = os.path.basename(filepath)
        r2_key = f"outputs/{date_str}/{filename}"
        bucket = os.environ['R2_BUCKET']
        s3_client.upload_file(filepath, bucket, r2_key)
        print(f"Uploaded: {r2_key}")

    if __name__ == "__main__":
        upload_to_r2(sys.argv[1])
    """
)

# The seed's r2_sync.sh (section 7), with the python and script paths filled in.
SEED_SYNC = textwrap.dedent(
    """
    #!/bin/bash
    OUTPUT_DIR="$1"
    WATCH_PATTERNS="\\.png$|\\.jpg$|\\.jpeg$|\\.webp$|\\.mp4$|\\.webm$|\\.gif$|\\.wav$|\\.mp3$|\\.flac$"
    inotifywait -m -r -e close_write --format '%w%f' "$OUTPUT_DIR" | while read filepath; do
        if echo "$filepath" | grep -qE "$WATCH_PATTERNS"; then
            sleep 1
            "$PYTHON" "$UPLOAD_SCRIPT" "$filepath" &
        fi
    done
    """
)


def ensure_apt(*commands: str) -> None:
    packages = {"inotifywait": "inotify-tools", "rclone": "rclone"}
    missing = [packages[c] for c in commands if shutil.which(c) is None]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"installing {' '.join(missing)} with apt", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], check=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and all its live descendants (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
        stack.extend(children.get(current, []))
    return total


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis = RedisServer(work / "redis")
        self.s3 = S3Server()
        self.client = None

    def __enter__(self) -> Bench:
        self.redis.start()
        self.s3.start()
        self.client = self.s3.client(config=Config(max_pool_connections=32))
        return self

    def __exit__(self, *exc: object) -> None:
        self.s3.stop()
        self.redis.stop()

    def s3_env(self, bucket: str) -> dict[str, str]:
        return {
            "R2_ENDPOINT": self.s3.endpoint_url,
            "R2_BUCKET": bucket,
            "R2_ACCESS_KEY_ID": self.s3.access_key,
            "R2_SECRET_ACCESS_KEY": self.s3.secret_key,
        }

    def start_uploader(
        self, bucket: str, output_dir: Path, name: str, extra: dict[str, str] | None = None
    ) -> ServiceProcess:
        port = free_port()
        env = {
            **self.s3_env(bucket),
            "REDIS_URL": self.redis.url,
            "NODE_ID": f"bench-{name}",
            "OUTPUT_DIR": str(output_dir),
            "STORAGE_DIR": str(self.work / "unused"),
            "UPLOAD_METRICS_HOST": "127.0.0.1",
            "UPLOAD_METRICS_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            **(extra or {}),
        }
        process = ServiceProcess(
            [console_script("genstack-uploader"), "run"],
            env=env,
            log_path=self.work / f"{name}.log",
            ready_url=f"http://127.0.0.1:{port}/readyz",
            cwd=self.work,
        )
        process.wait_ready(timeout=60)
        return process

    def visible(self, bucket: str, key: str, size: int) -> bool:
        assert self.client is not None
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"]) == size
        except (ClientError, BotoCoreError):
            return False

    # latency ------------------------------------------------------------------------------
    def latency(self, count: int, interval: float, run: str) -> tuple[list[float], int]:
        bucket = self.s3.create_bucket()
        output_dir = self.work / f"lat-{run}"
        output_dir.mkdir()
        if run == "genstack":
            process: ServiceProcess | subprocess.Popen[bytes] = self.start_uploader(
                bucket, output_dir, "latency"
            )
        else:
            script = self.work / "upload_to_r2.py"
            script.write_text(SEED_UPLOAD)
            sync = self.work / "r2_sync.sh"
            sync.write_text(SEED_SYNC)
            env = {
                **os.environ,
                **self.s3_env(bucket),
                "PYTHON": sys.executable,
                "UPLOAD_SCRIPT": str(script),
            }
            process = subprocess.Popen(
                ["bash", str(sync), str(output_dir)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            time.sleep(1.0)  # inotifywait sets its watches
        pending: dict[str, tuple[float, int]] = {}
        lock = threading.Lock()
        latencies: list[float] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set() or pending:
                with lock:
                    items = list(pending.items())
                for key, (closed_at, size) in items:
                    if self.visible(bucket, key, size):
                        seen = time.time()
                        with lock:
                            pending.pop(key, None)
                        latencies.append(seen - closed_at)
                time.sleep(0.002)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        date = time.strftime("%Y-%m-%d", time.gmtime())
        baseline_date = time.strftime("%Y-%m-%d")  # the seed uses local time
        for i in range(count):
            data = os.urandom(MiB)
            path = output_dir / f"lat{i:04d}.png"
            with path.open("wb") as handle:
                handle.write(data)
            closed_at = time.time()
            key = f"outputs/{date if run == 'genstack' else baseline_date}/{path.name}"
            with lock:
                pending[key] = (closed_at, len(data))
            time.sleep(interval)
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        poller.join(timeout=10)
        if isinstance(process, ServiceProcess):
            process.stop()
        else:
            os.killpg(process.pid, 15)
            process.wait()
        if pending:
            print(f"{run}: {len(pending)} files not visible 300 s after the last write", flush=True)
        return latencies, len(pending)

    # throughput ---------------------------------------------------------------------------
    def make_dataset(self, big: int, big_mib: int, small: int) -> Path:
        source = self.work / "dataset"
        source.mkdir()
        block = os.urandom(MiB)
        for i in range(big):
            with (source / f"big{i}.mp4").open("wb") as handle:
                for j in range(big_mib):
                    # distinct content per MiB, cheap to make
                    handle.write(hashlib.sha256(f"{i}-{j}".encode()).digest() + block[32:])
        for i in range(small):
            (source / f"small{i:03d}.png").write_bytes(os.urandom(MiB))
        return source

    def throughput_genstack(
        self, source: Path, extra: dict[str, str] | None = None
    ) -> tuple[float, float, int]:
        bucket = self.s3.create_bucket()
        output_dir = self.work / "tp-genstack"
        output_dir.mkdir()
        staging = self.work / "tp-staging"
        shutil.copytree(source, staging)  # same filesystem: the renames below are atomic
        self.redis.client().flushall()  # a new round's files are new to the ledger too
        process = self.start_uploader(bucket, output_dir, "throughput", extra)
        files = sorted(staging.iterdir())
        sizes = {f.name: f.stat().st_size for f in files}
        total = sum(sizes.values())
        os.sync()  # the copy's dirty pages must not be written back during the timed run
        cpu_before = tree_cpu_seconds(process.pid)
        started = time.monotonic()
        for path in files:
            path.rename(output_dir / path.name)
        # Poll the uploader's own counter, not the bucket: listing would load the S3 server
        # that both sides share (rclone is timed by its exit), then check the bucket once.
        metrics = process.ready_url.replace("/readyz", "/metrics")  # type: ignore[union-attr]
        wait_until(
            lambda: uploaded_count(metrics) >= len(files), 1800, "uploader throughput set", 0.05
        )
        elapsed = time.monotonic() - started
        date = time.strftime("%Y-%m-%d", time.gmtime())
        keys = {f"outputs/{date}/{name}": size for name, size in sizes.items()}
        if not self.all_present(bucket, keys):
            raise RuntimeError("the uploader's counter and the bucket disagree")
        cpu = tree_cpu_seconds(process.pid) - cpu_before
        process.stop()
        shutil.rmtree(output_dir)
        shutil.rmtree(staging, ignore_errors=True)
        self.s3.reset()  # moto keeps every object; the next run starts with an empty server
        return elapsed, cpu, total

    def throughput_rclone(
        self, source: Path, transfers: int, chunk_mib: int
    ) -> tuple[float, float, int]:
        bucket = self.s3.create_bucket()
        total = sum(f.stat().st_size for f in source.iterdir())
        # rclone cannot combine AWS_CA_BUNDLE with its HTTP transport; this is plain HTTP.
        env = {
            **{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": self.s3.endpoint_url,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": self.s3.access_key,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": self.s3.secret_key,
            "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        }
        argv = [
            "rclone", "copy", str(source), f"bench:{bucket}/outputs",
            f"--transfers={transfers}", f"--s3-chunk-size={chunk_mib}M",
            f"--s3-upload-concurrency={transfers}", f"--s3-upload-cutoff={chunk_mib}M",
            "--checkers=16", "--no-check-dest", "--config=/dev/null",
            # rclone 1.60's HEAD after a multipart upload asks for versionId=null, which moto
            # answers 400; without it rclone verifies less than the uploader (which HEADs).
            "--s3-no-head",
        ]  # fmt: skip
        os.sync()
        before = os.times()
        started = time.monotonic()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.monotonic() - started
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        listed = self.keys(bucket)
        if len(listed) != len(list(source.iterdir())):
            raise RuntimeError(
                f"rclone copied {len(listed)} of {len(list(source.iterdir()))} files"
            )
        self.s3.reset()
        return elapsed, cpu, total

    def keys(self, bucket: str) -> set[str]:
        assert self.client is not None
        keys: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.update(o["Key"] for o in page.get("Contents", []))
        return keys

    def all_present(self, bucket: str, keys: dict[str, int]) -> bool:
        return set(keys) <= self.keys(bucket)


def uploaded_count(metrics_url: str) -> float:
    with httpx.Client(trust_env=False, timeout=5) as http:
        text = http.get(metrics_url).text
    for line in text.splitlines():
        if line.startswith('genstack_uploads_total{result="uploaded"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def latency_table(bench: Bench, count: int, interval: float, results: dict[str, object]) -> None:
    print(f"latency: {count} x 1 MiB, one every {interval} s", flush=True)
    rows = []
    for name, run in (("genstack-uploader", "genstack"), ("seed r2_sync.sh", "seed")):
        values, lost = bench.latency(count, interval, run)
        rows.append((name, statistics.median(values) * 1000, percentile(values, 0.95) * 1000, lost))
    print("\n| close -> visible (1 MiB) | p50 ms | p95 ms | not visible after 300 s |")
    print("|---|---:|---:|---:|")
    for name, p50, p95, lost in rows:
        print(f"| {name} | {p50:.0f} | {p95:.0f} | {lost} |")
    p50_ratio, p95_ratio = rows[1][1] / rows[0][1], rows[1][2] / rows[0][2]
    print(f"| ratio (seed / genstack) | {p50_ratio:.1f}x | {p95_ratio:.1f}x | |")
    results["latency"] = {
        name: {"p50_ms": p50, "p95_ms": p95, "not_visible": lost} for name, p50, p95, lost in rows
    }


def throughput_table(
    bench: Bench, big: int, big_mib: int, small: int, rounds: int, results: dict[str, object]
) -> None:
    print(f"\nthroughput: {big} x {big_mib} MiB + {small} x 1 MiB, {rounds} rounds", flush=True)
    source = bench.make_dataset(big, big_mib, small)
    runs: dict[str, Callable[[], tuple[float, float, int]]] = {
        "genstack-uploader (defaults)": lambda: bench.throughput_genstack(source),
        # moto serves requests in threads under one GIL: fewer parts in flight suit it, as
        # rclone's rows are tuned for it. R2 wants the default (more in flight).
        "genstack-uploader, R2_CONCURRENCY=2": lambda: bench.throughput_genstack(
            source, {"R2_CONCURRENCY": "2"}
        ),
    }
    for transfers, chunk in () if os.environ.get("BENCH_NO_RCLONE") else ((4, 16), (8, 64)):
        name = f"rclone copy --transfers {transfers} --s3-chunk-size {chunk}M"
        runs[name] = functools.partial(bench.throughput_rclone, source, transfers, chunk)
    measured: dict[str, list[tuple[float, float, int]]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(rounds):
        # Each round starts with another tool, so none always runs first on a cold machine.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            elapsed, cpu, total = runs[name]()
            measured[name].append((elapsed, cpu, total))
            print(f"  round {round_ + 1}: {name}: {elapsed:.1f} s, {cpu:.1f} CPU s", flush=True)
    table = [
        (
            name,
            statistics.median(e for e, _, _ in values),
            statistics.median(c for _, c, _ in values),
            values[0][2],
        )
        for name, values in measured.items()
    ]
    print(f"\nmedian of {rounds} rounds")
    print("\n| upload set | seconds | MB/s | CPU s per GB |\n|---|---:|---:|---:|")
    for name, elapsed, cpu, total in table:
        rate, per_gb = total / elapsed / 1e6, cpu / (total / 1e9)
        print(f"| {name} | {elapsed:.1f} | {rate:.0f} | {per_gb:.2f} |")
    ours = max(total / elapsed for name, elapsed, _, total in table if "genstack" in name)
    best_rclone = max(
        (total / elapsed for name, elapsed, _, total in table if "rclone" in name), default=ours
    )
    defaults = table[0][3] / table[0][1]
    print(f"| ratio genstack defaults / best rclone | | {defaults / best_rclone:.2f}x | |")
    print(f"| ratio best genstack / best rclone | | {ours / best_rclone:.2f}x | |")
    results["throughput"] = [
        {"name": n, "seconds": e, "mb_s": t / e / 1e6, "cpu_s_per_gb": c / (t / 1e9)}
        for n, e, c, t in table
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="40 files, 4 x 64 MiB + 40 x 1 MiB")
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between latency files (the baseline's uploads pile up below ~2 s)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=3, help="throughput rounds (the median is reported)"
    )
    args = parser.parse_args()
    count = 40 if args.quick else 200
    big, big_mib, small = (4, 64, 40) if args.quick else (4, 512, 200)
    ensure_apt("inotifywait", "rclone")
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, object] = {"files": count, "interval_s": args.interval}
    with tempfile.TemporaryDirectory(prefix="bench-uploader-") as tmp, Bench(Path(tmp)) as bench:
        if not args.skip_latency:
            latency_table(bench, count, args.interval, results)
        if not args.skip_throughput:
            throughput_table(bench, big, big_mib, small, args.rounds, results)
    (RESULTS / "uploader.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
