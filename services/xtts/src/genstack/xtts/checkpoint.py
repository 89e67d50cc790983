"""The XTTS v2 checkpoint in XTTS_MODEL_DIR: used as it is when complete, provisioned when not."""

from __future__ import annotations

import logging
from pathlib import Path

from genstack.provision import ensure_models
from genstack.provision.errors import ProvisionError

log = logging.getLogger(__name__)

# What Xtts.load_checkpoint reads; speakers_xtts.pth holds the built-in studio voices.
CHECKPOINT_FILES = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")


class CheckpointError(RuntimeError):
    """The checkpoint is missing or incomplete and could not be provisioned."""


def missing_files(model_dir: Path) -> list[str]:
    return [
        name
        for name in CHECKPOINT_FILES
        if not (model_dir / name).is_file() or (model_dir / name).stat().st_size == 0
    ]


def provision_checkpoint(model_dir: Path) -> None:
    """Fetch the XTTS v2 checkpoint into ``model_dir`` with genstack-provision's catalogue
    entry ``xtts`` (resumable, verified; HF_TOKEN, HF_ENDPOINT and PROVISION_* apply).
    The one place that downloads; a failure is a start-up error naming what is missing."""
    try:
        report = ensure_models("xtts", model_dir)
    except ProvisionError as exc:
        raise CheckpointError(
            f"no complete XTTS v2 checkpoint in {model_dir} (missing: "
            f"{', '.join(missing_files(model_dir))}) and provisioning it failed: {exc}"
        ) from exc
    log.info(
        "XTTS checkpoint provisioned",
        extra={"model_dir": str(model_dir), "bytes": report.bytes_fetched},
    )


def ensure_checkpoint(model_dir: Path) -> Path:
    """``model_dir`` once it holds every checkpoint file: a complete folder is used as it
    is (no download; this is how a fine-tuned checkpoint is served)."""
    if not missing_files(model_dir):
        return model_dir
    log.info(
        "XTTS checkpoint incomplete, provisioning",
        extra={"model_dir": str(model_dir), "missing": missing_files(model_dir)},
    )
    provision_checkpoint(model_dir)
    still = missing_files(model_dir)
    if still:
        raise CheckpointError(f"provisioning left {model_dir} without {', '.join(still)}")
    return model_dir
