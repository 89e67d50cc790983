"""The downloader's parallelism against real HTTP servers on loopback that cap each connection
(as CDNs do) and push back: every connection at once, fewer when the server says so, a
budget shared across files and servers, a slow connection's tail split off."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genstack.provision.downloader import (
    Downloader,
    DownloaderConfig,
    DownloadItem,
    DownloadResult,
)
from genstack.provision.errors import DownloadError
from genstack.provision.http import LOWAT, Session
from genstack.testing.file_server import Fault, FileServer, sha256

MiB = 2**20


@pytest.fixture
def server() -> Iterator[FileServer]:
    server = FileServer(host="127.0.0.1").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def other() -> Iterator[FileServer]:
    server = FileServer(host="127.0.0.2").start()
    try:
        yield server
    finally:
        server.stop()


def publish(server: FileServer, path: str, data: bytes, root: Path) -> DownloadItem:
    url = server.add(path, data)
    return DownloadItem(
        key=path.lstrip("/"),
        dest=root / path.lstrip("/"),
        url=url,
        size=len(data),
        sha256=sha256(data),
        identity=url,
    )


def download(items: list[DownloadItem], **config: object) -> tuple[Downloader, float]:
    settings: dict[str, object] = {"retry_base_s": 0.05, "stall_timeout_s": 5, **config}
    downloader = Downloader(DownloaderConfig(**settings))  # type: ignore[arg-type]
    started = time.monotonic()
    results: list[DownloadResult] = downloader.download(items)
    elapsed = time.monotonic() - started
    assert sorted(r.item.key for r in results) == sorted(i.key for i in items)
    for item in items:
        assert sha256(item.dest.read_bytes()) == item.sha256
    return downloader, elapsed


def limit_of(downloader: Downloader, server: FileServer) -> int:
    return downloader.connection_limits()[f"{server.host}:{server.port}"]


def test_a_large_file_gets_every_connection_at_once(server: FileServer, tmp_path: Path) -> None:
    server.rate_bps = 4 * MiB  # per connection, as a CDN caps it
    item = publish(server, "/big.bin", os.urandom(16 * MiB), tmp_path)

    downloader, elapsed = download([item], connections=8)

    gets = server.requests_for("/big.bin", "GET")
    assert server.peak_active("/big.bin") == 8
    # All eight asked for at once, not ramped up: within a moment of the first.
    assert gets[7].at - gets[0].at < 0.3
    assert len({r.connection for r in gets}) >= 8
    # 16 MiB at 8 x 4 MiB/s is 0.5 s; one connection would take 4 s, four 1 s.
    assert elapsed < 1.5
    assert limit_of(downloader, server) == 8


def test_503_with_retry_after_lowers_the_connections_and_the_file_arrives(
    server: FileServer, tmp_path: Path
) -> None:
    server.rate_bps = 8 * MiB
    server.max_active, server.over_limit, server.retry_after = 3, "503", "1"
    item = publish(server, "/big.bin", os.urandom(16 * MiB), tmp_path)

    downloader, _ = download([item], connections=8, backoff_hold_s=0.5)

    assert server.pushed_back >= 1
    # It backed off instead of asking again and again: a burst at the start, then at most
    # a refusal per probe.
    assert server.pushed_back <= 10, server.pushed_back
    assert limit_of(downloader, server) <= 4
    refused = [r for r in server.requests_for("/big.bin", "GET") if r.active >= 3]
    assert refused  # the server saw more than it allows only in those bursts


def test_reset_connections_lower_the_connections(server: FileServer, tmp_path: Path) -> None:
    server.rate_bps = 8 * MiB
    server.max_active, server.over_limit = 2, "reset"
    item = publish(server, "/big.bin", os.urandom(12 * MiB), tmp_path)

    downloader, _ = download([item], connections=6, backoff_hold_s=5)

    assert server.pushed_back >= 1
    assert limit_of(downloader, server) <= 2


def test_a_refused_connection_is_pushback_too(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gone.bin"
    item = DownloadItem("gone.bin", tmp_path / "gone.bin", url, 4 * MiB, None, url)
    downloader = Downloader(DownloaderConfig(connections=8, retries=2, retry_base_s=0.01))
    with pytest.raises(DownloadError, match="ConnectionRefusedError"):
        downloader.download([item])
    assert downloader.connection_limits()[f"127.0.0.1:{port}"] < 8


def test_pushback_from_one_server_leaves_the_others_alone(
    server: FileServer, other: FileServer, tmp_path: Path
) -> None:
    for s in (server, other):
        s.rate_bps = 4 * MiB
    server.max_active, server.over_limit = 1, "429"
    slow = publish(server, "/a.bin", os.urandom(4 * MiB), tmp_path)
    fast = publish(other, "/b.bin", os.urandom(12 * MiB), tmp_path)

    downloader, _ = download([slow, fast], connections=6, backoff_hold_s=5)

    assert server.pushed_back >= 1 and limit_of(downloader, server) == 1
    assert other.pushed_back == 0 and limit_of(downloader, other) == 6
    assert other.peak_active("/b.bin") >= 5  # what the other server did not take


def test_files_share_the_budget_and_a_small_file_holds_one_connection_briefly(
    server: FileServer, tmp_path: Path
) -> None:
    server.rate_bps = 4 * MiB
    big = publish(server, "/big.bin", os.urandom(24 * MiB), tmp_path)
    small = [publish(server, f"/small-{n}.bin", os.urandom(MiB // 2), tmp_path) for n in range(4)]

    _, elapsed = download([*small, big], connections=6, max_files=4)

    for item in small:  # one request each
        assert len(server.requests_for(f"/{item.key}", "GET")) == 1
    # The big file had every connection the small ones were not using, then all six; a split
    # per file (6 / 5 files) would have left it at one or two.
    assert server.peak_active("/big.bin") == 6
    assert server.peak_active() <= 6
    # 26 MiB at 6 x 4 MiB/s: about 1.1 s.
    assert elapsed < 2.5


def test_a_slow_connection_has_the_rest_of_its_run_taken_over(
    server: FileServer, tmp_path: Path
) -> None:
    server.rate_bps = 8 * MiB
    item = publish(server, "/big.bin", os.urandom(32 * MiB), tmp_path)
    # The first request (the file's first run, 4 MiB) crawls at 0.5 MiB/s.
    server.fault("/big.bin", Fault("slow", rate_bps=MiB / 2))  # the first request crawls

    _, elapsed = download([item], connections=4)

    gets = server.requests_for("/big.bin", "GET")
    slow = span(gets[0].range)
    assert slow[1] - slow[0] >= 3 * MiB  # a run of several blocks (a fair share: 3-4 MiB)
    # Idle connections took over the blocks of that run nobody had started ...
    assert [r for r in gets[1:] if slow[0] < span(r.range)[0] < slow[1]]
    # ... so the file took about as long as the slow connection's first block (2 s), not
    # its whole run (6-8 s).
    assert elapsed < 4.5


def span(header: str | None) -> tuple[int, int]:
    first, _, last = (header or "").removeprefix("bytes=").partition("-")
    return int(first), int(last) + 1


def test_a_capped_connection_is_read_in_large_pieces_and_to_its_last_byte(
    server: FileServer,
) -> None:
    """A capped connection brings a few KiB at a time; the reader wakes only once LOWAT
    bytes are in (SO_RCVLOWAT), never waiting for bytes that are not coming: the end of the
    body, and the next response's headers on the same connection, come at once."""
    server.rate_bps, server.chunk = 4 * MiB, 16 * 1024
    data = os.urandom(2 * MiB + 1234)
    url = server.add("/f.bin", data)
    buffer = memoryview(bytearray(4 * MiB))
    with contextlib.closing(Session(read_timeout=5)) as session:
        for _ in range(2):
            started = time.monotonic()
            response = session.request("GET", url)
            got, sizes = bytearray(), []
            while n := response.readinto(buffer):
                got += buffer[:n]
                sizes.append(n)
            response.close()
            assert bytes(got) == data
            assert time.monotonic() - started < 2  # 0.5 s at 4 MiB/s; no wait at the end
            assert statistics.median(sizes) >= LOWAT  # not 16 KiB per read
    assert server.connections == 1
