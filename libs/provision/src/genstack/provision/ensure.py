"""The entry points services call: :func:`ensure_models` (one manifest) and :func:`provision`.

A service provisions its models at start-up, before it loads them::

    from genstack.provision import ensure_models

    report = ensure_models("xtts", settings.xtts_model_dir)          # catalogue name,
    report = ensure_models(Path("my.yaml"), "/data/models", env)      # or a manifest file,
    report = ensure_models(load_catalog("comfyui"), models_dir, env)  # or a Manifest

It returns quickly (one ``stat`` per file, no network) when everything is present and in the
ledger; otherwise it resolves the missing files at their hubs, checks the disk (raising
:class:`DiskSpaceError` before the first byte when the plan does not fit), downloads and
verifies, and records each verified file. It raises :class:`ProvisionError` subclasses with
messages that name the file or variable at fault; it never leaves a half-written file under
a model's name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genstack.provision.downloader import Downloader, DownloadItem, DownloadResult
from genstack.provision.errors import DiskSpaceError, ProvisionError, SourceError
from genstack.provision.gpu import GpuProfile, LazyProfile
from genstack.provision.http import Session
from genstack.provision.ledger import ModelLedger, ShaOrigin, SnapshotFile, provision_lock
from genstack.provision.manifest import (
    CATALOG_NAMES,
    STATE_DIR,
    HfSource,
    Manifest,
    ModelEntry,
    is_safe_relative,
    load_catalog,
    load_manifest,
    parse_source,
)
from genstack.provision.partfile import part_bytes
from genstack.provision.plan import (
    DiskCheck,
    Plan,
    PlanRow,
    Target,
    build_plan,
    snapshot_key,
)
from genstack.provision.progress import Progress, human_bytes, make_progress
from genstack.provision.settings import ProvisionSettings
from genstack.provision.sources import RemoteFile, Resolver

__all__ = ["ProvisionReport", "ensure_models", "plan_models", "provision", "resolve_manifest"]

log = logging.getLogger("genstack.provision")


@dataclass
class ProvisionReport:
    plan: Plan
    fetched: list[DownloadResult] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # found on disk, verified, recorded
    bytes_fetched: int = 0
    elapsed_s: float = 0.0

    @property
    def files(self) -> int:
        return len(self.plan.rows)


@dataclass(frozen=True)
class _Work:
    """One concrete file to have: where, from where, what it must hash to."""

    key: str
    root: Path
    rel: str
    source: str
    remote: RemoteFile
    sha256: str | None
    origin: ShaOrigin


def resolve_manifest(manifest: Manifest | str | Path) -> Manifest:
    """A Manifest from itself, a catalogue name ("comfyui", "xtts", ...) or a YAML path."""
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, str) and manifest in CATALOG_NAMES:
        return load_catalog(manifest)
    return load_manifest(Path(manifest))


def ensure_models(
    manifest: Manifest | str | Path,
    models_root: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    profile: GpuProfile | LazyProfile | None = None,
    settings: ProvisionSettings | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ProvisionReport:
    """Make sure every file ``manifest`` selects for ``env`` is under ``models_root``, verified.

    ``env`` (default: ``os.environ``) gives the manifest's variables (``ENABLE_*``,
    ``*_MODEL``, ...), ``GPU_TIER``/``GPU_MEMORY_MODE``, ``HF_TOKEN``, ``CIVITAI_API_KEY`` and
    the ``PROVISION_*`` knobs. The GPU is detected only if the plan depends on it (``auto``
    variables, models' VRAM); ``profile`` gives it instead. ``stop`` (an Event) ends the run
    early, keeping partial files for the next one.

    Raises VariableError, SourceError, DiskSpaceError, DownloadError (with every failed
    file), DownloadInterruptedError; all are ProvisionError.
    """
    target = Target(resolve_manifest(manifest), Path(models_root))
    return provision(
        [target], env, profile=profile, settings=settings, progress=progress, stop=stop
    )


def plan_models(
    targets: Sequence[Target],
    env: Mapping[str, str] | None = None,
    *,
    profile: GpuProfile | LazyProfile | None = None,
    settings: ProvisionSettings | None = None,
) -> Plan:
    """The plan alone (no network, no lock, nothing written): what ``--dry-run`` prints."""
    env = dict(os.environ) if env is None else env
    settings = settings or ProvisionSettings.from_env(env)
    gpu = LazyProfile.of(profile, env)
    ledgers = {t.root: ModelLedger(t.root) for t in targets}
    return build_plan(
        targets,
        env,
        gpu,
        ledgers,
        keep_free_bytes=int(settings.provision_min_free_gb * 1e9),
    )


def provision(
    targets: Sequence[Target],
    env: Mapping[str, str] | None = None,
    *,
    profile: GpuProfile | LazyProfile | None = None,
    settings: ProvisionSettings | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ProvisionReport:
    """:func:`ensure_models` for several manifests (each with its root) in one run."""
    started = time.monotonic()
    env = dict(os.environ) if env is None else env
    settings = settings or ProvisionSettings.from_env(env)
    gpu = LazyProfile.of(profile, env)
    roots = sorted({t.root for t in targets})
    read_only = [root for root in roots if not _writable(root)]
    if read_only:
        checked = _use_read_only(
            [t for t in targets if t.root in read_only], env, gpu, settings, started
        )
        targets = [t for t in targets if t.root not in read_only]
        roots = [r for r in roots if r not in read_only]
        if not targets:
            return checked
    with contextlib.ExitStack() as stack:
        for root in roots:  # sorted: two runs never wait on each other crosswise
            stack.enter_context(provision_lock(root))
        ledgers = {root: ModelLedger(root) for root in roots}
        keep_free = int(settings.provision_min_free_gb * 1e9)
        plan = build_plan(targets, env, gpu, ledgers, keep_free_bytes=keep_free)
        report = ProvisionReport(plan)
        if plan.all_present:
            report.elapsed_s = time.monotonic() - started
            log.info(
                "all %d model files present and verified (%.2fs)",
                len(plan.rows),
                report.elapsed_s,
                extra={"files": len(plan.rows)},
            )
            return report
        if not plan.fits_disk:
            # Even by the manifest's own sizes it cannot fit: say so before any request.
            raise DiskSpaceError(plan.disk_advice())
        pending = [r for r in plan.rows if r.status != "present"]
        work = _resolve(pending, ledgers, settings)
        to_fetch = _adopt_existing(work, ledgers, report)
        _check_disk(plan, to_fetch, keep_free)
        if to_fetch:
            _download(to_fetch, ledgers, settings, progress, stop, report)
        report.elapsed_s = time.monotonic() - started
        log.info(
            "provisioned %d file(s) (%s fetched, %d found on disk and verified) in %.1fs",
            len(report.fetched),
            human_bytes(report.bytes_fetched),
            len(report.adopted),
            report.elapsed_s,
        )
        return report


def _writable(root: Path) -> bool:
    """Create the root (and its state folder); False when the filesystem refuses."""
    try:
        (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return False
        raise
    return os.access(root / STATE_DIR, os.W_OK)


def _use_read_only(
    targets: Sequence[Target],
    env: Mapping[str, str],
    profile: LazyProfile,
    settings: ProvisionSettings,
    started: float,
) -> ProvisionReport:
    """A read-only models root (a mounted checkpoint) is used as it is: every selected file
    must be there (with the manifest's exact size, where it gives one); nothing is fetched
    or hashed, since nothing could be recorded."""
    plan = plan_models(targets, env, profile=profile, settings=settings)
    read_only = ", ".join(sorted({str(t.root) for t in targets}))
    missing = []
    for row in plan.rows:
        path = row.root / row.entry.dest
        if parse_source(row.entry.source).is_snapshot:
            ok = path.is_dir() and any(path.iterdir())
        else:
            ok = path.is_file() and (
                row.entry.size is None or path.stat().st_size == row.entry.size
            )
        if not ok:
            missing.append(row.entry.dest)
    if missing:
        raise ProvisionError(
            f"models root {read_only} is read-only and lacks "
            f"{', '.join(missing)}: mount a complete checkpoint, or a writable folder to "
            "provision into"
        )
    report = ProvisionReport(plan, elapsed_s=time.monotonic() - started)
    log.warning(
        "models root %s is read-only: using its %d file(s) as they are, unverified",
        read_only,
        len(plan.rows),
    )
    return report


def _resolve(
    rows: Sequence[PlanRow], ledgers: Mapping[Path, ModelLedger], settings: ProvisionSettings
) -> list[_Work]:
    """Ask the hubs about every file not present: URL, size, sha256. Parallel."""
    local = threading.local()
    sessions: list[Session] = []
    lock = threading.Lock()

    def resolver() -> Resolver:
        if not hasattr(local, "resolver"):
            session = Session(
                settings.tokens(), read_timeout=min(60.0, settings.provision_stall_timeout_s * 2)
            )
            with lock:
                sessions.append(session)
            local.resolver = Resolver(session, settings.hf_endpoint, settings.civitai_endpoint)
        r: Resolver = local.resolver
        return r

    def one(row: PlanRow) -> list[_Work]:
        entry = row.entry
        source = parse_source(entry.source)
        ledger = ledgers[row.root]
        if source.is_snapshot:
            return _resolve_snapshot(row, ledger, resolver())
        remote = resolver().resolve(entry.dest, entry.source)
        _check_against_manifest(entry, remote)
        sha, origin = _expected(entry.sha256, remote.sha256)
        return [_Work(entry.dest, row.root, entry.dest, entry.source, remote, sha, origin)]

    try:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="resolve") as pool:
            results = list(pool.map(one, rows))
    finally:
        for session in sessions:
            session.close()
    return [w for batch in results for w in batch]


def _resolve_snapshot(row: PlanRow, ledger: ModelLedger, resolver: Resolver) -> list[_Work]:
    entry = row.entry
    source = parse_source(entry.source)
    assert isinstance(source, HfSource)  # the schema allows repository sources on hf:// only
    key = snapshot_key(entry)
    listing = ledger.snapshot(key)
    if listing is None or row.status != "present":
        listing = resolver.hf_tree(entry.dest, source)
        ledger.set_snapshot(key, listing)
    wanted: list[SnapshotFile] = [f for f in listing if entry.wants(f.path)]
    if not wanted:
        raise SourceError(entry.dest, f"{entry.source} has no files matching {entry.include}")
    work = []
    for f in wanted:
        if not is_safe_relative(f.path):
            # The listing comes from the network: a path that leaves the entry's folder is
            # refused, never written.
            raise SourceError(entry.dest, f"the hub lists an unsafe path {f.path!r}")
        rel = entry.dest + f.path
        file_source = f"{entry.source}#{f.path}"
        if ledger.check(rel, file_source, f.sha256) is not None:
            continue
        remote = RemoteFile(
            url=resolver.hf_url(source, f.path),
            size=f.size,
            sha256=f.sha256,
            sha256_origin="hub" if f.sha256 else None,
        )
        sha, origin = _expected(None, f.sha256)
        work.append(_Work(rel, row.root, rel, file_source, remote, sha, origin))
    return work


def _expected(manifest_sha: str | None, hub_sha: str | None) -> tuple[str | None, ShaOrigin]:
    if manifest_sha:
        return manifest_sha, "manifest"
    if hub_sha:
        return hub_sha, "hub"
    return None, "computed"


def _check_against_manifest(entry: ModelEntry, remote: RemoteFile) -> None:
    if entry.sha256 and remote.sha256 and entry.sha256 != remote.sha256:
        raise SourceError(
            entry.dest,
            f"the hub says sha256 {remote.sha256} but the manifest says {entry.sha256} "
            f"for {entry.source}: the file at that revision is not the one the manifest "
            "pinned (pin a commit as revision, or update the manifest)",
        )
    if entry.size is not None and remote.size is not None and entry.size != remote.size:
        raise SourceError(
            entry.dest,
            f"the hub says {remote.size} bytes but the manifest says {entry.size} for "
            f"{entry.source} (pin a commit as revision, or update the manifest)",
        )


def _adopt_existing(
    work: Sequence[_Work], ledgers: Mapping[Path, ModelLedger], report: ProvisionReport
) -> list[_Work]:
    """Files already on disk (a volume from the old system, a stale ledger record) are
    hashed once; those that match are recorded, the rest are fetched again.

    A file this tool placed (it has a ledger record) and a foreign file of the wrong size
    (a broken download) are replaced. A foreign file of the right size whose sha256 differs
    may be someone's own model: it is moved aside to ``<name>.foreign-<sha256[:8]>``, never
    deleted, and a warning says where it went.
    """
    existing = [w for w in work if (w.root / w.rel).is_file()]
    if not existing:
        return list(work)

    def check(w: _Work) -> Literal["ok", "replace", "set-aside"]:
        path = w.root / w.rel
        ours = ledgers[w.root].get(w.rel) is not None
        size = path.stat().st_size
        if w.remote.size is not None and size != w.remote.size:
            log.warning(
                "%s: %d bytes on disk, %d expected: fetching it again", w.key, size, w.remote.size
            )
            return "replace"
        if w.sha256 is None and w.remote.size is None:
            return "replace" if ours else "set-aside"  # nothing to check it against
        log.info("verifying %s found on disk (%s)", w.key, human_bytes(size))
        digest = _sha256_file(path)
        if w.sha256 is not None and digest != w.sha256:
            if ours:
                log.warning(
                    "%s: sha256 %s, %s expected: fetching it again", w.key, digest, w.sha256
                )
                return "replace"
            aside = path.with_name(f"{path.name}.foreign-{digest[:8]}")
            path.replace(aside)
            log.warning(
                "%s: a file of the right size but another sha256 (%s, %s expected) was there; "
                "moved it to %s and fetching the manifest's file",
                w.key,
                digest,
                w.sha256,
                aside,
            )
            return "set-aside"
        origin: ShaOrigin = w.origin if w.sha256 else "computed"
        ledgers[w.root].record(w.rel, digest, w.source, origin)
        return "ok"

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        verdicts = dict(zip([w.key for w in existing], pool.map(check, existing), strict=True))
    remaining = []
    for w in work:
        verdict = verdicts.get(w.key)
        if verdict == "ok":
            report.adopted.append(w.key)
            continue
        if verdict == "replace":
            ledgers[w.root].forget(w.rel)
            (w.root / w.rel).unlink(missing_ok=True)
        remaining.append(w)
    return remaining


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_disk(plan: Plan, work: Sequence[_Work], keep_free: int) -> None:
    """The exact check, with the hubs' sizes, before the first byte."""
    failed = []
    for disk in plan.disks:
        device = os.stat(disk.root).st_dev
        needed = 0
        for w in work:
            if os.stat(w.root).st_dev != device:
                continue
            size = w.remote.size or 0
            needed += max(0, size - part_bytes(w.root / w.rel))
        free = disk.free
        if free - needed < keep_free:
            failed.append((disk, needed))
    if failed:
        exact = {d.root: DiskCheck(d.root, d.free, needed, d.keep_free) for d, needed in failed}
        plan.disks = [exact.get(d.root, d) for d in plan.disks]
        raise DiskSpaceError(plan.disk_advice())


def _download(
    work: Sequence[_Work],
    ledgers: Mapping[Path, ModelLedger],
    settings: ProvisionSettings,
    progress: Progress | None,
    stop: threading.Event | None,
    report: ProvisionReport,
) -> None:
    by_dest = {w.root / w.rel: w for w in work}
    items = [
        DownloadItem(
            key=w.key,
            dest=w.root / w.rel,
            url=w.remote.url,
            size=w.remote.size,
            sha256=w.sha256,
            identity=f"{w.source}|{w.sha256 or ''}|{w.remote.size}",
            ranges=w.remote.ranges,
        )
        for w in work
    ]

    def verified(result: DownloadResult) -> None:
        w = by_dest[result.item.dest]
        ledgers[w.root].record(w.rel, result.sha256, w.source, w.origin)
        if w.origin == "computed":
            log.info("%s: no sha256 known at the source; recorded %s", w.key, result.sha256)

    own_progress = progress is None
    progress = progress or make_progress(
        settings.provision_progress, settings.provision_log_interval_s
    )
    downloader = Downloader(
        settings.downloader_config(),
        tokens=settings.tokens(),
        progress=progress,
        on_verified=verified,
        stop=stop,
    )
    try:
        report.fetched = downloader.download(items)
    finally:
        report.bytes_fetched = downloader.bytes_fetched
        if own_progress:
            progress.close()
