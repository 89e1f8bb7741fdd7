"""Health over time: re-check in the background, serve statuses by name, watch changes."""

from __future__ import annotations

import enum
import importlib.util
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from . import _health  # the engine's entry point, for rounds bounded by ``timeout``
from ._container import views
from ._container.runner import (
    cancel_requests,
    cancelled_from_outside,
    in_event_loop,
    is_cancellation,
)
from ._container.service import Service
from .errors import HealthCheckTimeoutError
from .health import HealthCheckResult, HealthReport, Outcome, Status, error_text, explain_error
from .scope import Scope

__all__ = ["HealthMonitor", "ServingStatus"]

logger = logging.getLogger("di.health")

DEFAULT_GROUPS: Mapping[str, Sequence[Any]] = {"liveness": [], "readiness": ["*"]}


class ServingStatus(enum.IntEnum):
    """A name's status, numbered as in the gRPC health protocol."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


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

    Degraded checks (:class:`~di.Degraded`, or a failing check of a service provided
    with ``critical=False``) count as passing: their names stay SERVING, and
    :meth:`health_status` reads ``"warn"`` for them.

    When a check starts failing or degraded, or fails differently, a WARNING on the
    ``di.health`` logger names the service, the outcome and the exception; a recovery
    is an INFO. So that a flapping check cannot flood the log, each service (and each
    name's status) logs at most one line per ``log_interval`` seconds (default 60)
    after a logged change; the changes in between are counted, and one summary line
    then gives their number and the current state.

    Tracing: where ``opentelemetry-api`` is installed (the ``otel`` extra), each round
    is a span ("health round") with one child span per check ("health check") carrying
    the service, scope, outcome and error type as attributes, and the error text and
    details only with ``show_details=True``. ``tracing=None`` (the default) traces when
    the API is installed, with the global tracer provider; ``False`` never does; a
    ``TracerProvider`` traces to that provider. Without the API, nothing is imported.

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
        show_details: bool = False,
    ) -> None:
        if not isinstance(injector, Scope):
            raise TypeError(f"HealthMonitor() needs an Injector or Scope, got {injector!r}")
        for argument, value, positive in (
            ("interval", interval, False),
            ("timeout", timeout, True),
            ("stale_after", stale_after, True),
            ("success_ttl", success_ttl, False),
            ("failure_ttl", failure_ttl, False),
            ("log_interval", log_interval, False),
        ):
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not (value > 0 if positive else value >= 0)
            ):
                bound = "> 0" if positive else ">= 0"
                raise ValueError(
                    f"HealthMonitor({argument}=...) must be a finite number {bound}, got {value!r}"
                )
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
        self._groups = {
            name: self._members(name, members)
            for name, members in {**DEFAULT_GROUPS, **(groups or {})}.items()
        }
        self._report: HealthReport | None = None
        self._checked = -math.inf  # time.monotonic() of the latest report
        self._phase = _NOT_STARTED
        self._start_done: anyio.Event | None = None
        self._ready = False  # started, then one round completed
        self._stale_at = math.inf  # time.monotonic() after which results are overdue
        self._overdue = False
        self._failing: dict[str, tuple[str, str, str]] = {}
        self._overrides: dict[str, ServingStatus] = {}
        self._shutting_down = False
        self._closed = False
        self._stop: anyio.Event | None = None
        self._version = 0
        self._changed = anyio.Event() if _in_loop() else None
        self._statuses: dict[str, ServingStatus] = self._compute()
        self._refreshing: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._ran = _SET
        self._running = False
        self.log_interval = float(log_interval)
        self.show_details = show_details
        self._check_log = _Throttle(self.log_interval)
        self._status_log = _Throttle(self.log_interval)
        self._listeners: list[Callable[[HealthReport], object]] = []
        self._tracer: Any = _tracer(tracing)

    def _members(self, group: str, members: Sequence[type[Any] | str]) -> list[Service] | None:
        if isinstance(members, str) or not isinstance(members, Sequence | set | frozenset):
            raise TypeError(
                f"HealthMonitor(groups=...): group {group!r} must list its members, such as "
                f"groups={{{group!r}: [Database, 'replica']}}; got {members!r}"
            )
        if "*" in members:
            return None
        # Unknown members are an error now, not a group that can never be SERVING.
        # The services by key, as invoke finds them: an unknown member fails here.
        found = [views.find(self.injector, member) for member in members]
        # A service's own name must not pass for a group that does not answer for it.
        shadowed = views.lookup(self.injector, group)
        if shadowed is not None and shadowed not in found:
            raise ValueError(
                f"HealthMonitor(groups=...): group {group!r} has the name of a service it "
                "does not list; rename the group or the service, so that each name has one "
                "status"
            )
        return found

    # -- running ---------------------------------------------------------------------

    async def start(self) -> None:
        """Build the injector's eager services (its ``astart()``), once.

        A failure is logged on ``di.health`` and raised; names stay NOT_SERVING
        ("startup: failed"), and a later call tries again.
        """
        while self._phase == _STARTING and self._start_done is not None:
            await self._start_done.wait()
        if self._phase == _STARTED:
            return
        self._phase, self._start_done = _STARTING, anyio.Event()
        baseline = cancel_requests()
        try:
            await self.injector.astart()
        except BaseException as error:
            if is_cancellation(error) and cancelled_from_outside(baseline):
                self._phase = _NOT_STARTED
                raise
            # An eager factory raised, whatever it raised (CancelledError, SystemExit).
            self._phase = _FAILED
            logger.error("starting the application failed: %s", explain_error(error))
            raise
        else:
            self._phase = _STARTED
        finally:
            self._start_done.set()
            self._publish()

    async def run(self) -> None:
        """Start (see :meth:`start`), then check every ``interval`` until :meth:`stop`.

        Cancelling it works too, but abandons a round in progress; :meth:`stop` lets
        that round finish first (it is bounded by ``timeout``).
        """
        if self._running:
            raise RuntimeError("this HealthMonitor is already running; run it once")
        self._running = True
        try:
            await self.start()
            self._stop = self._stop or anyio.Event()
            if self._stale_at == math.inf:
                self._stale_at = time.monotonic() + self.stale_after
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._watch_staleness)
                while not self._stop.is_set():
                    await self.check()
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

    async def _watch_staleness(self) -> None:
        """Publish "overdue" when it falls due, so that watchers see it too."""
        while True:
            await anyio.sleep(max(self._stale_at - time.monotonic(), 0.0) + 0.001)
            self._check_stale()

    async def __aenter__(self) -> HealthMonitor:
        await self.start()
        self._stop = anyio.Event()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._ran = anyio.Event()

        async def run() -> None:
            try:
                await self.run()
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
        # The round in progress finishes (its threads stop touching services that the
        # caller may shut down next); it is bounded by the round timeout.
        with anyio.move_on_after(self.timeout + 1.0):
            await self._ran.wait()
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(kind, error, tb)

    async def check(self) -> HealthReport:
        """Run the checks now (starting first if need be) and publish the result."""
        if self._phase != _STARTED:
            await self.start()
        # The engine's own entry point, with a bound on the whole round.
        if self._tracer is None:
            report = await _health.report(self.injector, round_timeout=self.timeout)
        else:
            report = await self._traced_round()
        self._log_outcomes(report)
        self._report = report
        self._checked = time.monotonic()
        self._stale_at = self._checked + self.stale_after
        self._overdue = False
        became_ready, self._ready = not self._ready, True
        self._publish(wake=became_ready)
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:
                logger.exception("a HealthMonitor listener failed")
        return report

    def add_listener(self, listener: Callable[[HealthReport], object]) -> None:
        """Call ``listener(report)`` after each round (metrics); its errors are logged."""
        self._listeners.append(listener)

    async def _traced_round(self) -> HealthReport:
        """A round as an OpenTelemetry span, with one child span per check."""
        from opentelemetry import trace

        tracer = self._tracer
        if isinstance(tracer, _LazyTracer):
            tracer = self._tracer = tracer.get()
        with tracer.start_as_current_span("health round") as span:
            report = await _health.report(self.injector, round_timeout=self.timeout)
            if not span.is_recording():
                return report  # no SDK configured: no child spans to pay for
            span.set_attribute("healthdi.status", report.status)
            span.set_attribute("healthdi.checks", len(report.checks))
            if report.status == "fail":
                span.set_status(trace.StatusCode.ERROR)
            context = trace.set_span_in_context(span)
            for check in report.checks:
                _check_span(tracer, context, check, self.show_details)
        return report

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
    def version(self) -> int:
        """A number that changes whenever what the monitor publishes changes.

        Answers rendered from the statuses can be kept until it changes.
        """
        self._check_stale()
        return self._version

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has completed."""
        return self._phase == _STARTED

    @property
    def ready(self) -> bool:
        """Whether the start and then one round of checks have completed."""
        return self._ready

    async def wait_ready(self) -> None:
        """Return once :attr:`ready` (bound it with ``anyio.fail_after``)."""
        while not self._ready:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def reasons(self) -> list[tuple[str, str]]:
        """Why names read NOT_SERVING whatever the checks say: ``(what, why)`` pairs.

        ``("startup", "not started")`` until the start completed (``"failed"`` if it
        failed), then ``("startup", "first round of checks not completed")`` until a
        first round completed; ``("checks", "health checks overdue")``; ``("shutdown",
        "shutting down")`` after :meth:`enter_graceful_shutdown`.
        """
        self._check_stale()
        found = []
        if not self._ready:
            found.append(("startup", _STARTUP.get(self._phase, "not started")))
        elif self._overdue:
            found.append(("checks", "health checks overdue"))
        if self._shutting_down:
            found.append(("shutdown", "shutting down"))
        return found

    def names(self) -> list[str]:
        """Every name with a status: ``""``, the groups, and each checked service."""
        self._check_stale()
        return list(self._statuses)

    def status(self, name: str) -> ServingStatus | None:
        """The status of ``name``; None when the name is unknown."""
        if self._stale_at < time.monotonic():
            self._check_stale()
        return self._statuses.get(name)

    def health_status(self, name: str) -> Status | None:
        """``"pass"``, ``"warn"`` (SERVING with a degraded check) or ``"fail"``; None if unknown.

        The answer of health+json and of the ``healthdi_health_status`` metric.
        """
        status = self.status(name)
        if status is None:
            return None
        if status is not ServingStatus.SERVING:
            return "fail"
        results = self.results(name) or ()
        return "warn" if any(r.outcome is Outcome.DEGRADED for r in results) else "pass"

    def statuses(self) -> dict[str, ServingStatus]:
        """Every name and its status."""
        self._check_stale()
        return dict(self._statuses)

    def evaluate(self, name: str, exclude: Sequence[str] = ()) -> ServingStatus | None:
        """The status of ``name`` as if the checks of the ``exclude`` keys had not run.

        For ``?exclude=`` on Kubernetes endpoints; manual statuses and graceful shutdown
        still apply. None when the name is unknown.
        """
        if not exclude:
            return self.status(name)
        self._check_stale()
        return self._compute(frozenset(exclude)).get(name)

    def missing(self, name: str) -> list[str]:
        """Members of group ``name`` with no result in the latest report."""
        members = self._groups.get(name)
        if not members:
            return []
        checked = {check.key for check in self._report.checks} if self._report else set()
        return [member.label for member in members if member.label not in checked]

    def results(self, name: str) -> list[HealthCheckResult] | None:
        """The latest check results that make up ``name``'s status; None if unknown."""
        if name not in self._statuses:
            return None
        checks = self._report.checks if self._report is not None else ()
        if name == "":
            return list(checks)
        if name in self._groups:
            members = self._groups[name]
            if members is None:
                return list(checks)
            labels = {member.label for member in members}
            return [check for check in checks if check.key in labels]
        return [check for check in checks if check.key == name]

    def set_status(self, name: str, status: ServingStatus) -> None:
        """Force ``name``'s status (drain, maintenance) until :meth:`clear_status`."""
        self._overrides[name] = ServingStatus(status)
        self._publish()

    def clear_status(self, name: str) -> None:
        """Drop a status set with :meth:`set_status`."""
        self._overrides.pop(name, None)
        self._publish()

    async def enter_graceful_shutdown(self) -> None:
        """Every status becomes NOT_SERVING, for good: later changes are ignored."""
        self._shutting_down = True
        self._publish()
        await anyio.lowlevel.checkpoint()

    def close_watches(self) -> None:
        """End every :meth:`watch` iteration, now and later (the server is stopping)."""
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
            if self._changed is None:
                self._changed = anyio.Event()
            changed = self._changed
            current = self.status(name)
            current = ServingStatus.SERVICE_UNKNOWN if current is None else current
            if current is not last:
                last = current
                yield current
            await changed.wait()

    # -- publishing -------------------------------------------------------------------

    def _check_stale(self) -> None:
        if not self._overdue and self._stale_at < time.monotonic():
            self._overdue = True
            logger.warning(
                "health checks overdue: no round completed for %g s; reading NOT_SERVING",
                self.stale_after,
            )
            self._publish()

    def _log_outcomes(self, report: HealthReport) -> None:
        """Log checks that start failing or degraded, fail differently, or recover.

        At most one line per service per ``log_interval``; see :class:`_Throttle`.
        """
        failing: dict[str, tuple[str, str, str]] = {}
        now = time.monotonic()
        throttle = self._check_log
        for check in report.checks:
            before = self._failing.get(check.key)
            if check.outcome is Outcome.HEALTHY:
                if before is not None and throttle.allow(check.key, now):
                    was = "degraded" if before[0] == Outcome.DEGRADED else "failing"
                    logger.info("health check of %r recovered (was %s)", check.key, was)
                continue
            error = check.error
            state = (check.outcome.value, type(error).__name__, _text(error))
            failing[check.key] = state
            # A timeout's text names the limit that fired; it is the same failure.
            same = before is not None and (
                before == state
                or (before[:2] == state[:2] and isinstance(error, HealthCheckTimeoutError))
            )
            if not same and throttle.allow(check.key, now):
                verb = "is degraded" if check.outcome is Outcome.DEGRADED else "failed"
                logger.warning("health check of %r %s (%s): %s: %s", check.key, verb, *state)
        self._failing = failing
        for key, count in throttle.due(now):
            current = failing.get(key)
            logger.log(
                logging.INFO if current is None else logging.WARNING,
                "health check of %r changed %d more %s in the last %g s (not logged); now %s",
                key,
                count,
                "time" if count == 1 else "times",
                self.log_interval,
                "passing" if current is None else "{} ({}: {})".format(*current),
            )

    def _publish(self, wake: bool = False) -> None:
        statuses = self._compute()
        self._version += 1  # reasons may change without the statuses
        now = time.monotonic()
        throttle = self._status_log
        if statuses == self._statuses and not wake:
            # Nothing changed now; a summary of changes held back may still be due.
            self._log_held_back(throttle, statuses, now)
            return
        for name in sorted(set(statuses) | set(self._statuses)):
            old, new = self._statuses.get(name), statuses.get(name)
            # Names appearing, the first round and shutdown log once each, unthrottled.
            once = wake or self._shutting_down or old is None or new is None
            if old != new and (once or throttle.allow(name, now)):
                logger.info(
                    "health status of %r: %s -> %s",
                    name or "(overall)",
                    old.name if old is not None else "(none)",
                    new.name if new is not None else "(gone)",
                )
        self._log_held_back(throttle, statuses, now)
        self._statuses = statuses
        if self._closed:
            return
        changed, self._changed = self._changed, anyio.Event() if _in_loop() else None
        if changed is not None:
            changed.set()

    def _log_held_back(
        self, throttle: _Throttle, statuses: dict[str, ServingStatus], now: float
    ) -> None:
        """Summarise the status changes the throttle held back, once their interval ends."""
        for name, count in throttle.due(now):
            current = statuses.get(name)
            logger.info(
                "health status of %r changed %d more %s in the last %g s (not logged); now %s",
                name or "(overall)",
                count,
                "time" if count == 1 else "times",
                self.log_interval,
                current.name if current is not None else "(gone)",
            )

    def _compute(self, exclude: frozenset[str] = frozenset()) -> dict[str, ServingStatus]:
        report = self._report
        checks = report.checks if report is not None else ()
        results = {check.key: check.healthy for check in checks if check.key not in exclude}
        held = not self._ready or self._overdue
        statuses: dict[str, ServingStatus] = {}
        statuses[""] = _serving(not held and all(results.values()))
        for group, members in self._groups.items():
            if not members and members is not None:
                statuses[group] = ServingStatus.SERVING  # checks nothing: alive
            elif held:
                statuses[group] = ServingStatus.NOT_SERVING
            elif members is None:
                statuses[group] = _serving(all(results.values()))
            else:
                wanted = [m.label for m in members if m.label not in exclude]
                statuses[group] = _serving(all(results.get(label, False) for label in wanted))
        for key, healthy in results.items():
            statuses.setdefault(key, _serving(not held and healthy))
        statuses.update(self._overrides)
        if self._shutting_down:
            statuses = dict.fromkeys(statuses, ServingStatus.NOT_SERVING)
        return statuses


