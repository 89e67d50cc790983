"""pytest plugin (entry point ``genstack``): fixtures with real servers, markers gpu/docker."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from genstack.testing.checkpoints import cached_checkpoint
from genstack.testing.docker import docker_available
from genstack.testing.fault_proxy import FaultProxy
from genstack.testing.process import ServiceProcess
from genstack.testing.redis_server import ContainerRedisServer, RedisServer
from genstack.testing.s3_server import ContainerS3Server, S3Server

__all__ = [
    "MakeFaultProxy",
    "StartServiceProcess",
    "fault_proxy",
    "redis_server",
    "redis_url",
    "s3_bucket",
    "s3_server",
    "sd15_checkpoint",
    "service_process",
]

# Processes started by the service_process fixture for the running test, for the report hook.
_PROCESSES = pytest.StashKey[list[tuple[str, ServiceProcess]]]()


class MakeFaultProxy(Protocol):
    def __call__(
        self,
        upstream: str,
        *,
        error_rate: float = ...,
        drop_rate: float = ...,
        delay_s: float = ...,
        seed: int | None = ...,
        match: Callable[[str, str], bool] | None = ...,
    ) -> FaultProxy: ...


class StartServiceProcess(Protocol):
    def __call__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = ...,
        ready_url: str | None = ...,
        name: str = ...,
        cwd: str | Path | None = ...,
    ) -> ServiceProcess: ...


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU; skipped when none is present")
    config.addinivalue_line("markers", "docker: needs a Docker engine; skipped when none answers")


@functools.cache
def gpu_available() -> bool:
    """True if ``nvidia-smi -L`` lists at least one GPU."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return False
    try:
        result = subprocess.run(
            [nvidia_smi, "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and any(
        line.startswith("GPU ") for line in result.stdout.splitlines()
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Checked here rather than at collection so a run without such tests never probes.
    if item.get_closest_marker("docker") is not None and not docker_available():
        pytest.skip("no Docker engine answers `docker info`")
    if item.get_closest_marker("gpu") is not None and not gpu_available():
        pytest.skip("`nvidia-smi -L` lists no GPU")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        # A failed test shows these sections next to its captured output.
        for name, process in item.stash.get(_PROCESSES, []):
            report.sections.append(
                (f"service {name} log tail ({process.log_path})", process.log_tail(60))
            )
    return report


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server (AOF, fsync always) with its data in tmp_path; one per test."""
    cls = ContainerRedisServer if docker_available() else RedisServer
    server = cls(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3 server for the session; tests isolate themselves with their own bucket."""
    server = ContainerS3Server() if docker_available() else S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return s3_server.create_bucket()


@pytest.fixture
def fault_proxy() -> Iterator[MakeFaultProxy]:
    """``make(upstream, **faults)`` starts a FaultProxy; all are stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(upstream: str, **faults: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **faults)
        proxy.start()
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in reversed(proxies):
            proxy.stop()


@pytest.fixture
def service_process(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StartServiceProcess]:
    """``start(argv, *, env=None, ready_url=None, name="svc")`` starts a ServiceProcess logging
    to tmp_path/logs/NAME.log; all are stopped after the test, and a failed test's report
    shows the tail of each log."""
    started: list[tuple[str, ServiceProcess]] = []
    request.node.stash[_PROCESSES] = started

    def start(
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
        name: str = "svc",
        cwd: str | Path | None = None,
    ) -> ServiceProcess:
        # Same name twice (e.g. two workers): suffix, so each keeps its own log.
        taken = {label for label, _ in started}
        label, n = name, 1
        while label in taken:
            n += 1
            label = f"{name}-{n}"
        log_path = tmp_path / "logs" / f"{label}.log"
        process = ServiceProcess(argv, env=env, log_path=log_path, ready_url=ready_url, cwd=cwd)
        started.append((label, process))
        return process

    try:
        yield start
    finally:
        for _, process in reversed(started):
            process.stop()


@pytest.fixture(scope="session")
def sd15_checkpoint() -> Path:
    """A full-size SD1.5 checkpoint with random weights (fp16, 2.1 GB), built by the ComfyUI
    checkout's interpreter (COMFYUI_DIR, COMFYUI_PYTHON) once per machine into the cache
    (genstack.testing.checkpoints); the test is skipped when either variable is unset."""
    comfyui_dir, python = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PYTHON")
    if not comfyui_dir or not python:
        pytest.skip("COMFYUI_DIR and COMFYUI_PYTHON are needed to build the SD1.5 checkpoint")
    return cached_checkpoint("sd15", comfyui_dir=Path(comfyui_dir), python=Path(python))
