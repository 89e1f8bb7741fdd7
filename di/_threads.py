"""Long-lived worker threads for sync health checks, and waking an event loop from them.

A thread per check (or a hop through ``anyio.to_thread`` per check) costs far more than a
no-op check. Threads here are kept between calls and handed whole runs of work, and a
thread stuck in a hung check is simply not reused until it returns: the pool grows by
one thread per hung check, never per probe.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

_IDLE_SECONDS = 300.0


class _Worker:
    __slots__ = ("event", "job")

    def __init__(self, job: Callable[[], None]) -> None:
        self.job: Callable[[], None] | None = job
        self.event = threading.Event()


class Threads:
    """A pool of daemon threads that reuses idle ones and never queues work."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on an idle thread now, or on a new one."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is not None:
            worker.job = job
            worker.event.set()
            return
        worker = _Worker(job)
        threading.Thread(target=self._serve, args=(worker,), name=self._name, daemon=True).start()

    def _serve(self, worker: _Worker) -> None:
        while worker.job is not None:
            job, worker.job = worker.job, None
            job()  # jobs report their own errors
            worker.event.clear()
            with self._lock:
                self._idle.append(worker)
            if worker.event.wait(_IDLE_SECONDS):
                continue
            with self._lock:
                if worker in self._idle:
                    self._idle.remove(worker)
                    return
            worker.event.wait()  # handed a job between the timeout and the lock


def loop_notifier() -> Callable[[Callable[[], object]], None]:
    """A function any thread can call to run a callback on the current event loop.

    Calls made after the loop has finished are dropped: the run they belonged to has
    already reported.
    """
    from ._runner import running_asyncio_loop

    loop = running_asyncio_loop()
    if loop is not None:
        running = loop

        def call_asyncio(callback: Callable[[], object]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                running.call_soon_threadsafe(callback)

        return call_asyncio
    import trio

    token = trio.lowlevel.current_trio_token()

    def call_trio(callback: Callable[[], object]) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(callback)

    return call_trio
