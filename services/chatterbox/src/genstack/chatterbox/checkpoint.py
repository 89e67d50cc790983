"""The Chatterbox checkpoint in CHATTERBOX_MODEL_DIR: used as it is when complete, provisioned
(genstack-provision's catalogue entry ``chatterbox``) when not."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from genstack.provision import ensure_models
from genstack.provision.errors import ProvisionError

log = logging.getLogger(__name__)

# What each model's from_local() reads (conds.pt, the built-in voice, is optional).
CHECKPOINT_FILES = {
    "english": ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"),
    "multilingual": (
        "ve.pt",
        "t3_mtl23ls_v2.safetensors",
        "s3gen.pt",
        "grapheme_mtl_merged_expanded_v1.json",
    ),
    "turbo": (
        "ve.safetensors",
        "t3_turbo_v1.safetensors",
        "s3gen_meanflow.safetensors",
        "vocab.json",
        "merges.txt",
    ),
}
# Turbo's ve.safetensors and conds.pt differ from the English model's: a provisioned Turbo
# lives in a subfolder of the shared model folder.
SUBFOLDER = {"turbo": "turbo"}


class CheckpointError(RuntimeError):
    """The checkpoint is missing or incomplete and could not be provisioned."""


def missing_files(model_dir: Path, variant: str) -> list[str]:
    return [
        name
        for name in CHECKPOINT_FILES[variant]
        if not (model_dir / name).is_file() or (model_dir / name).stat().st_size == 0
    ]


def ensure_checkpoint(model_dir: Path, variant: str) -> Path:
    """The folder holding ``variant``'s files: ``model_dir`` itself when complete (no
    download; a fine-tuned checkpoint is served so), else its provisioned copy."""
    if not missing_files(model_dir, variant):
        return model_dir
    target = model_dir / SUBFOLDER[variant] if variant in SUBFOLDER else model_dir
    if target != model_dir and not missing_files(target, variant):
        return target
    log.info(
        "Chatterbox checkpoint incomplete, provisioning",
        extra={"model_dir": str(model_dir), "missing": missing_files(target, variant)},
    )
    try:
        report = ensure_models("chatterbox", model_dir, {**os.environ, "CHATTERBOX_MODEL": variant})
    except ProvisionError as exc:
        raise CheckpointError(
            f"no complete Chatterbox {variant} checkpoint in {target} (missing: "
            f"{', '.join(missing_files(target, variant))}) and provisioning it failed: {exc}"
        ) from exc
    still = missing_files(target, variant)
    if still:
        raise CheckpointError(f"provisioning left {target} without {', '.join(still)}")
    log.info(
        "Chatterbox checkpoint provisioned",
        extra={"model_dir": str(target), "bytes": report.bytes_fetched},
    )
    return target
