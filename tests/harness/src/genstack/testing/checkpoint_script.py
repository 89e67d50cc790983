"""Run by ComfyUI's interpreter (COMFYUI_PYTHON), never imported by genstack: build a
full-size Stable Diffusion checkpoint with random weights from ComfyUI's own model classes,
or only check its key layout. genstack.testing.checkpoints calls it; see that module.

    python checkpoint_script.py --comfyui-dir DIR --arch sd15|sdxl [--dtype fp16]
        [--seed 0] (--out FILE | --check)

The models are built on the meta device (no memory, no init cost); each tensor of the state
dict is then drawn on its own: PyTorch's default bound for Linear and Conv weights
(uniform, +-1/sqrt(fan_in)), zero biases, norms at identity, embeddings N(0, 0.02). Bounded
like this, a 1-step sample decodes to finite, varied pixels. The file's key names come from
ComfyUI's own saving path (BaseModel.state_dict_for_saving, what CheckpointSave writes): an
original checkpoint's ``model.diffusion_model.*``, ``cond_stage_model.*`` /
``conditioner.*`` and ``first_stage_model.*``. Before writing, the layout is checked the way
``comfy.sd.load_state_dict_guess_config`` reads it: the UNet detected as the expected model,
and every UNet, VAE and text-encoder key consumed with the shape its model expects.

Prints one JSON object on stdout (what was built, what ComfyUI detected, sizes, timings).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Run as a file, this folder (genstack.testing) comes first on sys.path: take it off, so none
# of its module names can shadow one that torch or ComfyUI imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import torch

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# The UNets as their original configs give them (v1-inference.yaml, sd_xl_base.yaml), turned
# into ComfyUI's form by comfy.model_detection.convert_config.
UNETS: dict[str, dict[str, Any]] = {
    "sd15": {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 320,
        "attention_resolutions": [4, 2, 1],
        "num_res_blocks": 2,
        "channel_mult": [1, 2, 4, 4],
        "num_heads": 8,
        "use_spatial_transformer": True,
        "transformer_depth": 1,
        "context_dim": 768,
        "legacy": False,
        "use_linear_in_transformer": False,
        "adm_in_channels": None,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
    },
    "sdxl": {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 320,
        "attention_resolutions": [4, 2],
        "num_res_blocks": 2,
        "channel_mult": [1, 2, 4],
        "num_head_channels": 64,
        "use_spatial_transformer": True,
        "transformer_depth": [1, 2, 10],
        "context_dim": 2048,
        "legacy": False,
        "use_linear_in_transformer": True,
        "num_classes": "sequential",
        "adm_in_channels": 2816,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
    },
}
EXPECTED = {"sd15": "SD15", "sdxl": "SDXL"}
# The SD VAE (AutoencoderKL), as comfy.sd.VAE builds it for an SD1.x/SDXL checkpoint.
VAE_CONFIG: dict[str, Any] = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
UNET_PREFIX = "model.diffusion_model."
# What ComfyUI itself does not miss in a checkpoint's text encoder (load_state_dict_guess_config).
CLIP_MAY_MISS = (".logit_scale", ".transformer.text_projection.weight")

Draw = Callable[[torch.Tensor, torch.Generator], None]


class LayoutError(Exception):
    """The state dict would not load as the expected model."""


def _import_comfy(comfyui_dir: Path) -> None:
    sys.path.insert(0, str(comfyui_dir))
    import comfy.cli_args

    # Built on the meta device and drawn on the CPU: never touch a GPU, even where one is.
    comfy.cli_args.args.cpu = True


def _uniform_fan_in(tensor: torch.Tensor, generator: torch.Generator) -> None:
    fan_in = math.prod(tensor.shape[1:])
    bound = 1.0 / math.sqrt(fan_in)
    tensor.uniform_(-bound, bound, generator=generator)


def _normal(tensor: torch.Tensor, generator: torch.Generator) -> None:
    tensor.normal_(0.0, 0.02, generator=generator)


def _ones(tensor: torch.Tensor, generator: torch.Generator) -> None:
    tensor.fill_(1.0)


def _zeros(tensor: torch.Tensor, generator: torch.Generator) -> None:
    tensor.zero_()


def _logit_scale(tensor: torch.Tensor, generator: torch.Generator) -> None:
    tensor.fill_(math.log(100.0))  # CLIP's trained value; unused by generation


def draws(module: torch.nn.Module) -> dict[str, Draw]:
    """How each tensor of ``module``'s state dict is drawn, by the layer that owns it."""
    found: dict[str, Draw] = {}
    for prefix, child in module.named_modules():
        for name, _ in child.named_parameters(recurse=False):
            key = f"{prefix}.{name}" if prefix else name
            if isinstance(child, torch.nn.GroupNorm | torch.nn.LayerNorm):
                found[key] = _ones if name == "weight" else _zeros
            elif isinstance(child, torch.nn.Linear | torch.nn.Conv2d | torch.nn.Conv1d):
                found[key] = _uniform_fan_in if name == "weight" else _zeros
            elif isinstance(child, torch.nn.Embedding):
                found[key] = _normal
            elif name == "logit_scale":
                found[key] = _logit_scale
            else:
                raise LayoutError(f"no rule to initialise {key} ({type(child).__name__})")
    missing = set(module.state_dict()) - set(found)
    if missing:
        raise LayoutError(f"buffers with no rule: {sorted(missing)[:5]}")
    return found


