"""The connection ramp, driven with a synthetic clock and byte counter (logic only; the
downloads themselves are tested against real servers elsewhere)."""

from __future__ import annotations

from collections.abc import Callable

from genstack.provision.downloader import Downloader, DownloaderConfig


def run(rate_for: Callable[[int], float], seconds: int = 10) -> list[int]:
    """Limits over time when ``rate_for(connections)`` bytes/s come in."""
    downloader = Downloader(DownloaderConfig(connections=16))
    now = downloader._ramp_at
    limits = []
    for _ in range(seconds):
        downloader.bytes_fetched += int(rate_for(downloader._limit))
        now += 1.0
        downloader._ramp(now)
        limits.append(downloader._limit)
    return limits


def test_a_link_that_caps_each_connection_gets_all_of_them() -> None:
    limits = run(lambda n: n * 40e6)  # 40 MB/s per connection, as a CDN gives
    assert limits[0] == 4  # the first second is only the warm-up
    assert limits[-1] == 16 and limits == sorted(limits)


def test_a_link_that_more_connections_do_not_speed_up_stays_at_four() -> None:
    limits = run(lambda n: 900e6)  # loopback: the CPU, not the streams, is the limit
    assert limits[1] == 8  # tried
    assert limits[-1] == 4  # and given back


def test_a_link_that_saturates_keeps_the_last_step_that_paid() -> None:
    limits = run(lambda n: min(n, 8) * 50e6)  # 400 MB/s pipe
    assert limits[-1] == 8


def test_nothing_moving_yet_is_not_judged() -> None:
    downloader = Downloader(DownloaderConfig(connections=16))
    now = downloader._ramp_at
    for _ in range(5):
        now += 1.0
        downloader._ramp(now)  # resolving, connecting: no bytes
    assert downloader._limit == 4 and not downloader._ramp_done


def test_part_files_reserve_their_blocks_up_front(tmp_path: object) -> None:
    import os
    from pathlib import Path

    from genstack.provision.downloader import _allocate

    path = Path(str(tmp_path)) / "x.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _allocate(fd, 50 * 2**20)
    finally:
        os.close(fd)
    stat = path.stat()
    assert stat.st_size == 50 * 2**20
    assert stat.st_blocks * 512 >= 50 * 2**20  # reserved, not sparse
