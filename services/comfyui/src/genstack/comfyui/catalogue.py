"""Publishes ComfyUI's node catalogue to Redis, so the gateway refuses at submission a
workflow this ComfyUI would refuse at once (an unknown node, a missing input, a bad link),
and, from the same ``/object_info``, which typed templates run here and the params they take
(genstack.core.contracts.comfyui_templates), for ``GET /v1/templates`` and the gateway's
check of `image` / `video` / `tts` jobs.

The format, the key and the check are genstack.core.contracts.comfyui_nodes'. This keeps
the worker's field of that hash current from a thread of its own: the first publication as
soon as ComfyUI answers, then one every ``refresh_s`` (a restarted ComfyUI, or one rebuilt
with other custom nodes, is seen within that); while ComfyUI or Redis does not answer it
tries again every ``retry_s``. Each publication is stamped with Redis's clock and stays
good for :data:`STALE_AFTER_REFRESHES` intervals, so a worker that is gone stops counting.
"""

from __future__ import annotations

import logging
import threading

from redis import Redis
from redis.exceptions import RedisError

from genstack.comfyui.client import ComfyUIClient, ComfyUIError
from genstack.comfyui.template_registry import TemplateRegistry
from genstack.core.contracts.comfyui_nodes import (
    NODES_KEY,
    STALE_AFTER_REFRESHES,
    PublishedNodes,
    node_classes,
)
from genstack.core.contracts.comfyui_templates import TEMPLATES_KEY, PublishedTemplates

log = logging.getLogger(__name__)


class EmptyCatalogueError(ComfyUIError):
    """ComfyUI listed no node class: publishing that would refuse every workflow."""


class CataloguePublisher:
    """This worker's field (``field``: its host and ComfyUI) of :data:`NODES_KEY`."""

    def __init__(
        self,
        client: ComfyUIClient,
        redis: Redis,
        *,
        field: str,
        refresh_s: float,
        retry_s: float = 5.0,
        templates: TemplateRegistry | None = None,
    ) -> None:
        self.client = client
        self.templates = templates
        self.redis = redis
        self.field = field
        self.refresh_s = refresh_s
        self.retry_s = min(retry_s, refresh_s)
        self.stale_after_s = STALE_AFTER_REFRESHES * refresh_s
        self.published = threading.Event()  # set after the first publication
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-catalogue", daemon=True)

    def publish(self) -> int:
        """Read ComfyUI's ``/object_info`` and write this worker's field; returns how many
        node classes were published. Raises ComfyUIError or RedisError."""
        object_info = self.client.object_info()
        nodes = node_classes(object_info)
        if not nodes:
            raise EmptyCatalogueError(f"ComfyUI at {self.client.base_url} lists no node class")
        seconds, micros = self.redis.time()
        entry = PublishedNodes(
            published_at=seconds + micros / 1e6, stale_after_s=self.stale_after_s, nodes=nodes
        )
        ttl = int(self.stale_after_s) + 1
        fields = {NODES_KEY: entry.to_json()}
        if self.templates is not None:
            listing = PublishedTemplates(
                published_at=entry.published_at,
                stale_after_s=self.stale_after_s,
                templates=self.templates.refresh(object_info),
            )
            fields[TEMPLATES_KEY] = listing.model_dump_json(by_alias=True)
        pipe = self.redis.pipeline(transaction=True)
        for key, value in fields.items():
            pipe.hset(key, self.field, value)
            # The hash lives while any worker publishes: a TTL is set when it has none and
            # only ever extended, so a worker with a short interval does not cut another's.
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
        pipe.execute()
        self.published.set()
        return len(nodes)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        delay, healthy = 0.0, None  # None: not tried yet
        while not self._stop.wait(delay):
            try:
                count = self.publish()
            except Exception as exc:  # a thread boundary: logged, tried again
                if healthy is not False:  # once per outage, not every few seconds
                    log.warning(
                        "ComfyUI's node catalogue not published; trying again",
                        extra={"err": str(exc), "retry_s": self.retry_s},
                        exc_info=not isinstance(exc, ComfyUIError | RedisError),
                    )
                healthy, delay = False, self.retry_s
                continue
            if healthy is not True:
                log.info(
                    "ComfyUI's node catalogue published",
                    extra={"node_classes": count, "refresh_s": self.refresh_s},
                )
            healthy, delay = True, self.refresh_s
