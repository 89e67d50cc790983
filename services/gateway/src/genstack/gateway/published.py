"""What the comfyui workers publish in Redis, as the gateway reads it: the node catalogue
(:mod:`genstack.core.contracts.comfyui_nodes`), which workflows are checked against, and the
templates (:mod:`genstack.core.contracts.comfyui_templates`), which `image`, `video` and
`tts` jobs are checked against and ``GET /v1/templates`` lists.

Each is one Redis hash, a field per worker. It is read at most once per
GATEWAY_NODE_CATALOGUE_CACHE_S and by one request at a time (the others wait for that read),
on the event loop with redis.asyncio; the JSON, a few hundred kB with many custom nodes, is
decoded and merged in the gateway's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

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
from genstack.core.contracts.comfyui_templates import (
    TEMPLATES_KEY,
    ParamProblem,
    PublishedTemplate,
    fresh_templates,
    template_problems,
)
from genstack.core.jobs import JobType

log = logging.getLogger(__name__)

T = TypeVar("T")
# The contract's merge: the fresh fields' values, merged; None when none is fresh.
Merge = Callable[[Iterable[str], float], T | None]


class Published(Generic[T]):
    """One published hash, merged by the contract's ``merge`` and cached ``cache_s``."""

    def __init__(
        self,
        redis: AsyncRedis,
        key: str,
        merge: Merge[T],
        *,
        cache_s: float,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        self.redis = redis
        self.key = key
        self.merge = merge
        self.cache_s = cache_s
        self.limiter = limiter
        self._value: T | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def get(self) -> T | None:
        """The merged value of every fresh publication; None when there is none (no worker
        publishes, or Redis did not answer): then nothing is checked against it."""
        async with self._lock:
            if time.monotonic() - self._read_at >= self.cache_s:
                self._value = await self._read()
                self._read_at = time.monotonic()
            return self._value

    async def _read(self) -> T | None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.hgetall(self.key)
                (seconds, micros), fields = await pipe.execute()
        except RedisError as exc:
            # The worker checks every job with ComfyUI anyway; this is only the early answer.
            log.warning("published ComfyUI data not read", extra={"key": self.key, "err": str(exc)})
            return None
        if not fields:
            return None
        now = seconds + micros / 1e6
        return await anyio.to_thread.run_sync(
            self.merge, list(fields.values()), now, limiter=self.limiter
        )


class NodeCatalogue:
    def __init__(
        self, redis: AsyncRedis, *, cache_s: float, limiter: anyio.CapacityLimiter
    ) -> None:
        self.published: Published[Mapping[str, NodeClass]] = Published(
            redis, NODES_KEY, fresh_nodes, cache_s=cache_s, limiter=limiter
        )

    async def nodes(self) -> Mapping[str, NodeClass] | None:
        return await self.published.get()

    async def problems(self, workflow: Mapping[str, Mapping[str, Any]]) -> list[WorkflowProblem]:
        """What ComfyUI would refuse at once in ``workflow``; empty when no catalogue."""
        nodes = await self.nodes()
        return [] if nodes is None else workflow_problems(workflow, nodes)


class TemplateCatalogue:
    def __init__(
        self, redis: AsyncRedis, *, cache_s: float, limiter: anyio.CapacityLimiter
    ) -> None:
        self.published: Published[dict[str, PublishedTemplate]] = Published(
            redis, TEMPLATES_KEY, fresh_templates, cache_s=cache_s, limiter=limiter
        )

    async def templates(self) -> Mapping[str, PublishedTemplate] | None:
        """Every template any fresh worker publishes (an available copy wins); None when no
        worker publishes."""
        return await self.published.get()

    async def problems(self, job_type: JobType, params: Mapping[str, Any]) -> list[ParamProblem]:
        """Why the templates cannot run ``params``; empty when none are published."""
        templates = await self.templates()
        return [] if templates is None else template_problems(job_type, params, templates)
