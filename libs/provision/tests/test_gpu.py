"""GPU detection and tiering from NVML readings. NVML is faked here, at its API (the pynvml
functions), and only here; the real library is exercised by the no-GPU and gpu-marked tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from genstack.provision.gpu import GpuInfo, detect_gpus, resolve_profile

MiB = 2**20


class FakeNVMLError(Exception):
    pass


@dataclass
class Card:
    name: str
    total_mib: int
    cc: tuple[int, int] = (8, 9)
    uuid: str = "GPU-0000"


class FakeNvml:
    """The pynvml surface genstack.provision.gpu uses."""

    NVMLError = FakeNVMLError

    def __init__(self, cards: list[Card], *, init_error: bool = False, fail_on: str = "") -> None:
        self.cards = cards
        self.init_error = init_error
        self.fail_on = fail_on
        self.shutdown_called = False

    def _check(self, name: str) -> None:
        if name == self.fail_on:
            raise FakeNVMLError(f"{name} failed")

    def nvmlInit(self) -> None:  # noqa: N802
        if self.init_error:
            raise FakeNVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdown_called = True

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return 12040

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Card:  # noqa: N802
        return self.cards[index]

    def nvmlDeviceGetName(self, handle: Card) -> str:  # noqa: N802
        self._check("name")
        return handle.name

    def nvmlDeviceGetUUID(self, handle: Card) -> str:  # noqa: N802
        return handle.uuid

    def nvmlDeviceGetMemoryInfo(self, handle: Card) -> Any:  # noqa: N802
        self._check("memory")

        class Memory:
            total = handle.total_mib * MiB
            free = handle.total_mib * MiB - 500 * MiB
            used = 500 * MiB

        return Memory()

    def nvmlDeviceGetCudaComputeCapability(self, handle: Card) -> tuple[int, int]:  # noqa: N802
        return handle.cc


RTX_3060 = Card("NVIDIA GeForce RTX 3060", 12288, (8, 6))
RTX_4060 = Card("NVIDIA GeForce RTX 4060", 8188, (8, 9))
RTX_4090 = Card("NVIDIA GeForce RTX 4090", 24564, (8, 9))
L40S = Card("NVIDIA L40S", 46068, (8, 9))
A6000 = Card("NVIDIA RTX A6000", 49140, (8, 6))
H100 = Card("NVIDIA H100 80GB HBM3", 81559, (9, 0))


def detect(*cards: Card) -> GpuInfo:
    return detect_gpus(FakeNvml(list(cards)))


def test_detection_reads_name_memory_capability_driver() -> None:
    fake = FakeNvml([RTX_4090])
    info = detect_gpus(fake)
    assert info.error is None and fake.shutdown_called
    device = info.devices[0]
    assert device.name == "NVIDIA GeForce RTX 4090"
    assert device.memory_total_bytes == 24564 * MiB
    assert device.memory_free_bytes == (24564 - 500) * MiB
    assert device.compute_capability == "8.9"
    assert info.driver_version == "550.54.15" and info.cuda_driver_version == "12.4"


@pytest.mark.parametrize(
    ("card", "tier", "flags"),
    [
        (RTX_4060, "consumer", ("--lowvram",)),
        (RTX_3060, "consumer", ("--normalvram",)),
        (RTX_4090, "prosumer", ("--normalvram",)),
        (L40S, "datacenter", ("--highvram",)),
        (A6000, "datacenter", ("--highvram",)),
        (H100, "datacenter", ("--highvram",)),
    ],
)
def test_tiers_and_flags_from_nvml_readings(card: Card, tier: str, flags: tuple[str]) -> None:
    profile = resolve_profile({}, detect(card))
    assert profile.tier == tier and profile.tier_source == "detected"
    assert profile.comfyui_flags == flags


@pytest.mark.parametrize(
    ("mode", "flags"),
    [
        ("full", ("--gpu-only",)),
        ("sequential_cpu_offload", ("--lowvram",)),
        ("model_cpu_offload", ("--normalvram",)),
    ],
)
def test_memory_mode_maps_to_comfyui_flags(mode: str, flags: tuple[str]) -> None:
    assert resolve_profile({"GPU_MEMORY_MODE": mode}, detect(H100)).comfyui_flags == flags


def test_auto_variants_follow_vram() -> None:
    small = resolve_profile({}, detect(RTX_4060)).auto_values
    mid = resolve_profile({}, detect(RTX_3060)).auto_values
    big = resolve_profile({}, detect(RTX_4090)).auto_values
    huge = resolve_profile({}, detect(H100)).auto_values
    assert (small["VIBEVOICE_MODEL"], mid["VIBEVOICE_MODEL"], big["VIBEVOICE_MODEL"]) == (
        "1.5B",
        "Large-Q8",
        "Large",
    )
    assert [v["QWEN_EDIT_MODEL"] for v in (small, mid, big, huge)] == [
        "Q2_K",
        "Q4_K_M",
        "Q6_K",
        "full",
    ]
    assert (mid["WAN_720P"], mid["WAN_480P"]) == ("false", "true")
    assert (big["WAN_720P"], big["WAN_480P"]) == ("true", "false")
    assert big["GPU_TIER"] == "prosumer"


def test_gpu_tier_overrides_and_clamps_the_budget() -> None:
    # The seed's compose file says GPU_TIER=consumer on a 24 GB card: plan as consumer.
    profile = resolve_profile({"GPU_TIER": "consumer"}, detect(RTX_4090))
    assert profile.tier == "consumer" and profile.tier_source == "GPU_TIER"
    assert profile.budget_gb < 24
    assert profile.auto_values["WAN_720P"] == "false"
    # A higher tier than the card: plan for the tier (bigger models, with offload).
    profile = resolve_profile({"GPU_TIER": "datacenter"}, detect(RTX_3060))
    assert profile.budget_gb == 48 and profile.auto_values["QWEN_EDIT_MODEL"] == "full"


def test_offload_modes_raise_the_budget() -> None:
    plain = resolve_profile({}, detect(RTX_3060))
    offload = resolve_profile({"GPU_MEMORY_MODE": "sequential_cpu_offload"}, detect(RTX_3060))
    assert offload.budget_gb == pytest.approx(plain.budget_gb * 2)
    assert offload.auto_values["VIBEVOICE_MODEL"] == "Large"


def test_no_gpu_is_a_supported_state(caplog: pytest.LogCaptureFixture) -> None:
    info = detect_gpus(FakeNvml([], init_error=True))
    assert info.devices == () and "Driver Not Loaded" in (info.error or "")
    profile = resolve_profile({}, info)
    assert profile.tier == "none" and profile.comfyui_flags == ("--cpu",)
    assert profile.auto_values["VIBEVOICE_MODEL"] == "1.5B"
    assert "no GPU found" in caplog.text
    # A tier named without a GPU plans for it, ComfyUI still runs on the CPU.
    named = resolve_profile({"GPU_TIER": "prosumer"}, info)
    assert named.budget_gb == 24 and named.comfyui_flags == ("--cpu",)


def test_a_failing_nvml_query_is_reported_not_raised() -> None:
    info = detect_gpus(FakeNvml([RTX_4090], fail_on="memory"))
    assert info.devices == () and "memory failed" in (info.error or "")
    assert detect_gpus(FakeNvml([])).error == "no GPU"


def test_cuda_visible_devices_picks_the_device() -> None:
    info = detect(RTX_3060, Card("NVIDIA H100", 81559, uuid="GPU-abcd"))
    assert resolve_profile({"CUDA_VISIBLE_DEVICES": "1"}, info).tier == "datacenter"
    assert resolve_profile({"CUDA_VISIBLE_DEVICES": "GPU-abcd"}, info).tier == "datacenter"
    assert resolve_profile({}, info).tier == "consumer"


def test_bad_overrides_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="GPU_TIER='huge'"):
        resolve_profile({"GPU_TIER": "huge"}, detect(RTX_4090))
    with pytest.raises(ValueError, match="GPU_MEMORY_MODE="):
        resolve_profile({"GPU_MEMORY_MODE": "all"}, detect(RTX_4090))


def test_real_nvml_without_a_gpu_does_not_raise() -> None:
    info = detect_gpus()
    assert info.devices or info.error


@pytest.mark.gpu
def test_real_nvml_reports_the_gpu() -> None:
    info = detect_gpus()
    assert info.devices and info.driver_version
    profile = resolve_profile({}, info)
    assert profile.tier in ("consumer", "prosumer", "datacenter")
    assert profile.device is not None and profile.device.memory_total_bytes > 2**30
