"""What a health check reports: one result per checked service, and the whole."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["Degraded", "HealthCheckResult", "HealthReport", "Outcome", "Status"]

Status = Literal["pass", "warn", "fail"]


class Degraded(Exception):
    """Raised by a health check whose service works, but impaired.

    The check's outcome is :attr:`Outcome.DEGRADED`: the application stays healthy and
    serving (gRPC SERVING, readiness 200, health+json ``"warn"``), and the reason shows
    where details are shown. ``details`` are observations, as a check may also return.

    >>> async def health_check(self) -> None:
    ...     if await self.replication_lag() > 30:
    ...         raise di.Degraded("replication lag over 30 s")
    """

    def __init__(self, reason: str = "degraded", *, details: Mapping[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.details = details


class Outcome(enum.StrEnum):
    """How one check ended.

    DEGRADED: the check raised :class:`Degraded`, or the service was provided with
    ``critical=False`` and its check failed or timed out. It counts as healthy.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    TIMEOUT = "timeout"


_STATUS: dict[Outcome, Status] = {
    Outcome.HEALTHY: "pass",
    Outcome.DEGRADED: "warn",
    Outcome.UNHEALTHY: "fail",
    Outcome.TIMEOUT: "fail",
}


_set = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class HealthCheckResult:
    """The result of checking one service.

    ``started_at`` is a Unix timestamp and ``duration`` is in seconds; ``error`` is what
    the check raised (a :class:`~di.HealthCheckTimeoutError` on timeout, the
    :class:`~di.Degraded` or the failure of a degraded check), None when it passed.
    ``details`` are the observations the check returned as a mapping (pool size,
    replication lag, latency), or those of the :class:`~di.Degraded` it raised.
    """

    key: str
    scope: str
    outcome: Outcome
    error: Exception | None
    started_at: float
    duration: float
    details: Mapping[str, Any] | None = None

    def __init__(
        self,
        key: str,
        scope: str,
        outcome: Outcome,
        error: Exception | None,
        started_at: float,
        duration: float,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        # What dataclass would write, with one lookup fewer per field: one is made for
        # every check of every call.
        _set(self, "key", key)
        _set(self, "scope", scope)
        _set(self, "outcome", outcome)
        _set(self, "error", error)
        _set(self, "started_at", started_at)
        _set(self, "duration", duration)
        _set(self, "details", details)

    @property
    def started(self) -> datetime:
        """When the check started, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.started_at, UTC)

    @property
    def healthy(self) -> bool:
        """Whether the check passed or is only degraded."""
        return self.outcome is Outcome.HEALTHY or self.outcome is Outcome.DEGRADED

    @property
    def status(self) -> Status:
        """``"pass"``, ``"warn"`` (degraded) or ``"fail"``, as in health+json."""
        return _STATUS[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of this result (``details`` only when there are some)."""
        data: dict[str, Any] = {
            "key": self.key,
            "scope": self.scope,
            "outcome": self.outcome.value,
            "error": None if self.error is None else error_text(self.error),
            "error_type": None if self.error is None else type(self.error).__qualname__,
            "started": self.started.isoformat(),
            "duration_ms": round(self.duration * 1000, 3),
        }
        if self.details:
            data["details"] = dict(self.details)
        return data


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
        """Whether every check passed or is degraded (an empty report is healthy)."""
        return all(check.healthy for check in self.checks)

    @property
    def status(self) -> Status:
        """``"fail"`` if a check failed, else ``"warn"`` if one is degraded, else ``"pass"``."""
        status: Status = "pass"
        for check in self.checks:
            if check.outcome is Outcome.DEGRADED:
                status = "warn"
            elif check.outcome is not Outcome.HEALTHY:
                return "fail"
        return status

    def as_map(self) -> dict[str, Exception | None]:
        """The status map: each service key to its error, or None when it passed.

        A degraded check maps to its :class:`~di.Degraded` (or its failure).
        """
        return {check.key: check.error for check in self.checks}

    def __getitem__(self, key: str) -> HealthCheckResult:
        for check in self.checks:
            if check.key == key:
                return check
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the report."""
        return {
            "healthy": self.healthy,
            "status": self.status,
            "checks": [check.to_dict() for check in self.checks],
        }


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when its ``__str__`` fails: rendering a check's error
    (in a log, an answer, a report) must never fail in its turn."""
    try:
        return str(error)
    except (Exception, SystemExit) as failure:
        return f"<str() of the {type(error).__name__} raised {type(failure).__name__}>"


def explain_error(error: BaseException, limit: int = 500) -> str:
    """``Type: text (notes)`` in one line, with what is empty left out and the text cut
    at ``limit`` characters: how logs and the CLI name a failure."""
    text = error_text(error)
    if len(text) > limit:
        text = text[:limit] + "..."
    notes = "; ".join(str(note) for note in getattr(error, "__notes__", ()))
    return type(error).__name__ + (f": {text}" if text else "") + (f" ({notes})" if notes else "")
