"""Resolve manifest sources to concrete downloads: URL, exact size, sha256 where the hub has it.

- ``hf://`` file: a HEAD on ``<HF_ENDPOINT>/<repo>/resolve/<revision>/<path>`` without
  following the redirect to the CDN. For LFS files the Hub answers with ``X-Linked-Etag``
  (the file's sha256) and ``X-Linked-Size``; small git files carry a git sha1 ETag, no sha256.
- ``hf://`` repository: the Hub's tree API (``/api/models/<repo>/tree/<revision>``,
  recursive, paginated); each LFS file's ``lfs.oid`` is its sha256.
- ``civitai://<id>``: ``/api/v1/model-versions/<id>`` gives the primary file's SHA256;
  the download (``/api/download/models/<id>``) redirects to presigned storage, which is probed
  for the exact size (the API only gives KB).
- ``https://``: a ``Range: bytes=0-0`` GET gives the size and whether ranges work.

Every error names the entry and says what to do (set HF_TOKEN, accept a licence, pin a
revision that exists).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from genstack.provision.errors import SourceError
from genstack.provision.http import HttpError, Response, Session, safe_url
from genstack.provision.ledger import SnapshotFile
from genstack.provision.manifest import CivitaiSource, HfSource, UrlSource, parse_source

__all__ = ["Probe", "RemoteFile", "Resolver"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


@dataclass(frozen=True)
class RemoteFile:
    """A file the downloader can fetch, as the remote describes it."""

    url: str
    size: int | None
    sha256: str | None
    sha256_origin: Literal["hub"] | None
    ranges: bool = True
    commit: str | None = None  # the Hub's X-Repo-Commit: the revision, resolved


@dataclass(frozen=True)
class Probe:
    size: int | None
    ranges: bool
    url: str


def _etag_sha256(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().removeprefix("W/").strip('"').lower()
    return value if _SHA256.match(value) else None


class Resolver:
    """Turns sources into :class:`RemoteFile`; one per thread (it owns a Session)."""

    def __init__(self, session: Session, hf_endpoint: str, civitai_endpoint: str) -> None:
        self.session = session
        self.hf_endpoint = hf_endpoint.rstrip("/")
        self.civitai_endpoint = civitai_endpoint.rstrip("/")

    # ------------------------------------------------------------------ hugging face

    def hf_url(self, source: HfSource, path: str | None = None) -> str:
        file_path = quote(path if path is not None else source.path)
        revision = quote(source.revision, safe="")
        return f"{self.hf_endpoint}/{source.repo}/resolve/{revision}/{file_path}"

    def hf_file(self, key: str, source: HfSource) -> RemoteFile:
        url = self.hf_url(source)
        response = self._request(key, "HEAD", url, follow_redirects=False)
        # Renamed repositories answer with a relative redirect on the hub itself: follow
        # those; a redirect to the CDN (another host) is where the file is, and its
        # headers carry the size and sha256.
        for _ in range(5):
            location = response.headers.get("Location", "")
            if response.status not in (301, 302, 307, 308) or not location.startswith("/"):
                break
            response.close()
            response = self._request(
                key, "HEAD", self.hf_endpoint + location, follow_redirects=False
            )
        response.close()
        self._raise_for_status(key, response, source)
        headers = response.headers
        size_text = headers.get("X-Linked-Size") or headers.get("Content-Length")
        sha = _etag_sha256(headers.get("X-Linked-Etag")) or _etag_sha256(headers.get("ETag"))
        commit = headers.get("X-Repo-Commit")
        return RemoteFile(
            url=url,
            size=int(size_text) if size_text and size_text.isdigit() else None,
            sha256=sha,
            sha256_origin="hub" if sha else None,
            commit=commit if commit and re.fullmatch(r"[0-9a-f]{40}", commit) else None,
        )

    def hf_tree(self, key: str, source: HfSource) -> list[SnapshotFile]:
        url: str | None = (
            f"{self.hf_endpoint}/api/models/{source.repo}/tree/"
            f"{quote(source.revision, safe='')}?recursive=true&expand=false"
        )
        files: list[SnapshotFile] = []
        pages = 0
        while url and pages < 100:
            pages += 1
            response = self._request(key, "GET", url)
            try:
                self._raise_for_status(key, response, source)
                items = _json(key, response)
                link = response.headers.get("Link", "")
            finally:
                response.close()
            if not isinstance(items, list):
                raise SourceError(key, f"the hub's tree listing of {source} is not a list")
            for item in items:
                if not isinstance(item, dict) or item.get("type") != "file":
                    continue
                lfs = item.get("lfs") if isinstance(item.get("lfs"), dict) else None
                sha = _etag_sha256(str(lfs.get("oid", ""))) if lfs else None
                files.append(SnapshotFile(str(item["path"]), int(item.get("size", 0)), sha))
            match = _NEXT_LINK.search(link)
            url = match.group(1) if match else None
        return files

    # ------------------------------------------------------------------ civitai

    def civitai_file(self, key: str, source: CivitaiSource) -> RemoteFile:
        api = f"{self.civitai_endpoint}/api/v1/model-versions/{source.version_id}"
        response = self._request(key, "GET", api)
        try:
            self._raise_for_status(key, response, source)
            data = _json(key, response)
        finally:
            response.close()
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, list) or not files:
            raise SourceError(key, f"CivitAI lists no files for model version {source.version_id}")
        primary = next((f for f in files if isinstance(f, dict) and f.get("primary")), files[0])
        hashes = primary.get("hashes") if isinstance(primary, dict) else None
        sha = _etag_sha256(str(hashes.get("SHA256", ""))) if isinstance(hashes, dict) else None
        url = f"{self.civitai_endpoint}/api/download/models/{source.version_id}"
        probe = self.probe(key, url)
        return RemoteFile(
            url=url,
            size=probe.size,
            sha256=sha,
            sha256_origin="hub" if sha else None,
            ranges=probe.ranges,
        )

    # ------------------------------------------------------------------ plain URLs

    def url_file(self, key: str, source: UrlSource) -> RemoteFile:
        probe = self.probe(key, source.url)
        return RemoteFile(
            url=source.url, size=probe.size, sha256=None, sha256_origin=None, ranges=probe.ranges
        )

    def probe(self, key: str, url: str) -> Probe:
        """Size and range support of ``url`` from a one-byte ranged GET."""
        response = self._request(key, "GET", url, headers={"Range": "bytes=0-0"})
        try:
            self._raise_for_status(key, response, parse_source(url))
            if response.status == 206:
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                size = int(total) if total.isdigit() else None
                return Probe(size=size, ranges=size is not None, url=response.url)
            return Probe(size=response.length, ranges=False, url=response.url)
        finally:
            response.close(reuse=False)

    def resolve(self, key: str, source_text: str) -> RemoteFile:
        source = parse_source(source_text)
        if isinstance(source, HfSource):
            return self.hf_file(key, source)
        if isinstance(source, CivitaiSource):
            return self.civitai_file(key, source)
        return self.url_file(key, source)

    # ------------------------------------------------------------------ helpers

    def _request(
        self,
        key: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        try:
            return self.session.request(method, url, headers, follow_redirects=follow_redirects)
        except HttpError as exc:
            raise SourceError(key, f"cannot reach {safe_url(url)}: {exc}") from exc

    def _raise_for_status(
        self, key: str, response: Response, source: HfSource | CivitaiSource | UrlSource
    ) -> None:
        status = response.status
        if status < 400:
            return
        where = safe_url(response.url)
        if isinstance(source, HfSource):
            hint = {
                401: "the repository is gated or private: set HF_TOKEN to a token with access",
                403: f"access denied: accept the licence at {self.hf_endpoint}/{source.repo} "
                "with the account of HF_TOKEN",
                404: f"not found: check repository, path and revision {source.revision!r}",
            }.get(status, "")
        elif isinstance(source, CivitaiSource):
            hint = {
                401: "CivitAI wants a key for this model: set CIVITAI_API_KEY",
                403: "CivitAI refused the download (CIVITAI_API_KEY missing or without access)",
                404: f"no CivitAI model version {source.version_id}",
            }.get(status, "")
        else:
            hint = ""
        raise SourceError(key, f"HTTP {status} from {where}" + (f": {hint}" if hint else ""))


def _json(key: str, response: Response) -> Any:
    try:
        return json.loads(response.read_all())
    except (ValueError, HttpError) as exc:
        raise SourceError(key, f"bad JSON from {safe_url(response.url)}: {exc}") from exc