def random_state_dict(
    module: torch.nn.Module, dtype: torch.dtype, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Real tensors for every key of a meta-device module, drawn in its state dict's order."""
    rules = draws(module)
    out: dict[str, torch.Tensor] = {}
    for key, meta in module.state_dict().items():
        # Drawn in float32 (the same numbers whatever the dtype), stored in dtype.
        tensor = torch.empty(meta.shape, dtype=torch.float32)
        rules[key](tensor, generator)
        out[key] = tensor.to(dtype)
    return out


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def _compare(
    part: str,
    given: dict[str, torch.Tensor],
    wanted: dict[str, torch.Tensor],
    may_miss: Iterable[str],
) -> None:
    have, want = _shapes(given), _shapes(wanted)
    missing = [k for k in want if k not in have and not k.endswith(tuple(may_miss))]
    unexpected = [k for k in have if k not in want and not k.endswith(".position_ids")]
    wrong = [
        f"{k}: {have[k]} != {want[k]}" for k in want.keys() & have.keys() if have[k] != want[k]
    ]
    if missing or unexpected or wrong:
        raise LayoutError(
            f"{part}: missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )


def check_layout(
    arch: str,
    sd: dict[str, torch.Tensor],
    unet: torch.nn.Module,
    clip: torch.nn.Module,
    vae: torch.nn.Module,
) -> str:
    """Read ``sd`` as load_state_dict_guess_config does; returns the detected model's name."""
    import comfy.model_detection
    import comfy.utils

    sd = dict(sd)  # ComfyUI's processing pops the keys it takes
    prefix = comfy.model_detection.unet_prefix_from_state_dict(sd)
    if prefix != UNET_PREFIX:
        raise LayoutError(f"UNet prefix detected as {prefix!r}")
    config = comfy.model_detection.model_config_from_unet(sd, prefix)
    detected = type(config).__name__ if config is not None else "nothing"
    if detected != EXPECTED[arch]:
        raise LayoutError(f"detected as {detected}, not {EXPECTED[arch]}")
    unet_sd = comfy.utils.state_dict_prefix_replace(sd, {prefix: ""}, filter_keys=True)
    _compare("unet", config.process_unet_state_dict(unet_sd), unet.state_dict(), ())
    vae_sd = comfy.utils.state_dict_prefix_replace(
        sd, dict.fromkeys(config.vae_key_prefix, ""), filter_keys=True
    )
    _compare("vae", config.process_vae_state_dict(vae_sd), vae.state_dict(), ())
    _compare("clip", config.process_clip_state_dict(sd), clip.state_dict(), CLIP_MAY_MISS)
    return detected


def build(arch: str, dtype: torch.dtype, seed: int, out: Path | None) -> dict[str, Any]:
    import comfy.ldm.models.autoencoder
    import comfy.model_detection

    timings: dict[str, float] = {}
    started = time.monotonic()
    unet_config = comfy.model_detection.convert_config(UNETS[arch])
    config = comfy.model_detection.model_config_from_unet_config(unet_config)
    if config is None or type(config).__name__ != EXPECTED[arch]:
        raise LayoutError(f"{arch}'s UNet config matches {type(config).__name__}")
    meta = torch.device("meta")
    with meta:
        model = config.get_model({}, device=meta)
        clip = config.clip_target().clip(device=meta, dtype=dtype)
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=VAE_CONFIG, embed_dim=4)
    unet = model.diffusion_model
    timings["meta_models_s"] = time.monotonic() - started

    if out is None:
        sd = model.state_dict_for_saving(clip.state_dict(), vae.state_dict())
    else:
        generator = torch.Generator().manual_seed(seed)
        unet_sd = random_state_dict(unet, dtype, generator)
        # ComfyUI's own saving path reads the UNet from the model: give it the real tensors.
        unet.load_state_dict(unet_sd, assign=True)
        clip_sd = random_state_dict(clip, dtype, generator)
        vae_sd = random_state_dict(vae, dtype, generator)
        sd = model.state_dict_for_saving(clip_sd, vae_sd)
        timings["draw_s"] = time.monotonic() - started - sum(timings.values())
    sd = {k: v.contiguous() for k, v in sd.items()}

    detected = check_layout(arch, sd, unet, clip, vae)
    size = torch.empty((), dtype=dtype).element_size()
    report: dict[str, Any] = {
        "arch": arch,
        "detected": detected,
        "keys": len(sd),
        "parameters": sum(v.numel() for v in sd.values()),
        # In dtype, also for a --check whose meta tensors have the model's default dtype.
        "bytes": sum(
            v.numel() * (size if v.is_floating_point() else v.element_size()) for v in sd.values()
        ),
    }
    if out is not None:
        import comfyui_version
        from safetensors.torch import save_file

        begun = time.monotonic()
        metadata = {
            "genstack": "random weights for tests",
            "arch": arch,
            "seed": str(seed),
            "comfyui": str(comfyui_version.__version__),
        }
        save_file(sd, str(out), metadata=metadata)
        timings["write_s"] = time.monotonic() - begun
        report["file"] = str(out)
        report["file_bytes"] = out.stat().st_size
    report["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a random-weight SD checkpoint.")
    parser.add_argument("--comfyui-dir", required=True, type=Path)
    parser.add_argument("--arch", required=True, choices=sorted(UNETS))
    parser.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    parser.add_argument("--seed", default=0, type=int)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="the .safetensors file to write")
    target.add_argument("--check", action="store_true", help="only check the key layout")
    args = parser.parse_args(argv)
    _import_comfy(args.comfyui_dir)
    try:
        report = build(args.arch, DTYPES[args.dtype], args.seed, args.out)
    except LayoutError as exc:
        print(f"layout error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
