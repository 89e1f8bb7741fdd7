"""Which loop, which thread: running async work from sync code and sync work in threads.

One module answers both directions, for every layer above:

- :func:`run_blocking` runs a coroutine function on a fresh event loop for a sync caller, and
  refuses inside a running loop (blocking it to wait for itself would hang);
- :class:`Threads` is the one pool of worker threads: sync health checks, sync shutdown
  hooks, integrations' sync handlers all go through it. Threads are kept between jobs
  and handed whole runs of work, and a thread stuck in a hung job is simply not reused
  until it returns: the pool grows by one thread per hung job, never per call. An idle
  thread holds neither its last job nor the pool, and exits when the pool is collected;
- :func:`in_thread` awaits a sync call made in one of those threads (or a given
  executor, or asyncio's default one) from async code; :func:`call_in_thread` does the
  same from sync code with a bound; both leave the thread behind when the wait ends
  first;
- :class:`LoopThread` runs an event loop in a thread of its own, for sync programs that
  host async work (a health monitor beside a Flask app);
- :func:`after_fork_in_child` is how per-tree state (this pool, the engine's locks and
  runs in flight, a monitor, an app's monitor thread) is reset in a forked child, where
  the parent's threads do not exist;
- :func:`loop_notifier` is how any thread wakes a task on the current loop (a
  :class:`LoopEvent` is an event any thread may set that way), and
  :func:`to_completion` finishes work that must not be cut in half before a
  cancellation goes on.

Neither asyncio nor trio is imported here until a loop of theirs is running: ``di
probe`` should not pay for them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import logging
import math
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio

from ..errors import AsyncRequiredError

T = TypeVar("T")

IDLE_SECONDS = 300.0  # an idle worker thread exits after this long


def in_event_loop() -> bool:
    """Whether this thread is running an asyncio or trio event loop right now."""
    # Neither library is imported here: a loop can only run if its library is loaded,
    # and `di probe` should not pay for importing asyncio.
    if running_asyncio_loop() is not None:
        return True
    trio = sys.modules.get("trio")
    lowlevel = getattr(trio, "lowlevel", None)  # None while trio is still importing
    return lowlevel is not None and bool(lowlevel.in_trio_run())


def running_asyncio_loop() -> Any:
    """This thread's running asyncio loop, or None, without importing asyncio.

    Another thread may be importing asyncio right now: a module only partly initialized
    has no running loop here.
    """
    asyncio = sys.modules.get("asyncio")
    get_loop = getattr(asyncio, "_get_running_loop", None)
    return get_loop() if get_loop is not None else None


def run_blocking(function: Callable[[], Awaitable[T]], sync_name: str, async_name: str) -> T:
    """Run ``function`` on a fresh event loop, refusing to nest inside a running one.

    Blocking a running loop to wait for work scheduled on that same loop would hang it,
    so the sync form points to the async one instead.
    """
    if in_event_loop():
        raise AsyncRequiredError(
            f"{sync_name}() was called inside a running event loop; "
            f"use `await {async_name}()` there"
        )
    # The result goes out of band: asyncio's runner would otherwise compute its repr()
    # at shutdown (CPython issue 112559), which costs as much as a large health check.
    box: list[T] = []

    async def main() -> None:
        box.append(await function())

    anyio.run(main)
    return box[0]


# -- cancellation -----------------------------------------------------------------------


def is_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is the running backend's cancellation exception."""
    return isinstance(error, anyio.get_cancelled_exc_class())


