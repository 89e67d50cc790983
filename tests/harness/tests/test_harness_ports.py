from __future__ import annotations

import socket
import time

import pytest

from genstack.testing.ports import free_port, wait_for_port


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_port_returns_once_something_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        wait_for_port("127.0.0.1", sock.getsockname()[1], timeout=2)


def test_wait_for_port_times_out_when_nothing_listens() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="nothing listening"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)
    assert time.monotonic() - started < 2