_NOT_STARTED, _STARTING, _STARTED, _FAILED = "not started", "starting", "started", "failed"
# Why names are held NOT_SERVING before they are ready, by phase of the start.
_STARTUP = {_FAILED: "failed", _STARTED: "first round of checks not completed"}


class _Throttle:
    """At most one log line per key per ``interval``; changes in between are counted.

    A change is logged at once when its key has no window open; logging opens a window
    of ``interval`` seconds, during which further changes are only counted. When a
    window ends with changes counted, :meth:`due` returns them for one summary line,
    which opens the next window; a window that ends with none closes.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._windows: dict[str, list[float]] = {}  # key: [end, changes counted]

    def allow(self, key: str, now: float) -> bool:
        """Whether to log a change of ``key`` now (else it is counted)."""
        window = self._windows.get(key)
        if window is None or (now >= window[0] and not window[1]):
            self._windows[key] = [now + self.interval, 0]
            return True
        window[1] += 1
        return False

    def due(self, now: float) -> list[tuple[str, int]]:
        """Keys whose window ended with changes counted, and how many: log a summary."""
        summaries = []
        for key, window in list(self._windows.items()):
            if now < window[0]:
                continue
            if window[1]:
                summaries.append((key, int(window[1])))
                self._windows[key] = [now + self.interval, 0]
            else:
                del self._windows[key]
        return summaries


class _LazyTracer:
    """The global tracer, fetched (and opentelemetry imported) at the first round."""

    def get(self) -> Any:
        from opentelemetry import trace

        return trace.get_tracer("di.health")


def _tracer(tracing: Any) -> Any:
    """What ``HealthMonitor(tracing=...)`` traces with: None when off."""
    if tracing is False:
        return None
    if tracing is None or tracing is True:
        try:
            found = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            if tracing:
                raise ValueError(
                    "HealthMonitor(tracing=True) needs opentelemetry-api: "
                    "pip install 'healthdi[otel]'"
                )
            return None
        return _LazyTracer()
    get_tracer = getattr(tracing, "get_tracer", None)
    if not callable(get_tracer):
        raise TypeError(
            f"HealthMonitor(tracing=...) takes None, a bool or a TracerProvider, got {tracing!r}"
        )
    return get_tracer("di.health")


def _check_span(tracer: Any, context: Any, check: HealthCheckResult, details: bool) -> None:
    """One check of a round as a finished child span, timed as the check ran."""
    from opentelemetry import trace

    attributes: dict[str, Any] = {
        "healthdi.service": check.key,
        "healthdi.scope": check.scope,
        "healthdi.outcome": check.outcome.value,
    }
    error = check.error
    if error is not None:
        attributes["error.type"] = type(error).__qualname__
        if details:
            attributes["healthdi.error.message"] = _text(error)
    if details and check.details:
        for name, value in check.details.items():
            if isinstance(value, str | bool | int | float):
                attributes[f"healthdi.details.{name}"] = value
    started = int(check.started_at * 1e9)
    span = tracer.start_span(
        "health check", context=context, start_time=started, attributes=attributes
    )
    if not check.healthy:
        span.set_status(trace.StatusCode.ERROR, _text(error) if details else None)
    span.end(end_time=started + int(check.duration * 1e9))


class _Set:
    """Stands in for an event already set, before any loop runs."""

    async def wait(self) -> None:
        await anyio.lowlevel.checkpoint()


_SET: Any = _Set()


def _text(error: BaseException | None, limit: int = 500) -> str:
    text = "None" if error is None else error_text(error)
    return text if len(text) <= limit else text[:limit] + "..."


def _serving(healthy: bool) -> ServingStatus:
    return ServingStatus.SERVING if healthy else ServingStatus.NOT_SERVING


def _in_loop() -> bool:
    # anyio.Event() needs a running loop; a monitor may be made before one runs.
    return in_event_loop()
