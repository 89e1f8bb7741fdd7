"""The per-service policies of a monitor's rounds: spacing, delays and thresholds.

The path of one round through here: the engine asks :meth:`Round.due` about each
checked service, with its :class:`~di.HealthPolicy` (the service's or the monitor's
default), whether to check it now (its ``initial_delay`` passed, its ``interval``
since its last check); then :meth:`Rounds.merge` takes the report, carries over the
last result of each service not checked now, counts each service's consecutive
failures and passes, and decides from its thresholds which status to publish for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._health.causes import checked_dependencies, with_blocked_by
from ..health import HealthCheckResult, HealthPolicy, HealthReport

if TYPE_CHECKING:
    from .._container.service import Service

_SLACK = 0.001  # seconds: a round started a hair early still counts as due


class Round:
    """One round's view of the policies: what :meth:`due` left out, and why."""

    __slots__ = ("memory", "now", "skipped", "waiting")

    def __init__(self, memory: Rounds) -> None:
        self.memory = memory
        self.now = time.monotonic()
        self.skipped: list[str] = []  # not due: their last result is carried over
        self.waiting: list[str] = []  # in their initial delay

    def due(self, service: Service, policy: HealthPolicy) -> bool:
        """Whether to check ``service`` in this round (the engine asks)."""
        memory = self.memory
        if policy.failure_threshold != 1 or policy.success_threshold != 1:
            memory.thresholds[service.label] = policy
        if policy.interval is not None:
            memory.spaced.add(service.label)
        if policy.interval is None and not policy.initial_delay:
            return True
        now = self.now
        if policy.initial_delay:
            first = memory.seen.setdefault(service, now)
            if now - first + _SLACK < policy.initial_delay:
                self.waiting.append(service.label)
                return False
        if policy.interval is not None:
            last = memory.checked_at.get(service)
            if last is not None and now - last + _SLACK < policy.interval:
                self.skipped.append(service.label)
                return False
            memory.checked_at[service] = now
        return True


class Rounds:
    """What a monitor remembers between rounds, per service, for their policies."""

    __slots__ = (
        "carried",
        "checked_at",
        "damped",
        "last",
        "published",
        "seen",
        "spaced",
        "streaks",
        "thresholds",
        "waiting",
    )

    def __init__(self) -> None:
        self.seen: dict[Service, float] = {}  # when each was first seen built
        self.checked_at: dict[Service, float] = {}  # when each was last checked
        self.waiting: tuple[str, ...] = ()  # labels in their initial delay
        self.spaced: set[str] = set()  # labels whose policy has an interval
        self.last: dict[str, HealthCheckResult] = {}  # the latest result of each of them
        self.carried: dict[str, float] = {}  # label -> time.time() of a carried result
        self.streaks: dict[str, tuple[int, int]] = {}  # consecutive (failures, passes)
        self.published: dict[str, bool] = {}  # the health published for those with thresholds
        self.damped: dict[str, bool] = {}  # those where it differs from the latest check
        self.thresholds: dict[str, HealthPolicy] = {}  # labels whose thresholds are not 1

    def begin(self) -> Round:
        """A round starts now."""
        return Round(self)

    def blame_carried(
        self, round_: Round, report: HealthReport, find: Callable[[str], Service | None]
    ) -> HealthReport:
        """``report`` with each fresh failure that none of its fresh dependencies explains
        blamed on the failed results carried over into this round (a dependency checked
        at its own interval): it stays the one root cause, round after round."""
        last = self.last
        carried = [last[label] for label in round_.skipped if label in last]
        if all(result.healthy for result in carried) or all(
            check.healthy or check.blocked_by for check in report.checks
        ):
            return report
        results: dict[Service, HealthCheckResult] = {}
        for result in (*report.checks, *carried):
            service = find(result.key)
            if service is not None:
                results[service] = result
        checks = []
        for check in report.checks:
            service = None if check.healthy or check.blocked_by else find(check.key)
            if service is not None:
                blocked_by = tuple(
                    dependency.label
                    for dependency in checked_dependencies(service, results)
                    if not results[dependency].healthy
                )
                if blocked_by:
                    check = with_blocked_by(check, blocked_by)
            checks.append(check)
        return HealthReport(tuple(checks))

    def merge(self, round_: Round, report: HealthReport) -> HealthReport:
        """The report to publish: ``report`` with the results carried over from earlier
        rounds; the streaks and the published health updated from its fresh results."""
        self.waiting = tuple(round_.waiting)
        last = self.last
        carried: dict[str, float] = {}
        extra = []
        for label in round_.skipped:
            result = last.get(label)
            if result is not None:
                extra.append(result)
                carried[label] = result.started_at
        self.carried = carried
        streaks = self.streaks
        thresholds = self.thresholds
        published = self.published
        damped = self.damped
        spaced = self.spaced
        for check in report.checks:
            key = check.key
            if spaced and key in spaced:
                last[key] = check
            healthy = check.healthy
            policy = thresholds.get(key) if thresholds else None
            if policy is None:
                # Counted while failing (a passing check without thresholds is 0 and 1).
                if not healthy:
                    streaks[key] = (streaks.get(key, (0, 0))[0] + 1, 0)
                elif streaks:
                    streaks.pop(key, None)
                if damped:
                    damped.pop(key, None)
                continue
            failures, passes = streaks.get(key, (0, 0))
            if healthy:
                passes, failures = passes + 1, 0
            else:
                failures, passes = failures + 1, 0
            streaks[key] = (failures, passes)
            before = published.get(key)
            if before is None or before == healthy:
                now_healthy = healthy  # the first result decides at once
            elif before:  # passing: NOT_SERVING after enough failures in a row
                now_healthy = failures < policy.failure_threshold
            else:  # failing: SERVING after enough passes in a row
                now_healthy = passes >= policy.success_threshold
            published[key] = now_healthy
            if now_healthy == healthy:
                damped.pop(key, None)
            else:
                damped[key] = now_healthy
        if len(last) > 4 * (len(report.checks) + len(extra)) + 64:
            self._forget({check.key for check in (*report.checks, *extra)})
        if not extra:
            return report
        return HealthReport((*report.checks, *extra))

    def _forget(self, keep: set[str]) -> None:
        """Drop what is remembered of services no longer checked (released, overridden)."""
        for memory in (self.last, self.streaks, self.published, self.damped):
            for label in [label for label in memory if label not in keep]:
                del memory[label]
