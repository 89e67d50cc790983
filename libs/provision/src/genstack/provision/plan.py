"""The planner: from the environment, the manifests and the GPU, what there is to do.

:func:`build_plan` reads no network. For every selected entry it says whether the file is
present and verified (ledger), present but to be verified (no or stale ledger record), half
downloaded (a part file to resume) or to fetch, with its size (exact when the manifest knows
it, else the estimate), and whether the model fits the GPU's VRAM. It adds up what is to
fetch per filesystem against the free space, keeping ``PROVISION_MIN_FREE_GB`` free, and
when the plan does not fit says which entries (and which variables) to turn off.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from genstack.provision.conditions import Value
from genstack.provision.errors import VariableError
from genstack.provision.gpu import OFFLOAD_FACTOR, GpuProfile, LazyProfile
from genstack.provision.ledger import ModelLedger
from genstack.provision.manifest import Manifest, ModelEntry, parse_source
from genstack.provision.partfile import part_bytes
from genstack.provision.progress import human_bytes

__all__ = [
    "DiskCheck",
    "Plan",
    "PlanRow",
    "Target",
    "build_plan",
    "resolve_variables",
    "select_entries",
    "snapshot_key",
]

RowStatus = Literal["present", "verify", "resume", "fetch"]
VramStatus = Literal["ok", "offload", "too big", "no gpu", "-"]


@dataclass(frozen=True)
class Target:
    """A manifest and the models root its destinations are relative to."""

    manifest: Manifest
    root: Path


def resolve_variables(
    manifest: Manifest, env: Mapping[str, str], profile: GpuProfile | LazyProfile
) -> dict[str, Value]:
    """Typed values of the manifest's variables from ``env`` (defaults where unset; ``auto``
    resolved from the GPU profile, detected only then). Raises VariableError listing every
    bad value."""
    gpu = LazyProfile.of(profile, env)
    values: dict[str, Value] = {}
    problems: list[str] = []
    for name, spec in manifest.variables.items():
        raw = env.get(name)
        text = spec.default if raw is None or raw.strip() == "" else raw
        if spec.auto and text.strip().lower() == "auto":
            text = gpu.get().auto_values.get(name, text)
        try:
            values[name] = spec.parse(name, text)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise VariableError(
            f"manifest {manifest.name}: " + "; ".join(problems) + " (see docs/provisioning.md)"
        )
    return values


def select_entries(manifest: Manifest, values: Mapping[str, Value]) -> list[ModelEntry]:
    """The entries whose condition holds, templates expanded per list item."""
    selected: list[ModelEntry] = []
    for entry in manifest.models:
        expanded = [entry]
        if entry.for_each is not None:
            items = values.get(entry.for_each, ())
            assert isinstance(items, tuple)
            expanded = [
                entry.model_copy(
                    update={
                        "id": entry.id.replace("{item}", item),
                        "source": entry.source.replace("{item}", item),
                        "dest": entry.dest.replace("{item}", item),
                        "for_each": None,
                    }
                )
                for item in items
            ]
        for candidate in expanded:
            condition = candidate.condition
            if condition is None or condition.evaluate(values):
                selected.append(candidate)
    return selected


def snapshot_key(entry: ModelEntry) -> str:
    return entry.source + "|" + ",".join(entry.include or ())


@dataclass
class PlanRow:
    manifest: str
    root: Path
    entry: ModelEntry
    status: RowStatus
    size: int
    exact: bool
    have: int
    vram: VramStatus

    @property
    def to_fetch(self) -> int:
        return 0 if self.status in ("present", "verify") else max(0, self.size - self.have)

    @property
    def conditions(self) -> str:
        return self.entry.when or "always"


@dataclass(frozen=True)
class DiskCheck:
    root: Path
    free: int
    needed: int
    keep_free: int

    @property
    def fits(self) -> bool:
        return self.free - self.needed >= self.keep_free


@dataclass
class Plan:
    rows: list[PlanRow]
    gpu: LazyProfile
    values: dict[str, dict[str, Value]]
    disks: list[DiskCheck] = field(default_factory=list)
    auto_resolved: dict[str, set[str]] = field(default_factory=dict)

    @property
    def profile(self) -> GpuProfile:
        return self.gpu.get()

    @property
    def all_present(self) -> bool:
        return all(r.status == "present" for r in self.rows)

    @property
    def to_fetch_bytes(self) -> int:
        return sum(r.to_fetch for r in self.rows)

    @property
    def fits_disk(self) -> bool:
        return all(d.fits for d in self.disks)

    @property
    def vram_problems(self) -> list[PlanRow]:
        return [r for r in self.rows if r.vram == "too big"]

    def disk_advice(self) -> str:
        """What does not fit, and the biggest things to turn off (by model group)."""
        lines = []
        for disk in self.disks:
            if disk.fits:
                continue
            lines.append(
                f"not enough disk under {disk.root}: {human_bytes(disk.needed)} to fetch, "
                f"{human_bytes(disk.free)} free, keeping {human_bytes(disk.keep_free)} free "
                f"(PROVISION_MIN_FREE_GB); short by "
                f"{human_bytes(disk.needed + disk.keep_free - disk.free)}."
            )
        groups: dict[tuple[str, str], int] = {}
        for row in self.rows:
            if row.to_fetch and row.entry.when:  # an entry without a condition cannot be off
                key = (row.entry.group or row.entry.id, self.enablers(row))
                groups[key] = groups.get(key, 0) + row.to_fetch
        if groups:
            lines.append("Turn off some of these (largest first), or give the models more disk:")
            for (group, when), size in sorted(groups.items(), key=lambda kv: -kv[1])[:12]:
                lines.append(f"  - {group}: {human_bytes(size)} (enabled by: {when})")
        return "\n".join(lines)

    def enablers(self, row: PlanRow) -> str:
        """The switches that keep ``row`` in the plan ("ENABLE_VACE=true, WAN_720P=true
        (auto)"): the on booleans that alone turn it off, else all the on booleans, else the
        other variables it reads."""
        condition = row.entry.condition
        if condition is None:
            return "always"
        values = self.values.get(row.manifest, {})
        auto = self.auto_resolved.get(row.manifest, set())
        on = sorted(n for n in condition.names if values.get(n) is True)
        necessary = [n for n in on if not condition.evaluate({**values, n: False})]
        names = necessary or on or sorted(condition.names)
        return ", ".join(
            f"{n}={_show(values[n]) if n in values else '?'}" + (" (auto)" if n in auto else "")
            for n in names
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu": self.profile.to_json(),
            "variables": {
                m: {k: list(v) if isinstance(v, tuple) else v for k, v in vals.items()}
                for m, vals in self.values.items()
            },
            "rows": [
                {
                    "manifest": r.manifest,
                    "id": r.entry.id,
                    "group": r.entry.group,
                    "dest": str(r.root / r.entry.dest),
                    "source": r.entry.source,
                    "status": r.status,
                    "size": r.size,
                    "size_exact": r.exact,
                    "to_fetch": r.to_fetch,
                    "vram_gb": r.entry.vram_gb,
                    "vram": r.vram,
                    "when": r.entry.when,
                }
                for r in self.rows
            ],
            "to_fetch_bytes": self.to_fetch_bytes,
            "disks": [
                {
                    "root": str(d.root),
                    "free": d.free,
                    "needed": d.needed,
                    "keep_free": d.keep_free,
                    "free_after": d.free - d.needed,
                    "fits": d.fits,
                }
                for d in self.disks
            ],
            "fits_disk": self.fits_disk,
        }

    def render(self, out: IO[str], *, width: int | None = None) -> None:
        """The plan as a table plus GPU, totals, disk and VRAM lines (rich)."""
        from rich.console import Console
        from rich.table import Table

        console = Console(file=out, width=width or (None if out.isatty() else 160))
        p = self.profile
        if p.device is not None:
            gpu_line = (
                f"GPU: {p.device.name}, {p.device.vram_gb:.1f} GB"
                + ("" if p.assumed else f", compute {p.device.compute_capability}")
                + (f", driver {p.gpu.driver_version}" if p.gpu.driver_version else "")
            )
        else:
            gpu_line = f"GPU: none ({p.gpu.error or 'NVML lists no device'})"
        console.print(gpu_line, highlight=False)
        console.print(
            f"tier {p.tier} ({p.tier_source}), GPU_MEMORY_MODE={p.memory_mode}, "
            f"VRAM budget for auto variants {round(p.budget_gb, 2):g} GB, "
            f"ComfyUI flags: {' '.join(p.comfyui_flags)}",
            highlight=False,
        )
        used_auto = {
            name: value
            for vals in self.values.values()
            for name, value in vals.items()
            if name in p.auto_values
        }
        if used_auto:
            console.print(
                "variants: " + ", ".join(f"{k}={_show(v)}" for k, v in sorted(used_auto.items())),
                highlight=False,
            )
        multi = len({r.manifest for r in self.rows}) > 1
        table = Table(show_lines=False, header_style="bold")
        if multi:
            table.add_column("manifest")
        table.add_column("id")
        table.add_column("destination", overflow="fold")
        table.add_column("size", justify="right")
        table.add_column("status")
        table.add_column("VRAM", justify="right")
        for row in self.rows:
            size = human_bytes(row.size) if row.exact else f"~{human_bytes(row.size)}"
            status: str = row.status
            if row.status == "resume":
                status = f"resume ({human_bytes(row.have)} there)"
            vram = "-" if row.entry.vram_gb == 0 else f"{row.entry.vram_gb:g} GB {row.vram}"
            cells = [row.entry.id, row.entry.dest, size, status, vram]
            table.add_row(*([row.manifest, *cells] if multi else cells))
        console.print(table)
        present = [r for r in self.rows if r.status == "present"]
        console.print(
            f"{len(self.rows)} files selected: {len(present)} present and verified, "
            f"{len(self.rows) - len(present)} to fetch or check; "
            f"{human_bytes(self.to_fetch_bytes)} to download",
            highlight=False,
        )
        for disk in self.disks:
            console.print(
                f"disk {disk.root}: {human_bytes(disk.free)} free, "
                f"{human_bytes(disk.free - disk.needed)} after "
                f"(keeping {human_bytes(disk.keep_free)}): "
                + ("fits" if disk.fits else "DOES NOT FIT"),
                highlight=False,
            )
        for row in self.vram_problems:
            console.print(
                f"warning: {row.entry.id} needs ~{row.entry.vram_gb:g} GB VRAM, the GPU has "
                f"{p.vram_gb or 0:.1f} GB (try GPU_MEMORY_MODE=sequential_cpu_offload or a "
                "smaller variant)",
                highlight=False,
            )
        if not self.fits_disk:
            console.print(self.disk_advice(), highlight=False)


def _show(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _vram_status(entry: ModelEntry, gpu: LazyProfile) -> VramStatus:
    if entry.vram_gb == 0:
        return "-"
    profile = gpu.get()
    if profile.vram_gb is None:
        return "no gpu"
    if entry.vram_gb <= profile.vram_gb:
        return "ok"
    if entry.vram_gb <= profile.vram_gb * OFFLOAD_FACTOR[profile.memory_mode]:
        return "offload"
    return "too big"


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def build_plan(
    targets: Sequence[Target],
    env: Mapping[str, str],
    profile: GpuProfile | LazyProfile,
    ledgers: Mapping[Path, ModelLedger],
    *,
    keep_free_bytes: int = 2 * 10**9,
) -> Plan:
    gpu = LazyProfile.of(profile, env)
    rows: list[PlanRow] = []
    values: dict[str, dict[str, Value]] = {}
    auto_resolved: dict[str, set[str]] = {}
    for target in targets:
        vals = resolve_variables(target.manifest, env, gpu)
        values[target.manifest.name] = vals
        auto_resolved[target.manifest.name] = {
            name
            for name, spec in target.manifest.variables.items()
            if spec.auto and (env.get(name) or spec.default).strip().lower() in ("auto", "")
        }
        ledger = ledgers[target.root]
        for entry in select_entries(target.manifest, vals):
            rows.append(_row(target, entry, ledger, gpu))
    disks: dict[int, DiskCheck] = {}
    for target in targets:
        base = _existing_parent(target.root)
        device = os.stat(base).st_dev
        if device in disks:
            continue
        needed = sum(r.to_fetch for r in rows if os.stat(_existing_parent(r.root)).st_dev == device)
        disks[device] = DiskCheck(
            target.root, shutil.disk_usage(base).free, needed, keep_free_bytes
        )
    return Plan(
        rows=rows,
        gpu=gpu,
        values=values,
        disks=list(disks.values()),
        auto_resolved=auto_resolved,
    )


def _row(target: Target, entry: ModelEntry, ledger: ModelLedger, gpu: LazyProfile) -> PlanRow:
    vram = _vram_status(entry, gpu)
    name = target.manifest.name
    source = parse_source(entry.source)
    if source.is_snapshot:
        listing = ledger.snapshot(snapshot_key(entry))
        if listing is None:
            return PlanRow(name, target.root, entry, "fetch", entry.planned_size, False, 0, vram)
        wanted = [f for f in listing if entry.wants(f.path)]
        size = sum(f.size for f in wanted)
        missing = [
            f
            for f in wanted
            if ledger.check(entry.dest + f.path, f"{entry.source}#{f.path}", f.sha256) is None
        ]
        status: RowStatus = "present" if not missing else "fetch"
        have = size - sum(f.size for f in missing)
        return PlanRow(name, target.root, entry, status, size, True, have, vram)
    exact = entry.size is not None
    if ledger.check(entry.dest, entry.source, entry.sha256) is not None:
        return PlanRow(name, target.root, entry, "present", entry.planned_size, exact, 0, vram)
    dest = target.root / entry.dest
    if dest.is_file():
        size = dest.stat().st_size
        return PlanRow(name, target.root, entry, "verify", size, True, size, vram)
    have = part_bytes(dest)
    status = "resume" if have else "fetch"
    return PlanRow(name, target.root, entry, status, entry.planned_size, exact, have, vram)
