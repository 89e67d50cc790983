from __future__ import annotations

import socket
from pathlib import Path

import pytest

from genstack.testing.redis_server import RedisServer


def test_aof_survives_restart_on_the_same_port(redis_server: RedisServer) -> None:
    port = redis_server.port
    with redis_server.client() as client:
        client.set(b"job:1", b"done")
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.url == f"redis://127.0.0.1:{port}/0"
    with redis_server.client() as client:
        assert client.get(b"job:1") == b"done"


def test_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        with server.client() as client:
            client.rpush(b"queue", b"a", b"b")
        server.kill()  # no clean shutdown: only the fsynced AOF can bring it back
        server.start()
        with server.client() as client:
            assert client.lrange(b"queue", 0, -1) == [b"a", b"b"]


def test_without_appendonly_a_restart_loses_data(tmp_path: Path) -> None:
    # The control for the two tests above: they would pass vacuously if data always survived.
    with RedisServer(tmp_path, appendonly=False) as server:
        with server.client() as client:
            client.set(b"k", b"v")
        server.restart()
        with server.client() as client:
            assert client.get(b"k") is None


def test_redis_url_fixture_points_at_the_server(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == redis_server.url
    with redis_server.client() as client:
        assert client.ping()


def test_start_failure_shows_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match=r"(?s)exited with.*[Aa]ddress already in use"):
            server.start()
