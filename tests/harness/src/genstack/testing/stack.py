"""Start genstack's own processes for tests: the gateway, a test job worker, the uploader.

Each helper returns a started :class:`ServiceProcess` (ready when it returns); the caller
stops it. Environment values are merged over the test process's environment.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script

__all__ = [
    "API_KEY",
    "RunningGateway",
    "job_worker_argv",
    "start_gateway",
    "start_job_worker",
    "start_uploader",
]

API_KEY = "gs-test-key-0123456789abcdef"


@dataclass
class RunningGateway:
    process: ServiceProcess
    url: str
    api_key: str = API_KEY

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def stop(self) -> None:
        self.process.stop()


def start_gateway(
    redis_url: str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    name: str = "gateway",
    timeout: float = 60.0,
) -> RunningGateway:
    """``genstack-gateway serve`` on a free port, ready (GET /readyz answers 200)."""
    port = free_port()
    merged = {
        "REDIS_URL": redis_url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_API_KEYS": API_KEY,
        "LOG_FORMAT": "text",
        "STORAGE_DIR": str(log_dir / "storage"),
        "OUTPUT_DIR": str(log_dir / "outputs"),
        "ENABLE_R2_SYNC": "false",
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    process = ServiceProcess(
        [console_script("genstack-gateway"), "serve"],
        env=merged,
        log_path=log_dir / f"{name}.log",
        ready_url=f"{url}/readyz",
    )
    try:
        process.wait_ready(timeout)
    except BaseException:
        process.stop()
        raise
    return RunningGateway(
        process=process, url=url, api_key=merged["GATEWAY_API_KEYS"].split(",")[0]
    )


def job_worker_argv(queues: list[str], *options: str, concurrency: int = 2) -> list[str]:
    """The command line of :mod:`genstack.testing.job_worker` consuming ``queues``;
    ``options`` are its other flags (``--backend-url``, ``--lease-s``, ...)."""
    argv = [sys.executable, "-m", "genstack.testing.job_worker", "--concurrency", str(concurrency)]
    for queue in queues:
        argv += ["--queue", queue]
    return [*argv, *options]


def start_job_worker(
    redis_url: str,
    log_dir: Path,
    queues: list[str],
    *,
    env: dict[str, str] | None = None,
    name: str = "worker",
    concurrency: int = 2,
    timeout: float = 30.0,
) -> ServiceProcess:
    """:mod:`genstack.testing.job_worker` consuming ``queues`` (a real Celery worker), ready
    (its /readyz answers 200: Redis reached, the consumer started)."""
    port = free_port()
    merged = {
        "REDIS_URL": redis_url,
        "NODE_ID": "test-node",
        "OUTPUT_DIR": str(log_dir / "outputs"),
        "WORKER_HEALTH_HOST": "127.0.0.1",
        "WORKER_HEALTH_PORT": str(port),
        "LOG_FORMAT": "text",
        **(env or {}),
    }
    process = ServiceProcess(
        job_worker_argv(queues, concurrency=concurrency),
        env=merged,
        log_path=log_dir / f"{name}.log",
        ready_url=f"http://127.0.0.1:{merged['WORKER_HEALTH_PORT']}/readyz",
    )
    try:
        process.wait_ready(timeout)
    except BaseException:
        process.stop()
        raise
    return process


def start_uploader(
    redis_url: str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    name: str = "uploader",
    timeout: float = 60.0,
) -> ServiceProcess:
    """``genstack-uploader run``, ready (its /readyz answers 200)."""
    port = free_port()
    merged = {
        "REDIS_URL": redis_url,
        "NODE_ID": "test-node",
        "OUTPUT_DIR": str(log_dir / "outputs"),
        "STORAGE_DIR": str(log_dir / "storage"),
        "ENABLE_R2_SYNC": "false",
        "UPLOAD_METRICS_HOST": "127.0.0.1",
        "UPLOAD_METRICS_PORT": str(port),
        "UPLOAD_RESCAN_INTERVAL_S": "3600",
        "LOG_FORMAT": "text",
        **(env or {}),
    }
    process = ServiceProcess(
        [console_script("genstack-uploader"), "run"],
        env=merged,
        log_path=log_dir / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    try:
        process.wait_ready(timeout)
    except BaseException:
        process.stop()
        raise
    return process


def start_comfyui(
    root: Path,
    outputs: Path,
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    timeout: float = 180.0,
) -> tuple[str, ServiceProcess]:
    """A real ComfyUI through ``genstack-comfyui start`` (COMFYUI_DIR and COMFYUI_PYTHON from
    the environment), on ``port`` (a free one by default; the same one to restart it where a
    worker expects it) with no model to provision, ready (/system_stats answers): its URL and
    the process to stop."""
    port = port or free_port()
    process = ServiceProcess(
        [console_script("genstack-comfyui"), "start"],
        env={
            "COMFYUI_PORT": str(port),
            "OUTPUT_DIR": str(outputs),
            "MODELS_DIR": str(root / "models"),
            "ENABLE_VIBEVOICE": "false",
            "ENABLE_CONTROLNET": "false",
            "LOG_FORMAT": "text",
            **(env or {}),
        },
        log_path=root / "comfyui.log",
        ready_url=f"http://127.0.0.1:{port}/system_stats",
    )
    try:
        process.wait_ready(timeout)
    except BaseException:
        process.stop()
        raise
    return f"http://127.0.0.1:{port}", process


def start_comfyui_worker(
    redis_url: str,
    log_dir: Path,
    outputs: Path,
    comfyui_url: str,
    *,
    concurrency: int = 1,
    env: dict[str, str] | None = None,
    name: str = "comfyui-worker",
) -> ServiceProcess:
    """``genstack-comfyui worker``, ready (its /readyz: Redis and ComfyUI answer). ``env``
    adds to or overrides its settings (COMFYUI_INPUT_ALLOW_NETWORKS, ...)."""
    port = free_port()
    process = ServiceProcess(
        [console_script("genstack-comfyui"), "worker"],
        env={
            "REDIS_URL": redis_url,
            "NODE_ID": "test-node",  # the uploader's queue (start_uploader)
            "OUTPUT_DIR": str(outputs),
            "COMFYUI_URL": comfyui_url,
            "COMFYUI_WORKER_CONCURRENCY": str(concurrency),
            "WORKER_HEALTH_HOST": "127.0.0.1",
            "WORKER_HEALTH_PORT": str(port),
            "LOG_FORMAT": "text",
            **(env or {}),
        },
        log_path=log_dir / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    try:
        process.wait_ready(60)
    except BaseException:
        process.stop()
        raise
    return process
