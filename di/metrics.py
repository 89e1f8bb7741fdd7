"""Prometheus metrics of a :class:`~di.HealthMonitor` (the ``prometheus`` extra).

>>> import di.metrics
>>> di.metrics.register(monitor)        # the default registry, served by your exporter

Families, read at each scrape from what the monitor published (its
:class:`~di.monitor.HealthSnapshot`):

- ``healthdi_health_status{name,status}``: for each name the monitor serves (``""``
  for the whole application, the groups, each checked service), one sample per
  status ``pass``, ``warn`` and ``fail``: 1 for the current one, 0 for the others.
- ``healthdi_health_check_duration_seconds{service}``: a histogram of the checks'
  durations, one observation per service per round.
- ``healthdi_health_check_total{service,outcome}``: checks counted by outcome
  (``healthy``, ``degraded``, ``unhealthy``, ``timeout``), once per round.
- ``healthdi_service_build_duration_seconds{service}``: how long each service checked
  by the monitor took to build by its factory, dependencies included, so that slow
  start-ups show.

``di serve --metrics`` and :func:`di.asgi.health_app` with ``metrics=True`` serve them
at ``/metrics`` with prometheus-client's own collectors (process, platform, GC).
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Iterator

from ._container.service import Lifetime
from ._container.views import built
from ._extras import needs_extra
from .health import HealthReport
from .monitor import HealthMonitor

with needs_extra("di.metrics", "metrics"):
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString

__all__ = ["STATUSES", "HealthCollector", "register"]

STATUSES = ("pass", "warn", "fail")
"""The ``status`` label's values of ``healthdi_health_status``: one sample each."""

# The histogram's bucket bounds (prometheus-client's defaults, +Inf last), and as the
# exposition writes them.
_BOUNDS: tuple[float, ...] = tuple(Histogram.DEFAULT_BUCKETS)
_BOUND_NAMES: tuple[str, ...] = tuple(
    floatToGoString(bound)  # type: ignore[no-untyped-call]
    for bound in _BOUNDS
)

# The healthdi collector of each registry: one per registry, since its families' names
# may appear once in a scrape. Held weakly: a registry that goes away takes it along.
_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, HealthCollector] = (
    weakref.WeakKeyDictionary()
)


class HealthCollector(Collector):
    """The four ``healthdi_`` families of one monitor; see the module's documentation.

    A round's observations are plain additions to this collector's own tallies (a
    bucket count, a sum and a count per service and outcome) under one lock per round;
    a scrape turns them into the histogram and counter families.
    """

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor
        self._lock = threading.Lock()
        # Per service: each bucket's own count (not cumulative), then the sum.
        self._durations: dict[str, tuple[list[int], list[float]]] = {}
        self._checks: dict[tuple[str, str], int] = {}
        monitor.add_listener(self.observe)

    def observe(self, report: HealthReport) -> None:
        """Count the checks of one round (the monitor calls it after each round)."""
        durations, checks, bounds = self._durations, self._checks, _BOUNDS
        with self._lock:
            for check in report.checks:
                service, seconds = check.key, check.duration
                tally = durations.get(service)
                if tally is None:
                    tally = durations[service] = ([0] * len(bounds), [0.0])
                tally[0][bisect.bisect_left(bounds, seconds)] += 1
                tally[1][0] += seconds
                labels = (service, check.outcome.value)
                checks[labels] = checks.get(labels, 0) + 1

    def _histogram(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "healthdi_health_check_duration_seconds",
            "Duration of each health check, one observation per service per round.",
            labels=["service"],
        )
        with self._lock:
            tallies = [(s, list(c), total[0]) for s, (c, total) in self._durations.items()]
        for service, counts, total in tallies:
            running, buckets = 0, []
            for bound, count in zip(_BOUND_NAMES, counts, strict=True):
                running += count
                buckets.append((bound, float(running)))
            family.add_metric([service], buckets, total)
        return family

    def _counter(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "healthdi_health_check",
            "Health checks by service and outcome.",
            labels=["service", "outcome"],
        )
        with self._lock:
            counts = list(self._checks.items())
        for labels, count in counts:
            family.add_metric(list(labels), float(count))
        return family

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        status = GaugeMetricFamily(
            "healthdi_health_status",
            "1 for the current health status (pass, warn, fail) of each name, else 0.",
            labels=["name", "status"],
        )
        for name, current in monitor.snapshot.health.items():
            for value in STATUSES:
                status.add_metric([name, value], 1.0 if value == current else 0.0)
        yield status
        yield self._histogram()
        yield self._counter()
        builds = GaugeMetricFamily(
            "healthdi_service_build_duration_seconds",
            "Seconds each service took to build, dependencies included.",
            labels=["service"],
        )
        for _, service, _ in built(monitor.injector):
            if service.lifetime is Lifetime.LAZY:
                builds.add_metric([service.label], service.build_seconds)
        yield builds


def register(monitor: HealthMonitor, registry: CollectorRegistry | None = None) -> HealthCollector:
    """Add ``monitor``'s collector to ``registry`` (the default registry when None).

    Registering the same monitor on the same registry again returns the same collector;
    another monitor on the same registry is refused (its families would repeat).
    Counts start when it is registered: register before the monitor runs.
    """
    registry = REGISTRY if registry is None else registry
    collector = _REGISTERED.get(registry)
    if collector is not None:
        if collector.monitor is not monitor:
            raise ValueError(
                "di.metrics.register(): this registry already has the healthdi metrics of "
                "another HealthMonitor, and a scrape may carry each family once; give each "
                "monitor its own registry (registry=CollectorRegistry())"
            )
        return collector
    collector = HealthCollector(monitor)
    registry.register(collector)
    _REGISTERED[registry] = collector
    return collector


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The text exposition of ``registry`` (default: the default registry) and its type."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(REGISTRY if registry is None else registry), CONTENT_TYPE_LATEST
