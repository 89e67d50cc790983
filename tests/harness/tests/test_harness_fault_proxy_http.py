"""FaultProxy's HTTP/1.1 relaying, against an upstream whose framing the test controls."""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from conftest import CHUNKS, FILE_BODY, Upstream

from genstack.testing.fault_proxy import FaultProxy
from genstack.testing.plugin import MakeFaultProxy


def connect(proxy: FaultProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", urlsplit(proxy.url).port, timeout=10)


def test_keep_alive_connection_carries_many_requests(
    upstream: Upstream, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(upstream.url)
    conn = connect(proxy)
    for _ in range(3):
        conn.request("HEAD", "/file")
        head = conn.getresponse()
        assert head.status == 200
        assert head.getheader("Content-Length") == str(len(FILE_BODY))
        assert head.read() == b""  # HEAD: no body, and the next answer must not be shifted
        conn.request("GET", "/chunked")
        chunked = conn.getresponse()
        assert chunked.getheader("Transfer-Encoding") == "chunked"
        assert chunked.read() == b"".join(CHUNKS)
        conn.request("GET", "/file")
        assert conn.getresponse().read() == FILE_BODY
        conn.request("PUT", "/echo", body=b"payload")
        assert conn.getresponse().read() == f"7 {hashlib.sha256(b'payload').hexdigest()}".encode()
    sock = conn.sock
    conn.request("GET", "/file")
    conn.getresponse().read()
    assert conn.sock is sock  # still the same connection: nobody closed it
    conn.close()
    assert proxy.forwarded == proxy.requests == 13


def test_body_until_close(upstream: Upstream, fault_proxy: MakeFaultProxy) -> None:
    proxy = fault_proxy(upstream.url)
    conn = connect(proxy)
    conn.request("GET", "/no-length")
    assert conn.getresponse().read() == b"until-close"
    conn.close()


def test_error_keeps_the_connection_usable(upstream: Upstream, fault_proxy: MakeFaultProxy) -> None:
    proxy = fault_proxy(upstream.url, error_rate=1.0)
    conn = connect(proxy)
    conn.request("PUT", "/echo", body=b"x" * 100_000)
    assert conn.getresponse().read().endswith(b"</Error>")
    proxy.set_faults(error_rate=0.0)
    conn.request("PUT", "/echo", body=b"y")
    assert conn.getresponse().status == 200
    conn.close()


def test_response_streams_before_upstream_finishes(
    upstream: Upstream, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(upstream.url)
    conn = connect(proxy)
    conn.request("GET", "/stream")
    response = conn.getresponse()
    # The upstream holds the rest back until we have the first chunk: a buffering proxy
    # would leave this read hanging until the socket timeout.
    assert response.read(len(CHUNKS[0])) == CHUNKS[0]
    upstream.gates.first_part_relayed.set()
    assert response.read() == b"".join(CHUNKS[1:])
    conn.close()


def test_request_body_streams_before_client_finishes(
    upstream: Upstream, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(upstream.url)
    received_in_time: list[bool] = []

    def body() -> Iterator[bytes]:
        yield b"first part;"
        # The upstream sees the first chunk only if the proxy forwards before the body ends.
        received_in_time.append(upstream.gates.first_part_received.wait(timeout=5))
        yield b"second part"

    conn = connect(proxy)
    conn.request("PUT", "/echo", body=body(), encode_chunked=True)
    answer = conn.getresponse().read()
    conn.close()
    assert received_in_time == [True]
    expected = b"first part;second part"
    assert answer == f"{len(expected)} {hashlib.sha256(expected).hexdigest()}".encode()


def test_many_concurrent_connections(upstream: Upstream, fault_proxy: MakeFaultProxy) -> None:
    proxy = fault_proxy(upstream.url, delay_s=0.05)
    barrier = threading.Barrier(40)

    def fetch(_: int) -> bytes:
        conn = connect(proxy)
        barrier.wait()
        conn.request("GET", "/file")
        data = conn.getresponse().read()
        conn.close()
        return data

    with ThreadPoolExecutor(40) as pool:
        assert all(data == FILE_BODY for data in pool.map(fetch, range(40)))
    assert proxy.forwarded == 40


def test_unreachable_upstream_is_a_502(fault_proxy: MakeFaultProxy) -> None:
    from genstack.testing.ports import free_port

    proxy = fault_proxy(f"http://127.0.0.1:{free_port()}")
    conn = connect(proxy)
    conn.request("GET", "/x")
    assert conn.getresponse().status == 502
    conn.close()


def test_expect_100_continue_is_answered_at_once(
    upstream: Upstream, fault_proxy: MakeFaultProxy
) -> None:
    # botocore sends file-like bodies with "Expect: 100-continue" and waits up to 1 s for the
    # 100 before sending the body anyway: unanswered, every upload would be a second slower.
    proxy = fault_proxy(upstream.url)
    with socket.create_connection(("127.0.0.1", urlsplit(proxy.url).port or 0)) as sock:
        sock.settimeout(0.5)
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(5)
        sock.sendall(b"hello")
        answer = b""
        while not answer.endswith(hashlib.sha256(b"hello").hexdigest().encode()):
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200")
