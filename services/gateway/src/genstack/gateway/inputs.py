"""A ComfyUI job's input files, settled at submission, before anything is queued.

The params named in ``INPUT_FILE_PARAMS`` (and a VibeVoice job's ``voice`` / ``voices`` that
are not names of the shared voice library) are an http(s) URL or the key of a stored object:

- a URL is fetched behind the SSRF guard (genstack.core.remote_files, the worker's fetcher,
  with GATEWAY_INPUT_ALLOW_NETWORKS, GATEWAY_INPUT_MAX_MB and GATEWAY_INPUT_TIMEOUT_S),
  checked to be what the param needs (:mod:`genstack.gateway.media`), stored as
  ``inputs/<job-id>/<param>.<ext>`` and replaced by that key: the worker reads it from
  storage, and a URL that answers differently later changes nothing;
- a key must name an object the caller may use: an artifact of one of its jobs, or an input
  stored for one of them (``inputs/<job-id>/...``). Anything else is refused exactly like a
  key that does not exist, so other keys' files cannot be probed.

Uploads (``POST /v1/images/edits``) are checked and stored the same way. Every refusal is a
400 naming the param. Blocking work (the fetch, decoding, storage) runs in the gateway's
thread pool.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genstack.core.contracts.comfyui import INPUT_FILE_KINDS, INPUT_FILE_PARAMS
from genstack.core.jobs import Job, JobType
from genstack.core.remote_files import InputError, InputFetcher, InputTooLargeError
from genstack.core.ssrf import UnsafeUrlError
from genstack.core.storage import ObjectInfo, Storage, StorageError
from genstack.gateway.media import MediaError, identify
from genstack.http.errors import ApiError

if TYPE_CHECKING:
    from genstack.gateway.services import Services

log = logging.getLogger(__name__)

INPUTS_PREFIX = "inputs"
# The field a 400 names, from the job's param (``params.image``): the same for POST /v1/jobs,
# the form's own for an OpenAI route.
Rename = Callable[[str], str]
SPEECH_INPUTS = ("voice", "voices")
# Job ids (genstack.core.jobs.new_job_id) as they appear in artifact keys.
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class InputRef:
    """One input file of a job's params."""

    param: str  # the params field (voices)
    index: int | None  # the item of a list param
    kind: str  # image | video | audio
    value: str  # a URL or a key

    @property
    def where(self) -> str:
        return self.param if self.index is None else f"{self.param}.{self.index}"

    @property
    def stem(self) -> str:
        return self.param if self.index is None else f"{self.param}-{self.index}"


def input_refs(job_type: JobType, params: dict[str, Any]) -> list[InputRef]:
    """The input files of validated params: image/video params of an image or video job;
    the voices of a tts job that are URLs or keys (a plain name is a library voice)."""
    refs: list[InputRef] = []
    if job_type in (JobType.IMAGE, JobType.VIDEO):
        for param in INPUT_FILE_PARAMS:
            value = params.get(param)
            if isinstance(value, str):
                refs.append(InputRef(param, None, INPUT_FILE_KINDS[param], value))
    elif job_type == JobType.TTS:
        voice = params.get("voice")
        if isinstance(voice, str) and (is_url(voice) or "/" in voice):
            refs.append(InputRef("voice", None, "audio", voice))
        for index, item in enumerate(params.get("voices") or []):
            if isinstance(item, str) and (is_url(item) or "/" in item):
                refs.append(InputRef("voices", index, "audio", item))
    return refs


class InputFiles:
    """The blocking half: fetch, check, store, look up. Each method runs in a thread."""

    def __init__(self, storage: Storage, fetcher: InputFetcher) -> None:
        self.storage = storage
        self.fetcher = fetcher

    @property
    def max_bytes(self) -> int:
        return self.fetcher.max_bytes

    def fetch(self, url: str, kind: str, job_id: str, stem: str) -> str:
        """Fetch, check and store ``url``; its key. Raises UnsafeUrlError, InputError,
        MediaError or StorageError."""
        # What the file is, is told by its bytes (identify), not by the server's label.
        fetched = self.fetcher.fetch(url, kind, check_type=False)
        return self.store(fetched.data, kind, job_id, stem)

    def store(self, data: bytes, kind: str, job_id: str, stem: str) -> str:
        """Check ``data`` is a ``kind`` file and store it; its key. Raises MediaError or
        StorageError."""
        if len(data) > self.max_bytes:
            raise InputTooLargeError(f"the file is larger than {self.max_bytes} bytes")
        media = identify(kind, data)
        key = f"{INPUTS_PREFIX}/{job_id}/{stem}.{media.extension}"
        self.storage.put_bytes(
            key, data, sha256=hashlib.sha256(data).hexdigest(), content_type=media.content_type
        )
        return key

    def head(self, key: str) -> ObjectInfo | None:
        try:
            return self.storage.head(key)
        except (StorageError, ValueError):
            return None

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.storage.delete(key)
            except (StorageError, ValueError, OSError):  # left behind; nothing depends on it
                log.warning("stored input not deleted", extra={"key": key}, exc_info=True)


