"""The ComfyUI node catalogue the comfyui workers publish
(:mod:`genstack.core.contracts.comfyui_nodes`), as the gateway checks workflows against it.

Read at most once per GATEWAY_NODE_CATALOGUE_CACHE_S and by one request at a time (the
others wait for that read), on the event loop with redis.asyncio; the JSON, a few hundred
kB with many custom nodes, is decoded in the gateway's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from genstack.core.contracts.comfyui_nodes import (
    NODES_KEY,
    NodeClass,
    WorkflowProblem,
    fresh_nodes,
    workflow_problems,
)

log = logging.getLogger(__name__)


class NodeCatalogue:
    def __init__(
        self, redis: AsyncRedis, *, cache_s: float, limiter: anyio.CapacityLimiter
    ) -> None:
        self.redis = redis
        self.cache_s = cache_s
        self.limiter = limiter
        self._nodes: Mapping[str, NodeClass] | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def nodes(self) -> Mapping[str, NodeClass] | None:
        """The node classes of every fresh publication, merged; None when there is none
        (no worker publishes, or Redis did not answer): then nothing is checked."""
        async with self._lock:
            if time.monotonic() - self._read_at >= self.cache_s:
                self._nodes = await self._read()
                self._read_at = time.monotonic()
            return self._nodes

    async def _read(self) -> Mapping[str, NodeClass] | None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.hgetall(NODES_KEY)
                (seconds, micros), fields = await pipe.execute()
        except RedisError as exc:
            # The worker checks every job with ComfyUI anyway; this is only the early answer.
            log.warning("ComfyUI node catalogue not read", extra={"err": str(exc)})
            return None
        if not fields:
            return None
        now = seconds + micros / 1e6
        return await anyio.to_thread.run_sync(
            fresh_nodes, list(fields.values()), now, limiter=self.limiter
        )

    async def problems(self, workflow: Mapping[str, Mapping[str, Any]]) -> list[WorkflowProblem]:
        """What ComfyUI would refuse at once in ``workflow``; empty when no catalogue."""
        nodes = await self.nodes()
        return [] if nodes is None else workflow_problems(workflow, nodes)
