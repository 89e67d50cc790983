"""``genstack-provision``: plan, download and verify models; report the GPU.

    genstack-provision [--manifest NAME|PATH]... [--all] [--models-dir DIR] [--dry-run]
                       [--json] [--vram-gb N] [--set VAR=VALUE]...
    genstack-provision gpu [--vram-gb N]       # what NVML found, tier, flags, auto variants
    genstack-provision schema                  # JSON Schema of the manifest format
    genstack-provision pin -m NAME|PATH        # the manifest with exact sizes, sha256s, commits

Exit codes: 0 done (or the dry-run plan fits), 1 provisioning failed, 2 bad manifest,
variable or usage, 3 the plan does not fit the disk, 130/143 interrupted (partial files are
kept and resume on the next run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import yaml

from genstack.core.logging import configure_logging
from genstack.provision.ensure import plan_models, provision, resolve_manifest
from genstack.provision.errors import (
    DiskSpaceError,
    DownloadInterruptedError,
    ProvisionError,
    VariableError,
)
from genstack.provision.gpu import LazyProfile, resolve_profile
from genstack.provision.manifest import CATALOG_NAMES, Manifest, ManifestError
from genstack.provision.pin import pin_manifest
from genstack.provision.plan import Target
from genstack.provision.settings import ProvisionSettings

__all__ = ["main"]

log = logging.getLogger("genstack.provision")

EXIT_FAILED, EXIT_USAGE, EXIT_DISK = 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genstack-provision",
        description="Plan, download and verify the models a genstack service needs.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "gpu", "schema", "pin"),
        help="run (default): provision; gpu: print the GPU as JSON; schema: manifest schema; "
        "pin: print the manifest (YAML) with exact sizes, sha256s and commits from the hubs",
    )
    parser.add_argument(
        "--manifest",
        "-m",
        action="append",
        default=None,
        metavar="NAME|PATH",
        help=f"catalogue manifest ({', '.join(CATALOG_NAMES)}) or a YAML file; repeatable "
        "(default: PROVISION_MANIFESTS, comfyui)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every catalogue manifest whose enabled_by variable is on (comfyui always; "
        "xtts with ENABLE_XTTS=true; chatterbox with ENABLE_CHATTERBOX=true)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="models root for every selected manifest (default: the manifest's root variable, "
        "e.g. XTTS_MODEL_DIR, CHATTERBOX_MODEL_DIR; MODELS_DIR for one without)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, fetch nothing")
    parser.add_argument("--json", action="store_true", help="the plan (or result) as JSON")
    parser.add_argument(
        "--vram-gb",
        type=float,
        default=None,
        help="plan as if there were one GPU with this much VRAM (GB)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="override an environment variable for this run (repeatable)",
    )
    return parser


def _env(overrides: Sequence[str]) -> dict[str, str]:
    env = dict(os.environ)
    for item in overrides:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise VariableError(f"--set {item!r} is not VAR=VALUE")
        env[name] = value
    return env


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _targets(
    args: argparse.Namespace, env: dict[str, str], settings: ProvisionSettings
) -> list[Target]:
    names: list[str] = args.manifest or [
        n.strip() for n in settings.provision_manifests.split(",") if n.strip()
    ]
    manifests: list[Manifest] = []
    if args.all:
        for name in CATALOG_NAMES:
            manifest = resolve_manifest(name)
            spec = manifest.variables.get(manifest.enabled_by or "")
            enabled = True
            if manifest.enabled_by and spec is not None:
                enabled = _truthy(env.get(manifest.enabled_by, spec.default))
            if enabled:
                manifests.append(manifest)
    else:
        manifests = [resolve_manifest(n) for n in names]

    def root(manifest: Manifest) -> Path:
        if args.models_dir is not None:
            return Path(args.models_dir)
        return settings.models_dir if manifest.root is None else manifest.root.path(env)

    return [Target(m, root(m)) for m in manifests]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = dict(item.partition("=")[::2] for item in args.set)
    environ = {**os.environ, **overrides}
    configure_logging(
        "provision",
        (environ.get("LOG_LEVEL") or "INFO").upper(),
        environ.get("LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json"),
    )
    # The messages are the report (they name the file or variable); a traceback is noise.
    try:
        return _run(args)
    except (ManifestError, VariableError) as exc:
        log.error("%s", exc)  # noqa: TRY400
        return EXIT_USAGE
    except DiskSpaceError as exc:
        log.error("%s", exc)  # noqa: TRY400
        return EXIT_DISK
    except DownloadInterruptedError as exc:
        log.warning("%s", exc)
        return 128 + signal.SIGTERM
    except ProvisionError as exc:
        log.error("%s", exc)  # noqa: TRY400
        return EXIT_FAILED
    except ValueError as exc:  # GPU_TIER / GPU_MEMORY_MODE / PROVISION_* values
        log.error("%s", exc)  # noqa: TRY400
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _run(args: argparse.Namespace) -> int:
    env = _env(args.set)
    if args.command == "schema":
        print(json.dumps(Manifest.model_json_schema(by_alias=True), indent=2))
        return 0
    if args.command == "gpu":
        print(json.dumps(resolve_profile(env, assume_vram_gb=args.vram_gb).to_json(), indent=2))
        return 0
    settings = ProvisionSettings.from_env(env)
    targets = _targets(args, env, settings)
    if args.command == "pin":
        if len(targets) != 1:
            raise VariableError("pin takes exactly one manifest (--manifest NAME|PATH)")
        pinned = pin_manifest(targets[0].manifest, settings)
        print(yaml.safe_dump(pinned, sort_keys=False, allow_unicode=True), end="")
        return 0
    # Detected only if the plan depends on it: a plain download does not touch NVML.
    gpu = LazyProfile(env, assume_vram_gb=args.vram_gb)
    if args.dry_run:
        plan = plan_models(targets, env, profile=gpu, settings=settings)
        if args.json:
            print(json.dumps(plan.to_json(), indent=2))
        else:
            plan.render(sys.stdout)
        return 0 if plan.fits_disk else EXIT_DISK
    stop = threading.Event()
    _on_signals(stop)
    report = provision(targets, env, profile=gpu, settings=settings, stop=stop)
    if args.json:
        summary = {
            "files": report.files,
            "fetched": [r.item.key for r in report.fetched],
            "adopted": report.adopted,
            "bytes_fetched": report.bytes_fetched,
            "elapsed_s": round(report.elapsed_s, 3),
        }
        print(json.dumps(summary, indent=2))
    return 0


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.warning("signal %d: stopping; partial files are kept and resume next time", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":
    sys.exit(main())
