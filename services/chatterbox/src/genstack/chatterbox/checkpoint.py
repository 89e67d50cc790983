"""The Chatterbox checkpoint in CHATTERBOX_MODEL_DIR: used as it is when complete, provisioned
(genstack-provision's catalogue entry ``chatterbox``) when not."""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

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
# The multilingual tokenizer's extras, optional (without them Chinese is read character by
# character, unconverted): its Cangjie table and its Chinese word segmenter, spacy_pkuseg's
# model (the catalogue's zip, which pkuseg itself would fetch from GitHub at first load).
CANGJIE_FILE = "Cangjie5_TC.json"
PKUSEG_MODEL = "spacy_ontonotes"
PKUSEG_FOLDER = "pkuseg"
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


def pkuseg_home(folder: Path) -> Path:
    """The PKUSEG_HOME for a multilingual checkpoint: ``folder/pkuseg``, its model unpacked.

    spacy_pkuseg downloads ``spacy_ontonotes.zip`` into PKUSEG_HOME unless the zip is there
    and unpacks only what it downloads itself, so a provisioned zip is unpacked here, as
    pkuseg unpacks it (its members into ``spacy_ontonotes/``), once: the folder appears
    whole, by a rename."""
    home = folder / PKUSEG_FOLDER
    archive = home / f"{PKUSEG_MODEL}.zip"
    model = home / PKUSEG_MODEL
    if archive.is_file() and not model.is_dir():
        partial = home / f".{PKUSEG_MODEL}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.namelist():
                    target = (partial / member).resolve()
                    if partial.resolve() not in target.parents:
                        raise CheckpointError(f"{archive} holds a path outside it: {member!r}")
                zipped.extractall(partial)
            try:
                partial.replace(model)
            except OSError:  # another process unpacked it meanwhile
                if not model.is_dir():
                    raise
        except zipfile.BadZipFile as exc:
            raise CheckpointError(f"{archive} is not a zip archive: {exc}") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return home


def load_cangjie(model: Any, folder: Path) -> bool:
    """Give the multilingual tokenizer the checkpoint's Cangjie table when it has none.

    chatterbox-tts 0.1.7 looks for the table only in a Hugging Face cache layout (and online),
    never next to the weights, where the catalogue puts it; without it Chinese is read as raw
    characters, with a warning. True when the tokenizer has a table afterwards."""
    converter = getattr(getattr(model, "tokenizer", None), "cangjie_converter", None)
    if converter is None:
        return False
    path = folder / CANGJIE_FILE
    if not converter.word2cj and path.is_file():
        for entry in json.loads(path.read_text(encoding="utf-8")):
            word, code = entry.split("\t")[:2]  # the library's own parsing of the table
            converter.word2cj[word] = code
            converter.cj2word.setdefault(code, []).append(word)
    return bool(converter.word2cj)
