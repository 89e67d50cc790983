"""``genstack-comfyui start``: custom node updates (UPDATE_NODES_ON_START, node_update.py), GPU
flags, models, extra model paths, then ComfyUI itself.

The process becomes ComfyUI (``os.execv``): signals, exit code and logs are ComfyUI's own, so
a container's stop and health check see ComfyUI, not a wrapper. Its argv is the contract::

    COMFYUI_PYTHON COMFYUI_DIR/main.py --output-directory OUTPUT_DIR
        --listen COMFYUI_LISTEN --port COMFYUI_PORT
        --extra-model-paths-config <written for MODELS_DIR>
        <GPU flags: --cpu | --lowvram | --normalvram | --highvram | --gpu-only> COMFYUI_ARGS...
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import yaml

from genstack.comfyui.node_update import update_custom_nodes
from genstack.comfyui.settings import ComfyUISettings
from genstack.provision import ProvisionError, ProvisionReport, ensure_models
from genstack.provision.gpu import GpuProfile, resolve_profile

log = logging.getLogger(__name__)

# ComfyUI's model folder names -> their folders under MODELS_DIR (ComfyUI's own layout, so a
# models volume of the single-image system works as it is). Custom nodes that place models
# beside the first checkpoints folder (VibeVoice: models/vibevoice) find MODELS_DIR too,
# since these paths come first (is_default).
MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "configs": ("configs",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "embeddings": ("embeddings",),
    "diffusers": ("diffusers",),
    "vae_approx": ("vae_approx",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",),
    "upscale_models": ("upscale_models",),
    "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",),
    "classifiers": ("classifiers",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}

Exec = Callable[[str, list[str]], object]
Ensure = Callable[..., ProvisionReport]


class StartError(Exception):
    """ComfyUI cannot be started as configured; the message says what to change."""


def extra_model_paths(models_dir: Path) -> dict[str, dict[str, object]]:
    section: dict[str, object] = {"base_path": str(models_dir), "is_default": True}
    for name, folders in MODEL_FOLDERS.items():
        section[name] = "\n".join(folders)
    return {"genstack": section}


def write_extra_model_paths(models_dir: Path, folder: Path | None = None) -> Path:
    """Write ComfyUI's extra_model_paths YAML for ``models_dir`` outside the checkout (which
    may be read-only in the image); returns its path."""
    folder = folder or Path(tempfile.gettempdir()) / "genstack-comfyui"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "extra_model_paths.yaml"
    path.write_text(yaml.safe_dump(extra_model_paths(models_dir), sort_keys=False))
    return path


def comfyui_argv(
    settings: ComfyUISettings, gpu_flags: Sequence[str], extra_paths: Path
) -> list[str]:
    """The command line ComfyUI runs with (see the module's docstring)."""
    return [
        str(settings.comfyui_python),
        str(settings.comfyui_dir / "main.py"),
        "--output-directory",
        str(settings.output_dir),
        "--listen",
        settings.comfyui_listen,
        "--port",
        str(settings.comfyui_port),
        "--extra-model-paths-config",
        str(extra_paths),
        *gpu_flags,
        *shlex.split(settings.comfyui_args),
    ]


def prepare(
    settings: ComfyUISettings,
    env: Mapping[str, str],
    *,
    ensure: Ensure = ensure_models,
    profile: GpuProfile | None = None,
    state_dir: Path | None = None,
) -> list[str]:
    """Everything before the exec: checks, custom node updates (opt-in), GPU profile, models,
    extra model paths. Returns ComfyUI's argv; raises StartError naming what is wrong."""
    main = settings.comfyui_dir / "main.py"
    if not main.is_file():
        raise StartError(f"COMFYUI_DIR={settings.comfyui_dir} has no main.py (not a checkout)")
    if not settings.comfyui_python.is_file():
        raise StartError(f"COMFYUI_PYTHON={settings.comfyui_python} does not exist")
    if settings.update_nodes_on_start:
        if not settings.comfyui_constraints.is_file():
            raise StartError(
                f"UPDATE_NODES_ON_START=true needs COMFYUI_CONSTRAINTS, and "
                f"{settings.comfyui_constraints} does not exist: point it at a constraints file "
                "(services/comfyui/constraints.txt), or unset UPDATE_NODES_ON_START"
            )
        # A node that fails to update is rolled back and logged; the start goes on.
        update_custom_nodes(settings)
    try:
        profile = profile or resolve_profile(env)
    except ValueError as exc:
        raise StartError(str(exc)) from exc
    log.info(
        "GPU profile: tier %s, ComfyUI flags %s",
        profile.tier,
        " ".join(profile.comfyui_flags),
        extra={"gpu": profile.device.name if profile.device else None},
    )
    try:
        report = ensure("comfyui", settings.models_dir, env, profile=profile)
    except ProvisionError as exc:
        raise StartError(f"model provisioning failed: {exc}") from exc
    log.info(
        "models ready in %s (%d fetched, %.1fs)",
        settings.models_dir,
        len(report.fetched),
        report.elapsed_s,
    )
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    extra = write_extra_model_paths(settings.models_dir, state_dir)
    return comfyui_argv(settings, profile.comfyui_flags, extra)


def start(
    settings: ComfyUISettings,
    env: Mapping[str, str] | None = None,
    *,
    exec_: Exec = os.execv,
    ensure: Ensure = ensure_models,
    profile: GpuProfile | None = None,
) -> int:
    """Prepare, then become ComfyUI. Returns 2 (after logging why) when it cannot start."""
    try:
        argv = prepare(settings, os.environ if env is None else env, ensure=ensure, profile=profile)
    except StartError as exc:
        log.error("ComfyUI not started: %s", exc)  # noqa: TRY400 - the message is the point
        return 2
    log.info("starting ComfyUI: %s", shlex.join(argv))
    # cwd: ComfyUI resolves some paths (user/, custom_nodes/) from the checkout.
    os.chdir(settings.comfyui_dir)
    exec_(argv[0], argv)
    return 0  # only an exec_ that returns (tests) gets here