def any_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is asyncio's or trio's cancellation, whichever loop raised it."""
    asyncio = sys.modules.get("asyncio")
    cancelled = getattr(asyncio, "CancelledError", None)
    if cancelled is not None and isinstance(error, cancelled):
        return True
    trio = sys.modules.get("trio")
    cancelled = getattr(trio, "Cancelled", None)
    return cancelled is not None and isinstance(error, cancelled)


def cancel_requests() -> int:
    """How many native cancellations are pending on the current asyncio task (else 0)."""
    if running_asyncio_loop() is None:
        return 0
    import asyncio

    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def cancelled_from_outside(baseline: int) -> bool:
    """Whether a cancel scope or a caller is cancelling the current task.

    ``baseline`` is :func:`cancel_requests` taken when the work began. A cancellation
    exception raised while this is False was raised by the code called, not delivered
    to it (an async client re-raising its reader task's cancellation, say).
    """
    return anyio.current_effective_deadline() == -math.inf or cancel_requests() > baseline


async def to_completion(function: Callable[[], Awaitable[T]]) -> T:
    """Await ``function()`` to its end even if the caller is cancelled meanwhile.

    A caller's cancellation (a cancel scope, or asyncio's ``task.cancel()``, which a
    shielded cancel scope does not stop) is re-raised once the work is done. For work
    that must not be cut in half: a shutdown hook.
    """
    loop = running_asyncio_loop()
    if loop is None:
        with anyio.CancelScope(shield=True):
            return await function()
    import asyncio

    async def call() -> tuple[bool, Any]:
        # asyncio lets SystemExit and KeyboardInterrupt out of a task into the loop:
        # carry them back to the caller instead.
        try:
            return True, await function()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            return False, error

    task = loop.create_task(call())
    cancelled: BaseException | None = None
    with anyio.CancelScope(shield=True):
        while True:
            try:
                ok, outcome = await asyncio.shield(task)
                break
            except asyncio.CancelledError as error:
                if task.done():
                    raise  # the work itself ended cancelled
                cancelled = error  # the caller's: finish first
    if not ok:
        if cancelled is not None:
            outcome.add_note("the caller was cancelled meanwhile")
        raise outcome
    if cancelled is not None:
        raise cancelled
    result: T = outcome
    return result


# -- waking a loop from another thread ----------------------------------------------------


def loop_notifier() -> Callable[[Callable[[], object]], None]:
    """A function any thread can call to run a callback on the current event loop.

    Calls made after the loop has finished are dropped: the run they belonged to has
    already reported.
    """
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


class LoopEvent:
    """An anyio event of the loop that made it, which any thread may set: from another
    thread, the setting is handed to that loop (an event may only be set on its own)."""

    __slots__ = ("event", "notify", "thread")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.notify = loop_notifier()
        self.thread = threading.get_ident()

    def set(self) -> None:
        if threading.get_ident() == self.thread:
            self.event.set()
        else:
            self.notify(self.event.set)


# -- worker threads -------------------------------------------------------------------------


class _Idle:
    """A worker thread's slot: the job it is handed next, and what wakes it for that job."""

    __slots__ = ("event", "job")

    def __init__(self) -> None:
        self.job: Callable[[], None] | None = None
        self.event = threading.Event()


class _Crew:
    """What a pool's threads share with it: never the pool itself, so that a pool nobody
    holds any more (its injector dropped) is collected, and its idle threads with it."""

    __slots__ = ("closed", "idle", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Idle] = []
        self.closed = False


