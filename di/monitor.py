"""Health over time: re-check in the background, serve statuses by name, watch changes.

The path of one round, top to bottom:

- :meth:`HealthMonitor.run` calls :meth:`HealthMonitor.check` every ``interval``; a
  round is the engine's ``report()`` bounded by ``timeout`` (a span when traced, see
  :mod:`di._health.observe`), and its changes are logged there;
- :meth:`HealthMonitor._publish` recomputes every name's status and publishes one
  :class:`HealthSnapshot`, the value every reader renders (HTTP answers, the gRPC
  servicer, metrics, the monitor's own methods); setting a status, graceful shutdown
  and checks falling overdue publish the same way;
- a round's snapshot is appended to each name's history (:mod:`di._monitor.history`);
- a change of statuses wakes :meth:`HealthMonitor.watch` iterations.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from . import _health  # the engine's entry point, for rounds bounded by ``timeout``
from ._container import views
from ._container.runner import (
    LoopEvent,
    after_fork_in_child,
    cancel_requests,
    cancelled_from_outside,
    in_event_loop,
    is_cancellation,
)
from ._health import observe
from ._health.settings import check_seconds
from ._monitor import groups as grouping
from ._monitor.history import History, HistoryEntry, history_size
from ._monitor.policies import Rounds
from ._monitor.snapshot import (
    FAILED,
    NOT_STARTED,
    STARTED,
    STARTING,
    STARTUP,
    HealthSnapshot,
    ServingStatus,
    State,
    compose,
)
from .errors import ServiceNotFoundError
from .health import (
    DEFAULT_POLICY,
    HealthCheckResult,
    HealthPolicy,
    HealthReport,
    Status,
    explain_error,
)
from .scope import Scope

if TYPE_CHECKING:
    from ._container.service import Service

__all__ = ["HealthMonitor", "HealthSnapshot", "HistoryEntry", "ServingStatus"]

# The top-level fields of health+json that HealthMonitor(info=...) may set.
INFO_FIELDS = ("version", "releaseId", "serviceId", "description")

Unbuilt = Literal["warn", "fail", "ignore"]
UNBUILT = ("warn", "fail", "ignore")

logger = logging.getLogger("di.health")


class HealthMonitor:
    """Runs an injector's health checks every ``interval`` and publishes the statuses.

    The monitor publishes, requests read: :meth:`run` (or ``async with monitor``) is
    the only place checks run on their own, and every answer of the HTTP and gRPC
    endpoints is read from what the monitor last published, so no request waits for a
    check. Those endpoints need the monitor running: ``di serve`` runs it, and so does
    :func:`di.asgi.health_app` when it is the top ASGI app.

    Names: ``""`` is the whole application (SERVING when every check passes), each
    checked service key is its own name, and each group is a name. A group lists
    services by type or name, or ``"*"`` for every checked service; it is SERVING when
    each of its members was checked and passed. An empty group checks nothing and is
    SERVING while the process runs, which is what liveness should be. Defaults:
    ``{"liveness": [], "readiness": ["*"]}``; ``groups`` adds to and overrides them.

    Startup: every name but the empty groups reads NOT_SERVING until :meth:`start`
    (the injector's ``astart()``, which builds its eager services) and then one round of
    checks have completed. Each round is bounded by ``timeout`` (default ``interval``)
    whatever the injector's own timeouts: a check still running then is reported as
    timed out. If no round completes for ``stale_after`` seconds (default
    ``2 * (interval + timeout)``), the same names read NOT_SERVING, "health checks
    overdue", until one does.

    Policies: ``policy`` (a :class:`~di.HealthPolicy`) is the policy of every service
    provided without one. A service's ``interval`` spaces its checks out (its last
    result is republished in between), its ``initial_delay`` holds its first check (it
    reads waiting meanwhile, and holds the names it belongs to NOT_SERVING), and its
    thresholds damp its status: NOT_SERVING after ``failure_threshold`` failed rounds
    in a row, SERVING again after ``success_threshold`` passes (its first result
    decides at once). A failure that only echoes a dependency's (``blocked_by``) is
    logged at INFO: the root cause has the WARNING. Group members may be ``"tag:db"``
    (every service provided with that tag); :meth:`add_group` adds a name later.
    ``startup`` is NOT_SERVING until :meth:`start` has completed, then SERVING for good.
    ``info`` (``version``, ``releaseId``, ``serviceId``, ``description``) is shown
    at the top of ``/health``.

    History: the last ``history`` rounds (default 100; 0 or None keeps none) of each
    name are kept, newest last: :meth:`history`, ``/health/history`` and the status
    page read them.

    Degraded checks (:class:`~di.Degraded`, or a failing check of a service provided
    with ``critical=False``) count as passing: their names stay SERVING, and
    :meth:`health_status` reads ``"warn"`` for them.

    Unbuilt services: a lazy service is checked only once built, so one with a health
    check that nobody built would pass unseen. ``unbuilt`` says what to do about each
    service visible from the injector that has a check (``health_check=``, or a
    ``health_check`` method on the class its factory declares) and is not built when
    the monitor starts or after a round: ``"warn"`` (the default) logs one WARNING at
    the start naming them, lists them as not built in ``/health`` and
    ``/readyz?verbose``, and reads ``"warn"`` for ``""`` and the ``"*"`` groups
    (still SERVING); ``"fail"`` does the same, and holds ``""`` and the ``"*"`` groups
    (readiness) NOT_SERVING while any is unbuilt; ``"ignore"`` does none of it.

    When a check starts failing or degraded, or fails differently, a WARNING on the
    ``di.health`` logger names the service, the outcome and the exception; a recovery
    is an INFO. So that a flapping check cannot flood the log, each service (and each
    name's status) logs at most one line per ``log_interval`` seconds (default 60)
    after a logged change; the changes in between are counted, and one summary line
    then gives their number and the current state.

    Tracing (``opentelemetry-api``, the ``otel`` extra): each round is a span counting
    its checks by outcome; ``trace_checks="problems"`` (default) adds a child span per
    check not healthy or taking 1 s or more, ``"events"`` also an event per check,
    ``"all"`` a span per check (error text and details only with ``show_details``).
    ``tracing=None`` (the default) traces when the API is installed, with the global
    tracer provider; ``False`` never does; a ``TracerProvider`` traces to that one.

    What the monitor publishes is one immutable :class:`HealthSnapshot`
    (:attr:`snapshot`): the statuses, the results per name, ``"pass"``/``"warn"``/
    ``"fail"`` per name, the members of each group not checked, the reasons names are
    held NOT_SERVING, and a version. A new one is published whenever the statuses are
    recomputed (each round, :meth:`set_status`, graceful shutdown, checks overdue);
    the endpoints render it, and :meth:`status`, :meth:`results`, :meth:`reasons` and
    the like read it.

    :meth:`refresh` is for callers who want a result no older than a TTL:
    ``success_ttl`` (after a healthy report) or ``failure_ttl`` (after an unhealthy
    one); by default ``interval`` and ``min(interval, 1.0)``.

    >>> monitor = HealthMonitor(injector, interval=5.0, groups={"db": [Database]})
    >>> async with monitor:                 # starts, then checks every 5 s until exit
    ...     async for status in monitor.watch("db"):
    ...         print(status.name)
    """

    def __init__(
        self,
        injector: Scope,
        *,
        interval: float = 5.0,
        timeout: float | None = None,
        stale_after: float | None = None,
        success_ttl: float | None = None,
        failure_ttl: float | None = None,
        groups: Mapping[str, Sequence[type[Any] | str]] | None = None,
        log_interval: float = 60.0,
        tracing: Any = None,
        trace_checks: Literal["problems", "events", "all"] = "problems",
        show_details: bool = False,
        unbuilt: Unbuilt = "warn",
        policy: HealthPolicy | None = None,
        info: Mapping[str, str] | None = None,
        history: int | None = 100,
    ) -> None:
        if not isinstance(injector, Scope):
            raise TypeError(f"HealthMonitor() needs an Injector or Scope, got {injector!r}")
        if unbuilt not in UNBUILT:
            raise ValueError(
                f"HealthMonitor(unbuilt=...) takes 'warn', 'fail' or 'ignore', got {unbuilt!r}"
            )
        self.unbuilt: Unbuilt = unbuilt
        for argument, value, positive in (
            ("interval", interval, False),
            ("timeout", timeout, True),
            ("stale_after", stale_after, True),
            ("success_ttl", success_ttl, False),
            ("failure_ttl", failure_ttl, False),
            ("log_interval", log_interval, False),
        ):
            check_seconds(f"HealthMonitor({argument}=...)", value, zero=not positive)
        self.injector = injector
        self.interval = interval
        self.timeout = float(interval if timeout is None else timeout) or 1.0
        self.stale_after = (
            2 * (interval + self.timeout) if stale_after is None else float(stale_after)
        )
        self.success_ttl = interval if success_ttl is None else success_ttl
        self.failure_ttl = min(interval, 1.0) if failure_ttl is None else failure_ttl
        if groups is not None and not isinstance(groups, Mapping):
            raise TypeError(
                "HealthMonitor(groups=...) must be a mapping of group name to members, "
                f"such as groups={{'db': [Database, 'replica']}}; got {groups!r}"
            )
        if policy is not None and not isinstance(policy, HealthPolicy):
            raise TypeError(
                "HealthMonitor(policy=...) takes a di.HealthPolicy, such as "
                f"policy=di.HealthPolicy(failure_threshold=3); got {policy!r}"
            )
        self.policy = policy or DEFAULT_POLICY
        self.info: Mapping[str, str] = MappingProxyType(_info(info))
        self._history = History(history_size(history))
        # Each group's members by label, in order; None for "*" (every checked service).
        self._groups = grouping.resolve(injector, groups)
        self._rounds = Rounds()  # what the services' policies remember between rounds
        self._tags = views.tags(injector)
        self._report: HealthReport | None = None
        self._checked = -math.inf  # time.monotonic() of the latest report
        self._phase = NOT_STARTED
        self._start_done: anyio.Event | None = None
        self._ready = False  # started, then one round completed
        self._stale_at = math.inf  # time.monotonic() after which results are overdue
        self._overdue = False
        self._overrides: dict[str, ServingStatus] = {}
        self._flowing: set[str] = set()  # overridden names that are service keys
        self._expiries: dict[str, float] = {}  # time.monotonic() each ttl ends at
        self._expiry_at = math.inf  # the first of them
        self._deadlines_moved: LoopEvent | None = None
        self._unbuilt: tuple[str, ...] = ()  # labels of unbuilt services with a check
        self._shutting_down = False
        self._closed = False
        self._stop: anyio.Event | None = None
        self._version = 0
        self._lock = threading.RLock()  # publishing happens in any thread: one at a time
        self._changed = LoopEvent() if in_event_loop() else None  # an event needs a loop
        self._snapshot = self._compose()
        self._refreshing: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._ran = _SET
        self._running = False
        self.log_interval = float(log_interval)
        self.show_details = show_details
        self._check_log = observe.CheckLog(self.log_interval)
        self._status_log = observe.StatusLog(self.log_interval)
        self._listeners: list[Callable[[HealthReport], object]] = []
        self._tracer: Any = observe.tracer_for(tracing)
        self._trace_checks = observe.check_trace_checks(trace_checks)
        after_fork_in_child(self._after_fork)

    # -- running ---------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: the parent's run of this monitor does not exist here, so
        it may run again; what it published stays, and falls overdue until a round.
        A thread of the parent publishing at the fork held the lock: not here."""
        self._lock = threading.RLock()
        self._history.after_fork()
        self._running, self._task_group, self._stop, self._ran = False, None, None, _SET
        self._changed = self._refreshing = self._deadlines_moved = None
        if self._phase == STARTING:  # the start was the parent's, and never ends here
            self._phase, self._start_done = NOT_STARTED, None

    async def start(self) -> None:
        """Build the injector's eager services (its ``astart()``), once.

        A failure is logged on ``di.health`` and raised; names stay NOT_SERVING
        ("startup: failed"), and a later call tries again.
        """
        while self._phase == STARTING and self._start_done is not None:
            await self._start_done.wait()
        if self._phase == STARTED:
            return
        self._phase, self._start_done = STARTING, anyio.Event()
        baseline = cancel_requests()
        try:
            await self.injector.astart()
        except BaseException as error:
            if is_cancellation(error) and cancelled_from_outside(baseline):
                self._phase = NOT_STARTED
                raise
            # An eager factory raised, whatever it raised (CancelledError, SystemExit).
            self._phase = FAILED
            logger.error("starting the application failed: %s", explain_error(error))
            raise
        else:
            self._phase = STARTED
            self._tags = views.tags(self.injector)  # services provided since
            self._see_unbuilt(at_start=True)
        finally:
            self._start_done.set()
            self._publish()

    def _find(self, label: str) -> Service | None:
        """The service a report names ``label``, or None when none is in reach now."""
        try:
            return views.find(self.injector, label)
        except ServiceNotFoundError:
            return None

    def _see_unbuilt(self, at_start: bool = False) -> None:
        """Note the services with a check that are not built (see ``unbuilt``)."""
        if self.unbuilt == "ignore":
            return
        self._unbuilt = tuple(service.label for service in views.unbuilt_checks(self.injector))
        if at_start and self._unbuilt:
            observe.log_unbuilt(self._unbuilt, self.unbuilt == "fail")

    async def run(self) -> None:
        """Start (see :meth:`start`), then check every ``interval`` until :meth:`stop`.

        Cancelling it works too, but abandons a round in progress; :meth:`stop` lets
        that round finish first (it is bounded by ``timeout``).
        """
        self._claim()
        await self._run_claimed()

    def _claim(self) -> None:
        """Mark the monitor running, or refuse: it runs once at a time."""
        if self._running:
            raise RuntimeError(
                "this HealthMonitor is already running (run(), or `async with monitor`); "
                "run it once"
            )
        self._running = True

    async def _run_claimed(self) -> None:
        try:
            await self.start()
            self._stop = self._stop or anyio.Event()
            if self._stale_at == math.inf:
                self._stale_at = time.monotonic() + self.stale_after
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._watch_deadlines)
                while not self._stop.is_set():
                    try:
                        await self.check()
                    except Exception:  # not a check's doing (those are results): a fault
                        logger.exception(
                            "a round of health checks failed; the next runs in %g s, and "
                            "names read NOT_SERVING once checks are overdue",
                            self.interval,
                        )
                    with anyio.move_on_after(self.interval):
                        await self._stop.wait()
                tasks.cancel_scope.cancel()
        finally:
            self._running = False

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is running (``di serve``, a lifespan, ``async with``)."""
        return self._running

    def stop(self) -> None:
        """Ask :meth:`run` to return once the round in progress (if any) has finished."""
        self._stop = self._stop or anyio.Event()
        self._stop.set()

    async def _watch_deadlines(self) -> None:
        """Publish "overdue", and statuses whose ``ttl`` ended, when they fall due, so
        that watchers see them too."""
        try:
            while True:
                moved = self._deadlines_moved = LoopEvent()
                due = min(self._stale_at, self._expiry_at)
                with anyio.move_on_after(max(due - time.monotonic(), 0.0) + 0.001):
                    await moved.event.wait()  # set_status(ttl=...) may bring one forward
                self._check_stale()
                self._check_expiry()
        finally:
            self._deadlines_moved = None  # its loop ends here

    async def __aenter__(self) -> HealthMonitor:
        self._claim()  # running from here on: no one else starts its rounds
        try:
            await self.start()
        except BaseException:
            self._running = False
            raise
        self._stop = anyio.Event()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._ran = anyio.Event()

        async def run() -> None:
            try:
                await self._run_claimed()
            finally:
                self._ran.set()

        self._task_group.start_soon(run)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self.stop()
        try:
            # The round in progress finishes (its threads stop touching services that
            # the caller may shut down next); it is bounded by the round timeout.
            with anyio.move_on_after(self.timeout + 1.0):
                await self._ran.wait()
        finally:  # even if cancelled: a task group never left breaks the caller's scopes
            self._task_group.cancel_scope.cancel()
            suppress = await self._task_group.__aexit__(kind, error, tb)
        return suppress

    async def check(self) -> HealthReport:
        """Run the checks now (starting first if need be) and publish the result."""
        if self._phase != STARTED:
            await self.start()
        # The engine's own entry point, with a bound on the whole round.
        round_ = self._rounds.begin()

        async def one_round() -> HealthReport:
            return await _health.report(
                self.injector, round_timeout=self.timeout, policy=self.policy, due=round_.due
            )

        if self._tracer is None:
            fresh = await one_round()
        else:
            fresh, self._tracer = await observe.traced_round(
                self._tracer, one_round, self.show_details, self._trace_checks
            )
        if round_.skipped:  # a failure carried over may explain a fresh one
            fresh = self._rounds.blame_carried(round_, fresh, self._find)
        self._check_log.record(fresh)
        with self._lock:
            # Results carried over (a policy's interval), the thresholds applied.
            report = self._report = self._rounds.merge(round_, fresh)
            self._see_unbuilt()
            self._checked = time.monotonic()
            self._stale_at = self._checked + self.stale_after
            self._overdue = False
            became_ready, self._ready = not self._ready, True
            self._publish(wake=became_ready, record=True)
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:
                logger.exception("a HealthMonitor listener failed")
        return report

    def add_listener(self, listener: Callable[[HealthReport], object]) -> None:
        """Call ``listener(report)`` after each round (metrics); its errors are logged."""
        self._listeners.append(listener)

    async def refresh(self) -> HealthReport:
        """The latest report if it is younger than its TTL, else a fresh one.

        Concurrent refreshes share one run. The endpoints never call this: they read
        what :meth:`run` publishes.
        """
        while True:
            report = self._report
            if report is not None:
                ttl = self.success_ttl if report.healthy else self.failure_ttl
                if time.monotonic() - self._checked < ttl:
                    return report
            if self._refreshing is None:
                self._refreshing = done = anyio.Event()
                try:
                    return await self.check()
                finally:
                    self._refreshing = None
                    done.set()
            await self._refreshing.wait()
            if self._report is not None:
                return self._report

    # -- statuses ---------------------------------------------------------------------

    @property
    def report(self) -> HealthReport | None:
        """The latest report, None before the first check."""
        return self._report

    @property
    def snapshot(self) -> HealthSnapshot:
        """What the monitor published last: statuses, results, reasons, in one value.

        A new :class:`HealthSnapshot` is published whenever the statuses are recomputed
        (each round, :meth:`set_status`, graceful shutdown, checks falling overdue);
        reading it marks the checks overdue, and ends statuses set for a ``ttl``, first
        if they are due.
        """
        now = time.monotonic()
        if self._stale_at < now or self._expiry_at <= now:
            self._check_deadlines()
        return self._snapshot

    @property
    def version(self) -> int:
        """A number that changes whenever what the monitor publishes changes.

        Answers rendered from the statuses can be kept until it changes; it is
        ``snapshot.version``.
        """
        return self.snapshot.version

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has completed."""
        return self._phase == STARTED

    @property
    def ready(self) -> bool:
        """Whether the start and then one round of checks have completed."""
        return self._ready

    async def wait_ready(self) -> None:
        """Return once :attr:`ready` (bound it with ``anyio.fail_after``)."""
        while not self._ready:
            await self._change().event.wait()

    def reasons(self) -> list[tuple[str, str]]:
        """Why names read NOT_SERVING whatever the checks say: ``(what, why)`` pairs.

        ``("startup", "not started")`` until the start completed (``"failed"`` if it
        failed), then ``("startup", "first round of checks not completed")`` until a
        first round completed; ``("checks", "health checks overdue")``; ``("shutdown",
        "shutting down")`` after :meth:`enter_graceful_shutdown`.
        """
        return list(self.snapshot.reasons)

    def names(self) -> list[str]:
        """Every name with a status: ``""``, the groups, and each checked service."""
        return list(self.snapshot.statuses)

    def status(self, name: str) -> ServingStatus | None:
        """The status of ``name``; None when the name is unknown."""
        now = time.monotonic()
        if self._stale_at < now or self._expiry_at <= now:
            self._check_deadlines()
        return self._snapshot.statuses.get(name)

    def health_status(self, name: str) -> Status | None:
        """``"pass"``, ``"warn"`` (SERVING with a degraded check) or ``"fail"``; None if unknown.

        The answer of health+json and of the ``healthdi_health_status`` metric.
        """
        return self.snapshot.health.get(name)

    def statuses(self) -> dict[str, ServingStatus]:
        """Every name and its status."""
        return dict(self.snapshot.statuses)

    def evaluate(self, name: str, exclude: Sequence[str] = ()) -> ServingStatus | None:
        """The status of ``name`` as if the checks of the ``exclude`` keys had not run.

        For ``?exclude=`` on Kubernetes endpoints; manual statuses and graceful shutdown
        still apply. None when the name is unknown.
        """
        return self.snapshot.evaluate(name, exclude)

    def missing(self, name: str) -> list[str]:
        """Members of group ``name`` with no result in the latest report."""
        return list(self.snapshot.missing.get(name, ()))

    def results(self, name: str) -> list[HealthCheckResult] | None:
        """The latest check results that make up ``name``'s status; None if unknown."""
        found = self.snapshot.results.get(name)
        return None if found is None else list(found)

    def history(self, name: str) -> list[HistoryEntry]:
        """The last rounds of ``name`` (see ``history=``), oldest first; empty if unknown."""
        return self._history.of(name)

    def histories(self) -> dict[str, list[HistoryEntry]]:
        """Every name's last rounds, oldest first."""
        return self._history.every()

    def set_status(
        self, name: str | type[Any], status: ServingStatus, *, ttl: float | None = None
    ) -> None:
        """Force ``name``'s status (drain, maintenance) until :meth:`clear_status`, or
        for ``ttl`` seconds.

        ``name`` is any name the monitor answers for (``""``, a group), or a service: its
        key as the monitor names it (``"app.Database"``, ``"replica"``) or its type. A
        service's status stands for its check wherever that counts: in ``""`` and in
        every group that contains it, so ``set_status(Database, NOT_SERVING)`` takes
        the database out for maintenance, and readiness with it. With ``ttl`` (seconds,
        finite and > 0) the status reverts to what the checks say by itself, and the
        revert is published (watchers see it); setting it again restarts the ttl.

        >>> monitor.set_status(Database, ServingStatus.NOT_SERVING, ttl=600)
        """
        label = name if isinstance(name, str) else views.find(self.injector, name).label
        try:
            status = ServingStatus(status)
        except ValueError:
            wanted = "a ServingStatus, such as ServingStatus.NOT_SERVING or ServingStatus.SERVING"
            raise ValueError(f"set_status(status=...) takes {wanted}; got {status!r}") from None
        if ttl is not None:
            check_seconds("set_status(ttl=...)", ttl, "(or None for no expiry)")
        with self._lock:
            self._overrides[label] = status
            if label in views.service_labels(self.injector):
                self._flowing.add(label)
            else:
                self._flowing.discard(label)
            if ttl is None:
                self._expiries.pop(label, None)
            else:
                self._expiries[label] = time.monotonic() + ttl
            self._expiry_at = min(self._expiries.values(), default=math.inf)
            if self._deadlines_moved is not None:
                self._deadlines_moved.set()
            self._publish()

    def add_group(self, name: str, members: Sequence[type[Any] | str]) -> None:
        """Answer for ``name`` too, as ``groups={name: members}`` would have: services by
        key, ``"tag:db"`` selectors, or ``["*"]`` for every checked service.

        For names that come after the monitor (a gRPC service name, see
        ``di.grpc.add_health_servicer(..., services=...)``). A name the monitor answers
        for already is refused.
        """
        where = f"HealthMonitor.add_group({name!r}, ...)"
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"HealthMonitor.add_group(): a group's name is non-empty text, got {name!r}"
            )
        if name in self._groups or name == STARTUP:
            raise ValueError(
                f"{where}: the monitor answers for {name!r} already; pick another name"
            )
        resolved = grouping.members(self.injector, name, members, where)
        with self._lock:
            self._groups = {**self._groups, name: resolved}
            self._publish()

    def clear_status(self, name: str | type[Any]) -> None:
        """Drop a status set with :meth:`set_status`."""
        label = name if isinstance(name, str) else views.find(self.injector, name).label
        with self._lock:
            self._overrides.pop(label, None)
            self._flowing.discard(label)
            if self._expiries.pop(label, None) is not None:
                self._expiry_at = min(self._expiries.values(), default=math.inf)
            self._publish()

    async def enter_graceful_shutdown(self) -> None:
        """Every status but liveness's becomes NOT_SERVING, for good: later changes are
        ignored.

        ``liveness`` keeps what its members say (nothing, by default: SERVING), so that
        a process draining its traffic is not restarted by its liveness probe.
        """
        self._shutting_down = True
        self._publish()
        await anyio.lowlevel.checkpoint()

    def close_watches(self) -> None:
        """End every :meth:`watch` iteration, now and later (the server is stopping)."""
        with self._lock:
            self._closed = True
            changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def watch(self, name: str) -> AsyncIterator[ServingStatus]:
        """The status of ``name`` now, then on every change, until :meth:`close_watches`.

        An unknown name yields SERVICE_UNKNOWN and keeps waiting for it to appear. A slow
        consumer sees the latest status, never a backlog.
        """
        last: ServingStatus | None = None
        while not self._closed:
            changed = self._change()
            current = self.status(name)
            current = ServingStatus.SERVICE_UNKNOWN if current is None else current
            if current is not last:
                last = current
                yield current
            wait = self._expiry_at - time.monotonic()  # a ttl ends: read again then
            with anyio.move_on_after(max(wait, 0.0) + 0.001 if wait < math.inf else math.inf):
                await changed.event.wait()

    # -- publishing -------------------------------------------------------------------

    def _check_deadlines(self) -> None:
        self._check_stale()
        self._check_expiry()

    def _check_expiry(self) -> None:
        """End the statuses whose ``ttl`` ended, and publish."""
        with self._lock:
            now = time.monotonic()
            if self._expiry_at > now:
                return
            for name, end in list(self._expiries.items()):
                if end <= now:
                    del self._expiries[name]
                    self._overrides.pop(name, None)
                    self._flowing.discard(name)
                    logger.info(
                        "the status set for %r ended with its ttl: back to what the checks say",
                        name or "(overall)",
                    )
            self._expiry_at = min(self._expiries.values(), default=math.inf)
            self._publish()

    def _check_stale(self) -> None:
        with self._lock:  # looked at under it: a round may complete in another thread
            if not self._overdue and self._stale_at < time.monotonic():
                self._overdue = True
                logger.warning(
                    "health checks overdue: no round completed for %g s; reading NOT_SERVING",
                    self.stale_after,
                )
                self._publish()

    def _change(self) -> LoopEvent:
        """What the next change sets, for a waiter on this loop."""
        with self._lock:
            self._changed = self._changed or LoopEvent()
            return self._changed

    def _publish(self, wake: bool = False, record: bool = False) -> None:
        """Recompute the statuses and publish a new snapshot (a round's, ``record``, in the
        history first: its readers find it there); wake watchers on a change."""
        with self._lock:
            before = self._snapshot.statuses
            self._version += 1  # results and reasons may change without the statuses
            snapshot = self._compose()
            if record:
                self._history.record(snapshot)
            self._snapshot = snapshot
            statuses = snapshot.statuses
            self._status_log.record(before, statuses, once=wake or self._shutting_down)
            if (statuses == before and not wake) or self._closed:
                return
            changed, self._changed = self._changed, LoopEvent() if in_event_loop() else None
        if changed is not None:
            changed.set()

    def _compose(self) -> HealthSnapshot:
        """What the monitor publishes now, computed once for every reader."""
        rounds = self._rounds
        return compose(
            State(
                groups=self._groups,
                report=self._report,
                overrides=self._overrides.copy(),
                flowing=frozenset(self._flowing),
                phase=self._phase,
                ready=self._ready,
                overdue=self._overdue,
                shutting_down=self._shutting_down,
                unbuilt=self._unbuilt,
                failing_unbuilt=self.unbuilt == "fail",
                version=self._version,
                damped=rounds.damped.copy(),
                waiting=rounds.waiting,
                streaks=rounds.streaks,
                carried=rounds.carried,
                tags=self._tags,
                info=self.info,
            )
        )


def _info(info: object) -> dict[str, str]:
    """``HealthMonitor(info=...)`` checked: health+json's top-level fields, as text."""
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise TypeError(
            "HealthMonitor(info=...) takes a mapping of health+json fields to text, such "
            f"as info={{'version': '1.4.2'}}; got {info!r}"
        )
    for key, value in info.items():
        if key not in INFO_FIELDS:
            raise ValueError(
                f"HealthMonitor(info=...): {key!r} is not a field it sets; use "
                f"{', '.join(INFO_FIELDS)}"
            )
        if not isinstance(value, str):
            raise TypeError(f"HealthMonitor(info=...): {key!r} must be text, got {value!r}")
    return dict(info)


class _Set:
    """Stands in for an event already set, before any loop runs."""

    async def wait(self) -> None:
        await anyio.lowlevel.checkpoint()


_SET: Any = _Set()
