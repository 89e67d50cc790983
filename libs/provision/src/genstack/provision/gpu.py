"""GPU detection with NVML, VRAM tiers, ComfyUI flags and ``auto`` model variants.

:func:`detect_gpus` asks NVML (``pynvml`` from the ``nvidia-ml-py`` package) for every GPU's
name, total/free memory and compute capability, and for the driver version. No GPU (no
driver, no library, no device) is a supported state: the result says so in ``error``, and
nothing raises.

:func:`resolve_profile` turns that reading plus the seed's variables into a
:class:`GpuProfile`:

- **tier** from the VRAM of the GPU the services use: ``consumer`` (< 24 GB), ``prosumer``
  (24-47 GB), ``datacenter`` (>= 48 GB), ``none`` without a GPU. ``GPU_TIER`` overrides it.
  GB here are decimal (10^9 bytes), which is how cards are sold: NVML reports an RTX 4090 as
  24564 MiB = 25.8 GB and an L40S as 46068 MiB = 48.3 GB, so each lands in the tier its label
  says.
- **budget_gb**, the VRAM the ``auto`` variants are chosen for: the GPU's VRAM, clamped into
  the ``GPU_TIER`` range when that is set (GPU_TIER=consumer on a 24 GB card plans like a
  consumer card), scaled up by the CPU-offload modes of ``GPU_MEMORY_MODE``
  (``model_cpu_offload`` x1.5, ``sequential_cpu_offload`` x2: bigger models, slower).
- **comfyui_flags**: ``--cpu`` without a GPU; ``GPU_MEMORY_MODE=full`` -> ``--gpu-only``,
  ``sequential_cpu_offload`` -> ``--lowvram``, ``model_cpu_offload`` -> ``--normalvram``;
  ``auto`` -> by tier: consumer ``--lowvram`` under 12 GB else ``--normalvram``, prosumer
  ``--normalvram``, datacenter ``--highvram``.
- **auto_values**: what ``VIBEVOICE_MODEL``, ``QWEN_EDIT_MODEL``, ``WAN_720P`` and
  ``WAN_480P`` mean when they are left on ``auto`` (see :data:`AUTO_RULES`).

:class:`LazyProfile` detects only when something asks (an ``auto`` variable, a model's VRAM
check, the plan's GPU line, ComfyUI's flags): a plain download never loads NVML, and never
warns that there is no GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, cast

__all__ = [
    "AUTO_RULES",
    "GpuDevice",
    "GpuInfo",
    "GpuProfile",
    "LazyProfile",
    "Tier",
    "detect_gpus",
    "resolve_profile",
    "tier_for_vram",
]

log = logging.getLogger(__name__)

Tier = Literal["none", "consumer", "prosumer", "datacenter"]
MemoryMode = Literal["auto", "full", "sequential_cpu_offload", "model_cpu_offload"]
TIERS: tuple[Tier, ...] = ("consumer", "prosumer", "datacenter")
MEMORY_MODES: tuple[MemoryMode, ...] = (
    "auto",
    "full",
    "sequential_cpu_offload",
    "model_cpu_offload",
)
# [low, high) in decimal GB, and the size assumed for a tier named without a GPU to measure.
TIER_RANGES: dict[Tier, tuple[float, float]] = {
    "consumer": (0.0, 24.0),
    "prosumer": (24.0, 48.0),
    "datacenter": (48.0, float("inf")),
}
TIER_NOMINAL_GB: dict[Tier, float] = {"consumer": 16.0, "prosumer": 24.0, "datacenter": 48.0}
OFFLOAD_FACTOR: dict[MemoryMode, float] = {
    "auto": 1.0,
    "full": 1.0,
    "model_cpu_offload": 1.5,
    "sequential_cpu_offload": 2.0,
}


def _pick(thresholds: tuple[tuple[float, str], ...]) -> Callable[[float], str]:
    def choose(budget_gb: float) -> str:
        for minimum, value in thresholds:
            if budget_gb >= minimum:
                return value
        return thresholds[-1][1]

    return choose


# Variable -> value for a VRAM budget (GB). The thresholds are the VRAM the seed gives each
# variant (VibeVoice-Large 20 GB, Large-Q8 10 GB, 1.5B 8 GB; Qwen-Image-Edit GGUF sizes + 1;
# WAN 720p 14B 24 GB, 1.3B 480p 8 GB).
AUTO_RULES: dict[str, Callable[[float], str]] = {
    "VIBEVOICE_MODEL": _pick(((20, "Large"), (10, "Large-Q8"), (0, "1.5B"))),
    "QWEN_EDIT_MODEL": _pick(
        (
            (48, "full"),
            (32, "Q8_0"),
            (24, "Q6_K"),
            (16, "Q5_K_M"),
            (12, "Q4_K_M"),
            (10, "Q3_K_M"),
            (0, "Q2_K"),
        )
    ),
    "WAN_720P": lambda budget: "true" if budget >= 24 else "false",
    "WAN_480P": lambda budget: "true" if 8 <= budget < 24 else "false",
}


class NvmlApi(Protocol):
    """The part of ``pynvml`` used here (tests fake exactly this, nothing else)."""

    NVMLError: type[Exception]

    def nvmlInit(self) -> None: ...  # noqa: N802
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...  # noqa: N802
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetHandleByIndex(self, index: int) -> object: ...  # noqa: N802
    def nvmlDeviceGetName(self, handle: object) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetUUID(self, handle: object) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetMemoryInfo(self, handle: object) -> Any: ...  # noqa: N802
    def nvmlDeviceGetCudaComputeCapability(self, handle: object) -> tuple[int, int]: ...  # noqa: N802


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_free_bytes: int
    compute_capability: str

    @property
    def vram_gb(self) -> float:
        return self.memory_total_bytes / 1e9


@dataclass(frozen=True)
class GpuInfo:
    devices: tuple[GpuDevice, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    error: str | None = None

    def primary(self, env: Mapping[str, str] | None = None) -> GpuDevice | None:
        """The GPU the services use: the first of CUDA_VISIBLE_DEVICES, else index 0."""
        if not self.devices:
            return None
        visible = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
        if visible:
            first = visible.split(",")[0].strip()
            for device in self.devices:
                if first == str(device.index) or (first and device.uuid.startswith(first)):
                    return device
        return self.devices[0]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _load_pynvml() -> NvmlApi | None:
    try:
        import pynvml
    except ImportError:
        return None
    return cast(NvmlApi, pynvml)


def detect_gpus(nvml: NvmlApi | None = None) -> GpuInfo:
    """Read every GPU through NVML; never raises (no GPU -> ``GpuInfo(error=...)``)."""
    api = nvml if nvml is not None else _load_pynvml()
    if api is None:
        return GpuInfo(error="nvidia-ml-py (pynvml) is not installed")
    try:
        api.nvmlInit()
    except api.NVMLError as exc:
        return GpuInfo(error=f"NVML unavailable: {exc} (no NVIDIA driver or GPU visible)")
    except OSError as exc:
        return GpuInfo(error=f"NVML unavailable: {exc}")
    try:
        driver = _text(api.nvmlSystemGetDriverVersion())
        try:
            cuda = api.nvmlSystemGetCudaDriverVersion()
            cuda_version: str | None = f"{cuda // 1000}.{(cuda % 1000) // 10}"
        except api.NVMLError:
            cuda_version = None
        devices = []
        for index in range(api.nvmlDeviceGetCount()):
            handle = api.nvmlDeviceGetHandleByIndex(index)
            memory = api.nvmlDeviceGetMemoryInfo(handle)
            major, minor = api.nvmlDeviceGetCudaComputeCapability(handle)
            devices.append(
                GpuDevice(
                    index=index,
                    name=_text(api.nvmlDeviceGetName(handle)),
                    uuid=_text(api.nvmlDeviceGetUUID(handle)),
                    memory_total_bytes=int(memory.total),
                    memory_free_bytes=int(memory.free),
                    compute_capability=f"{major}.{minor}",
                )
            )
    except api.NVMLError as exc:
        return GpuInfo(error=f"NVML query failed: {exc}")
    finally:
        try:
            api.nvmlShutdown()
        except api.NVMLError:
            log.debug("nvmlShutdown failed", exc_info=True)
    if not devices:
        return GpuInfo(driver_version=driver, cuda_driver_version=cuda_version, error="no GPU")
    return GpuInfo(tuple(devices), driver, cuda_version)


def tier_for_vram(vram_gb: float) -> Tier:
    for tier in TIERS:
        low, high = TIER_RANGES[tier]
        if low <= vram_gb < high:
            return tier
    return "datacenter"


@dataclass(frozen=True)
class GpuProfile:
    """What the stack makes of the GPU: tier, VRAM budget, ComfyUI flags, auto variants."""

    gpu: GpuInfo
    device: GpuDevice | None
    tier: Tier
    tier_source: Literal["detected", "GPU_TIER", "none"]
    memory_mode: MemoryMode
    vram_gb: float | None
    budget_gb: float
    comfyui_flags: tuple[str, ...]
    auto_values: dict[str, str] = field(default_factory=dict)
    assumed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu_found": self.device is not None,
            "assumed": self.assumed,
            "device": asdict(self.device) if self.device else None,
            "devices": [asdict(d) for d in self.gpu.devices],
            "driver_version": self.gpu.driver_version,
            "cuda_driver_version": self.gpu.cuda_driver_version,
            "error": self.gpu.error,
            "vram_gb": None if self.vram_gb is None else round(self.vram_gb, 2),
            "tier": self.tier,
            "tier_source": self.tier_source,
            "memory_mode": self.memory_mode,
            "budget_gb": round(self.budget_gb, 2),
            "comfyui_flags": list(self.comfyui_flags),
            "auto_values": dict(self.auto_values),
        }


def _env_choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "auto").strip().lower() or "auto"
    if value != "auto" and value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of auto, {', '.join(allowed)}")
    return value


def resolve_profile(
    env: Mapping[str, str] | None = None,
    gpu: GpuInfo | None = None,
    *,
    assume_vram_gb: float | None = None,
) -> GpuProfile:
    """Tier, budget, flags and auto variants from ``env`` (GPU_TIER, GPU_MEMORY_MODE) and the
    GPU reading (detected when not given). ``assume_vram_gb`` plans as if there were one GPU
    of that size (``genstack-provision --dry-run --vram-gb 24`` on a machine without one).

    Raises ValueError for a GPU_TIER or GPU_MEMORY_MODE that is not a known value.
    """
    env = os.environ if env is None else env
    if assume_vram_gb is not None:
        device: GpuDevice | None = GpuDevice(
            index=0,
            name=f"assumed {assume_vram_gb:g} GB GPU",
            uuid="assumed",
            memory_total_bytes=int(assume_vram_gb * 1e9),
            memory_free_bytes=int(assume_vram_gb * 1e9),
            compute_capability="unknown",
        )
        gpu = GpuInfo(devices=(device,) if device else ())
    else:
        gpu = gpu if gpu is not None else detect_gpus()
        device = gpu.primary(env)
    tier_override = _env_choice(env, "GPU_TIER", TIERS)
    memory_mode = cast(MemoryMode, _env_choice(env, "GPU_MEMORY_MODE", MEMORY_MODES[1:]))
    vram = device.vram_gb if device else None

    if tier_override != "auto":
        tier = cast(Tier, tier_override)
        tier_source: Literal["detected", "GPU_TIER", "none"] = "GPU_TIER"
        low, high = TIER_RANGES[tier]
        base = TIER_NOMINAL_GB[tier] if vram is None else min(max(vram, low), high - 0.01)
    elif vram is not None:
        tier, tier_source, base = tier_for_vram(vram), "detected", vram
    else:
        tier, tier_source, base = "none", "none", 0.0
    budget = base * OFFLOAD_FACTOR[memory_mode]

    flags = _comfyui_flags(tier if device else "none", memory_mode, vram)
    auto_values = {name: rule(budget) for name, rule in AUTO_RULES.items()}
    auto_values["GPU_TIER"] = tier  # for manifest conditions such as InfCam's datacenter-only
    if device is None:
        log.warning(
            "no GPU found: %s; ComfyUI runs with --cpu and auto model variants are the "
            "smallest unless GPU_TIER is set",
            gpu.error or "NVML lists no device",
        )
    return GpuProfile(
        gpu=gpu,
        device=device,
        tier=tier,
        tier_source=tier_source,
        memory_mode=memory_mode,
        vram_gb=vram,
        budget_gb=budget,
        comfyui_flags=flags,
        auto_values=auto_values,
        assumed=assume_vram_gb is not None,
    )


def _comfyui_flags(tier: Tier, memory_mode: MemoryMode, vram_gb: float | None) -> tuple[str, ...]:
    if tier == "none":
        return ("--cpu",)
    if memory_mode == "full":
        return ("--gpu-only",)
    if memory_mode == "sequential_cpu_offload":
        return ("--lowvram",)
    if memory_mode == "model_cpu_offload":
        return ("--normalvram",)
    if tier == "datacenter":
        return ("--highvram",)
    if tier == "consumer" and vram_gb is not None and vram_gb < 12:
        return ("--lowvram",)
    return ("--normalvram",)


class LazyProfile:
    """A :class:`GpuProfile` resolved (:func:`resolve_profile`) the first time it is asked
    for, or the one given. Raises ValueError then for a bad GPU_TIER / GPU_MEMORY_MODE."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        profile: GpuProfile | None = None,
        assume_vram_gb: float | None = None,
    ) -> None:
        self._env = env
        self._profile = profile
        self._assume_vram_gb = assume_vram_gb

    @classmethod
    def of(cls, profile: GpuProfile | LazyProfile | None, env: Mapping[str, str]) -> LazyProfile:
        if isinstance(profile, LazyProfile):
            return profile
        return cls(env, profile=profile)

    @property
    def resolved(self) -> bool:
        return self._profile is not None

    def get(self) -> GpuProfile:
        if self._profile is None:
            self._profile = resolve_profile(self._env, assume_vram_gb=self._assume_vram_gb)
        return self._profile
