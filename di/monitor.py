"""Health over time: re-check in the background, serve statuses by name, watch changes."""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ._runner import in_event_loop
from ._service import Service
from .health import HealthCheckResult, HealthReport
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
    """Runs an injector's health checks every ``interval`` and serves the statuses.

    Names: ``""`` is the whole application (SERVING when every check passes), each
    checked service key is its own name, and each group is a name. A group lists
    services by type or name, or ``"*"`` for every checked service; it is SERVING when
    each of its members was checked and passed. An empty group checks nothing and is
    SERVING while the process runs, which is what liveness should be. Defaults:
    ``{"liveness": [], "readiness": ["*"]}``; ``groups`` adds to and overrides them.

    ``refresh()`` reuses a result younger than ``success_ttl`` (after a healthy report)
    or ``failure_ttl`` (after an unhealthy one); by default ``interval`` and
    ``min(interval, 1.0)``, so that recovery is seen sooner than failure.

    >>> monitor = HealthMonitor(injector, interval=5.0, groups={"db": [Database]})
    >>> async with monitor:                 # checks every 5 s until the block exits
    ...     async for status in monitor.watch("db"):
    ...         print(status.name)
    """

    def __init__(
        self,
        injector: Scope,
        *,
        interval: float = 5.0,
        success_ttl: float | None = None,
        failure_ttl: float | None = None,
        groups: Mapping[str, Sequence[type[Any] | str]] | None = None,
    ) -> None:
        if not isinstance(injector, Scope):
            raise TypeError(f"HealthMonitor() needs an Injector or Scope, got {injector!r}")
        for argument, value in (
            ("interval", interval),
            ("success_ttl", success_ttl),
            ("failure_ttl", failure_ttl),
        ):
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"HealthMonitor({argument}=...) must be >= 0, got {value!r}")
        self.injector = injector
        self.interval = interval
        self.success_ttl = interval if success_ttl is None else success_ttl
        self.failure_ttl = min(interval, 1.0) if failure_ttl is None else failure_ttl
        self._groups = {
            name: self._members(name, members)
            for name, members in {**DEFAULT_GROUPS, **(groups or {})}.items()
        }
        self._report: HealthReport | None = None
        self._checked = -math.inf  # time.monotonic() of the latest report
        self._overrides: dict[str, ServingStatus] = {}
        self._shutting_down = False
        self._changed = anyio.Event() if _in_loop() else None
        self._statuses: dict[str, ServingStatus] = self._compute()
        self._refreshing: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    def _members(self, group: str, members: Sequence[type[Any] | str]) -> list[Service] | None:
        if isinstance(members, str):
            raise TypeError(f"HealthMonitor group {group!r} must list members, got {members!r}")
        if "*" in members:
            return None
        # Unknown members are an error now, not a group that can never be SERVING.
        return [self.injector._find(member, None)[0] for member in members]

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await self.check()
            await anyio.sleep(self.interval)

    async def __aenter__(self) -> HealthMonitor:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self.run)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(kind, error, tb)

    async def check(self) -> HealthReport:
        """Run the checks now and publish the result."""
        report = await self.injector.ahealth_report()
        self._report = report
        self._checked = time.monotonic()
        self._publish()
        return report

    async def refresh(self) -> HealthReport:
        """The latest report if it is younger than its TTL, else a fresh one.

        Concurrent refreshes share one run.
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

    def names(self) -> list[str]:
        """Every name with a status: ``""``, the groups, and each checked service."""
        return list(self._statuses)

    def status(self, name: str) -> ServingStatus | None:
        """The status of ``name``; None when the name is unknown."""
        return self._statuses.get(name)

    def statuses(self) -> dict[str, ServingStatus]:
        """Every name and its status."""
        return dict(self._statuses)

    def evaluate(self, name: str, exclude: Sequence[str] = ()) -> ServingStatus | None:
        """The status of ``name`` as if the checks of the ``exclude`` keys had not run.

        For ``?exclude=`` on Kubernetes endpoints; manual statuses and graceful shutdown
        still apply. None when the name is unknown.
        """
        if not exclude:
            return self.status(name)
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

    async def watch(self, name: str) -> AsyncIterator[ServingStatus]:
        """The status of ``name`` now, then on every change.

        An unknown name yields SERVICE_UNKNOWN and keeps waiting for it to appear. A slow
        consumer sees the latest status, never a backlog.
        """
        last: ServingStatus | None = None
        while True:
            if self._changed is None:
                self._changed = anyio.Event()
            changed = self._changed
            current = self._statuses.get(name, ServingStatus.SERVICE_UNKNOWN)
            if current is not last:
                last = current
                yield current
            await changed.wait()

    def _publish(self) -> None:
        statuses = self._compute()
        if statuses == self._statuses:
            return
        for name in sorted(set(statuses) | set(self._statuses)):
            old, new = self._statuses.get(name), statuses.get(name)
            if old != new:
                logger.info(
                    "health status of %r: %s -> %s",
                    name or "(overall)",
                    old.name if old is not None else "(none)",
                    new.name if new is not None else "(gone)",
                )
        self._statuses = statuses
        changed, self._changed = self._changed, anyio.Event() if _in_loop() else None
        if changed is not None:
            changed.set()

    def _compute(self, exclude: frozenset[str] = frozenset()) -> dict[str, ServingStatus]:
        report = self._report
        checks = report.checks if report is not None else ()
        results = {check.key: check.healthy for check in checks if check.key not in exclude}
        statuses: dict[str, ServingStatus] = {}
        if report is None:
            statuses[""] = ServingStatus.UNKNOWN
        else:
            statuses[""] = _serving(all(results.values()))
        for group, members in self._groups.items():
            if not members and members is not None:
                statuses[group] = ServingStatus.SERVING  # checks nothing: alive
            elif report is None:
                statuses[group] = ServingStatus.UNKNOWN
            elif members is None:
                statuses[group] = _serving(all(results.values()))
            else:
                wanted = [m.label for m in members if m.label not in exclude]
                statuses[group] = _serving(all(results.get(label, False) for label in wanted))
        for key, healthy in results.items():
            statuses.setdefault(key, _serving(healthy))
        statuses.update(self._overrides)
        if self._shutting_down:
            statuses = dict.fromkeys(statuses, ServingStatus.NOT_SERVING)
        return statuses


def _serving(healthy: bool) -> ServingStatus:
    return ServingStatus.SERVING if healthy else ServingStatus.NOT_SERVING


def _in_loop() -> bool:
    # anyio.Event() needs a running loop; a monitor may be made before one runs.
    return in_event_loop()
