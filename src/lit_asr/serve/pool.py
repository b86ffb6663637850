"""A bounded pool of worker threads: the model runs there, never on the event loop, and the queue never grows."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ServerBusy(Exception):
    """Every worker is busy and the waiting queue is full: the caller should answer 503 / try again later."""


class WorkerPool:
    """``workers`` threads plus at most ``queue_limit`` waiting jobs; ``run`` refuses anything beyond that.

    Torch releases the GIL inside its kernels, so threads give real parallelism for the model while sharing one
    copy of its weights (the Recognizer is thread-safe by contract).
    """

    def __init__(self, workers: int, queue_limit: int):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lit-asr-worker")
        self.capacity = workers + queue_limit
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs running or waiting now."""
        return self._pending

    def _release(self, _: Future) -> None:
        # A done callback fires when the job ends *or* is cancelled before it started, so no slot is ever lost.
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], *args, bounded: bool = True) -> T:
        """Run ``fn(*args)`` on a worker and await its result; ServerBusy when the pool is full.

        ``bounded=False`` skips the capacity check, for work that another limit bounds already (the chunks of
        an admitted stream, at most one in flight per stream).
        """
        with self._lock:
            if bounded and self._pending >= self.capacity:
                raise ServerBusy
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Wait for running jobs and stop the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)
