"""The `tts` job handler every TTS worker shares (``genstack-xtts worker``, ...).

A worker gives it its backend's params model from ``genstack.core.contracts`` (XTTS's for
``genstack-xtts worker``): the class the gateway validated the job with, so the worker takes
exactly what the gateway accepted, as the gateway stored it.

A job's text is sent to the model server part by part (a few sentences each) as raw PCM, and
the parts are encoded into one file of the requested format in the job's output folder. Parts
keep progress current, let the worker stop within a chunk when the job is cancelled (closing
the response stops the server's synthesis), and let interactive requests take the model
between two parts of a long job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import ValidationError

from genstack.core.contracts.speech import SpeechParams
from genstack.core.health import http_check
from genstack.core.job_runner import JobContext, JobFailedError
from genstack.core.worker import serve_jobs
from genstack.tts.audio import FORMATS, PCM_RATE, Encoder
from genstack.tts.settings import SpeechServiceSettings
from genstack.tts.text import split_sentences

log = logging.getLogger(__name__)

PART_CHARS = 400


def split_parts(text: str, max_chars: int = PART_CHARS) -> list[str]:
    """Consecutive sentences packed into parts of at most ``max_chars``."""
    parts: list[str] = []
    for sentence in split_sentences(text, max_chars):
        if parts and len(parts[-1]) + 1 + len(sentence) <= max_chars:
            parts[-1] = f"{parts[-1]} {sentence}"
        else:
            parts.append(sentence)
    return parts


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error.get("code") or "backend_error"), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "backend_error", f"HTTP {response.status_code}"


class SpeechJobHandler:
    """Callable JobHandler posting each part to ``{server_url}/v1/audio/speech``; a job's
    params are validated with ``params_model``, the backend's contract."""

    def __init__(
        self,
        server_url: str,
        params_model: type[SpeechParams],
        *,
        api_key: str | None = None,
        read_timeout_s: float = 300.0,
        busy_retry_s: float = 600.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.params_model = params_model
        self.api_key = api_key
        self.busy_retry_s = busy_retry_s
        self.timeout = httpx.Timeout(10.0, read=read_timeout_s)

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(timeout=self.timeout, headers=headers, trust_env=False)

    def __call__(self, ctx: JobContext) -> list[Path]:
        try:
            params = self.params_model.model_validate(ctx.params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise JobFailedError("invalid_params", f"{where}: {first.get('msg')}") from None
        parts = split_parts(params.input)
        if not parts:
            raise JobFailedError("invalid_params", "input: the text is empty")
        # The fields the job gave (the gateway stores them with its defaults filled in),
        # as the server's request; unset ones keep the server's own defaults.
        body: dict[str, Any] = params.model_dump(
            mode="json", exclude_unset=True, exclude={"input", "response_format"}
        )
        body["response_format"] = "pcm"
        encoder = Encoder(params.response_format, PCM_RATE, streaming=False)
        try:
            with self._client() as client:
                for index, part in enumerate(parts):
                    ctx.check_cancelled()
                    for pcm in self._part(client, ctx, {**body, "input": part}):
                        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
                        encoder.encode(samples)
                    ctx.progress((index + 1) / len(parts), f"part {index + 1} of {len(parts)}")
            data = encoder.finish()
        finally:
            encoder.close()
        path = ctx.output_dir / f"speech.{FORMATS[params.response_format].extension}"
        path.write_bytes(data)
        return [path]

    def _part(self, client: httpx.Client, ctx: JobContext, body: dict[str, Any]) -> Iterator[bytes]:
        """The PCM of one part, chunk by chunk (whole 16-bit samples); waits out a busy
        server (503 + Retry-After) up to busy_retry_s, checking for cancel meanwhile."""
        deadline = time.monotonic() + self.busy_retry_s
        url = f"{self.server_url}/v1/audio/speech"
        while True:
            try:
                with client.stream("POST", url, json=body) as response:
                    if response.status_code == 503 and time.monotonic() < deadline:
                        wait = float(response.headers.get("retry-after", "2") or 2)
                        self._sleep(ctx, min(max(wait, 0.5), 30.0))
                        continue
                    if response.status_code != 200:
                        response.read()
                        self._raise_for(response)
                    carry = b""
                    for chunk in response.iter_raw():
                        # Cancelled (or this worker lost the job's lease): raising here
                        # leaves the block, which closes the connection: the server stops.
                        ctx.check_cancelled()
                        data = carry + chunk
                        whole = len(data) - len(data) % 2
                        carry = data[whole:]
                        if whole:
                            yield data[:whole]
                    return
            except httpx.TransportError as exc:
                raise JobFailedError(
                    "backend_unavailable", f"TTS server unreachable: {exc}", retryable=True
                ) from exc

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        code, message = _error_of(response)
        status = response.status_code
        if status in (502, 503, 504):
            raise JobFailedError(code, message, retryable=True)
        if 400 <= status < 500:
            raise JobFailedError(code, message)
        raise JobFailedError("backend_error", f"TTS server error ({status}): {message}")

    @staticmethod
    def _sleep(ctx: JobContext, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ctx.check_cancelled()
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))


def serve_speech_jobs(
    settings: SpeechServiceSettings,
    *,
    name: str,
    queue: str,
    params_model: type[SpeechParams],
    server_url: str,
    concurrency: int,
    busy_retry_s: float,
) -> int:
    """A TTS service's ``worker`` command: runs ``queue``'s `tts` jobs against its model
    server (the first TTS_API_KEYS key, if any, authenticates), ready while it answers."""
    keys = settings.tts_api_keys
    handler = SpeechJobHandler(
        server_url,
        params_model,
        api_key=keys[0].get_secret_value() if keys else None,
        busy_retry_s=busy_retry_s,
    )
    return serve_jobs(
        settings,
        name=name,
        queues=[queue],
        handler=handler,
        concurrency=concurrency,
        checks={name: http_check(f"{server_url.rstrip('/')}/readyz")},
    )
