"""The model thread: one task at a time, bounded waiting, cancellation, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from genstack.tts.model_thread import ModelBusyError, ModelThread, Producer

T = TypeVar("T")


def slow_counter(n: int, delay: float, log: list[str], name: str) -> Producer[int]:
    def produce(cancel: threading.Event) -> Iterator[int]:
        log.append(f"{name} start")
        try:
            for i in range(n):
                time.sleep(delay)
                yield i
        finally:
            log.append(f"{name} end")

    return produce


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def consume(runner: ModelThread, produce: Producer[int], **kw: Any) -> list[int]:
    return [item async for item in runner.stream(produce, **kw)]


def test_tasks_run_one_at_a_time_in_order_on_one_thread() -> None:
    runner = ModelThread(max_waiting=10, wait_timeout_s=10)
    runner.start()
    log: list[str] = []
    threads: set[str] = set()

    def produce(name: str) -> Producer[int]:
        def gen(cancel: threading.Event) -> Iterator[int]:
            threads.add(threading.current_thread().name)
            log.append(f"{name} start")
            time.sleep(0.05)
            yield 1
            log.append(f"{name} end")

        return gen

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(consume(runner, produce(f"j{i}")) for i in range(4)))

    try:
        assert run(main()) == [[1]] * 4
    finally:
        runner.stop()
    # Never two tasks at once: every start is followed by its own end.
    assert all(log[i].endswith("start") and log[i + 1].endswith("end") for i in range(0, 8, 2))
    assert [entry.split()[0] for entry in log[::2]] == ["j0", "j1", "j2", "j3"]
    assert threads == {"model"}


def test_more_waiting_than_allowed_is_refused_at_once_with_a_retry_hint() -> None:
    runner = ModelThread(max_waiting=1, wait_timeout_s=10)
    runner.start()
    log: list[str] = []

    async def main() -> None:
        first = asyncio.create_task(consume(runner, slow_counter(3, 0.1, log, "a")))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(consume(runner, slow_counter(1, 0.0, log, "b")))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(ModelBusyError) as busy:
            await consume(runner, slow_counter(1, 0.0, log, "c"))
        assert time.monotonic() - started < 0.05  # refused, not queued
        assert busy.value.retry_after_s >= 1
        assert await first == [0, 1, 2]
        assert await second == [0]

    try:
        run(main())
    finally:
        runner.stop()
    assert "c start" not in log


def test_a_request_that_waits_too_long_gets_busy_and_never_runs() -> None:
    runner = ModelThread(max_waiting=5, wait_timeout_s=0.2)
    runner.start()
    log: list[str] = []

    async def main() -> None:
        first = asyncio.create_task(consume(runner, slow_counter(5, 0.1, log, "long")))
        await asyncio.sleep(0.05)
        with pytest.raises(ModelBusyError, match=r"busy for 0\.2 s"):
            await consume(runner, slow_counter(1, 0.0, log, "late"))
        assert runner.waiting == 0
        await first

    try:
        run(main())
        time.sleep(0.1)
    finally:
        runner.stop()
    assert "late start" not in log


def test_leaving_early_cancels_the_task_and_frees_the_thread() -> None:
    runner = ModelThread(max_waiting=5, wait_timeout_s=5)
    runner.start()
    log: list[str] = []
    seen_cancel = threading.Event()

    def endless(cancel: threading.Event) -> Iterator[int]:
        log.append("endless start")
        i = 0
        try:
            while True:
                time.sleep(0.02)
                i += 1
                yield i
        finally:
            if cancel.is_set():
                seen_cancel.set()
            log.append("endless end")

    async def main() -> None:
        async for item in runner.stream(endless):
            if item == 3:
                break
        started = time.monotonic()
        assert await consume(runner, slow_counter(1, 0.0, log, "next")) == [0]
        assert time.monotonic() - started < 1.0

    try:
        run(main())
    finally:
        runner.stop()
    assert seen_cancel.is_set()
    assert log.index("endless end") < log.index("next start")


def test_errors_reach_the_caller_and_the_thread_survives() -> None:
    runner = ModelThread(max_waiting=5, wait_timeout_s=5)
    runner.start()

    def broken(cancel: threading.Event) -> Iterator[int]:
        yield 1
        raise ValueError("engine exploded")

    async def main() -> None:
        got: list[int] = []
        with pytest.raises(ValueError, match="engine exploded"):
            async for item in runner.stream(broken):
                got.append(item)
        assert got == [1]
        assert await runner.call(lambda: 42) == 42

    try:
        run(main())
    finally:
        runner.stop()


def test_unbounded_calls_ignore_the_limits() -> None:
    runner = ModelThread(max_waiting=0, wait_timeout_s=0.01)
    runner.start()
    log: list[str] = []

    async def main() -> None:
        first = asyncio.create_task(consume(runner, slow_counter(2, 0.1, log, "a")))
        await asyncio.sleep(0.02)
        assert await runner.call(lambda: "loaded", bounded=False) == "loaded"
        await first

    try:
        run(main())
    finally:
        runner.stop()
