"""``genstack-deploy up | pod | config | envs | health | monitor``.

- ``up``: `make up` — plan this host from the environment, report what cannot run, write the
  data folder's files, then become supervisord in the foreground.
- ``pod``: the pod image's entry point — the same, with the pod's folders (STORAGE_MODE), SSH
  and JupyterLab, the services as the pod's user.
- ``config [--pod]``: print the supervisord.conf the environment gives (checks off).
- ``envs``: the Makefile targets of the environments `make up` needs (env-gateway ...).
- ``health``: check every program of the running plan once (exit 1 if one fails).
- ``monitor``: the plan's last program (see genstack.deploy.monitor).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from genstack.deploy.health import check, load_checks
from genstack.deploy.monitor import Monitor
from genstack.deploy.runtime import (
    EX_CONFIG,
    exec_supervisord,
    local_layout,
    pod_layout,
    prepare,
    report,
)
from genstack.deploy.services import Layout, Plan, enabled_engines, make_plan
from genstack.deploy.settings import DeploySettings
from genstack.deploy.supervisord import render
from genstack.provision.gpu import GpuDevice, GpuInfo, detect_gpus

CORE_PACKAGES = ("gateway", "uploader")


def _monitor_argv(layout: Layout) -> tuple[str, ...]:
    return (str(layout.venvs / "deploy" / "bin" / "genstack-deploy"), "monitor", "--run-dir",
            str(layout.run_dir))  # fmt: skip


def _banner(plan: Plan, key_hint: str) -> str:
    gateway = plan.program("gateway")
    engines = ", ".join(plan.engines) or "none (ENABLE_XTTS, ENABLE_CHATTERBOX, COMFYUI_DIR)"
    return (
        f"ready: gateway on http://127.0.0.1:{gateway.health.port} ({key_hint}); "
        f"model services: {engines}; outputs in {plan.layout.data_dir / 'outputs'}"
    )


def _key_hint(plan: Plan) -> str:
    gateway = plan.program("gateway")
    if "GATEWAY_API_KEYS_FILE" in gateway.env:
        return f"API key in {gateway.env['GATEWAY_API_KEYS_FILE']}"
    return "API keys: GATEWAY_API_KEYS"


def _start(plan: Plan, settings: DeploySettings, console: bool) -> int:
    report(plan, sys.stdout)
    if plan.fatal:
        print("genstack: nothing started.", flush=True)
        return EX_CONFIG
    started = prepare(plan, settings, monitor_argv=_monitor_argv(plan.layout), console=console)
    (plan.layout.run_dir / "banner.txt").write_text(_banner(plan, _key_hint(plan)))
    if started.api_key is not None:
        print(
            "genstack: GATEWAY_API_KEYS is not set, so this key was made and stored in "
            f"{plan.program('gateway').env['GATEWAY_API_KEYS_FILE']} (it is shown only "
            f"now):\n\n    {started.api_key}\n",
            flush=True,
        )
    names = ", ".join(p.name for p in plan.programs)
    where = "the console" if console else f"{plan.layout.log_dir}/<name>.log"
    print(
        f"genstack: starting {names}; logs: {where}; supervisorctl -c {started.conf}; "
        "Ctrl-C or SIGTERM stops everything",
        flush=True,
    )
    exec_supervisord(started.conf)
    return 0  # not reached


def _settings() -> DeploySettings | None:
    try:
        return DeploySettings.from_env(os.environ)
    except ValidationError as exc:
        print(f"genstack-deploy: bad configuration: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genstack-deploy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the stack here in the foreground (make up)")
    up.add_argument("--checkout", type=Path, default=Path())
    up.add_argument("--dry-run", action="store_true", help="report and print the config only")
    pod = sub.add_parser("pod", help="the pod image's entry point")
    pod.add_argument("--dry-run", action="store_true", help="report and print the config only")
    config = sub.add_parser("config", help="print the supervisord.conf of this environment")
    config.add_argument("--pod", action="store_true", help="as the pod image runs it")
    config.add_argument("--checkout", type=Path, default=Path())
    config.add_argument(
        "--gpus", type=int, default=None, help="plan for this many GPUs instead of NVML's"
    )
    envs = sub.add_parser("envs", help="the env-NAME targets `make up` needs")
    envs.add_argument("--checkout", type=Path, default=Path())
    health = sub.add_parser("health", help="check every program of the running stack once")
    health.add_argument("--run-dir", type=Path, default=None)
    monitor = sub.add_parser("monitor", help="readiness and failures of the running stack")
    monitor.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    settings = _settings()
    if settings is None:
        return 2
    if args.command == "envs":
        wanted = list(CORE_PACKAGES)  # and deploy, which `make up` has built already
        for name in enabled_engines(settings):
            if (args.checkout / "services" / name / "pyproject.toml").is_file():
                wanted.append(name)
        print(" ".join(f"env-{name}" for name in wanted))
        return 0
    if args.command in ("health", "monitor"):
        run_dir = args.run_dir
        if run_dir is None:
            layout = pod_layout(settings) if Path("/opt/venvs/deploy").is_dir() else None
            run_dir = layout.run_dir if layout else local_layout(settings, Path()).run_dir
        checks = load_checks(run_dir / "checks.json")
        if args.command == "monitor":
            banner = (run_dir / "banner.txt").read_text()
            return Monitor(checks, run_dir / "supervisor.sock", banner).run()
        failing = 0
        for target in checks:
            why = check(target)
            print(f"{target.name:24} {'ok' if why is None else why}")
            failing += why is not None
        return 1 if failing else 0

    if args.command == "config":
        if args.gpus is not None:
            gpus = GpuInfo(devices=tuple(_fake_gpus(args.gpus)))
        else:
            gpus = detect_gpus()
        layout = pod_layout(settings) if args.pod else local_layout(settings, args.checkout)
        plan = make_plan(settings, layout, gpus, os.environ, check=False)
        console = _console(settings, args.pod)
        sys.stdout.write(render(plan, monitor_argv=_monitor_argv(layout), console=console))
        return 0

    if args.command == "pod":
        layout = pod_layout(settings)
    else:
        layout = local_layout(settings, args.checkout)
    plan = make_plan(settings, layout, detect_gpus(), os.environ)
    console = _console(settings, args.command == "pod")
    if args.dry_run:
        report(plan, sys.stdout)
        sys.stdout.write(render(plan, monitor_argv=_monitor_argv(layout), console=console))
        return EX_CONFIG if plan.fatal else 0
    return _start(plan, settings, console)


def _console(settings: DeploySettings, pod: bool) -> bool:
    if settings.deploy_logs is not None:
        return settings.deploy_logs == "console"
    return pod


def _fake_gpus(count: int) -> list[GpuDevice]:
    return [
        GpuDevice(
            index=i,
            name="planned GPU",
            uuid=f"GPU-planned-{i}",
            memory_total_bytes=24 * 10**9,
            memory_free_bytes=24 * 10**9,
            compute_capability="unknown",
        )
        for i in range(count)
    ]


if __name__ == "__main__":
    sys.exit(main())
