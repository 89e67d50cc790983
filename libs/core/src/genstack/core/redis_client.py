"""One way to open Redis, with the timeouts and retries every service wants."""

from __future__ import annotations

from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry


def connect(
    url: str, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0, retries: int = 8
) -> Redis:
    """A client that decodes to str and rides out a short Redis restart (``retries=0``: one
    that answers at once, for health probes)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
