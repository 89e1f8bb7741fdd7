"""What a health monitor tells people: log lines about checks and statuses, trace spans.

The monitor calls in here once per round and once per published change, and nothing
here changes what it publishes:

- :class:`CheckLog` gets each round's report (:meth:`CheckLog.record`) and logs the
  checks that start failing or degraded, fail differently, or recover;
- :class:`StatusLog` gets the statuses before and after each publish
  (:meth:`StatusLog.record`) and logs the names whose status changed;
- both log at most one line per service (or name) per interval through a
  :class:`Throttle`, and summarise the changes held back once the interval ends;
- :func:`tracer_for` turns ``HealthMonitor(tracing=...)`` into a tracer (or None), and
  :func:`traced_round` runs one round as an OpenTelemetry span counting its checks by
  outcome, with a child span per check that was not healthy or was slow (or per
  check, or an event per check too: ``HealthMonitor(trace_checks=...)``).
  OpenTelemetry is imported only once a traced round runs.

Everything logs on the ``di.health`` logger.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import HealthCheckTimeoutError
from ..health import HealthCheckResult, HealthReport, Outcome, error_text, printable, type_name

logger = logging.getLogger("di.health")


class Throttle:
    """At most one log line per key per ``interval``; changes in between are counted.

    A change is logged at once when its key has no window open; logging opens a window
    of ``interval`` seconds, during which further changes are only counted (a recovery
    is the exception: see :class:`CheckLog` and :class:`StatusLog`, which log it at once
    with :meth:`opened`). When a window ends with changes counted, :meth:`due` returns
    them for one summary line, which opens the next window; a window that ends with
    none closes.
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

    def opened(self, key: str, now: float) -> None:
        """A change of ``key`` is logged whatever the window: open one if none is open."""
        window = self._windows.get(key)
        if window is None or (now >= window[0] and not window[1]):
            self._windows[key] = [now + self.interval, 0]

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


# What a failing check last failed with: (outcome, error type, error text), printable.
Failure = tuple[str, str, str]


