"""Running health checks: which services, in what order, how many at once, for how long.

The path of one call, top to bottom:

- :func:`report` joins an identical call already in flight, or leads a new one;
- :func:`_collect` picks every built, checkable service visible from the scope, last
  built first;
- :func:`_run` bounds the call by its global deadline and drives the queue: checks that
  finish without suspending run one after another in the calling task, with no task,
  thread or timer of their own;
- :func:`_work` is one worker: the first check that suspends (or needs a thread) moves
  the call into a task group, where another worker is started each time one suspends,
  up to the parallelism, and one :func:`_watch` task per call cancels or abandons checks
  that overrun the per-check timeout;
- :class:`_Lane` hands sync checks to a worker thread, which keeps running the sync
  checks that follow in the queue.

Whatever a check does, it ends in the report exactly once: healthy (with the mapping
it returned, if any, as its details), unhealthy (whatever it raised, ``BaseException``
included, or a cancellation that the engine did not cause), timed out (its deadline
passed, even if it then returned), or degraded (it raised :class:`~di.Degraded`, or its
service is not critical and it failed or timed out). A sync check still running
from an earlier or overlapping call is not started twice: later calls share its outcome,
and call it stuck only once its own deadline has passed.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from .._container import views
from .._container.runner import (
    Threads,
    any_cancellation,
    cancel_requests,
    cancelled_from_outside,
    is_cancellation,
    loop_notifier,
)
from .._container.service import MISSING, Service
from ..errors import (
    HealthCheckError,
    HealthCheckTimeoutError,
    NoHealthCheckError,
    ServiceNotBuiltError,
)
from ..health import Degraded, HealthCheckResult, HealthReport, Outcome

if TYPE_CHECKING:
    from ..injector import Injector
    from ..scope import Scope

logger = logging.getLogger("di.health")


def _no_check() -> None:
    """Stands in Service.probe for a built service that has no health check."""


NO_CHECK: Final[tuple[Callable[[], Any], bool]] = (_no_check, False)
PER_CHECK: Final = "per-check"
GLOBAL: Final = "global"
ROUND: Final = "round"


class Item:
    """One service to check in one call."""

    __slots__ = (
        "attempt",
        "call",
        "is_async",
        "own_stall",
        "position",
        "scope",
        "service",
        "shared",
        "stall_base",
        "started",
        "started_at",
    )

    def __init__(self, service: Service, scope: str, call: Callable[[], Any], is_async: bool):
        self.service = service
        self.scope = scope
        self.call = call
        self.is_async = is_async
        self.position = 0  # in the call's order
        self.started = 0.0  # time.monotonic() when the check started; 0 while queued
        self.started_at = 0.0  # time.time() at the same moment
        self.attempt: Attempt | None = None  # for a sync check: the run it belongs to
        self.shared = False  # True when that run belongs to another call
        # Time the loop spent running checks' code while this one was in flight
        # (``_Run.stall`` at its start) and running its own code: an async check is not
        # charged for the loop time its neighbours took.
        self.stall_base = 0.0
        self.own_stall = 0.0

    def credit(self, run: _Run) -> float:
        """Loop time other checks took while this async check was in flight."""
        return run.stall.total - self.stall_base - self.own_stall if self.is_async else 0.0


class _Unfinished(HealthCheckError):
    """A shared run whose call ended before it did: there is no outcome to share."""


class Attempt:
    """One run of a sync check in a thread, whose outcome overlapping calls share."""

    __slots__ = (
        "abandoned",
        "deadline",
        "ended",
        "error",
        "started",
        "started_at",
        "value",
        "waiters",
    )

    def __init__(self, started: float, started_at: float, deadline: float) -> None:
        self.started = started
        self.started_at = started_at
        self.deadline = deadline  # time.monotonic() after which it is stuck
        self.ended = 0.0  # time.monotonic() when the check returned; 0 while running
        self.error: Exception | None = None
        self.value: Any = None  # what the check returned (its details, if a mapping)
        self.waiters: list[Callable[[], None]] = []
        self.abandoned = False


class HealthSettings:
    """An injector's health-check settings, and the state every call on its tree shares."""

    __slots__ = (
        "flights",
        "global_timeout",
        "on_check",
        "parallelism",
        "slots",
        "threads",
        "timeout",
    )

    def __init__(
        self,
        *,
        parallelism: int,
        timeout: float | None,
        global_timeout: float | None,
        on_check: Callable[[str, HealthCheckResult], object] | None,
        threads: Threads,
    ) -> None:
        self.parallelism = parallelism
        self.timeout = timeout
        self.global_timeout = global_timeout
        self.on_check = on_check
        self.slots = Slots(parallelism)  # the pool of checks running at once
        self.threads = threads  # worker threads for sync checks and shutdown hooks
        self.flights: dict[Any, _Flight] = {}  # identical calls in flight


