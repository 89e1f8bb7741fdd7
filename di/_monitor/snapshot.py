"""The values a monitor publishes, and the statuses of every name it answers for.

:class:`HealthSnapshot` is one publish, computed once for every reader (the HTTP
answers, the gRPC servicer, the metrics collector) by :func:`compose`; :class:`Basis`
is what its statuses are computed from, kept so that ``?exclude=`` can compute them
again with some checks left out.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..health import HealthCheckResult, HealthReport, Outcome, Status

LIVENESS = "liveness"
STARTUP = "startup"
"""The startup probe's name: NOT_SERVING until the start completed, then SERVING."""

NOT_STARTED, STARTING, STARTED, FAILED = "not started", "starting", "started", "failed"
# Why names are held NOT_SERVING before they are ready, by phase of the start.
_STARTUP = {FAILED: "failed", STARTED: "first round of checks not completed"}


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


class ServingStatus(enum.IntEnum):
    """A name's status, numbered as in the gRPC health protocol."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


@dataclass(frozen=True, slots=True, eq=False)
class HealthSnapshot:
    """What a :class:`HealthMonitor` published at one moment, computed once for every reader.

    The HTTP answers, the gRPC servicer and the metrics collector render one of these
    (``monitor.snapshot``) rather than asking the monitor name by name; a new one is
    published whenever the statuses are recomputed. Its mappings are read-only.
    """

    version: int
    """Grows with each publish: answers rendered from a snapshot keep until it changes."""
    statuses: Mapping[str, ServingStatus]
    """Every name (``""``, the groups, ``"startup"``, each checked service) and its status."""
    health: Mapping[str, Status]
    """Each name's ``"pass"``, ``"warn"`` (SERVING, a check degraded or failing below
    its failure threshold) or ``"fail"``."""
    results: Mapping[str, tuple[HealthCheckResult, ...]]
    """The latest check results that make up each name's status."""
    missing: Mapping[str, tuple[str, ...]]
    """For each group listing members: those with no result in the latest report."""
    reasons: tuple[tuple[str, str], ...]
    """Why names read NOT_SERVING whatever the checks say (see ``HealthMonitor.reasons``)."""
    report: HealthReport | None
    """The latest round's report (with the results its policies carried over from
    earlier rounds); None before the first."""
    ready: bool
    """Whether the start and then one round of checks had completed."""
    overdue: bool
    """Whether no round had completed for ``stale_after`` seconds."""
    shutting_down: bool
    """Whether :meth:`HealthMonitor.enter_graceful_shutdown` had been called."""
    unbuilt: tuple[str, ...]
    """Services with a health check that were not built, so not checked (empty when
    the monitor's ``unbuilt`` is ``"ignore"``); the ``""`` and ``"*"`` names list them."""
    manual: Mapping[str, ServingStatus]
    """The statuses set with :meth:`HealthMonitor.set_status`, by name."""
    every_check: frozenset[str]
    """The names that answer for every checked service: ``""`` and the ``"*"`` groups."""
    started: bool = False
    """Whether the start (the injector's ``astart()``) had completed: ``"startup"``."""
    waiting: tuple[str, ...] = ()
    """Services not checked yet because their policy's ``initial_delay`` has not passed."""
    streaks: Mapping[str, tuple[int, int]] = field(default_factory=_empty)
    """Each checked service's consecutive failed and passed rounds, in that order."""
    ages: Mapping[str, float] = field(default_factory=_empty)
    """For a result carried over from an earlier round (its policy's ``interval``):
    its age in seconds when published."""
    tags: Mapping[str, frozenset[str]] = field(default_factory=_empty)
    """The tags of each service that has some, by name."""
    info: Mapping[str, str] = field(default_factory=_empty)
    """The monitor's ``info``: health+json's ``version``, ``serviceId`` and the like."""
    _basis: Basis | None = field(default=None, repr=False)

    def evaluate(self, name: str, exclude: Sequence[str] = ()) -> ServingStatus | None:
        """The status of ``name`` as if the checks of the ``exclude`` keys had not run.

        Computed on demand (for ``?exclude=``); manual statuses and graceful shutdown
        still apply. None when the name is unknown.
        """
        if not exclude or self._basis is None:
            return self.statuses.get(name)
        return self._basis.statuses(frozenset(exclude)).get(name)

    def tagged(self, tag: str) -> tuple[HealthCheckResult, ...]:
        """The results of the services provided with ``tag`` (for ``?tag=``)."""
        tags = self.tags
        return tuple(
            result
            for result in self.results.get("", ())
            if tag in tags.get(result.key, frozenset())
        )