class CheckLog:
    """Logs checks that start failing or degraded, fail differently, or recover.

    A failure is a WARNING naming the service, the outcome and the exception; a recovery
    is an INFO, and so is a failure whose ``blocked_by`` names a failed dependency (the
    dependency's own WARNING is the one alarm). At most one line per service per
    ``interval`` (see :class:`Throttle`),
    with one exception: a recovery is logged at once whenever the last line logged for
    the service says it fails, so that the log never reads "failing" for a check that
    passes for longer than it takes to say so; repeated flapping is still counted.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._throttle = Throttle(interval)
        # What each failing check failed with in the previous report.
        self._failing: dict[str, Failure] = {}
        # The services whose last line logged says they fail (or are degraded).
        self._logged: dict[str, Failure] = {}

    def record(self, report: HealthReport) -> None:
        """Log what changed in ``report`` since the previous one."""
        failing: dict[str, Failure] = {}
        now = time.monotonic()
        throttle = self._throttle
        logged = self._logged
        for check in report.checks:
            key = check.key
            before = self._failing.get(key)
            if check.outcome is Outcome.HEALTHY:
                if before is None:
                    continue
                was = logged.pop(key, None)
                if was is not None:
                    throttle.opened(key, now)
                    kind = "degraded" if was[0] == Outcome.DEGRADED else "failing"
                    logger.info("health check of %r recovered (was %s)", key, kind)
                else:
                    throttle.allow(key, now)  # the log says passing already: counted
                continue
            error = check.error
            state = (
                check.outcome.value,
                printable(type_name(error)),
                printable(error_summary(error)),
            )
            failing[key] = state
            # A timeout's text names the limit that fired; it is the same failure.
            same = before is not None and (
                before == state
                or (before[:2] == state[:2] and isinstance(error, HealthCheckTimeoutError))
            )
            if not same and throttle.allow(key, now):
                logged[key] = state
                verb = "is degraded" if check.outcome is Outcome.DEGRADED else "failed"
                if check.blocked_by:  # the echo of a failure logged as its own: one alarm
                    blocked = ", ".join(check.blocked_by)
                    logger.info(
                        "health check of %r %s, blocked by %s (%s): %s: %s",
                        *(key, verb, blocked, *state),
                    )
                else:
                    logger.warning("health check of %r %s (%s): %s: %s", key, verb, *state)
        self._failing = failing
        for key, count in throttle.due(now):
            current = failing.get(key)
            if current is None:
                logged.pop(key, None)
            else:
                logged[key] = current
            logger.log(
                logging.INFO if current is None else logging.WARNING,
                "health check of %r changed %d more %s in the last %g s (not logged); now %s",
                key,
                count,
                "time" if count == 1 else "times",
                self.interval,
                "passing" if current is None else "{} ({}: {})".format(*current),
            )


class StatusLog:
    """Logs each name whose status changed, at most one line per name per ``interval``.

    Names appearing or going, the first round and graceful shutdown log once each,
    unthrottled (``once``); other changes go through a :class:`Throttle`, but a name
    back to SERVING is logged at once whenever the last line logged for it says
    otherwise: the last status line logged for a name matches its status, but for
    changes counted within a window, which its summary then states.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._throttle = Throttle(interval)
        self._logged: dict[str, Any] = {}  # each name's status in its last line logged

    def record(self, old: Mapping[str, Any], new: Mapping[str, Any], *, once: bool = False) -> None:
        """Log the changes from ``old`` to ``new`` statuses (``ServingStatus`` values)."""
        now = time.monotonic()
        logged = self._logged
        if new != old or once:
            throttle = self._throttle
            for name in sorted(set(new) | set(old)):
                before, after = old.get(name), new.get(name)
                if before == after:
                    continue
                if once or before is None or after is None:
                    pass  # logged once, unthrottled
                elif after.name == "SERVING" and logged.get(name, before) != after:
                    throttle.opened(name, now)  # a recovery: at once
                elif not throttle.allow(name, now):
                    continue  # counted
                logged[name] = after
                logger.info(
                    "health status of %r: %s -> %s",
                    name or "(overall)",
                    before.name if before is not None else "(none)",
                    after.name if after is not None else "(gone)",
                )
        # Nothing may have changed now; a summary of changes held back may still be due.
        for name, count in self._throttle.due(now):
            current = new.get(name)
            logged[name] = current
            logger.info(
                "health status of %r changed %d more %s in the last %g s (not logged); now %s",
                name or "(overall)",
                count,
                "time" if count == 1 else "times",
                self.interval,
                current.name if current is not None else "(gone)",
            )


def log_unbuilt(labels: tuple[str, ...], fail: bool) -> None:
    """One WARNING naming the services with a check that nothing built (at a start)."""
    count = len(labels)
    names = ", ".join(repr(label) for label in labels[:NAMED])
    more = f" and {count - NAMED} more" if count > NAMED else ""
    one = count == 1
    logger.warning(
        "%d %s with a health check %s neither eager nor built, so no check sees %s: "
        "%s%s; provide %s with eager=True, or pass unbuilt='ignore'%s",
        count,
        "service" if one else "services",
        "was" if one else "were",
        "it" if one else "them",
        names,
        more,
        "it" if one else "them",
        "; readiness reads NOT_SERVING until then" if fail else "",
    )


NAMED = 20  # services a log line names at most


# -- tracing ---------------------------------------------------------------------------------


class LazyTracer:
    """The global tracer, fetched (and opentelemetry imported) at the first round."""

    def get(self) -> Any:
        from opentelemetry import trace

        return trace.get_tracer("di.health")


def tracer_for(tracing: Any) -> Any:
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
        return LazyTracer()
    get_tracer = getattr(tracing, "get_tracer", None)
    if not callable(get_tracer):
        raise TypeError(
            f"HealthMonitor(tracing=...) takes None, a bool or a TracerProvider, got {tracing!r}"
        )
    return get_tracer("di.health")


