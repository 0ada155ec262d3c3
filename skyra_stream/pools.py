"""Thread pools and engine slots by priority: synchronous API callers go before the Kafka
backlog at every queue (the analysis path's fetch and decode pools, the engine's slots).

`asyncio.Semaphore` wakes waiters first come, first served, so a caller waiting on an HTTP
response would queue behind every Kafka message already waiting for the engine. Here a waiter
with a lower priority number goes first; equal priorities keep their arrival order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class PrioritySlots:
    """`size` slots for asyncio tasks (the videos inside the engine at once), handed out
    lowest priority number first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._used = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def used(self) -> int:
        return self._used

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    async def acquire(self, priority: int = 0) -> None:
        if self._used < self.size and not self.waiting:
            self._used += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # admitted and cancelled in the same tick: hand the slot on
            raise

    def release(self) -> None:
        while self._waiters:
            *_, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                return
        self._used -= 1

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


class PriorityPool:
    """A fixed set of threads that take work lowest priority number first.

    `ThreadPoolExecutor` runs its queue in arrival order, so an API video would wait for
    every Kafka download and decode already queued ahead of it; here it goes next. Equal
    priorities keep their arrival order.
    """

    def __init__(self, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = (
            queue.PriorityQueue()
        )
        self._seq = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[[], None]) -> None:
        """Queue `fn`; RuntimeError once the pool is shut down."""
        if self._closed:
            raise RuntimeError("pool is shut down")
        self._queue.put((priority, next(self._seq), fn))

    def shutdown(self) -> None:
        """Run nothing more that is queued; the threads end after their current task."""
        self._closed = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put((sys.maxsize, next(self._seq), None))

    def _work(self) -> None:
        while True:
            *_, fn = self._queue.get()
            if fn is None or self._closed:
                return
            fn()
