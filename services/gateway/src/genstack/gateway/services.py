"""Everything a request handler needs, made once per process in the app's lifespan."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread
import httpx
from celery import Celery
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from genstack.core.celery_app import create_celery_app
from genstack.core.jobs import Job
from genstack.core.jobstore import AsyncJobStore, JobStore
from genstack.core.redis_client import connect
from genstack.core.remote_files import InputFetcher
from genstack.core.ssrf import UrlPolicy
from genstack.core.storage import Storage, storage_from_settings
from genstack.gateway.backends import Registry, build_registry
from genstack.gateway.inputs import InputFiles
from genstack.gateway.links import ArtifactLinks, FileSigner, shared_signing_key
from genstack.gateway.metrics import GatewayMetrics
from genstack.gateway.published import NodeCatalogue, TemplateCatalogue
from genstack.gateway.settings import GatewaySettings
from genstack.gateway.submit import JobSubmitter
from genstack.gateway.webhooks.signing import WebhookSigner

log = logging.getLogger(__name__)

T = TypeVar("T")
SSE_HEARTBEAT_S = 15.0


def async_redis(url: str, *, socket_timeout: float) -> AsyncRedis:
    return AsyncRedis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def backend_auth(settings: GatewaySettings) -> dict[str, str]:
    keys = settings.tts_api_keys
    return {"Authorization": f"Bearer {keys[0].get_secret_value()}"} if keys else {}


@dataclass
class Services:
    settings: GatewaySettings
    registry: Registry
    metrics: GatewayMetrics
    redis: Redis
    aredis: AsyncRedis
    store: JobStore  # writes, in the thread pool (run_sync)
    jobs: AsyncJobStore  # reads, on the event loop
    celery: Celery
    storage: Storage
    links: ArtifactLinks
    submitter: JobSubmitter
    backend_http: httpx.AsyncClient
    webhook_http: httpx.AsyncClient
    url_policy: UrlPolicy
    webhook_signer: WebhookSigner | None
    limiter: anyio.CapacityLimiter
    node_catalogue: NodeCatalogue
    templates: TemplateCatalogue
    inputs: InputFiles
    started_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def create(cls, settings: GatewaySettings, metrics: GatewayMetrics) -> Services:
        registry = build_registry(settings)
        redis = connect(settings.redis_url)
        store = JobStore(redis, ttl_s=settings.job_ttl_s)
        celery = create_celery_app(
            "genstack-gateway",
            settings.redis_url,
            settings,
            broker_pool_limit=settings.gateway_threads,
        )
        storage = storage_from_settings(settings)
        signing_key = (
            settings.gateway_files_signing_key.get_secret_value().encode()
            if settings.gateway_files_signing_key is not None
            else shared_signing_key(redis, store.prefix)
        )
        read_timeout = settings.gateway_backend_read_timeout_s
        backend_http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.gateway_backend_connect_timeout_s,
                read=read_timeout,
                write=read_timeout,
                pool=settings.gateway_backend_connect_timeout_s,
            ),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
            trust_env=False,
            # The model servers' own key (TTS_API_KEYS), never the client's: a client's key
            # is the gateway's business and must not reach a backend.
            headers=backend_auth(settings),
        )
        webhook_http = httpx.AsyncClient(
            timeout=settings.gateway_webhook_timeout_s,
            limits=httpx.Limits(
                max_connections=settings.gateway_webhook_concurrency, max_keepalive_connections=0
            ),
            trust_env=False,
            follow_redirects=False,
        )
        secret = settings.gateway_webhook_secret
        aredis = async_redis(settings.redis_url, socket_timeout=SSE_HEARTBEAT_S + 15)
        jobs = AsyncJobStore(aredis, prefix=store.prefix, ttl_s=store.ttl_s)
        limiter = anyio.CapacityLimiter(settings.gateway_threads)
        return cls(
            settings=settings,
            registry=registry,
            metrics=metrics,
            redis=redis,
            aredis=aredis,
            store=store,
            jobs=jobs,
            celery=celery,
            storage=storage,
            links=ArtifactLinks(storage, FileSigner(signing_key), settings.presign_expiry_s),
            submitter=JobSubmitter(
                aredis, jobs, celery, idempotency_ttl_s=settings.gateway_idempotency_ttl_s
            ),
            backend_http=backend_http,
            webhook_http=webhook_http,
            url_policy=UrlPolicy(settings.gateway_webhook_allow_networks),
            webhook_signer=WebhookSigner(secret.get_secret_value()) if secret else None,
            limiter=limiter,
            node_catalogue=NodeCatalogue(
                aredis, cache_s=settings.gateway_node_catalogue_cache_s, limiter=limiter
            ),
            templates=TemplateCatalogue(
                aredis, cache_s=settings.gateway_node_catalogue_cache_s, limiter=limiter
            ),
            inputs=InputFiles(
                storage,
                InputFetcher(
                    UrlPolicy(
                        settings.gateway_input_allow_networks,
                        allow_variable="GATEWAY_INPUT_ALLOW_NETWORKS",
                    ),
                    max_bytes=settings.input_max_bytes,
                    timeout_s=settings.gateway_input_timeout_s,
                    user_agent="genstack-gateway",
                ),
            ),
        )

    async def run_sync(self, func: Callable[..., T], *args: object) -> T:
        """Run blocking work (redis-py, kombu, boto3) in the gateway's thread pool."""
        return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=self.limiter)

    async def get_job(self, job_id: str) -> Job | None:
        return await self.jobs.get(job_id)

    def base_url(self, request_base: str | None = None) -> str:
        return (self.settings.gateway_public_url or request_base or self._own_url()).rstrip("/")

    def _own_url(self) -> str:
        host = self.settings.gateway_host
        host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104
        return f"http://{host}:{self.settings.gateway_port}"

    def queue_of(self, job: Job) -> str:
        backend = self.registry.get(job.backend)
        return backend.queue if backend is not None else "unknown"

    async def aclose(self) -> None:
        await self.backend_http.aclose()
        await self.webhook_http.aclose()
        await self.aredis.aclose()
        with contextlib.suppress(Exception):
            self.celery.close()
        self.redis.close()