class Threads:
    """A pool of daemon threads that reuses idle ones and never queues work.

    A thread holds its job only while running it: an idle thread reaches nothing the
    job did, and no thread reaches the pool. An idle thread exits after
    :data:`IDLE_SECONDS`, or at once when the pool is collected (its injector
    dropped). After ``fork()`` the child starts with an empty pool: the parent's
    threads do not exist there. In ``atexit`` callbacks, where Python 3.12.0 and 3.12.1
    refuse new threads, a job no idle thread takes runs in the caller.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._crew = _Crew()
        weakref.finalize(self, _dismiss, self._crew)
        after_fork_in_child(self._after_fork)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on an idle thread now, or on a new one. Jobs report their own errors."""
        crew = self._crew
        with crew.lock:
            parked = crew.idle.pop() if crew.idle else None
        if parked is None:
            parked = _Idle()
            parked.job = job
            # The job goes through the slot, not the thread's arguments: a Thread keeps
            # those until it ends.
            worker = threading.Thread(target=_work, args=(crew, parked), name=self._name)
            worker.daemon = True
            try:
                worker.start()
            except RuntimeError:
                if threading.main_thread().is_alive():
                    raise
                # Python 3.12.0 and 3.12.1 start no thread once the main thread has
                # finished: in atexit callbacks, where a Flask app's container shuts
                # down. Nothing else would run the job, so it runs here, unbounded.
                parked.job = None
                job()
            return
        parked.job = job
        parked.event.set()

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads, and any lock they held, are gone."""
        self._crew.lock = threading.Lock()
        self._crew.idle = []


def _work(crew: _Crew, parked: _Idle) -> None:
    """A worker thread's life: run the job it was handed, park, wait for the next one."""
    while True:
        job, parked.job = parked.job, None
        if job is None:
            return  # dismissed: the pool is gone
        job()
        job = None  # nothing the job reached stays alive while the thread waits
        parked.event.clear()
        with crew.lock:
            if crew.closed:
                return
            crew.idle.append(parked)
        if not parked.event.wait(IDLE_SECONDS):
            with crew.lock:
                if parked in crew.idle:
                    crew.idle.remove(parked)
                    return
            parked.event.wait()  # handed a job between the timeout and the lock


def _dismiss(crew: _Crew) -> None:
    """The pool was collected: its idle threads exit now, busy ones after their job."""
    with crew.lock:
        crew.closed = True
        idle, crew.idle = crew.idle, []
    for parked in idle:
        parked.event.set()  # with no job: the thread returns


# -- fork ------------------------------------------------------------------------------------

_AT_FORK: dict[int, tuple[weakref.ref[Any], str]] = {}
_fork_order = itertools.count()


def after_fork_in_child(reset: Callable[[], object]) -> None:
    """Call the bound method ``reset`` in the child process after each ``fork()``, for as
    long as its object lives.

    Resets run in the order they registered: a pool and the engine's state (made with
    their injector) before a monitor, a monitor before the app that runs it. A failure
    is logged, and the others still run.
    """
    owner: Any = getattr(reset, "__self__")  # noqa: B009 - a bound method, as documented
    number = next(_fork_order)
    # A plain weak reference (its callback bound to the table it cleans): the object's
    # collection drops the entry, even while the interpreter shuts down.
    forget = functools.partial(_forget, _AT_FORK, number)
    _AT_FORK[number] = (weakref.ref(owner, forget), reset.__name__)


def _forget(table: dict[int, Any], number: int, _: object) -> None:
    table.pop(number, None)


