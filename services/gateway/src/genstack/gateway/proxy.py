"""Streaming proxy to a backend model server: the answer's bytes pass as they arrive."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.responses import StreamingResponse

from genstack.gateway.metrics import GatewayMetrics
from genstack.http.errors import ApiError

log = logging.getLogger(__name__)

# Answer headers worth passing on; hop-by-hop and framing headers are the server's business.
PASS_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "content-disposition",
    "retry-after",
    "x-audio-duration",
    "x-sample-rate",
)


async def _relay(upstream: httpx.Response, backend: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        # Too late for a status code: cutting the connection tells the client it is short.
        log.warning("backend stream broke off", extra={"backend": backend, "err": repr(exc)})
        raise
    finally:
        await upstream.aclose()


async def proxy_post(
    client: httpx.AsyncClient,
    *,
    backend: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    metrics: GatewayMetrics,
) -> StreamingResponse:
    started = time.perf_counter()
    request = client.build_request("POST", url, content=body, headers=headers)
    try:
        upstream = await client.send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ApiError(
            503, f"backend {backend} is unreachable: {exc!r}", code="backend_unavailable"
        ) from None
    except httpx.TimeoutException:
        raise ApiError(
            504, f"backend {backend} did not answer in time", code="backend_timeout"
        ) from None
    except httpx.HTTPError as exc:
        raise ApiError(502, f"backend {backend} failed: {exc!r}", code="backend_error") from None
    if upstream.status_code == 401:
        # The backend refused the gateway's own key: passing the 401 on would tell the
        # client that its key is wrong.
        await upstream.aclose()
        raise ApiError(
            502,
            f"backend {backend} refused the gateway's key; give the gateway TTS_API_KEYS "
            "with a key the backend accepts",
            code="backend_auth_failed",
        )
    metrics.speech_ttfb.labels(backend).observe(time.perf_counter() - started)
    passed = {k: v for k in PASS_HEADERS if (v := upstream.headers.get(k)) is not None}
    passed["x-genstack-backend"] = backend
    return StreamingResponse(
        _relay(upstream, backend), status_code=upstream.status_code, headers=passed
    )