class _Stall:
    """Seconds an event loop's thread spent running checks' code (one per thread)."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0.0


_stalls = threading.local()


def _loop_stall() -> _Stall:
    stall: _Stall | None = getattr(_stalls, "stall", None)
    if stall is None:
        stall = _stalls.stall = _Stall()
    return stall


# The sync checks running now, by service, and the lock for waiting on one of them.
_RUNNING: dict[Service, Attempt] = {}
_ATTEMPTS = threading.Lock()
_stuck = 0  # abandoned check threads that have not returned yet
# One line per service per interval about its abandoned threads: (last logged, held back).
ABANDON_LOG_INTERVAL = 60.0
_abandon_log: dict[Service, tuple[float, int]] = {}


def _conclude(
    service: Service, attempt: Attempt, error: Exception | None, value: Any = None
) -> None:
    """Record how a sync check's run ended, free the service, wake the calls sharing it."""
    global _stuck
    with _ATTEMPTS:
        attempt.error = error
        attempt.value = value
        attempt.ended = time.monotonic()
        if _RUNNING.get(service) is attempt:
            del _RUNNING[service]
        waiters, attempt.waiters = attempt.waiters, []
        if attempt.abandoned:
            _stuck -= 1
    for wake in waiters:
        wake()


def _abandon(item: Item, limit: str) -> None:
    """Log, once per run, that a sync check's thread is left behind."""
    global _stuck
    attempt = item.attempt
    with _ATTEMPTS:
        if attempt is None or attempt.abandoned or attempt.ended:
            return
        attempt.abandoned = True
        _stuck += 1
        stuck = _stuck
    service = item.service
    label = service.label
    now = time.monotonic()
    with _ATTEMPTS:
        last, held = _abandon_log.get(service, (-math.inf, 0))
        if now - last < ABANDON_LOG_INTERVAL:  # a check that overruns every round
            _abandon_log[service] = (last, held + 1)
            return
        if len(_abandon_log) > 1024:
            _abandon_log.clear()  # services come and go: a bounded memory of them
        _abandon_log[service] = (now, 0)
    logger.warning(
        "health check of %r overran %s; its thread is abandoned and the check is not "
        "started again until it returns (%d %s stuck in health checks)%s",
        label,
        limit,
        stuck,
        "thread" if stuck == 1 else "threads",
        f"; {held} more abandoned since the last such line" if held else "",
    )


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
    root = scope.root
    key = (scope, only, round_timeout)
    while True:
        with root._mutex:
            flight = root._health.flights.get(key)
            leader = flight is None
            if flight is None:
                flight = root._health.flights[key] = _Flight()
            else:
                joined = anyio.Event()
                notify = loop_notifier()
                flight.waiters.append(functools.partial(notify, joined.set))
        if leader:
            return await _lead(root, key, flight, scope, only, round_timeout)
        await joined.wait()
        if isinstance(flight.outcome, HealthReport):
            return flight.outcome
        if isinstance(flight.outcome, BaseException) and not any_cancellation(flight.outcome):
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
            del root._health.flights[key]
            waiters = flight.waiters
        for wake in waiters:
            wake()


# -- what is checked, in which order ---------------------------------------------------


def _collect(scope: Scope, only: Service | None) -> list[Item]:
    """Built services with a check visible from ``scope``, last built first.

    A key is taken from the nearest scope that provides it, so an ancestor's service
    shadowed by a child is not checked, and each service is checked once.
    """
    items: list[Item] = []
    for owner, service, instance in views.built(scope):
        if only is not None and service is not only:
            continue
        probe = service.probe
        if probe is None:
            probe = service.probe = probe_of(service, instance)
        if probe is not NO_CHECK:
            items.append(Item(service, owner, probe[0], probe[1]))
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
    try:
        method = getattr(instance, "health_check", None)
    except Exception as error:  # a proxy whose attribute lookup fails: its check fails
        failure = error

        def broken() -> None:
            raise failure

        return broken, False
    if not callable(method):
        return NO_CHECK
    return method, inspect.iscoroutinefunction(method)


