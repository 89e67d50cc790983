"""From a plan to a running supervisord: the data folder, the gateway's API key (generated when
none is given, stored, said once), the pod's own setup (where models live by STORAGE_MODE,
SSH, ownership), the files supervisord and the monitor read, then the exec."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from genstack.deploy.health import Check, save_checks
from genstack.deploy.services import Layout, Plan
from genstack.deploy.settings import DeploySettings
from genstack.deploy.supervisord import render

__all__ = [
    "EX_CONFIG",
    "POD_HOME",
    "POD_USER",
    "POD_VENVS",
    "Started",
    "ensure_api_key",
    "local_layout",
    "pod_layout",
    "prepare",
]

EX_CONFIG = 78  # sysexits.h: nothing started, the configuration says why
POD_VENVS = Path("/opt/venvs")
POD_USER = "genstack"
POD_HOME = Path("/home/genstack")
VOLUME = Path("/workspace")  # where RunPod mounts a pod's volume or network volume
CONTAINER_DATA = Path("/data")  # the container disk
SEED_MODELS = VOLUME / "ComfyUI" / "models"  # the single image's models folder on a volume


def local_layout(settings: DeploySettings, checkout: Path) -> Layout:
    checkout = checkout.resolve()
    data = (settings.data_dir or checkout / "data").resolve()
    models = (settings.models_dir or data / "models").resolve()
    return Layout(
        kind="local",
        venvs=checkout / ".venvs",
        data_dir=data,
        models_dir=models,
        checkout=checkout,
        supervisor_root=os.geteuid() == 0,
    )


def pod_layout(
    settings: DeploySettings, *, volume_mounted: bool | None = None, as_root: bool | None = None
) -> Layout:
    """The pod's folders. State (Redis's AOF, the API key, outputs not yet uploaded, voices)
    goes on the volume when there is one, else on the container disk. Models go where
    STORAGE_MODE says, as in the single image: persistent on the volume (its old
    ComfyUI/models folder when it has one, so a volume of the single image keeps its models),
    ephemeral on the container disk (fetched again after a restart), auto: the volume when
    one is mounted."""
    mounted = os.path.ismount(VOLUME) if volume_mounted is None else volume_mounted
    root = os.geteuid() == 0 if as_root is None else as_root
    data = settings.data_dir or (VOLUME / "genstack" if mounted else CONTAINER_DATA)
    persistent = settings.storage_mode == "persistent" or (
        settings.storage_mode == "auto" and mounted
    )
    if settings.models_dir is not None:
        models = settings.models_dir
    elif persistent:
        models = SEED_MODELS if SEED_MODELS.is_dir() else VOLUME / "genstack" / "models"
    else:
        models = CONTAINER_DATA / "models"
    return Layout(
        kind="pod",
        venvs=POD_VENVS,
        data_dir=data,
        models_dir=models,
        user=POD_USER if root else None,
        home=POD_HOME if root else None,
        supervisor_root=root,
    )


def ensure_api_key(layout: Layout, plan: Plan) -> str | None:
    """The gateway reads its keys from a file in the data folder when the environment gives
    none: make one the first time. Returns the key when it was made now (to be said once)."""
    gateway = next((p for p in plan.programs if p.name == "gateway"), None)
    if gateway is None or "GATEWAY_API_KEYS_FILE" not in gateway.env:
        return None
    path = Path(gateway.env["GATEWAY_API_KEYS_FILE"])
    if path.is_file() and path.read_text().strip():
        return None
    key = f"gs-{secrets.token_urlsafe(32)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# genstack gateway API key, made by `genstack-deploy` on first start\n{key}\n")
    return key


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for folder, _, files in os.walk(path):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)


def setup_ssh(public_key: str, home: Path = Path("/root")) -> None:
    """RunPod's convention: PUBLIC_KEY's lines go into root's authorized_keys; host keys are
    made on first start (never baked into the image)."""
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    keys = ssh / "authorized_keys"
    have = keys.read_text().splitlines() if keys.is_file() else []
    new = [line.strip() for line in public_key.splitlines() if line.strip()]
    keys.write_text("\n".join(have + [k for k in new if k not in have]) + "\n")
    keys.chmod(0o600)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    subprocess.run(["/usr/bin/ssh-keygen", "-A"], check=True, capture_output=True)


@dataclass
class Started:
    conf: Path
    api_key: str | None


def prepare(
    plan: Plan, settings: DeploySettings, *, monitor_argv: tuple[str, ...], console: bool
) -> Started:
    """Folders, the key, the pod's SSH, then supervisord.conf and the monitor's checks."""
    layout = plan.layout
    for folder in (
        layout.run_dir,
        layout.log_dir,
        layout.data_dir / "redis",
        layout.data_dir / "outputs",
        layout.data_dir / "storage",
        layout.data_dir / "voices",
        layout.models_dir,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    api_key = ensure_api_key(layout, plan)
    if layout.user is not None:
        # The services run as the pod's user; a volume comes owned by root.
        for folder in (layout.data_dir, layout.models_dir):
            _chown_tree(folder, layout.user)
        if layout.home is not None:
            layout.home.mkdir(parents=True, exist_ok=True)
            _chown_tree(layout.home, layout.user)
        if settings.public_key and any(p.name == "sshd" for p in plan.programs):
            setup_ssh(settings.public_key)
    conf = layout.run_dir / "supervisord.conf"
    conf.write_text(render(plan, monitor_argv=monitor_argv, console=console))
    checks = [
        Check(
            name=p.name,
            kind=p.health.kind,
            url=p.health.url,
            log=None if console else str(layout.log_dir / f"{p.name}.log"),
            ready_url=(
                p.health.url.removesuffix("/healthz") + "/readyz"
                if p.role is not None and p.role.package and p.health.path == "/healthz"
                else None
            ),
        )
        for p in plan.programs
    ]
    save_checks(layout.run_dir / "checks.json", checks)
    return Started(conf=conf, api_key=api_key)


def report(plan: Plan, out: TextIO) -> None:
    """The notes and every problem, once, before anything starts."""
    for note in plan.notes:
        out.write(f"genstack: {note}\n")
    for problem in plan.problems:
        kind = "cannot start" if problem.fatal else "left out"
        out.write(f"genstack: {kind}: {problem}\n")
    out.flush()


def exec_supervisord(conf: Path, env: Mapping[str, str] | None = None) -> None:
    """Become supervisord (same pid: the signals of make, a terminal or tini reach it)."""
    binary = Path(sys.executable).parent / "supervisord"
    if not binary.is_file():
        found = shutil.which("supervisord")
        if found is None:
            raise FileNotFoundError("supervisord is not installed beside genstack-deploy")
        binary = Path(found)
    argv = [str(binary), "--configuration", str(conf)]
    os.execve(argv[0], argv, dict(os.environ if env is None else env))  # noqa: S606
