"""Running health checks: which services, in what order, how many at once, for how long.

The path of one call, top to bottom:

- :func:`report` joins an identical call already in flight, or leads a new one;
- :func:`_collect` picks every built, checkable service visible from the scope, last
  built first;
- :func:`_run` starts a fixed set of workers (at most the parallelism) pulling from that
  ordered queue, under the global deadline;
- :func:`_work` runs async checks in the worker's task, moving one cancel scope's
  deadline from check to check rather than making a task and a scope per check;
- :class:`_Lane` hands sync checks to a worker thread, which keeps running the sync
  checks that follow in the queue; :func:`_watch` abandons a thread whose check
  overruns its timeout, and the worker carries on with a fresh one.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._service import COMPILED, MISSING, Service
from ._threads import Threads, loop_notifier
from .errors import HealthCheckTimeoutError, ServiceNotBuiltError
from .health import HealthCheckResult, HealthReport, Outcome

if TYPE_CHECKING:
    from .injector import Injector
    from .scope import Scope

logger = logging.getLogger("di.health")


def _no_check() -> None:
    """Stands in Service.probe for a built service that has no health check."""


NO_CHECK: Final[tuple[Callable[[], Any], bool]] = (_no_check, False)
PER_CHECK: Final = "per-check"
GLOBAL: Final = "global"


class Item:
    """One service to check in one call."""

    __slots__ = ("call", "is_async", "position", "scope", "service", "started", "started_at")

    def __init__(self, service: Service, scope: str, call: Callable[[], Any], is_async: bool):
        self.service = service
        self.scope = scope
        self.call = call
        self.is_async = is_async
        self.position = 0  # in the call's order
        self.started = 0.0  # time.monotonic() when the check started; 0 while queued
        self.started_at = 0.0  # time.time() at the same moment


# -- the entry point: single flight ----------------------------------------------------


class _Flight:
    """A call in progress that identical calls join instead of starting their own."""

    __slots__ = ("outcome", "waiters")

    def __init__(self) -> None:
        self.outcome: HealthReport | BaseException | None = None
        self.waiters: list[Callable[[], None]] = []


async def report(
    scope: Scope, only: Service | None = None, *, round_timeout: float | None = None
) -> HealthReport:
    """Check every service visible from ``scope`` (or just ``only``), sharing identical calls.

    ``round_timeout`` bounds this call on top of the injector's global timeout (the
    monitor's rounds): checks still running then are reported as timed out.
    """
    root = scope._root
    key = (scope, only, round_timeout)
    while True:
        with root._mutex:
            flight = root._health_flights.get(key)
            leader = flight is None
            if flight is None:
                flight = root._health_flights[key] = _Flight()
            else:
                joined = anyio.Event()
                notify = loop_notifier()
                flight.waiters.append(functools.partial(notify, joined.set))
        if leader:
            return await _lead(root, key, flight, scope, only, round_timeout)
        await joined.wait()
        if isinstance(flight.outcome, HealthReport):
            return flight.outcome
        if isinstance(flight.outcome, BaseException) and not _is_cancellation(flight.outcome):
            raise flight.outcome
        # The leading call was cancelled: this caller runs the checks itself.


async def _lead(
    root: Injector,
    key: tuple[Scope, Service | None, float | None],
    flight: _Flight,
    scope: Scope,
    only: Service | None,
    round_timeout: float | None,
) -> HealthReport:
    try:
        result = await _run(root, _collect(scope, only), round_timeout)
        flight.outcome = result
        return result
    except BaseException as error:
        flight.outcome = error
        raise
    finally:
        with root._mutex:
            del root._health_flights[key]
            waiters = flight.waiters
        for wake in waiters:
            wake()


def _is_cancellation(error: BaseException) -> bool:
    return isinstance(error, anyio.get_cancelled_exc_class()) or type(error).__name__ in (
        "CancelledError",
        "Cancelled",
    )


# -- what is checked, in which order ---------------------------------------------------


def _collect(scope: Scope, only: Service | None) -> list[Item]:
    """Built services with a check visible from ``scope``, last built first.

    A key is taken from the nearest scope that provides it, so an ancestor's service
    shadowed by a child is not checked, and each service is checked once.
    """
    items: list[Item] = []
    seen: set[Any] = set()
    for owner in (scope, *scope.ancestors()):
        for key, service in owner._services.items():
            if key in seen:
                continue
            seen.add(key)
            if only is not None and service is not only:
                continue
            instance = owner._instances.get(key, MISSING)
            if not service.index or instance is MISSING or instance is COMPILED:
                continue  # never built, or a transient: nothing to check
            probe = service.probe
            if probe is None:
                probe = service.probe = probe_of(service, instance)
            if probe is not NO_CHECK:
                items.append(Item(service, owner._name, probe[0], probe[1]))
    items.sort(key=lambda item: item.service.index, reverse=True)
    for position, item in enumerate(items):
        item.position = position
    return items


def probe_of(service: Service, instance: Any) -> tuple[Callable[[], Any], bool]:
    """The zero-argument check of a built instance, and whether it is async."""
    if service.check is not None:
        check = service.check

        def explicit() -> Any:
            return check(instance)

        return explicit, inspect.iscoroutinefunction(check)
    method = getattr(instance, "health_check", None)
    if not callable(method):
        return NO_CHECK
    return method, inspect.iscoroutinefunction(method)


async def check_one(scope: Scope, service: Service) -> Exception | None:
    """Check one service as a full call would: same timeouts, pool and single flight.

    A check never builds a service; one not built yet, or with no check, is an error.
    """
    instance = service.owner._instances.get(service.key, MISSING)
    if not service.index or instance is MISSING or instance is COMPILED:
        raise ServiceNotBuiltError(service.label, service.owner._name)
    if service.probe is None:
        service.probe = probe_of(service, instance)
    if service.probe is NO_CHECK:
        raise ValueError(
            f"service {service.label!r} has no health check; give it a health_check() "
            "method or provide it with health_check="
        )
    return (await report(scope, service)).checks[0].error


# -- one call --------------------------------------------------------------------------


class _Run:
    """The shared state of one call: the ordered queue and the results.

    Worker tasks and worker threads share it without a lock: taking the next check is
    one ``next()`` on an iterator and recording a result one ``dict.setdefault``, each
    atomic, so the first of a check's finish, its timeout or the global deadline wins
    and threads never queue behind each other.
    """

    def __init__(self, root: Injector, items: list[Item]) -> None:
        self.items = items
        self._queue = iter(items)
        self.results: dict[int, HealthCheckResult] = {}
        self.timeout: float | None = root._health_timeout
        self.on_check = root._on_health_check
        self.threads: Threads = root._health_threads
        self.slots: Slots = root._health_slots
        self.notify = loop_notifier()
        self.lanes: list[_Lane] = []
        self.closed = False

    def take(self) -> Item | None:
        """The next check to start, now marked started; None when there is none.

        A sync check whose thread is still stuck from an earlier call is not started
        again: it is reported as timed out at once.
        """
        while not self.closed:
            item = next(self._queue, None)
            if item is None:
                return None
            item.started, item.started_at = time.monotonic(), time.time()
            if item.is_async:
                return item
            if not item.service.checking:
                item.service.checking = True
                return item
            self._finish(item, self._timeout_error(item, PER_CHECK), Outcome.TIMEOUT)
        return None

    def record(self, item: Item, error: Exception | None) -> None:
        self._finish(item, error, Outcome.HEALTHY if error is None else Outcome.UNHEALTHY)

    def time_out(self, item: Item, limit: str) -> None:
        self._finish(item, self._timeout_error(item, limit), Outcome.TIMEOUT)

    def close(self, global_timeout: float) -> None:
        """The global deadline passed: report every unfinished check as timed out."""
        self.closed = True
        for item in self.items:
            if item.position not in self.results:
                error = HealthCheckTimeoutError(item.service.label, GLOBAL, global_timeout)
                self._finish(item, error, Outcome.TIMEOUT)

    def _timeout_error(self, item: Item, limit: str) -> HealthCheckTimeoutError:
        return HealthCheckTimeoutError(item.service.label, limit, self.timeout or 0.0)

    def _finish(self, item: Item, error: Exception | None, outcome: Outcome) -> None:
        if item.position in self.results:
            return  # already reported (as timed out)
        now = time.monotonic()
        if not item.started:
            item.started, item.started_at = now, time.time()
        result = HealthCheckResult(
            item.service.label, item.scope, outcome, error, item.started_at, now - item.started
        )
        if self.results.setdefault(item.position, result) is not result:
            return  # another path reported it first
        if self.on_check is not None:
            try:
                self.on_check(item.service.label, result)
            except Exception:
                logger.exception("the on_health_check hook failed for %r", item.service.label)

    def report(self) -> HealthReport:
        results = self.results
        return HealthReport(tuple(results[i] for i in range(len(self.items)) if i in results))


async def _run(root: Injector, items: list[Item], round_timeout: float | None) -> HealthReport:
    """Run the checks with at most ``parallelism`` at once, under the global deadline."""
    run = _Run(root, items)
    if not items:
        return run.report()
    parallelism = root._health_parallelism
    workers = min(parallelism, len(items)) if parallelism else len(items)
    global_timeout = root._health_global_timeout
    if round_timeout is not None:
        global_timeout = min(global_timeout or math.inf, round_timeout)
    deadline = math.inf if global_timeout is None else anyio.current_time() + global_timeout
    try:
        with anyio.CancelScope(deadline=deadline) as bounded:
            async with anyio.create_task_group() as watchers:
                if run.timeout is not None and not all(item.is_async for item in items):
                    watchers.start_soon(_watch, run)
                async with anyio.create_task_group() as pool:
                    for _ in range(workers):
                        pool.start_soon(_work, run)
                watchers.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _first(group) from None
    if bounded.cancel_called and global_timeout is not None:
        run.close(global_timeout)
    return run.report()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a check raised past ``Exception`` (KeyboardInterrupt, ...), unwrapped."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _work(run: _Run) -> None:
    """One worker: holds a slot of the injector's pool and takes checks until none is left."""
    await run.slots.acquire()
    try:
        lane: _Lane | None = None
        while True:
            overrun, lane = await _work_in_scope(run, lane)
            if overrun is None:
                return
            run.time_out(overrun, PER_CHECK)
    finally:
        run.slots.release()