def same_param(param: str) -> str:
    return param


def _refused(ref: InputRef, rename: Rename, code: str, message: str) -> ApiError:
    param = rename(f"params.{ref.where}")
    return ApiError(400, f"{param}: {message}", code=code, param=param)


def _owned(job: Job, scope: str | None) -> bool:
    # As GET /v1/jobs/{id} decides who may see a job.
    return scope is None or job.owner is None or job.owner == scope


class InputResolver:
    """One submission's inputs: :meth:`resolve` settles them, :meth:`discard` removes what
    it stored when the job is not made after all (refused, or an idempotent replay)."""

    def __init__(
        self, svc: Services, *, job_id: str, scope: str | None, rename: Rename = same_param
    ) -> None:
        self.svc = svc
        self.job_id = job_id
        self.scope = scope
        self.rename = rename
        self.stored: list[str] = []

    async def resolve(self, job_type: JobType, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with every URL replaced by the key of what was stored from it; raises
        ApiError (400) naming the first input that cannot be used."""
        refs = input_refs(job_type, params)
        if not refs:
            return params
        resolved = {k: list(v) if k == "voices" and v else v for k, v in params.items()}
        try:
            for ref in refs:
                key = await self._settle(ref)
                if ref.index is None:
                    resolved[ref.param] = key
                else:
                    resolved[ref.param][ref.index] = key
        except BaseException:
            await self.discard()
            raise
        return resolved

    async def store_upload(self, ref: InputRef, data: bytes) -> str:
        """An uploaded file, checked and stored; its key."""
        try:
            key: str = await self.svc.run_sync(
                self.svc.inputs.store, data, ref.kind, self.job_id, ref.stem
            )
        except (InputError, MediaError) as exc:
            code = "input_too_large" if isinstance(exc, InputTooLargeError) else "invalid_input"
            raise _refused(ref, self.rename, code, str(exc)) from None
        except (StorageError, OSError) as exc:  # a read-only volume, a full disk, R2 down
            raise self._storage_error(exc) from None
        self.stored.append(key)
        return key

    async def discard(self) -> None:
        if self.stored:
            keys, self.stored = self.stored, []
            await self.svc.run_sync(self.svc.inputs.delete, keys)

    async def _settle(self, ref: InputRef) -> str:
        if ref.value in self.stored:  # uploaded with this request
            return ref.value
        if not is_url(ref.value):
            await self._check_key(ref)
            return ref.value
        try:
            key: str = await self.svc.run_sync(
                self.svc.inputs.fetch, ref.value, ref.kind, self.job_id, ref.stem
            )
        except UnsafeUrlError as exc:
            raise _refused(ref, self.rename, "input_url_refused", str(exc)) from None
        except InputTooLargeError as exc:
            raise _refused(ref, self.rename, "input_too_large", str(exc)) from None
        except InputError as exc:
            raise _refused(ref, self.rename, "input_unavailable", str(exc)) from None
        except MediaError as exc:
            raise _refused(ref, self.rename, "invalid_input", f"{ref.value}: {exc}") from None
        except (StorageError, OSError) as exc:  # a read-only volume, a full disk, R2 down
            raise self._storage_error(exc) from None
        self.stored.append(key)
        return key

    async def _check_key(self, ref: InputRef) -> None:
        key = ref.value
        if not await self._may_use(key):
            raise _refused(
                ref,
                self.rename,
                "input_not_found",
                f"no stored file {key!r} of yours (an artifact of one of your jobs, an "
                "input stored for one, or an http(s) URL)",
            )
        info: ObjectInfo | None = await self.svc.run_sync(self.svc.inputs.head, key)
        if info is None:
            raise _refused(
                ref, self.rename, "input_not_found", f"stored file {key!r} is gone (expired?)"
            )
        content_type = info.content_type or "application/octet-stream"
        if not content_type.startswith((f"{ref.kind}/", "application/octet-stream")):
            raise _refused(
                ref,
                self.rename,
                "invalid_input",
                f"stored file {key!r} is {content_type}, not {ref.kind}",
            )

    async def _may_use(self, key: str) -> bool:
        parts = key.split("/")
        if parts[0] == INPUTS_PREFIX:
            if len(parts) < 3 or not _JOB_ID.match(parts[1]):
                return False
            job = await self.svc.jobs.get(parts[1])
            return job is not None and _owned(job, self.scope)
        # An artifact: its key holds its job's id (outputs/<date>/<job-id>/<file>).
        for part in [p for p in parts[:-1] if _JOB_ID.match(p)][:4]:
            job = await self.svc.jobs.get(part)
            if (
                job is not None
                and _owned(job, self.scope)
                and any(artifact.key == key for artifact in job.artifacts)
            ):
                return True
        return False

    @staticmethod
    def _storage_error(exc: Exception) -> ApiError:
        log.warning("input not stored", extra={"err": str(exc)})
        return ApiError(
            503,
            "the input file could not be stored; retry shortly",
            code="storage_unavailable",
            headers={"Retry-After": "5"},
        )
