"""Running health checks: which services, in what order, how many at once, for how long.

The path of one call, top to bottom:

- :func:`report` joins an identical call already in flight, or leads a new one;
- :func:`_collect` picks every built, checkable service visible from the scope, last
  built first (through :func:`di._container.views.built`);
- :func:`drive` bounds the call by its global deadline and hands the ordered queue of a
  :class:`Call` to the workers (:mod:`di._health.workers`): checks that finish without
  suspending run one after another in the calling task, with no task, thread or timer
  of their own (:mod:`di._health.stepping`); the first check that suspends (or needs a
  thread) moves the call into a task group, and one watchdog per call cancels or
  abandons checks that overrun the per-check timeout;
- :meth:`Call.judge` turns how each check ended into its result
  (:mod:`di._health.verdicts`), and :meth:`Call.settle` the results into the report.

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
import operator
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from .._container import views
from .._container.runner import Threads, any_cancellation, loop_notifier
from .._container.service import MISSING, Service
from ..errors import (
    HealthCheckError,
    HealthCheckTimeoutError,
    NoHealthCheckError,
    ServiceNotBuiltError,
)
from ..health import DEFAULT_POLICY, HealthCheckResult, HealthPolicy, HealthReport, Outcome
from . import causes
from .settings import (
    GLOBAL,
    PER_CHECK,
    ROUND,
    Attempt,
    Attempts,
    HealthSettings,
    SharedCall,
    Slots,
)
from .verdicts import as_exception, degraded_details, inspectable, json_ready, verdict
from .verdicts import degraded as degraded_by
from .workers import Lane, WorkerState, helper, watch, work

if TYPE_CHECKING:
    from ..scope import Scope


logger = logging.getLogger("di.health")

# Whether a monitor's round checks a service whose policy spaces its checks out.
Due = Callable[[Service, HealthPolicy], bool]


def _no_check() -> None:
    """Stands in Service.probe for a built service that has no health check."""


NO_CHECK: Final[tuple[Callable[[], Any], bool]] = (_no_check, False)


class Item:
    """One service to check in one call."""

    __slots__ = (
        "attempt",
        "call",
        "is_async",
        "own_stall",
        "policy",
        "position",
        "scope",
        "service",
        "shared",
        "stall_base",
        "started",
        "started_at",
        "timeout",
    )

    def __init__(
        self,
        service: Service,
        scope: str,
        call: Callable[[], Any],
        is_async: bool,
        timeout: float | None,
        policy: HealthPolicy,
    ):
        self.service = service
        self.timeout = timeout  # its per-check timeout: its policy's, or the injector's
        self.policy = policy
        self.scope = scope
        self.call = call
        self.is_async = is_async
        self.position = 0  # in the call's order
        self.started = 0.0  # time.monotonic() when the check started; 0 while queued
        self.started_at = 0.0  # time.time() at the same moment
        self.attempt: Attempt | None = None  # for a sync check: the run it belongs to
        self.shared = False  # True when that run belongs to another call
        # Time the loop spent running checks' code while this one was in flight
        # (``Call.stall`` at its start) and running its own code: an async check is not
        # charged for the loop time its neighbours took.
        self.stall_base = 0.0
        self.own_stall = 0.0

    def credit(self, call: Call) -> float:
        """Loop time other checks took while this async check was in flight."""
        return call.stall.total - self.stall_base - self.own_stall if self.is_async else 0.0


async def report(
    scope: Scope,
    only: Service | None = None,
    *,
    round_timeout: float | None = None,
    policy: HealthPolicy | None = None,
    due: Due | None = None,
) -> HealthReport:
    """Check every service visible from ``scope`` (or just ``only``), sharing identical calls.

    ``round_timeout`` bounds this call on top of the injector's global timeout (the
    monitor's rounds): checks still running then are reported as timed out. ``policy``
    stands for the policy of services provided without one, and ``due`` (a monitor's)
    is asked, for each checked service with its policy, whether to check it now.
    """
    settings: HealthSettings = views.engine_settings(scope)
    key = (scope, only, round_timeout, policy, due)
    while True:
        with settings.lock:
            flight = settings.calls.get(key)
            leader = flight is None
            if flight is None:
                flight = settings.calls[key] = SharedCall()
            else:
                joined = anyio.Event()
                notify = loop_notifier()
                flight.waiters.append(functools.partial(notify, joined.set))
        if leader:
            items = _collect(scope, only, settings.timeout, policy or DEFAULT_POLICY, due)
            return await _lead(settings, key, flight, items, round_timeout)
        await joined.wait()
        if isinstance(flight.outcome, HealthReport):
            return flight.outcome
        if isinstance(flight.outcome, BaseException) and not any_cancellation(flight.outcome):
            raise flight.outcome
        # The leading call was cancelled: this caller runs the checks itself.


async def _lead(
    settings: HealthSettings,
    key: tuple[Any, ...],
    flight: SharedCall,
    items: list[Item],
    round_timeout: float | None,
) -> HealthReport:
    try:
        result = await drive(settings, items, round_timeout)
        flight.outcome = result
        return result
    except BaseException as error:
        flight.outcome = error
        raise
    finally:
        with settings.lock:
            del settings.calls[key]
            waiters = flight.waiters
        for wake in waiters:
            wake()


# -- what is checked, in which order ---------------------------------------------------


def _collect(
    scope: Scope,
    only: Service | None,
    timeout: float | None,
    default: HealthPolicy,
    due: Due | None,
) -> list[Item]:
    """Built services with a check visible from ``scope``, last built first.

    A key is taken from the nearest scope that provides it, so an ancestor's service
    shadowed by a child is not checked, and each service is checked once. Each check's
    policy is its service's, else ``default``; its timeout its policy's, else
    ``timeout`` (the injector's per-check timeout); one whose policy spaces its checks
    out is checked only when ``due`` says so.
    """
    items = Queue()
    shortest = math.inf  # of the policies' own timeouts
    injectors = False  # whether some take the injector's per-check timeout
    for owner, service, instance in views.built(scope):
        if only is not None and service is not only:
            continue
        probe = service.probe
        if probe is None:
            probe = service.probe = probe_of(service, instance)
        if probe is not NO_CHECK:
            policy = service.policy or default
            if policy.plain:  # the common case, kept as short as it can be
                items.append(Item(service, owner, probe[0], probe[1], timeout, policy))
                injectors = True
                continue
            if policy.monitored and due is not None and not due(service, policy):
                continue
            own = policy.timeout
            if own is None:
                own = timeout
                injectors = True
            elif own < shortest:
                shortest = own
            if policy.skip_when_blocked:
                items.skipping = True
            items.append(Item(service, owner, probe[0], probe[1], own, policy))
    if injectors and timeout is not None and timeout < shortest:
        shortest = timeout
    items.tick = None if shortest == math.inf else shortest
    items.sort(key=_BUILT_ORDER, reverse=True)
    for position, item in enumerate(items):
        item.position = position
    return items


_BUILT_ORDER = operator.attrgetter("service.index")  # the order services were built in


class Queue(list[Item]):
    """The items of one call, and what the engine needs to know of them all."""

    __slots__ = ("skipping", "tick")

    def __init__(self) -> None:
        super().__init__()
        self.skipping = False  # whether some policy says skip_when_blocked
        self.tick: float | None = None  # the shortest per-check timeout, None if none


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


class Call:
    """The shared state of one call: the ordered queue, the workers and the results.

    Worker tasks and worker threads share it without a lock on the hot path: taking the
    next check is one ``next()`` on an iterator and recording a result one
    ``dict.setdefault``, each atomic, so the first of a check's finish, its timeout or
    the global deadline wins and threads never queue behind each other.
    """

    def __init__(
        self, settings: HealthSettings, items: list[Item], round_timeout: float | None
    ) -> None:
        self.items = items
        self._queue = iter(items)
        self.results: dict[int, HealthCheckResult] = {}
        # The shortest per-check timeout (the watchdog's tick); None when none has one.
        self.timeout: float | None = (
            items.tick
            if isinstance(items, Queue)
            else min((i.timeout for i in items if i.timeout is not None), default=None)
        )
        self.failed = False  # whether a check failed (its result names what it depends on)
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
        self.workers: list[WorkerState] = []
        self.lanes: list[Lane] = []
        self.watch_scope: anyio.CancelScope | None = None
        self.started = 0  # workers started, the caller's included
        self.waiting = 0  # workers waiting on a check now
        self.active = 0  # workers not finished yet
        self.exhausted = False
        self.closed = False
        self.attempts: Attempts = settings.attempts
        # The sync checks running now: setdefault starts one or finds the run to share.
        self.running = settings.attempts.running
        # Seconds the loop spent inside checks' code, across every call on this loop.
        self.stall = settings.loop_time.here()

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
            due = math.inf if item.timeout is None else now + item.timeout
            attempt = Attempt(now, item.started_at, due)
            running = self.running.setdefault(item.service, attempt)
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
        due = math.inf if item.timeout is None else now + item.timeout
        attempt = Attempt(now, item.started_at, due)
        running = self.running.setdefault(item.service, attempt)
        item.attempt, item.shared = running, running is not attempt
        if item.shared:
            item.started, item.started_at = running.started, running.started_at
        return True

    def _stuck_error(self, item: Item) -> HealthCheckTimeoutError:
        return HealthCheckTimeoutError(
            item.service.label,
            PER_CHECK,
            item.timeout or 0.0,
            "it is still running from an earlier call and is not started again until it returns",
        )

    # -- results ---------------------------------------------------------------------

    def judge(
        self, item: Item, error: BaseException | None, ended: float = 0.0, value: Any = None
    ) -> None:
        """Report how ``item`` ended, as a timeout if it ended past a deadline.

        A check fails by raising (anything) or by returning False; a mapping it returns
        is its details.
        """
        if item.position in self.results:
            return
        ended = ended or time.monotonic()
        if error is not None or value is not None:
            error, value = inspectable(item.service.label, error, value)
        if error is None and value is not None and value is not True:
            error = verdict(item.service.label, value)
        timeout = item.timeout
        took = ended - item.started
        # The credit (loop time its neighbours took) only ever shortens the time charged.
        if timeout is not None and took > timeout and took - item.credit(self) > timeout:
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
        seconds = item.timeout if limit == PER_CHECK else self.global_timeout
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
            degraded = degraded_by(error)
            if degraded is not None and outcome is Outcome.UNHEALTHY:
                outcome, details = Outcome.DEGRADED, degraded_details(degraded)
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
        if error is not None and outcome is not Outcome.DEGRADED:
            self.failed = True
        if self.on_check is not None:
            try:
                self.on_check(item.service.label, result)
            except BaseException:
                logger.exception("the on_health_check hook failed for %r", item.service.label)

    def settle(self, expired: bool) -> dict[int, HealthCheckResult]:
        """The results by position, with every check that has no result yet reported all the same.

        A sync check whose thread is still running is left behind, and logged once.
        """
        self.closed = True
        for lane in self.lanes:
            running = lane.item
            if running is not None and not lane.abandoned:
                lane.abandoned = True
                limit = f"the {self.limit} timeout of {self.global_timeout or 0:g} s"
                self.attempts.abandon(running.service, running.attempt, limit)
        if len(self.results) < len(self.items):
            for item in self.items:
                if item.position in self.results:
                    continue
                if expired or time.monotonic() >= self.deadline:
                    self.time_out(item, self.limit)
                else:
                    error = HealthCheckError(item.service.label, "it ended without a result")
                    self.finish(item, error, Outcome.UNHEALTHY)
        return self.results

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
                self.tasks.start_soon(watch, self)
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
                self.tasks.start_soon(helper, self)

    def resume(self) -> None:
        """A worker that waited runs again."""
        self.waiting -= 1


async def drive(
    settings: HealthSettings, items: list[Item], round_timeout: float | None
) -> HealthReport:
    """Run the checks with at most ``parallelism`` at once, under the global deadline;
    a failed check names the failed checks it depends on (:mod:`di._health.causes`).

    Checks whose policy says ``skip_when_blocked`` run after those they depend on, in
    rounds of one call each under the same deadline (see :func:`_in_rounds`).
    """
    if not items:
        return HealthReport(())
    if not isinstance(items, Queue) or items.skipping:
        rounds = causes.levels(items)
        if len(rounds) > 1:
            return await _in_rounds(settings, items, rounds, round_timeout)
    call = Call(settings, items, round_timeout)
    results = await _run(call)
    if call.failed:
        results = causes.with_causes(items, results)
    return HealthReport(tuple(map(results.__getitem__, range(len(items)))))


async def _run(call: Call) -> dict[int, HealthCheckResult]:
    """Run one call's checks to the end (or its deadline); its results by position."""
    expired = False
    try:
        if call.deadline == math.inf:
            await work(call)
        else:
            remaining = max(call.deadline - time.monotonic(), 0.0)
            with anyio.CancelScope(deadline=anyio.current_time() + remaining) as bounded:
                await work(call)
            expired = bounded.cancel_called
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None
    finally:
        call.closed = True  # threads still running checks take no more
    return call.settle(expired)


async def _in_rounds(
    settings: HealthSettings,
    items: list[Item],
    rounds: list[list[Item]],
    round_timeout: float | None,
) -> HealthReport:
    """Run ``rounds`` one after another, each a call, all under the first's deadline;
    a check of a later round whose dependency failed is not run (``blocked_by``)."""
    order = {item.service: position for position, item in enumerate(items)}
    done: dict[Service, HealthCheckResult] = {}
    deadline = math.inf
    for level, members in enumerate(rounds):
        runnable: list[Item] = []
        for item in members:
            skipped = causes.blocked(item, done, time.time()) if level else None
            if skipped is None:
                runnable.append(item)
            else:
                done[item.service] = skipped
                if settings.on_check is not None:
                    try:
                        settings.on_check(item.service.label, skipped)
                    except BaseException:
                        logger.exception(
                            "the on_health_check hook failed for %r", item.service.label
                        )
        if not runnable:
            continue
        for position, item in enumerate(runnable):
            item.position = position
        call = Call(settings, runnable, round_timeout)
        if level:
            call.deadline = min(call.deadline, deadline)
        deadline = call.deadline
        results = await _run(call)
        for item in runnable:
            done[item.service] = results[item.position]
    for item in items:
        item.position = order[item.service]
    results = {item.position: done[item.service] for item in items}
    if any(not result.healthy for result in results.values()):
        results = causes.with_causes(items, results)
    return HealthReport(tuple(map(results.__getitem__, range(len(items)))))


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a worker raised past its checks (a cancellation, a bug), unwrapped."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