def _after_fork_in_child() -> None:
    for _, (ref, name) in sorted(_AT_FORK.copy().items()):  # a copy: collection may pop one
        owner = ref()
        if owner is None:
            continue
        try:
            getattr(owner, name)()
        except Exception:
            logging.getLogger("di").exception("resetting %r after fork() failed", owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _outcome_of(
    function: Callable[..., T], args: tuple[Any, ...]
) -> Callable[[], tuple[bool, Any]]:
    """``function(*args)`` in the caller's context, its result or error as a value."""
    context = contextvars.copy_context()

    def call() -> tuple[bool, Any]:
        try:
            return True, context.run(function, *args)
        except BaseException as error:  # handed to the waiting caller, even SystemExit
            return False, error

    return call


async def in_thread(
    threads: Threads | None,
    function: Callable[..., T],
    *args: Any,
    executor: Executor | None = None,
) -> T:
    """``function(*args)`` in a worker thread (of ``threads``, or of ``executor``).

    With neither, the running asyncio loop's default executor runs it (as
    ``loop.run_in_executor(None, ...)`` would). The call sees the caller's context
    variables. If the wait is cancelled the thread is left behind to finish on its own,
    its result dropped; to wait for it all the same, await this under
    :func:`to_completion`.
    """
    done = anyio.Event()
    notify = loop_notifier()
    box: list[tuple[bool, Any]] = []
    call = _outcome_of(function, args)

    def job() -> None:
        try:
            box.append(call())
        finally:
            notify(done.set)

    if executor is not None:
        executor.submit(job)
    elif threads is not None:
        threads.submit(job)
    else:
        loop = running_asyncio_loop()
        if loop is None:
            raise RuntimeError(
                "in_thread() without threads or an executor needs a running asyncio loop, "
                "whose default executor runs the call; pass threads= elsewhere"
            )
        loop.run_in_executor(None, job)
    await done.wait()
    ok, result = box[0]
    if not ok:
        raise result
    return result  # type: ignore[no-any-return]


class LeftBehind(TimeoutError):
    """A call in a worker thread did not return in time: the thread is left behind."""


def call_in_thread(threads: Threads, function: Callable[[], T], timeout: float) -> T:
    """``function()`` in a worker thread, waited for ``timeout`` seconds from sync code.

    Raises :class:`LeftBehind` when it has not returned by then: the thread goes on
    alone. What ``function`` raises is raised here (a ``TimeoutError`` of its own too).
    """
    done = threading.Event()
    box: list[tuple[bool, Any]] = []
    call = _outcome_of(function, ())

    def job() -> None:
        try:
            box.append(call())
        finally:
            done.set()

    threads.submit(job)
    if not done.wait(timeout):
        raise LeftBehind(f"no return within {timeout:g} s")
    ok, result = box[0]
    if not ok:
        raise result
    return result  # type: ignore[no-any-return]


# -- an event loop in a thread ---------------------------------------------------------------


class LoopThread:
    """An event loop in a daemon thread, holding one async context open until stopped.

    For sync programs that host async work: ``start(lambda: monitor)`` enters the
    context on the thread's loop and returns once it is entered (raising what entering
    raised); :meth:`stop` asks the loop to leave it, waits for the thread, and raises
    what leaving raised. ``before_exit`` runs inside the context, first thing on the
    way out. Started once.
    """

    def __init__(self, name: str, backend: str = "asyncio") -> None:
        self.name = name
        self.backend = backend
        self._thread: threading.Thread | None = None
        self._stop: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._entered = False
        self._failure: BaseException | None = None  # what entering or leaving raised

    @property
    def alive(self) -> bool:
        """Whether the thread is still running its loop."""
        return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        context: Callable[[], AbstractAsyncContextManager[Any]],
        before_exit: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Enter ``context()`` on a new thread's loop; return once entered, or raise."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"LoopThread {self.name!r} was started once already")
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(context, before_exit, ready), name=self.name, daemon=True
            )
        self._thread.start()
        ready.wait()
        if not self._entered:
            self._thread.join()
            failure, self._failure = self._failure, None
            assert failure is not None
            raise failure

    def _run(
        self,
        context: Callable[[], AbstractAsyncContextManager[Any]],
        before_exit: Callable[[], Awaitable[object]] | None,
        ready: threading.Event,
    ) -> None:
        import anyio.from_thread
        import anyio.lowlevel

        async def main() -> None:
            token = anyio.lowlevel.current_token()
            leave = anyio.Event()

            def stop() -> None:
                with contextlib.suppress(RuntimeError):  # the loop has finished already
                    anyio.from_thread.run_sync(leave.set, token=token)

            self._stop = stop
            try:
                async with context():
                    self._entered = True
                    ready.set()
                    await leave.wait()
                    if before_exit is not None:
                        await before_exit()
            except BaseException as error:
                self._failure = error
                raise
            finally:
                ready.set()

        try:
            anyio.run(main, backend=self.backend)
        except BaseException as error:  # reported through self._failure
            if self._failure is None:
                self._failure = error  # the loop itself failed
        finally:
            ready.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Leave the context and wait up to ``timeout`` s (None: until it is left) for the
        thread; whether it ended. What leaving raised is raised here, once; a later call
        waits again."""
        with self._lock:
            asked, self._stopped = self._stopped, True
            thread = self._thread
        if thread is None:
            return True
        if not asked and self._stop is not None and thread.is_alive():
            self._stop()
        thread.join(timeout)
        if thread.is_alive():
            return False
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        return True