async def check_one(scope: Scope, service: Service) -> Exception | None:
    """Check one service as a full call would: same timeouts, pool and single flight.

    A check never builds a service; one not built yet, or with no check, is an error.
    """
    instance = views.instance_of(service)
    if instance is MISSING:
        raise ServiceNotBuiltError(service.label, service.owner.name)
    if service.probe is None:
        service.probe = probe_of(service, instance)
    if service.probe is NO_CHECK:
        raise NoHealthCheckError(service.label)
    checks = (await report(scope, service)).checks
    if not checks:  # shut down (or rebuilt) meanwhile
        raise ServiceNotBuiltError(service.label, service.owner.name)
    return checks[0].error


# -- one call --------------------------------------------------------------------------


class _Run:
    """The shared state of one call: the ordered queue, the workers and the results.

    Worker tasks and worker threads share it without a lock on the hot path: taking the
    next check is one ``next()`` on an iterator and recording a result one
    ``dict.setdefault``, each atomic, so the first of a check's finish, its timeout or
    the global deadline wins and threads never queue behind each other.
    """

    def __init__(self, root: Injector, items: list[Item], round_timeout: float | None) -> None:
        self.items = items
        self._queue = iter(items)
        self.results: dict[int, HealthCheckResult] = {}
        settings = root._health
        self.timeout: float | None = settings.timeout
        global_timeout = settings.global_timeout
        self.limit = GLOBAL
        if round_timeout is not None and (global_timeout is None or round_timeout < global_timeout):
            global_timeout, self.limit = round_timeout, ROUND
        self.global_timeout = global_timeout
        self.deadline = math.inf if global_timeout is None else time.monotonic() + global_timeout
        self.on_check = settings.on_check
        self.threads: Threads = settings.threads
        self.slots: Slots = settings.slots
        parallelism = settings.parallelism
        self.max_workers = min(parallelism, len(items)) if parallelism else len(items)
        self.notify: Callable[[Callable[[], object]], None] | None = None
        self.tasks: anyio.abc.TaskGroup | None = None
        self.workers: list[_Worker] = []
        self.lanes: list[_Lane] = []
        self.watch_scope: anyio.CancelScope | None = None
        self.started = 0  # workers started, the caller's included
        self.waiting = 0  # workers waiting on a check now
        self.active = 0  # workers not finished yet
        self.exhausted = False
        self.closed = False
        # Seconds the loop spent inside checks' code, across every call on this loop.
        self.stall = _loop_stall()

    # -- the queue -------------------------------------------------------------------

    def take(self) -> Item | None:
        """The next check to start, now marked started; None when there is none.

        A sync check already running (from another call) is returned shared, for the
        caller to wait on its outcome; one stuck past its own deadline is reported as
        timed out at once and not started again.
        """
        while not self.closed:
            item = next(self._queue, None)
            if item is None:
                self.exhausted = True
                return None
            now = time.monotonic()
            if now >= self.deadline:
                self.closed = True  # the global deadline passed while the loop was busy
                return None
            item.started, item.started_at = now, time.time()
            if item.is_async:
                item.stall_base = self.stall.total
                return item
            due = math.inf if self.timeout is None else now + self.timeout
            attempt = Attempt(now, item.started_at, due)
            running = _RUNNING.setdefault(item.service, attempt)
            item.attempt = running
            if running is attempt:
                return item
            if running.deadline > now:
                item.shared = True
                item.started, item.started_at = running.started, running.started_at
                return item
            # Reported with the time it has been running, not the instant it took to see it.
            item.started, item.started_at = running.started, running.started_at
            self.finish(item, self._stuck_error(item), Outcome.TIMEOUT)
        return None

    def retake(self, item: Item) -> bool:
        """Start ``item`` again after the run it shared ended with no outcome.

        False when it was reported meanwhile (the call's deadline passed).
        """
        now = time.monotonic()
        if item.position in self.results or self.closed or now >= self.deadline:
            return False
        item.started, item.started_at = now, time.time()
        due = math.inf if self.timeout is None else now + self.timeout
        attempt = Attempt(now, item.started_at, due)
        running = _RUNNING.setdefault(item.service, attempt)
        item.attempt, item.shared = running, running is not attempt
        if item.shared:
            item.started, item.started_at = running.started, running.started_at
        return True

    def _stuck_error(self, item: Item) -> HealthCheckTimeoutError:
        return HealthCheckTimeoutError(
            item.service.label,
            PER_CHECK,
            self.timeout or 0.0,
            "it is still running from an earlier call and is not started again until it returns",
        )

    # -- results ---------------------------------------------------------------------

    def conclude(
        self, item: Item, error: BaseException | None, ended: float = 0.0, value: Any = None
    ) -> None:
        """Report how ``item`` ended, as a timeout if it ended past a deadline.

        A check fails by raising (anything) or by returning False; a mapping it returns
        is its details.
        """
        if item.position in self.results:
            return
        ended = ended or time.monotonic()
        if error is None and value is not None and value is not True:
            error = _verdict(item, value)
        if self.timeout is not None and ended - item.started - item.credit(self) > self.timeout:
            self.time_out(item, PER_CHECK, ended)
        elif ended > self.deadline:
            self.time_out(item, self.limit, ended)
        elif error is None:
            if value is None:  # the common case, kept as short as it can be
                self.finish(item, None, Outcome.HEALTHY, ended)
            else:
                details = value if isinstance(value, Mapping) else None
                self.finish(item, None, Outcome.HEALTHY, ended, details)
        else:
            self.finish(item, as_exception(item.service.label, error), Outcome.UNHEALTHY, ended)

    def time_out(self, item: Item, limit: str, ended: float = 0.0) -> None:
        seconds = self.timeout if limit == PER_CHECK else self.global_timeout
        error = HealthCheckTimeoutError(item.service.label, limit, seconds or 0.0)
        self.finish(item, error, Outcome.TIMEOUT, ended)

    def finish(
        self,
        item: Item,
        error: Exception | None,
        outcome: Outcome,
        ended: float = 0.0,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record ``item``'s result, unless it has one; a failure may be only degraded."""
        if item.position in self.results:
            return  # already reported (as timed out)
        ended = ended or time.monotonic()
        if not item.started:
            item.started, item.started_at = ended, time.time()
        if error is not None:
            degraded = _degraded(error)
            if degraded is not None and outcome is Outcome.UNHEALTHY:
                outcome, details = Outcome.DEGRADED, degraded.details
            elif not item.service.critical:
                outcome = Outcome.DEGRADED
        if details is not None:
            details = json_ready(details)
        result = HealthCheckResult(
            item.service.label,
            item.scope,
            outcome,
            error,
            item.started_at,
            ended - item.started,
            details,
        )
        if self.results.setdefault(item.position, result) is not result:
            return  # another path reported it first
        if self.on_check is not None:
            try:
                self.on_check(item.service.label, result)
            except BaseException:
                logger.exception("the on_health_check hook failed for %r", item.service.label)

    def settle(self, expired: bool) -> HealthReport:
        """The report, with every check that has no result yet reported all the same.

        A sync check whose thread is still running is left behind, and logged once.
        """
        self.closed = True
        for lane in self.lanes:
            running = lane.item
            if running is not None and not lane.abandoned:
                lane.abandoned = True
                _abandon(running, f"the {self.limit} timeout of {self.global_timeout or 0:g} s")
        if len(self.results) < len(self.items):
            for item in self.items:
                if item.position in self.results:
                    continue
                if expired or time.monotonic() >= self.deadline:
                    self.time_out(item, self.limit)
                else:
                    error = HealthCheckError(item.service.label, "it ended without a result")
                    self.finish(item, error, Outcome.UNHEALTHY)
        results = self.results
        return HealthReport(tuple(results[i] for i in range(len(self.items))))

    # -- workers ---------------------------------------------------------------------

    def grow(self) -> None:
        """A worker is about to wait: if every worker is waiting, start another.

        Workers that can still run take the next checks themselves, so a helper is
        started only when none can, up to the parallelism; the first wait also starts
        the call's watchdog and readies the loop notifier. Pair with :meth:`resume`.
        """
        assert self.tasks is not None
        if self.notify is None:
            self.notify = loop_notifier()
            if self.timeout is not None:
                self.tasks.start_soon(_watch, self)
        self.waiting += 1
        if (
            self.waiting >= self.started
            and self.started < self.max_workers
            and not self.exhausted
            and not self.closed
        ):
            # As many again as are started (1, 2, 4, ...): the pool reaches a hundred
            # waiting checks in a few turns of the loop, not a hundred.
            more = min(self.started, self.max_workers - self.started)
            self.started += more
            self.active += more
            for _ in range(more):
                self.tasks.start_soon(_helper, self)

    def resume(self) -> None:
        """A worker that waited runs again."""
        self.waiting -= 1


def _verdict(item: Item, value: Any) -> HealthCheckError | None:
    """What a check's return value says: False, or a generator never run, is a failure."""
    label = item.service.label
    if value is False:
        return HealthCheckError(label, "it returned False")
    if inspect.iscoroutine(value) or inspect.isgenerator(value) or inspect.isasyncgen(value):
        _close(value)
        kind = type(value).__name__
        return HealthCheckError(
            label, f"it returned a {kind} that was never run; a check must raise to fail"
        )
    return None


def _degraded(error: Exception) -> Degraded | None:
    """The Degraded a check raised, also from a task group where only Degraded was raised."""
    if isinstance(error, Degraded):
        return error
    if isinstance(error, BaseExceptionGroup):
        matched, rest = error.split(Degraded)
        if matched is not None and rest is None:
            leaves: list[BaseException] = list(matched.exceptions)
            while leaves and isinstance(leaves[0], BaseExceptionGroup):
                leaves = list(leaves[0].exceptions)
            first = leaves[0] if leaves else None
            return first if isinstance(first, Degraded) else Degraded(str(error))
    return None


def json_ready(details: Any) -> dict[str, Any] | None:
    """A check's details as JSON can carry them: string keys, plain values, finite numbers.

    Anything else is shown by its text, so that no answer or report fails on them.
    """
    if not isinstance(details, Mapping):
        return None
    return {str(key): _plain(value, 0) for key, value in details.items()}


def _plain(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < 4 and isinstance(value, Mapping):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    return str(value)


def as_exception(label: str, error: BaseException) -> Exception:
    """What a check raised, as the Exception a report holds."""
    if isinstance(error, Exception):
        return error
    wrapped = HealthCheckError(label, f"it raised {type(error).__name__}")
    wrapped.__cause__ = error
    return wrapped


async def _run(root: Injector, items: list[Item], round_timeout: float | None) -> HealthReport:
    """Run the checks with at most ``parallelism`` at once, under the global deadline."""
    run = _Run(root, items, round_timeout)
    if not items:
        return HealthReport(())
    expired = False
    try:
        if run.global_timeout is None:
            await _work(run)
        else:
            with anyio.CancelScope(deadline=anyio.current_time() + run.global_timeout) as bounded:
                await _work(run)
            expired = bounded.cancel_called
    except BaseExceptionGroup as group:
        raise _first(group) from None
    finally:
        run.closed = True  # threads still running checks take no more
    return run.settle(expired)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a worker raised past its checks (a cancellation, a bug), unwrapped."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class _Worker:
    """What one worker is waiting on now, for the watchdog."""

    __slots__ = ("item", "scope")

    def __init__(self) -> None:
        self.item: Item | None = None  # the suspended async check
        self.scope: anyio.CancelScope | None = None


# A step of a check that suspended: the item, and what is left to await.
_Pending = tuple[Item, Any]


async def _work(run: _Run) -> None:
    """The calling task's worker, which starts helpers only once a check waits.

    Checks that finish without suspending run here one after another, with no task,
    thread or timer of their own; a check is started and resumed under the same cancel
    scope, as any coroutine must be.
    """
    await run.slots.acquire()
    run.started = run.active = 1
    try:
        async with anyio.create_task_group() as tasks:
            run.tasks = tasks
            try:
                await _serve(run)
            finally:
                _leave(run)
    finally:
        run.slots.release()


async def _helper(run: _Run) -> None:
    """A worker started when another one waits: holds a slot while it takes checks."""
    try:
        await run.slots.acquire()
        try:
            await _serve(run, helper=True)
        finally:
            run.slots.release()
    finally:
        _leave(run)


def _leave(run: _Run) -> None:
    run.active -= 1
    if run.active == 0 and run.watch_scope is not None:
        run.watch_scope.cancel()


def _first_step(run: _Run, item: Item, awaitable: Any = None) -> _Pending | None:
    """Start an async check; report it if it ended at once, else return it suspended."""
    began = time.monotonic()
    try:
        if awaitable is None:
            awaitable = item.call()
        steps = awaitable if inspect.iscoroutine(awaitable) else awaitable.__await__()
        yielded = steps.send(None)
    except StopIteration as stop:
        ended = time.monotonic()
        run.conclude(item, None, ended, stop.value)
        run.stall.total += ended - began
        return None
    except BaseException as error:  # it never suspended: nothing outside caused this
        ended = time.monotonic()
        run.conclude(item, error, ended)
        run.stall.total += ended - began
        return None
    took = time.monotonic() - began
    run.stall.total += took
    item.own_stall += took
    return item, (steps, yielded)


@types.coroutine
def _resume(run: _Run, item: Item, steps: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Await the rest of a check already started by :func:`_first_step`.

    Each step is timed: the loop time it takes is charged to this check alone.
    """
    while True:
        step: Callable[[Any], Any]
        try:
            step, argument = steps.send, (yield yielded)
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as thrown:  # a cancellation delivered to the waiting check
            step, argument = steps.throw, thrown
        began = time.monotonic()
        try:
            yielded = step(argument)
        except StopIteration as stop:
            return stop.value
        finally:
            took = time.monotonic() - began
            run.stall.total += took
            item.own_stall += took


async def _serve(run: _Run, helper: bool = False) -> None:
    """A worker's loop, under cancel scopes that only the watchdog cancels.

    Nothing outside cancels a helper's task natively (its task group cancels through
    a cancel scope): a native cancellation there comes from a check cancelling its own
    task, and is that check's failure.
    """
    worker = _Worker()
    run.workers.append(worker)
    lane: _Lane | None = None
    baseline = -1 if helper else cancel_requests()
    try:
        while True:
            with anyio.CancelScope() as scope:
                worker.scope = scope
                lane = await _serve_in_scope(run, worker, scope, lane, baseline)
            if not scope.cancel_called:
                return
            # The scope is spent (a check overran): carry on in a new one.
    finally:
        worker.item = None
        run.workers.remove(worker)


async def _serve_in_scope(
    run: _Run,
    worker: _Worker,
    scope: anyio.CancelScope,
    lane: _Lane | None,
    baseline: int,
) -> _Lane | None:
    """Take and run checks until the queue is empty or the watchdog cancels the scope."""
    pending: _Pending | None = None
    while True:
        if pending is None:
            item = run.take()
            if item is None:
                return lane
            if item.is_async:
                pending = _first_step(run, item)
                if pending is None:
                    continue
            else:
                pending = item, None
        item, rest = pending
        pending = None
        if item.shared:
            run.grow()
            try:
                again = await _share(run, item)
            finally:
                run.resume()
            if again and run.retake(item):
                pending = item, None  # its own run now, or another call's to share
            continue
        if rest is None and not item.is_async:
            if lane is None or lane.abandoned:
                lane = _Lane(run)
            run.grow()
            try:
                handed_back = await lane.start(item)
            finally:
                run.resume()
            if handed_back is None:
                continue
            item, awaitable = handed_back
            if item.shared:
                pending = handed_back
                continue
            pending = _first_step(run, item, awaitable)
            if pending is None:
                _conclude_if_sync(item, run)
                continue
            item, rest = pending
            pending = None
        assert rest is not None  # a started async check: (its steps, what it yielded)
        run.grow()
        worker.item = item
        error: BaseException | None = None
        value: Any = None
        try:
            value = await _resume(run, item, rest[0], rest[1])
        except BaseException as caught:
            error = caught
        finally:
            worker.item = None
            run.resume()
        if scope.cancel_called:
            run.time_out(item, PER_CHECK)  # the watchdog fired, whatever the check did
            _conclude_if_sync(item, run)
            return lane
        if error is not None and is_cancellation(error) and _from_outside(baseline):
            _conclude_if_sync(item, run, error)
            raise error
        run.conclude(item, error, value=value)
        _conclude_if_sync(item, run)


def _from_outside(baseline: int) -> bool:
    """Whether a cancellation reaching a worker was caused outside the checks."""
    if baseline < 0:  # a helper: only its cancel scopes count
        return anyio.current_effective_deadline() == -math.inf
    return cancelled_from_outside(baseline)


def _conclude_if_sync(item: Item, run: _Run, error: BaseException | None = None) -> None:
    """A sync callable's awaitable was awaited: its run is over, for sharing calls too."""
    if item.attempt is not None and not item.shared:
        result = run.results.get(item.position)
        if result is not None:
            _conclude(item.service, item.attempt, result.error, result.details)
        else:  # the call that started it was cancelled: nothing to share
            _conclude(item.service, item.attempt, _unfinished(item))


async def _share(run: _Run, item: Item) -> bool:
    """Wait for the run of a sync check that another call started, up to its deadline.

    True when that run ended with no outcome (its call was cancelled): check it anew.
    """
    attempt = item.attempt
    assert attempt is not None and run.notify is not None
    done = anyio.Event()
    with _ATTEMPTS:
        running = not attempt.ended
        if running:
            attempt.waiters.append(functools.partial(run.notify, done.set))
    if running:
        wait = attempt.deadline - time.monotonic()
        with anyio.move_on_after(None if math.isinf(wait) else max(wait, 0.0)):
            await done.wait()
    if attempt.ended and isinstance(attempt.error, _Unfinished):
        return True
    if attempt.ended and attempt.ended <= attempt.deadline:
        run.conclude(item, attempt.error, attempt.ended, attempt.value)
    else:
        run.time_out(item, PER_CHECK)
    return False


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
        if self._unlimited:
            return
        with self._lock:
            if self._free > 0:
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
        if self._unlimited:
            return
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

    What the thread cannot run on its own comes back to the worker: an async check it
    took from the queue, a sync check another call is running (to share), or the
    awaitable a sync callable returned.
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
        assert notify is not None
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
                if item.is_async or item.shared:
                    self.pending = (item, None)
                    return
                self.item = item
                attempt = item.attempt
                assert attempt is not None
                error: BaseException | None = None
                result: Any = None
                try:
                    result = item.call()
                except BaseException as caught:  # in a worker thread, even SystemExit
                    error = caught  # is this check's failure
                ended = time.monotonic()
                if error is None and inspect.isawaitable(result):
                    # A sync callable that returned a coroutine (``lambda c: c.ping()``):
                    # the worker awaits it on the loop, within the same deadline.
                    item.service.probe = (item.call, True)
                    if self.abandoned or run.closed:
                        _close(result)
                        _conclude(item.service, attempt, _unfinished(item))
                        return
                    self.pending = (item, result)
                    return
                if error is None and result is not None and result is not True:
                    error = _verdict(item, result)
                failure = None if error is None else as_exception(item.service.label, error)
                _conclude(item.service, attempt, failure, result)
                if self.abandoned or run.closed:
                    return
                run.conclude(item, error, ended, result)
                item = run.take()
        except BaseException as fatal:
            self.fatal = fatal
        finally:
            self.item = None
            wake()


def _unfinished(item: Item) -> _Unfinished:
    return _Unfinished(
        item.service.label,
        "the call that started it ended before it finished; the next call checks it again",
    )


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


async def _watch(run: _Run) -> None:
    """The call's watchdog: time out checks that overrun the per-check timeout.

    An async check's worker scope is cancelled; a sync check's thread is abandoned and
    its worker carries on with a fresh one. Wakes only when the oldest running check is
    due, so a call whose checks finish in time costs one sleep.
    """
    timeout = run.timeout
    assert timeout is not None
    with anyio.CancelScope() as run.watch_scope:
        while run.active:
            now = time.monotonic()
            next_due = now + timeout
            for worker in run.workers:
                item = worker.item
                if item is None or item.position in run.results:
                    continue
                due = item.started + timeout + item.credit(run)
                if due <= now:
                    run.time_out(item, PER_CHECK)
                    assert worker.scope is not None
                    worker.scope.cancel()
                else:
                    next_due = min(next_due, due)
            for lane in run.lanes:
                item = lane.item
                if item is None or lane.abandoned or item.position in run.results:
                    continue
                due = item.started + timeout
                if due <= now:
                    lane.abandoned = True
                    run.time_out(item, PER_CHECK)
                    _abandon(item, f"its per-check timeout of {timeout:g} s")
                    lane.event.set()
                else:
                    next_due = min(next_due, due)
            await anyio.sleep(max(next_due - time.monotonic(), 0.0005))
