"""What a health check reports: one result per checked service, and the whole."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["HealthCheckResult", "HealthReport", "Outcome"]


class Outcome(enum.StrEnum):
    """How one check ended."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """The result of checking one service.

    ``started_at`` is a Unix timestamp and ``duration`` is in seconds; ``error`` is what
    the check raised (a :class:`~di.HealthCheckTimeoutError` on timeout), None when healthy.
    """

    key: str
    scope: str
    outcome: Outcome
    error: Exception | None
    started_at: float
    duration: float

    @property
    def started(self) -> datetime:
        """When the check started, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.started_at, UTC)

    @property
    def healthy(self) -> bool:
        return self.outcome is Outcome.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of this result."""
        return {
            "key": self.key,
            "scope": self.scope,
            "outcome": self.outcome.value,
            "error": None if self.error is None else error_text(self.error),
            "error_type": None if self.error is None else type(self.error).__qualname__,
            "started": self.started.isoformat(),
            "duration_ms": round(self.duration * 1000, 3),
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check of one call, in the order they started (reverse invocation order).

    >>> report = await injector.ahealth_report()
    >>> report.healthy
    True
    >>> report.as_map()
    {'app.Database': None, 'app.Cache': None}
    """

    checks: tuple[HealthCheckResult, ...]

    @property
    def healthy(self) -> bool:
        """Whether every check passed (an empty report is healthy)."""
        return all(check.outcome is Outcome.HEALTHY for check in self.checks)

    def as_map(self) -> dict[str, Exception | None]:
        """The status map: each service key to its error, or None when healthy."""
        return {check.key: check.error for check in self.checks}

    def __getitem__(self, key: str) -> HealthCheckResult:
        for check in self.checks:
            if check.key == key:
                return check
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the report."""
        return {"healthy": self.healthy, "checks": [check.to_dict() for check in self.checks]}


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when its ``__str__`` fails: rendering a check's error
    (in a log, an answer, a report) must never fail in its turn."""
    try:
        return str(error)
    except (Exception, SystemExit) as failure:
        return f"<str() of the {type(error).__name__} raised {type(failure).__name__}>"
