"""The one description of genstack's services, and the plan made from it for one host.

:data:`ROLES` is what compose.yaml runs, one entry per compose service: its command, the
workspace package (so the virtual environment) it comes from, its health check, whether it
wants a GPU, its stop grace period and what it depends on. A test holds compose.yaml to it.

:func:`make_plan` turns the roles into the processes of one host (`make up`, the pod image):
which engines are on (ENABLE_XTTS, ENABLE_CHATTERBOX, ENABLE_COMFYUI), one model server and
one worker per engine per GPU (CUDA_VISIBLE_DEVICES pins each server, chosen from NVML), the
ports (no two processes of one host share one, unlike containers), the environment each needs,
and the problems found (a prerequisite missing: that service is left out, with one message
that says what to do). :mod:`genstack.deploy.supervisord` renders the plan.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genstack.deploy.settings import DeploySettings
from genstack.provision.gpu import GpuDevice, GpuInfo

__all__ = [
    "ENGINES",
    "ROLES",
    "Engine",
    "Health",
    "Layout",
    "Plan",
    "Problem",
    "Program",
    "Role",
    "enabled_engines",
    "make_plan",
]

# Start order; supervisord stops in the reverse order, so the gateway takes no new work
# first, workers finish or requeue their jobs while Redis and the model servers still run,
# and Redis (the queue) stops last.
Tier = Literal["access", "store", "models", "workers", "edge", "monitor"]
TIER_PRIORITY: dict[Tier, int] = {
    "access": 50,
    "store": 100,
    "models": 200,
    "workers": 300,
    "edge": 400,
    "monitor": 500,
}
# Exit codes that mean "do not restart": 0 (stopped cleanly) and 2, which every genstack
# console script returns for a configuration it cannot run with (it logged why).
EXPECTED_EXIT_CODES = (0, 2)


@dataclass(frozen=True)
class Health:
    """How a process is checked: an HTTP GET answering 200, a Redis PING, or a TCP connect."""

    kind: Literal["http", "redis", "tcp"]
    port: int
    path: str = ""
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        if self.kind == "http":
            return f"http://{self.host}:{self.port}{self.path}"
        if self.kind == "redis":
            return f"redis://{self.host}:{self.port}/0"
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class Role:
    """One compose service: what it runs and how it is checked and stopped."""

    name: str
    # Workspace package folder (its venv is .venvs/<package>, /opt/venvs/<package> in the
    # pod) whose console script genstack-<package> runs ``command``; None: a system program.
    package: str | None
    command: tuple[str, ...]
    tier: Tier
    health_kind: Literal["http", "redis", "tcp"]
    port_var: str  # the variable that sets the port its health check reaches
    port: int  # that variable's default
    health_path: str
    gpu: bool
    stop_grace_s: int
    depends_on: tuple[str, ...] = ()
    engine: str | None = None


@dataclass(frozen=True)
class Engine:
    """A model server with its queue worker (one pair per GPU)."""

    name: str  # also the gateway's backend name and the package folder
    toggle: str  # ENABLE_*
    server: Role
    worker: Role
    url_var: str  # where the worker (and the gateway) reach the server
    listen_var: str  # the server's listen address
    # Defaults for a host without a GPU (compose.cpu.yaml's, for the same reasons).
    cpu_env: Mapping[str, str] = field(default_factory=dict)


def _worker(engine: str, grace: int = 45) -> Role:
    return Role(
        name=f"{engine}-worker",
        package=engine,
        command=("worker",),
        tier="workers",
        health_kind="http",
        port_var="WORKER_HEALTH_PORT",
        port=9102,
        health_path="/readyz",
        gpu=False,
        stop_grace_s=grace,  # above CELERY_SOFT_SHUTDOWN_S (30 s): the job finishes or requeues
        depends_on=("redis", engine),
        engine=engine,
    )


REDIS = Role(
    name="redis",
    package=None,
    command=(),
    tier="store",
    health_kind="redis",
    port_var="REDIS_PORT",
    port=6379,
    health_path="",
    gpu=False,
    stop_grace_s=10,
)
UPLOADER = Role(
    name="uploader",
    package="uploader",
    command=("run",),
    tier="workers",
    health_kind="http",
    port_var="UPLOAD_METRICS_PORT",
    port=9101,
    health_path="/healthz",
    gpu=False,
    stop_grace_s=45,  # above CELERY_SOFT_SHUTDOWN_S: in-flight uploads finish or requeue
    depends_on=("redis",),
)
GATEWAY = Role(
    name="gateway",
    package="gateway",
    command=("serve",),
    tier="edge",
    health_kind="http",
    port_var="GATEWAY_PORT",
    port=8080,
    health_path="/readyz",
    gpu=False,
    stop_grace_s=15,  # above the server's own 10 s drain
    depends_on=("redis",),
)
ENGINES: dict[str, Engine] = {
    "xtts": Engine(
        name="xtts",
        toggle="ENABLE_XTTS",
        server=Role(
            name="xtts",
            package="xtts",
            command=("serve",),
            tier="models",
            health_kind="http",
            port_var="XTTS_PORT",
            port=8020,
            health_path="/healthz",
            gpu=True,
            stop_grace_s=30,  # in-flight responses get 20 s
            engine="xtts",
        ),
        worker=_worker("xtts"),
        url_var="XTTS_URL",
        listen_var="XTTS_HOST",
        cpu_env={
            "XTTS_DEVICE": "cpu",
            "XTTS_DEEPSPEED": "false",
            "TTS_MAX_INPUT_CHARS": "1000",
            "TTS_MAX_QUEUE": "4",
            "TTS_QUEUE_TIMEOUT_S": "300",
        },
    ),
    "chatterbox": Engine(
        name="chatterbox",
        toggle="ENABLE_CHATTERBOX",
        server=Role(
            name="chatterbox",
            package="chatterbox",
            command=("serve",),
            tier="models",
            health_kind="http",
            port_var="CHATTERBOX_PORT",
            port=8004,
            health_path="/healthz",
            gpu=True,
            stop_grace_s=30,
            engine="chatterbox",
        ),
        worker=_worker("chatterbox"),
        url_var="CHATTERBOX_URL",
        listen_var="CHATTERBOX_HOST",
        cpu_env={
            "CHATTERBOX_DEVICE": "cpu",
            "TTS_MAX_INPUT_CHARS": "1000",
            "TTS_MAX_QUEUE": "4",
            "TTS_QUEUE_TIMEOUT_S": "300",
        },
    ),
    "comfyui": Engine(
        name="comfyui",
        toggle="ENABLE_COMFYUI",
        server=Role(
            name="comfyui",
            package="comfyui",
            command=("start",),
            tier="models",
            health_kind="http",
            port_var="COMFYUI_PORT",
            port=8188,
            health_path="/system_stats",
            gpu=True,
            # ComfyUI has no drain: a running prompt is lost (its job is retried).
            stop_grace_s=15,
            engine="comfyui",
        ),
        worker=_worker("comfyui"),
        url_var="COMFYUI_URL",
        listen_var="COMFYUI_LISTEN",
    ),
}
ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        REDIS,
        UPLOADER,
        GATEWAY,
        *(r for e in ENGINES.values() for r in (e.server, e.worker)),
    )
}


@dataclass(frozen=True)
class Layout:
    """Where things are on this host: the checkout's .venvs for `make up`, /opt/venvs in the
    pod; the data folder; the user the services run as (the pod's supervisord is root)."""

    kind: Literal["local", "pod"]
    venvs: Path
    data_dir: Path
    models_dir: Path
    checkout: Path | None = None  # `make up`: the repository (to tell "not in this checkout")
    user: str | None = None
    home: Path | None = None
    supervisor_root: bool = False  # supervisord runs as root (the pod; `make up` by root)

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def api_keys_file(self) -> Path:
        return self.data_dir / "gateway-api-keys"

    def script(self, package: str) -> Path:
        return self.venvs / package / "bin" / f"genstack-{package}"


@dataclass(frozen=True)
class Program:
    """One process of the plan, as supervisord runs it."""

    name: str
    role: Role | None  # None: a pod-only tool (sshd, JupyterLab) or the monitor
    tier: Tier
    argv: tuple[str, ...]
    # Set on top of the environment supervisord was started with (secrets stay there).
    env: Mapping[str, str]
    health: Health
    stop_grace_s: int
    gpu: GpuDevice | None = None
    user: str | None = None  # None: as supervisord
    # Variables copied from supervisord's own environment under another name, as supervisord's
    # %(ENV_X)s expansion: the secret never appears in the generated file.
    env_from: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """Something that keeps a service from running here, said once with what to do."""

    service: str
    message: str
    fatal: bool = False  # the stack cannot run at all without it

    def __str__(self) -> str:
        return f"{self.service}: {self.message}"


@dataclass
class Plan:
    layout: Layout
    programs: list[Program]
    problems: list[Problem]
    notes: list[str]
    engines: list[str]  # engines that run

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    def program(self, name: str) -> Program:
        for program in self.programs:
            if program.name == name:
                return program
        raise KeyError(name)


# --- GPUs ------------------------------------------------------------------------------


def gpu_slots(gpus: GpuInfo, cuda_visible_devices: str | None) -> list[GpuDevice]:
    """The GPUs to put model servers on: CUDA_VISIBLE_DEVICES's (indices or UUID prefixes;
    -1 or "none": none), else every GPU NVML lists."""
    if cuda_visible_devices is None:
        return list(gpus.devices)
    wanted = [item.strip() for item in cuda_visible_devices.split(",") if item.strip()]
    if not wanted or wanted[0] in ("-1", "none", "NoDevFiles"):
        return []
    slots = []
    for item in wanted:
        for device in gpus.devices:
            if item == str(device.index) or device.uuid.startswith(item):
                if device not in slots:
                    slots.append(device)
                break
    return slots


# --- checks ----------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    # SO_REUSEADDR as the servers set it: a port left in TIME_WAIT by the last run is free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _has_torch(python: Path) -> bool:
    # find_spec, not import: answers in a fraction of a second.
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    try:
        argv = [str(python), "-c", code]  # the user's own COMFYUI_PYTHON
        return subprocess.run(argv, timeout=30, check=False).returncode == 0  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return False


def _comfyui_python(settings: DeploySettings) -> Path | None:
    if settings.comfyui_python is not None:
        return settings.comfyui_python
    if settings.comfyui_dir is not None:
        for candidate in (".venv", "venv"):
            python = settings.comfyui_dir / candidate / "bin" / "python"
            if python.is_file():
                return python
    return None


def _engine_problem(engine: Engine, settings: DeploySettings, layout: Layout) -> str | None:
    """Why ``engine`` cannot run here, with what to do; None when it can."""
    package = engine.server.package
    assert package is not None
    if not layout.script(package).is_file():
        if layout.kind == "pod":
            return f"{engine.name} is not installed in this image ({layout.script(package)})"
        checkout = layout.checkout
        if checkout is not None and not (checkout / "services" / package).is_dir():
            return (
                f"{engine.name} is not in this checkout (no services/{package}): "
                f"unset {engine.toggle}, or update the checkout"
            )
        return f"{engine.name} is not installed: run `make env-{package}` (make up does)"
    if engine.name == "comfyui":
        if settings.comfyui_dir is None or not (settings.comfyui_dir / "main.py").is_file():
            where = (
                "COMFYUI_DIR is not set"
                if settings.comfyui_dir is None
                else f"COMFYUI_DIR={settings.comfyui_dir} has no main.py"
            )
            return (
                f"{where}: point COMFYUI_DIR at a ComfyUI checkout (the commit pinned in "
                "services/comfyui/nodes.lock.yaml) and COMFYUI_PYTHON at its interpreter, "
                "or set ENABLE_COMFYUI=false"
            )
        python = _comfyui_python(settings)
        if python is None or not python.is_file():
            return (
                f"COMFYUI_PYTHON={python} does not exist"
                if python is not None
                else "COMFYUI_PYTHON is not set and the checkout has no venv/ or .venv/: set "
                "it to the Python of ComfyUI's environment (one with torch)"
            )
        if not _has_torch(python):
            return (
                f"COMFYUI_PYTHON={python} has no torch: install ComfyUI's requirements into "
                "it (pip install -r requirements.txt in the checkout)"
            )
    return None


# --- the plan --------------------------------------------------------------------------


def enabled_engines(settings: DeploySettings) -> list[str]:
    """The engines the environment turns on (whether they can run here or not)."""
    comfyui = settings.enable_comfyui
    if comfyui is None:
        comfyui = settings.comfyui_dir is not None and (settings.comfyui_dir / "main.py").is_file()
    wanted = {
        "xtts": settings.enable_xtts,
        "chatterbox": settings.enable_chatterbox,
        "comfyui": comfyui,
    }
    return [name for name in ENGINES if wanted[name]]


def make_plan(
    settings: DeploySettings,
    layout: Layout,
    gpus: GpuInfo,
    env: Mapping[str, str],
    *,
    check: bool = True,
    redis_server: str | None = None,
) -> Plan:
    """The processes this host runs (see the module's docstring). ``env`` is the environment
    the services will inherit: a variable the user set there (XTTS_HOST, XTTS_MODEL_DIR, ...)
    wins over the plan's default for it; the addresses between services are always the
    plan's. ``check``: look for what is missing here (installed services, ComfyUI's torch,
    ports in use); off, the plan is what this environment asks for on a complete install.
    ``redis_server``: the redis-server binary (default: found on PATH)."""
    check_ports = check
    problems: list[Problem] = []
    notes: list[str] = []
    programs: list[Program] = []
    data = layout.data_dir
    pod = layout.kind == "pod"
    user_env = {k: v for k, v in env.items() if v != ""}

    def default(name: str, value: str) -> dict[str, str]:
        return {} if name in user_env else {name: value}

    common = {
        "OUTPUT_DIR": str(data / "outputs"),
        "STORAGE_DIR": str(data / "storage"),
        **default("TTS_VOICES_DIR", str(data / "voices")),
    }
    if layout.kind == "local":
        # One log file per service under `make up`: lines for a person, not a log pipeline.
        common |= default("LOG_FORMAT", "text")

    def program(
        name: str,
        role: Role,
        argv: Iterable[str],
        env_: Mapping[str, str],
        health: Health,
        gpu: GpuDevice | None = None,
    ) -> Program:
        if layout.home is not None:
            # supervisord's user= changes the user, not HOME (caches of HF, numba, ...).
            env_ = {**env_, "HOME": str(layout.home)}
        return Program(
            name=name,
            role=role,
            tier=role.tier,
            argv=tuple(argv),
            env=env_,
            health=health,
            stop_grace_s=role.stop_grace_s,
            gpu=gpu,
            user=layout.user,
        )

    def script(role: Role) -> list[str]:
        assert role.package is not None
        return [str(layout.script(role.package)), *role.command]

    # Redis: our own, with AOF under the data folder, unless REDIS_URL names one.
    if settings.redis_url is not None:
        redis_url = settings.redis_url
        notes.append(f"Redis: {redis_url} (REDIS_URL; none started)")
    else:
        redis_url = f"redis://127.0.0.1:{settings.redis_port}/0"
        binary = redis_server or shutil.which("redis-server")
        if binary is None and not check:
            binary = "redis-server"
        if binary is None:
            problems.append(
                Problem(
                    "redis",
                    "redis-server is not installed: `make up` installs it with apt "
                    "(apt-get install redis-server), or set REDIS_URL to a Redis of yours",
                    fatal=True,
                )
            )
        else:
            programs.append(
                program(
                    "redis",
                    REDIS,
                    [
                        binary,
                        *("--port", str(settings.redis_port), "--bind", "127.0.0.1"),
                        *("--dir", str(data / "redis")),
                        *REDIS_FLAGS,
                    ],
                    {},
                    Health("redis", settings.redis_port),
                )
            )
    common["REDIS_URL"] = redis_url

    # Model servers and their workers: one pair per engine per GPU.
    slots: list[GpuDevice | None] = list(gpu_slots(gpus, settings.cuda_visible_devices))
    if slots:
        notes.append(
            "GPUs: " + ", ".join(f"{d.index} {d.name} ({d.vram_gb:.0f} GB)" for d in slots if d)
        )
    else:
        slots = [None]
        why = gpus.error or "CUDA_VISIBLE_DEVICES selects none"
        notes.append(f"no GPU ({why}): the model servers run on the CPU")
    several = len(slots) > 1
    enabled = enabled_engines(settings)
    worker_port = settings.worker_health_port
    running: list[str] = []
    first_url: dict[str, str] = {}
    for engine in ENGINES.values():
        if engine.name not in enabled:
            continue
        problem = _engine_problem(engine, settings, layout) if check else None
        if problem is not None:
            problems.append(Problem(engine.name, problem))
            continue
        pair: list[Program] = []
        base_port: int = getattr(settings, engine.server.port_var.lower())
        for ordinal, device in enumerate(slots):
            suffix = f"-gpu{device.index}" if several and device is not None else ""
            port = base_port + ordinal
            url = f"http://127.0.0.1:{port}"
            server_env: dict[str, str] = {
                **common,
                engine.server.port_var: str(port),
                # Model servers stay on loopback (ComfyUI's UI in the pod is the exception,
                # below); the user's XTTS_HOST / COMFYUI_LISTEN wins.
                **default(engine.listen_var, "127.0.0.1"),
            }
            if engine.name == "xtts":
                server_env |= default("XTTS_MODEL_DIR", str(layout.models_dir / "xtts"))
            elif engine.name == "chatterbox":
                server_env |= default("CHATTERBOX_MODEL_DIR", str(layout.models_dir / "chatterbox"))
            else:
                server_env |= default("MODELS_DIR", str(layout.models_dir))
                python = _comfyui_python(settings)
                if python is not None:
                    server_env["COMFYUI_PYTHON"] = str(python)
                if pod and ordinal == 0:
                    # The seed's UI on 8188, published by the pod (RunPod's proxy).
                    server_env[engine.listen_var] = user_env.get(engine.listen_var, "0.0.0.0")  # noqa: S104
            if device is not None:
                # By UUID: CUDA's device order need not be NVML's.
                server_env["CUDA_VISIBLE_DEVICES"] = device.uuid
            else:
                server_env |= {k: v for k, v in engine.cpu_env.items() if k not in user_env}
            pair.append(
                program(
                    f"{engine.name}{suffix}",
                    engine.server,
                    script(engine.server),
                    server_env,
                    Health("http", port, engine.server.health_path),
                    device,
                )
            )
            worker_env = {
                **common,
                engine.url_var: url,
                "WORKER_HEALTH_HOST": "127.0.0.1",
                "WORKER_HEALTH_PORT": str(worker_port),
            }
            pair.append(
                program(
                    f"{engine.name}-worker{suffix}",
                    engine.worker,
                    script(engine.worker),
                    worker_env,
                    Health("http", worker_port, engine.worker.health_path),
                )
            )
            worker_port += 1
        busy = _port_problems(pair) if check_ports else []
        if busy:
            problems += busy  # the whole engine is left out: a worker without its server waits
            continue
        programs += pair
        running.append(engine.name)
        first_url[engine.name] = f"http://127.0.0.1:{base_port}"

    # The uploader (one per host) and the gateway.
    programs.append(
        program(
            "uploader",
            UPLOADER,
            script(UPLOADER),
            {
                **common,
                "UPLOAD_METRICS_HOST": "127.0.0.1",
                "UPLOAD_METRICS_PORT": str(settings.upload_metrics_port),
            },
            Health("http", settings.upload_metrics_port, UPLOADER.health_path),
        )
    )
    gateway_env = {
        **common,
        "GATEWAY_PORT": str(settings.gateway_port),
        **{ENGINES[name].url_var: url for name, url in first_url.items()},
    }
    if "GATEWAY_ENABLED_BACKENDS" not in user_env:
        # Only the engines that run: a job for another would wait for nothing. "," is the
        # empty list (an empty value would mean "all").
        gateway_env["GATEWAY_ENABLED_BACKENDS"] = ",".join(running) or ","
    tts = [name for name in running if name in ("xtts", "chatterbox")]
    if tts and "GATEWAY_DEFAULT_TTS_BACKEND" not in user_env:
        gateway_env["GATEWAY_DEFAULT_TTS_BACKEND"] = tts[0]
    if pod and "RUNPOD_POD_ID" in user_env and "GATEWAY_PUBLIC_URL" not in user_env:
        # RunPod's proxy is the address clients use: the artifact links must name it.
        pod_id = user_env["RUNPOD_POD_ID"]
        gateway_env["GATEWAY_PUBLIC_URL"] = (
            f"https://{pod_id}-{settings.gateway_port}.proxy.runpod.net"
        )
    if "GATEWAY_API_KEYS" not in user_env and "GATEWAY_API_KEYS_FILE" not in user_env:
        gateway_env["GATEWAY_API_KEYS_FILE"] = str(layout.api_keys_file)
    programs.append(
        program(
            "gateway",
            GATEWAY,
            script(GATEWAY),
            gateway_env,
            Health("http", settings.gateway_port, GATEWAY.health_path),
        )
    )

    if pod:
        programs += _pod_tools(settings, layout, problems)

    if check_ports:
        problems += _port_problems([p for p in programs if p.role is None or not p.role.engine])
    return Plan(layout=layout, programs=programs, problems=problems, notes=notes, engines=running)


# compose.yaml's redis command, less what differs per host (port, bind, dir): AOF on (fsync
# every second) so queued jobs, job records and the upload ledger survive a restart;
# noeviction so Redis refuses writes rather than dropping queued tasks.
REDIS_FLAGS = (
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
    "--save",
    "",
    # To stdout, which supervisord captures.
    "--logfile",
    "",
)


def _port_problems(programs: list[Program]) -> list[Problem]:
    """A program whose port is taken: an engine's is left out, a core one's stops the start
    (sshd and JupyterLab: the pod's own ports, fatal too)."""
    problems = []
    for prog in programs:
        if not _port_free("0.0.0.0", prog.health.port):  # noqa: S104 - any address in use
            var = prog.role.port_var if prog.role is not None else "its port"
            core = prog.role is None or prog.role.engine is None
            problems.append(
                Problem(
                    prog.name,
                    f"port {prog.health.port} is in use (another genstack or another program): "
                    f"stop that, or set {var} to a free port",
                    fatal=core,
                )
            )
    return problems


def _pod_tools(settings: DeploySettings, layout: Layout, problems: list[Problem]) -> list[Program]:
    """SSH on 22 (PUBLIC_KEY) and JupyterLab on 8888 (JUPYTER_PASSWORD), as the single image
    offered; both as root, like a RunPod pod's own tools."""
    tools = []
    if settings.public_key:
        tools.append(
            Program(
                name="sshd",
                role=None,
                tier="access",
                argv=("/usr/sbin/sshd", "-D", "-e"),
                env={},
                health=Health("tcp", 22),
                stop_grace_s=5,
            )
        )
    jupyter = (
        settings.enable_jupyter
        if settings.enable_jupyter is not None
        else settings.jupyter_password is not None
    )
    if jupyter and settings.jupyter_password is None:
        problems.append(
            Problem(
                "jupyter",
                "ENABLE_JUPYTER=true needs JUPYTER_PASSWORD (JupyterLab's token, its only "
                "authentication): set it, as a RunPod secret",
            )
        )
    elif jupyter:
        tools.append(
            Program(
                name="jupyter",
                role=None,
                tier="access",
                argv=(
                    str(layout.venvs / "jupyter" / "bin" / "jupyter"),
                    "lab",
                    "--allow-root",
                    "--no-browser",
                    "--ip=0.0.0.0",
                    "--port=8888",
                    "--ServerApp.root_dir=/workspace",
                    "--ServerApp.allow_origin=*",
                ),
                env={},
                env_from={"JUPYTER_TOKEN": "JUPYTER_PASSWORD"},
                health=Health("http", 8888, "/api"),
                stop_grace_s=10,
            )
        )
    return tools
