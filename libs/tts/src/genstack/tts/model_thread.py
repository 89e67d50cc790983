"""The model thread: one thread owns the model and runs one task at a time (on the GPU, or
on the CPU for the tone engine).

Blocking inference never runs on the event loop. A request waits for the model at most
``wait_timeout_s`` and only ``max_waiting`` requests may wait at all; past either limit it
gets :class:`ModelBusyError` (HTTP 503 with Retry-After). A task streams its results back as
it makes them; when the consumer goes away (client disconnect), the task's cancel flag is
set and the task stops at its next item, which frees the model for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Producer = Callable[[threading.Event], Iterator[T]]


class ModelBusyError(Exception):
    """The model is busy: too many requests wait, or this one waited too long."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _Task(Generic[T]):
    WAITING, RUNNING, ABANDONED = "waiting", "running", "abandoned"

    def __init__(self, produce: Producer[T], loop: asyncio.AbstractEventLoop) -> None:
        self.produce = produce
        self.loop = loop
        self.items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.started: asyncio.Future[float] = loop.create_future()
        self.cancel = threading.Event()
        self.submitted = time.monotonic()
        self._state = self.WAITING
        self._lock = threading.Lock()

    def try_start(self) -> bool:
        with self._lock:
            if self._state != self.WAITING:
                return False
            self._state = self.RUNNING
            return True

    def abandon(self) -> bool:
        """Give up waiting; False if the task started meanwhile."""
        with self._lock:
            if self._state != self.WAITING:
                return False
            self._state = self.ABANDONED
            return True

    def post(self, kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
            self.loop.call_soon_threadsafe(self.items.put_nowait, (kind, value))

    def notify_started(self, waited_s: float) -> None:
        def _set() -> None:
            if not self.started.done():
                self.started.set_result(waited_s)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_set)


class ModelStream(Generic[T]):
    """A started task: async-iterate it for its items; ``close()`` stops it."""

    def __init__(self, task: _Task[T], thread: ModelThread) -> None:
        self._task = task
        self._thread = thread

    @property
    def waited_s(self) -> float:
        return self._task.started.result() if self._task.started.done() else 0.0

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        while True:
            kind, value = await self._task.items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return

    def close(self) -> None:
        self._task.cancel.set()
        if self._task.abandon():
            self._thread._left_queue()


class ModelThread:
    """The model's one worker thread with a bounded queue in front of it."""

    def __init__(
        self,
        *,
        max_waiting: int,
        wait_timeout_s: float,
        name: str = "model",
        on_start: Callable[[float], None] | None = None,
    ) -> None:
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s
        self.name = name
        self._on_start = on_start
        self._queue: queue.Queue[_Task[Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = False
        self._avg_task_s = 1.0
        self._thread: threading.Thread | None = None

    # state ---------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> bool:
        return self._running

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def retry_after_s(self) -> int:
        """A guess at when a slot frees up: the mean task time times the tasks ahead."""
        ahead = self._waiting + (1 if self._running else 0)
        return max(1, min(120, math.ceil(self._avg_task_s * max(ahead, 1))))

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    # use -----------------------------------------------------------------------------------
    async def open(
        self, produce: Producer[T], *, wait_timeout_s: float | None = None, bounded: bool = True
    ) -> ModelStream[T]:
        """Queue ``produce(cancel)`` for the model thread and wait until it starts.

        Raises ModelBusyError when too many requests wait or this one waited too long
        (``bounded=False`` skips both limits: start-up work such as loading the model).
        Iterate the returned task for what ``produce`` yields; ``close()`` it when done or
        abandoned: that sets ``cancel`` and the task stops after its current item."""
        task: _Task[T] = _Task(produce, asyncio.get_running_loop())
        self._admit(bounded)
        self._queue.put(task)
        running = ModelStream(task, self)
        try:
            limit = (wait_timeout_s or self.wait_timeout_s) if bounded else None
            await self._wait_for_start(task, limit)
        except BaseException:
            running.close()
            raise
        return running

    async def stream(
        self, produce: Producer[T], *, wait_timeout_s: float | None = None, bounded: bool = True
    ) -> AsyncIterator[T]:
        """``open`` and iterate in one; leaving the iteration early stops the task."""
        task = await self.open(produce, wait_timeout_s=wait_timeout_s, bounded=bounded)
        try:
            async for item in task:
                yield item
        finally:
            task.close()

    async def call(
        self, fn: Callable[[], T], *, wait_timeout_s: float | None = None, bounded: bool = True
    ) -> T:
        """Run ``fn()`` on the model thread and return its result."""

        def produce(_cancel: threading.Event) -> Iterator[T]:
            yield fn()

        async for result in self.stream(produce, wait_timeout_s=wait_timeout_s, bounded=bounded):
            return result
        raise RuntimeError("the task produced no result")  # unreachable: produce yields once

    # internals -----------------------------------------------------------------------------
    def _admit(self, bounded: bool) -> None:
        with self._lock:
            ahead = self._waiting + (1 if self._running else 0)
            if bounded and ahead > self.max_waiting:
                raise ModelBusyError(
                    f"the model is busy ({self._waiting} requests waiting)", self.retry_after_s()
                )
            self._waiting += 1

    def _left_queue(self) -> None:
        with self._lock:
            self._waiting -= 1

    async def _wait_for_start(self, task: _Task[T], limit: float | None) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(task.started), limit)
        except TimeoutError:
            if task.abandon():
                self._left_queue()
                raise ModelBusyError(
                    f"the model stayed busy for {limit} s", self.retry_after_s()
                ) from None
            await task.started  # it started just now

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if not task.try_start():
                continue  # abandoned while it waited
            with self._lock:
                self._waiting -= 1
                self._running = True
            started = time.monotonic()
            waited = started - task.submitted
            if self._on_start is not None:
                self._on_start(waited)
            task.notify_started(waited)
            try:
                self._run(task)
            finally:
                elapsed = time.monotonic() - started
                with self._lock:
                    self._running = False
                    self._avg_task_s = 0.8 * self._avg_task_s + 0.2 * elapsed

    @staticmethod
    def _run(task: _Task[Any]) -> None:
        generator = task.produce(task.cancel)
        try:
            for item in generator:
                task.post("item", item)
                if task.cancel.is_set():
                    log.info("generation stopped: the client went away")
                    break
            task.post("done", None)
        except Exception as exc:
            task.post("error", exc)
        except BaseException as exc:
            # The thread is going down (SystemExit in the engine): the waiting client gets an
            # error now rather than a hang, and /readyz reports the dead thread.
            task.post("error", RuntimeError(f"the model thread stopped: {exc!r}"))
            raise
        finally:
            # Runs the producer's cleanup (frees what the model held) on this thread.
            with contextlib.suppress(Exception):
                generator.close()  # type: ignore[attr-defined]
