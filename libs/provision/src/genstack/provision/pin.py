"""``genstack-provision pin``: a copy of a manifest with exact sizes, sha256s and commits.

The catalogue tracks ``main`` with estimated sizes, because the repackaging repositories
re-upload files; a deployment that wants the same bytes every time pins them. For every file
entry the hub is asked (as a download would): the size, the sha256 (LFS ``X-Linked-Etag``,
CivitAI ``hashes.SHA256``) and, for the Hub, the commit the revision points at, which replaces
the revision in the source. Repository entries and templates (``for_each``) are kept as they
are. Files whose sha256 the hub does not know (small git files, plain URLs) keep none and are
hashed at download time.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from genstack.provision.http import Session
from genstack.provision.manifest import HfSource, Manifest, parse_source
from genstack.provision.settings import ProvisionSettings
from genstack.provision.sources import Resolver

__all__ = ["pin_manifest"]

log = logging.getLogger("genstack.provision")


def pin_manifest(manifest: Manifest, settings: ProvisionSettings) -> dict[str, Any]:
    """The manifest as data (ready for yaml.safe_dump) with its file entries pinned."""
    data = manifest.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    data["schema"] = 1
    entries: list[dict[str, Any]] = data["models"]

    def pin(entry: dict[str, Any]) -> None:
        if "for_each" in entry:
            return
        source = parse_source(entry["source"])
        if source.is_snapshot:
            return
        with Session(settings.tokens()) as session:
            resolver = Resolver(session, settings.hf_endpoint, settings.civitai_endpoint)
            remote = resolver.resolve(entry["dest"], entry["source"])
        if remote.size is not None:
            entry["size"] = remote.size
            entry.pop("approx_size", None)
        if remote.sha256:
            entry["sha256"] = remote.sha256
        if isinstance(source, HfSource) and remote.commit:
            entry["source"] = str(HfSource(source.repo, source.path, remote.commit))
        log.info("pinned %s", entry["id"])

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="pin") as pool:
        list(pool.map(pin, entries))
    return data