# What HealthMonitor(trace_checks=...) takes: which checks get a span of their own.
TRACE_CHECKS = ("problems", "events", "all")
# A check slower than this gets a span of its own under "problems" and "events".
SLOW_CHECK_SECONDS = 1.0


def check_trace_checks(value: object) -> str:
    """Refuse a ``trace_checks`` that is none of :data:`TRACE_CHECKS`."""
    if value not in TRACE_CHECKS:
        raise ValueError(
            "HealthMonitor(trace_checks=...) must be 'problems' (a span per check that is "
            "not healthy or slow), 'events' (those, and an event per check on the "
            f"round's span) or 'all' (a span per check), got {value!r}"
        )
    return str(value)


async def traced_round(
    tracer: Any, run: Callable[[], Awaitable[HealthReport]], details: bool, checks: str = "all"
) -> tuple[HealthReport, Any]:
    """``run()`` (one round) as a "health round" span; its checks as ``checks`` says.

    The round's span counts the checks by outcome (``healthdi.checks``,
    ``healthdi.checks.<outcome>``). ``"problems"``: a child span ("health check") for
    each check that was not healthy (degraded, unhealthy, timed out) or took
    :data:`SLOW_CHECK_SECONDS` or more; ``"events"``: those, and one event per check on
    the round's span; ``"all"``: a child span for every check. Returns the report and
    the tracer to use next time (a :class:`LazyTracer` becomes the tracer it fetched).
    """
    from opentelemetry import trace

    if isinstance(tracer, LazyTracer):
        tracer = tracer.get()
    with tracer.start_as_current_span("health round") as span:
        report = await run()
        if not span.is_recording():
            return report, tracer  # no SDK configured: no child spans to pay for
        span.set_attribute("healthdi.status", report.status)
        span.set_attribute("healthdi.checks", len(report.checks))
        counts = Counter(check.outcome.value for check in report.checks)
        for outcome, count in counts.items():
            span.set_attribute(f"healthdi.checks.{outcome}", count)
        if report.status == "fail":
            span.set_status(trace.StatusCode.ERROR)
        context = trace.set_span_in_context(span)
        if checks == "all":
            for check in report.checks:
                check_span(tracer, context, check, details)
            return report, tracer
        healthy = Outcome.HEALTHY
        for check in report.checks:
            if checks == "events":
                span.add_event(
                    "health check",
                    _attributes(check, details),
                    timestamp=int(check.started_at * 1e9),
                )
            if check.outcome is not healthy or check.duration >= SLOW_CHECK_SECONDS:
                check_span(tracer, context, check, details)
    return report, tracer


def check_span(tracer: Any, context: Any, check: HealthCheckResult, details: bool) -> None:
    """One check of a round as a finished child span, timed as the check ran."""
    from opentelemetry import trace

    attributes = _attributes(check, details)
    error = check.error
    started = int(check.started_at * 1e9)
    span = tracer.start_span(
        "health check", context=context, start_time=started, attributes=attributes
    )
    if not check.healthy:
        span.set_status(trace.StatusCode.ERROR, error_summary(error) if details else None)
    span.end(end_time=started + int(check.duration * 1e9))


def _attributes(check: HealthCheckResult, details: bool) -> dict[str, Any]:
    """A check's span or event attributes: the error's text and details only with
    ``details``."""
    attributes: dict[str, Any] = {
        "healthdi.service": check.key,
        "healthdi.scope": check.scope,
        "healthdi.outcome": check.outcome.value,
    }
    error = check.error
    if error is not None:
        attributes["error.type"] = type(error).__qualname__
        if details:
            attributes["healthdi.error.message"] = error_summary(error)
    if details and check.details:
        for name, value in check.details.items():
            if isinstance(value, str | bool | int | float):
                attributes[f"healthdi.details.{name}"] = value
    if check.duration >= SLOW_CHECK_SECONDS:
        attributes["healthdi.slow"] = True
    return attributes


def error_summary(error: BaseException | None) -> str:
    """An error's text for a log line or a span (cut as :func:`~di.health.error_text`
    cuts it); log lines make it :func:`~di.health.printable` too."""
    return "None" if error is None else error_text(error)
