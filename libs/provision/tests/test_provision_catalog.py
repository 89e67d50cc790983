"""The shipped catalogue: the seed's models are all there, every condition reads a documented
variable, and every tier's default plan fits that tier's VRAM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genstack.provision import CATALOG_NAMES, load_catalog
from genstack.provision.gpu import AUTO_RULES, resolve_profile
from genstack.provision.ledger import ModelLedger
from genstack.provision.manifest import HfSource, parse_source
from genstack.provision.plan import Target, build_plan, resolve_variables, select_entries

DOCS = Path(__file__).resolve().parents[3] / "docs" / "provisioning.md"

# Every model the seed names in sections 4-6 -> the catalogue entries that provide it.
SEED_MODELS: dict[str, tuple[str, list[str]]] = {
    "VibeVoice-1.5B": ("comfyui", ["vibevoice-1.5b", "vibevoice-tokenizer"]),
    "VibeVoice-Large": ("comfyui", ["vibevoice-large", "vibevoice-tokenizer"]),
    "VibeVoice-Large-Q8": ("comfyui", ["vibevoice-large-q8"]),
    "Genfocus": ("comfyui", ["genfocus-bokehnet", "genfocus-deblurnet", "genfocus-depth-pro"]),
    "MVInverse": ("comfyui", ["mvinverse"]),
    "Qwen-Image-Edit-2511 (Q4_K_M)": (
        "comfyui",
        ["qwen-edit-2511-gguf-q4-k-m", "qwen-image-text-encoder", "qwen-image-vae"],
    ),
    "FlashPortrait": ("comfyui", ["flashportrait", "wan21-i2v-14b-720p"]),
    "StoryMem": ("comfyui", ["storymem", "wan21-t2v-14b-720p", "wan21-i2v-14b-720p"]),
    "InfCam": ("comfyui", ["infcam", "infcam-unidepth"]),
    "WAN 2.2 720p": ("comfyui", ["wan21-t2v-14b-720p", "wan-umt5-xxl-fp8", "wan-vae"]),
    "WAN 2.2 480p": ("comfyui", ["wan21-t2v-1.3b-480p"]),
    "XTTS v2": ("xtts", ["xtts-v2-model", "xtts-v2-config", "xtts-v2-vocab"]),
    "Z-Image Turbo": ("comfyui", ["zimage-turbo", "zimage-text-encoder", "zimage-vae"]),
    "SteadyDancer": ("comfyui", ["steadydancer-14b-fp8"]),
    "SCAIL": ("comfyui", ["scail-preview-14b"]),
    "ControlNet (5 models)": (
        "comfyui",
        [
            "controlnet-canny",
            "controlnet-depth",
            "controlnet-openpose",
            "controlnet-lineart",
            "controlnet-normal",
        ],
    ),
    "VACE 14B": ("comfyui", ["wan21-vace-14b"]),
    "Fun InP 14B": ("comfyui", ["wan22-fun-inp-high-noise", "wan22-fun-inp-low-noise"]),
    "Realism Illustrious": ("comfyui", ["illustrious-realism-v50"]),
    "Chatterbox": ("chatterbox", ["chatterbox-t3-cfg", "chatterbox-s3gen", "chatterbox-ve"]),
    "Wan2.1-T2V-14B-720P": ("comfyui", ["wan21-t2v-14b-720p"]),
    "Wan2.1-T2V-1.3B-480P": ("comfyui", ["wan21-t2v-1.3b-480p"]),
    "Wan2.1-I2V-14B-720P": ("comfyui", ["wan21-i2v-14b-720p", "wan-clip-vision-h"]),
    "Wan2.2-I2V-High-Noise": ("comfyui", ["wan22-i2v-high-noise"]),
    "Wan2.2-I2V-Low-Noise": ("comfyui", ["wan22-i2v-low-noise"]),
    "UMT5-XXL text encoder": ("comfyui", ["wan-umt5-xxl-fp8"]),
    "CLIP Vision": ("comfyui", ["wan-clip-vision-h", "sigclip-vision-384"]),
    "TurboDiffusion (WAN 2.2 distilled)": (
        "comfyui",
        ["turbowan22-i2v-high-720p-quant", "turbowan22-i2v-low-720p-quant"],
    ),
}


@pytest.mark.parametrize("name", CATALOG_NAMES)
def test_catalogues_load_and_use_real_repositories(name: str) -> None:
    manifest = load_catalog(name)
    assert manifest.name == name and manifest.models
    for entry in manifest.models:
        source = parse_source(entry.source.replace("{item}", "1"))
        if isinstance(source, HfSource):
            owner, repo = source.repo.split("/")
            assert owner and repo and "example" not in source.repo.lower()


@pytest.mark.parametrize("seed_name", sorted(SEED_MODELS))
def test_every_seed_model_has_its_entries(seed_name: str) -> None:
    catalogue, ids = SEED_MODELS[seed_name]
    present = {e.id for e in load_catalog(catalogue).models}
    missing = [i for i in ids if i not in present]
    assert not missing, f"{seed_name}: no entries {missing} in catalog/{catalogue}.yaml"


def test_every_variant_value_selects_files() -> None:
    comfyui = load_catalog("comfyui")
    profile = resolve_profile({}, assume_vram_gb=80)
    for name in ("VIBEVOICE_MODEL", "QWEN_EDIT_MODEL", "CONTROLNET_MODELS"):
        for choice in comfyui.variables[name].choices or ():
            env = {"ENABLE_QWEN_EDIT": "true", name: choice}
            values = resolve_variables(comfyui, env, profile)
            assert select_entries(comfyui, values), f"{name}={choice} selects nothing"
    chatterbox = load_catalog("chatterbox")
    for choice in ("english", "multilingual"):
        values = resolve_variables(chatterbox, {"CHATTERBOX_MODEL": choice}, profile)
        dests = {e.dest for e in select_entries(chatterbox, values)}
        assert "conds.pt" in dests and len(dests) >= 5
    values = resolve_variables(chatterbox, {"CHATTERBOX_MODEL": "turbo"}, profile)
    dests = {e.dest for e in select_entries(chatterbox, values)}
    assert dests == {"turbo/"}  # the repository, filtered as chatterbox-tts filters it


def test_every_condition_names_a_documented_variable() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    documented_in_docs = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", docs))
    for name in CATALOG_NAMES:
        manifest = load_catalog(name)
        for variable in manifest.condition_names():
            spec = manifest.variables.get(variable)
            assert spec is not None and spec.doc.strip(), f"{name}: {variable} undeclared"
            assert variable in documented_in_docs, f"{variable} is not in docs/provisioning.md"
            if spec.auto:
                assert variable in {*AUTO_RULES, "GPU_TIER"}, f"{variable}: no auto rule"


@pytest.mark.parametrize(
    ("vram_gb", "tier"),
    [
        (8, "consumer"),
        (12, "consumer"),
        (16, "consumer"),
        (23.9, "consumer"),
        (24, "prosumer"),
        (32, "prosumer"),
        (47.9, "prosumer"),
        (48, "datacenter"),
        (80, "datacenter"),
    ],
)
def test_each_tier_default_plan_fits_its_vram(vram_gb: float, tier: str, tmp_path: Path) -> None:
    profile = resolve_profile({}, assume_vram_gb=vram_gb)
    assert profile.tier == tier
    targets = [Target(load_catalog(n), tmp_path / n) for n in CATALOG_NAMES]
    ledgers = {t.root: ModelLedger(t.root) for t in targets}
    plan = build_plan(targets, {}, profile, ledgers)
    assert plan.rows, "the default plan selects nothing"
    too_big = [(r.entry.id, r.entry.vram_gb) for r in plan.rows if r.vram == "too big"]
    assert not too_big, f"{vram_gb} GB: {too_big}"
    # The defaults always bring a video model that fits (720p from 24 GB, 480p below).
    ids = {r.entry.id for r in plan.rows}
    assert ("wan21-t2v-14b-720p" in ids) == (vram_gb >= 24)
    assert ("wan21-t2v-1.3b-480p" in ids) == (vram_gb < 24)


def test_the_seed_compose_plan_on_a_24gb_gpu_fits_its_vram(tmp_path: Path) -> None:
    from test_provision_cli import SEED_COMPOSE_ENV

    profile = resolve_profile(SEED_COMPOSE_ENV, assume_vram_gb=24)
    target = Target(load_catalog("comfyui"), tmp_path)
    plan = build_plan([target], SEED_COMPOSE_ENV, profile, {tmp_path: ModelLedger(tmp_path)})
    assert not plan.vram_problems
    assert {r.entry.id for r in plan.rows} >= {
        "vibevoice-large",
        "qwen-edit-2511-gguf-q4-k-m",
        "mvinverse",
        "genfocus-bokehnet",
    }