class Basis:
    """What a snapshot's statuses are computed from, kept to compute them again with
    some checks left out (:meth:`HealthSnapshot.evaluate`)."""

    __slots__ = (
        "checks",
        "damped",
        "flowing",
        "groups",
        "held",
        "overrides",
        "shutting_down",
        "started",
        "unbuilt",
        "waiting",
    )

    def __init__(
        self,
        checks: Sequence[HealthCheckResult],
        groups: Mapping[str, tuple[str, ...] | None],
        overrides: Mapping[str, ServingStatus],
        flowing: frozenset[str],
        held: bool,
        shutting_down: bool,
        unbuilt: tuple[str, ...],
        *,
        damped: Mapping[str, bool] | None = None,
        waiting: tuple[str, ...] = (),
        started: bool = False,
    ) -> None:
        self.checks = checks
        self.groups = groups
        self.overrides = overrides
        self.flowing = flowing  # overridden names that are services: they stand for checks
        self.held = held  # not ready yet, or checks overdue: NOT_SERVING whatever they say
        self.shutting_down = shutting_down
        self.unbuilt = unbuilt  # with unbuilt="fail": what holds "" and "*" NOT_SERVING
        self.damped = damped or {}  # services whose published health differs from their check
        self.waiting = waiting  # services not checked yet: their initial delay
        self.started = started

    def statuses(self, exclude: frozenset[str] = frozenset()) -> dict[str, ServingStatus]:
        """Every name's status, as if the checks of the ``exclude`` keys had not run."""
        results = {check.key: check.healthy for check in self.checks if check.key not in exclude}
        for name, healthy in self.damped.items():  # thresholds: the status published
            if name in results:
                results[name] = healthy
        for name in self.waiting:  # not checked yet: not known to pass
            if name not in exclude:
                results[name] = False
        for name in self.flowing:  # a service's status set by hand stands for its check
            if name not in exclude:
                results[name] = self.overrides[name] is ServingStatus.SERVING
        held = self.held
        every = all(results.values()) and not any(label not in exclude for label in self.unbuilt)
        statuses: dict[str, ServingStatus] = {}
        statuses[""] = serving(not held and every)
        for group, members in self.groups.items():
            if not members and members is not None:
                statuses[group] = ServingStatus.SERVING  # checks nothing: alive
            elif held:
                statuses[group] = ServingStatus.NOT_SERVING
            elif members is None:
                statuses[group] = serving(every)
            else:
                wanted = [label for label in members if label not in exclude]
                statuses[group] = serving(all(results.get(label, False) for label in wanted))
        for key, healthy in results.items():
            statuses.setdefault(key, serving(not held and healthy))
        statuses.update(self.overrides)
        if self.shutting_down:
            # Draining: nothing takes traffic, but liveness keeps its word (a drain is
            # no reason to restart the process).
            liveness = statuses.get(LIVENESS)
            statuses = dict.fromkeys(statuses, ServingStatus.NOT_SERVING)
            if liveness is not None:
                statuses[LIVENESS] = liveness
        # Started once is started for the life of the process, drain or not.
        statuses[STARTUP] = serving(self.started)
        return statuses


def serving(healthy: bool) -> ServingStatus:
    return ServingStatus.SERVING if healthy else ServingStatus.NOT_SERVING