async def _work_in_scope(run: _Run, lane: _Lane | None) -> tuple[Item | None, _Lane | None]:
    """Run checks under one cancel scope, whose deadline moves to each async check's.

    Returns the check whose deadline fired (the scope is spent then), or None once the
    queue is empty; and the lane to reuse.
    """
    item: Item | None = None
    with anyio.CancelScope() as scope:
        while (item := run.take()) is not None:
            awaitable: Awaitable[Any] | None = None
            if not item.is_async:
                if scope.deadline != math.inf:
                    scope.deadline = math.inf  # a sync check's deadline is _watch's
                if lane is None or lane.abandoned:
                    lane = _Lane(run)
                pending = await lane.start(item)
                if pending is None:
                    continue
                item, awaitable = pending
            if run.timeout is not None:
                elapsed = time.monotonic() - item.started
                scope.deadline = anyio.current_time() + run.timeout - elapsed
            try:
                await (item.call() if awaitable is None else awaitable)
            except Exception as error:
                run.record(item, error)
                continue
            if scope.cancel_called:
                break  # the check swallowed its cancellation: it overran all the same
            run.record(item, None)
        else:
            return None, lane
    return item, lane


class Slots:
    """The injector's pool of check slots, shared by every call on its tree.

    Thread-safe (sync callers each run their own event loop) and fair: a freed slot goes
    to the longest waiter. Size 0 means unlimited.
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._unlimited = size == 0
        self._free = size
        self._waiters: deque[tuple[Callable[[], None], anyio.Event]] = deque()

    async def acquire(self) -> None:
        with self._lock:
            if self._unlimited or self._free > 0:
                self._free -= 1
                return
            granted = anyio.Event()
            notify = loop_notifier()
            waiter = (lambda: notify(granted.set), granted)
            self._waiters.append(waiter)
        try:
            await granted.wait()
        except BaseException:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            self.release()  # granted while being cancelled: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                wake, _ = self._waiters.popleft()
            else:
                self._free += 1
                return
        wake()


# -- sync checks -----------------------------------------------------------------------


class _Lane:
    """A worker's thread: it runs sync checks in queue order until an async one is next.

    What the thread cannot run on its own comes back to the worker as ``pending``: an
    async check it took from the queue, or the awaitable a sync callable returned.
    """

    __slots__ = ("abandoned", "event", "fatal", "item", "pending", "run")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.item: Item | None = None  # the sync check running now
        self.abandoned = False
        self.event = anyio.Event()
        self.fatal: BaseException | None = None
        self.pending: tuple[Item, Awaitable[Any] | None] | None = None
        run.lanes.append(self)

    async def start(self, item: Item) -> tuple[Item, Awaitable[Any] | None] | None:
        """Run ``item`` and the sync checks after it; return what the worker must await."""
        self.event = anyio.Event()
        self.item = item
        done, notify = self.event, self.run.notify
        self.run.threads.submit(lambda: self._drain(item, lambda: notify(done.set)))
        await done.wait()
        if self.fatal is not None:
            raise self.fatal
        pending, self.pending = self.pending, None
        return pending

    def _drain(self, item: Item | None, wake: Callable[[], None]) -> None:
        run = self.run
        try:
            while item is not None:
                if item.is_async:
                    self.pending = (item, None)
                    return
                self.item = item
                error: Exception | None = None
                result: Any = None
                try:
                    result = item.call()
                except Exception as caught:
                    error = caught
                finally:
                    item.service.checking = False
                if self.abandoned or run.closed:
                    return
                if inspect.isawaitable(result):
                    # A sync callable that returned a coroutine (``lambda c: c.ping()``):
                    # the worker awaits it on the loop, within the same deadline.
                    item.service.probe = (item.call, True)
                    self.pending = (item, result)
                    return
                run.record(item, error)
                item = run.take()
        except BaseException as fatal:
            self.fatal = fatal
        finally:
            self.item = None
            wake()


async def _watch(run: _Run) -> None:
    """Abandon sync checks that overrun the per-check timeout; their workers move on."""
    timeout = run.timeout
    assert timeout is not None
    while True:
        now = time.monotonic()
        next_due = now + timeout
        for lane in run.lanes:
            item = lane.item
            if item is None or lane.abandoned or item.position in run.results:
                continue
            due = item.started + timeout
            if due <= now:
                lane.abandoned = True
                run.time_out(item, PER_CHECK)
                lane.event.set()
            else:
                next_due = min(next_due, due)
        await anyio.sleep(max(next_due - time.monotonic(), 0.001))