@dataclass(slots=True)
class State:
    """What the monitor holds that a snapshot is composed from."""

    groups: Mapping[str, tuple[str, ...] | None]
    report: HealthReport | None
    overrides: Mapping[str, ServingStatus]
    flowing: frozenset[str]
    phase: str
    ready: bool
    overdue: bool
    shutting_down: bool
    unbuilt: tuple[str, ...]
    failing_unbuilt: bool  # the monitor's unbuilt="fail"
    version: int
    damped: Mapping[str, bool]
    waiting: tuple[str, ...]
    streaks: Mapping[str, tuple[int, int]]
    carried: Mapping[str, float]  # label -> time.time() of the carried result
    tags: Mapping[str, frozenset[str]]
    info: Mapping[str, str]


def compose(state: State) -> HealthSnapshot:
    """The snapshot ``state`` makes, computed once for every reader."""
    report = state.report
    checks = tuple(report.checks) if report is not None else ()
    groups = state.groups
    pending = tuple(label for label in state.unbuilt if label not in state.flowing)
    started = state.phase == STARTED
    basis = Basis(
        checks,
        groups,
        dict(state.overrides),
        state.flowing,
        not state.ready or state.overdue,
        state.shutting_down,
        pending if state.failing_unbuilt else (),
        damped=state.damped,
        waiting=state.waiting,
        started=started,
    )
    statuses = basis.statuses()
    damped = state.damped
    by_key: dict[str, list[HealthCheckResult]] = {}
    for check in checks:
        by_key.setdefault(check.key, []).append(check)
    results: dict[str, tuple[HealthCheckResult, ...]] = {}
    health: dict[str, Status] = {}
    for name, status in statuses.items():
        if name == "":
            found = checks
        elif name in groups:
            labels = groups[name]
            if labels is None:
                found = checks
            else:
                members = set(labels)
                found = tuple(check for check in checks if check.key in members)
        elif name == STARTUP:
            found = ()
        else:
            found = tuple(by_key.get(name, ()))
        results[name] = found
        if status is not ServingStatus.SERVING:
            health[name] = "fail"
        elif any(check.outcome is Outcome.DEGRADED for check in found) or (
            damped and any(check.key in damped and not check.healthy for check in found)
        ):
            health[name] = "warn"  # degraded, or failing below its failure threshold
        elif pending and (name == "" or groups.get(name, ()) is None):
            health[name] = "warn"  # SERVING, but some checks never ran
        else:
            health[name] = "pass"
    missing = {
        group: tuple(label for label in labels if label not in by_key)
        for group, labels in groups.items()
        if labels
    }
    now = time.time()
    return HealthSnapshot(
        version=state.version,
        statuses=MappingProxyType(statuses),
        health=MappingProxyType(health),
        results=MappingProxyType(results),
        missing=MappingProxyType(missing),
        reasons=reasons(state, pending if state.failing_unbuilt else ()),
        report=report,
        ready=state.ready,
        overdue=state.overdue,
        shutting_down=state.shutting_down,
        unbuilt=state.unbuilt,
        manual=MappingProxyType(dict(state.overrides)),
        every_check=frozenset(["", *(group for group, labels in groups.items() if labels is None)]),
        started=started,
        waiting=state.waiting,
        streaks=MappingProxyType(dict(state.streaks)),
        ages=MappingProxyType({label: max(now - at, 0.0) for label, at in state.carried.items()}),
        tags=state.tags,
        info=state.info,
        _basis=basis,
    )


def reasons(state: State, pending: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Why names read NOT_SERVING whatever the checks say."""
    found = []
    if not state.ready:
        found.append(("startup", _STARTUP.get(state.phase, "not started")))
    elif state.overdue:
        found.append(("checks", "health checks overdue"))
    if pending:
        count = len(pending)
        services = (
            "service with a health check is" if count == 1 else "services with a health check are"
        )
        found.append(("unbuilt", f"{count} {services} not built"))
    if state.waiting:
        count = len(state.waiting)
        services = "service is" if count == 1 else "services are"
        found.append(("waiting", f"{count} {services} waiting for the initial delay"))
    if state.shutting_down:
        found.append(("shutdown", "shutting down"))
    return tuple(found)
