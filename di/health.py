"""What a health check reports: one result per checked service, and the whole."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "Degraded",
    "HealthCheckResult",
    "HealthPolicy",
    "HealthReport",
    "Outcome",
    "Status",
]

Status = Literal["pass", "warn", "fail"]
"""A status in the IETF health-check draft's words: healthy, degraded, unhealthy."""


class Degraded(Exception):
    """Raised by a health check whose service works, but impaired.

    The check's outcome is :attr:`Outcome.DEGRADED`: the application stays healthy and
    serving (gRPC SERVING, readiness 200, health+json ``"warn"``), and the reason shows
    where details are shown. ``details`` are observations, as a check may also return.

    >>> async def health_check(self) -> None:
    ...     if await self.replication_lag() > 30:
    ...         raise di.Degraded("replication lag over 30 s")
    """

    # Read by the engine: a subclass that does not call __init__ still has them.
    reason: str = "degraded"
    details: Mapping[str, Any] | None = None
    blocked_by: tuple[str, ...] = ()

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


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How one service's check is run and read: given per service as
    ``provide(..., health_policy=...)``, and as the default for every service as
    ``HealthMonitor(policy=...)``. Validated when made.

    - ``timeout``: seconds this check may take, instead of the injector's per-check
      timeout (the injector's global timeout and a monitor's round still bound it);
    - ``interval``: a monitor checks this service at most that often, and republishes
      its last result in between (``/health`` shows its age);
    - ``initial_delay``: a monitor does not check it until that long after it was
      built; meanwhile it reads as waiting (neither passed nor failed), and the names
      it belongs to are not SERVING;
    - ``failure_threshold`` / ``success_threshold``: a monitor turns the service's
      published status NOT_SERVING only after that many consecutive failed rounds, and
      back to SERVING after that many consecutive passes (every raw result is still
      in the report; ``/health`` shows the counts);
    - ``skip_when_blocked``: when a service it depends on failed in the same call, its
      check is not run; its result is a failure whose ``blocked_by`` names the cause.

    >>> injector.provide(Repo, health_policy=di.HealthPolicy(failure_threshold=3))
    """

    timeout: float | None = None
    interval: float | None = None
    initial_delay: float = 0.0
    failure_threshold: int = 1
    success_threshold: int = 1
    skip_when_blocked: bool = False
    # Whether a monitor's rounds have anything to do for it (spacing, delay,
    # thresholds): a service whose policy does not is checked every round, unasked.
    monitored: bool = field(init=False, repr=False, compare=False, default=False)
    # Whether it changes nothing at all (the engine's quick path).
    plain: bool = field(init=False, repr=False, compare=False, default=True)

    def __post_init__(self) -> None:
        for name in ("timeout", "interval", "initial_delay"):
            value = getattr(self, name)
            if value is None and name != "initial_delay":
                continue
            zero = name == "initial_delay"
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not (value >= 0 if zero else value > 0)
            ):
                bound = ">= 0" if zero else "> 0"
                alternative = "" if zero else " or None"
                raise ValueError(
                    f"HealthPolicy({name}=...) must be a finite number of seconds {bound}"
                    f"{alternative}, got {value!r}"
                )
        for name in ("failure_threshold", "success_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"HealthPolicy({name}=...) must be a whole number of rounds >= 1, got {value!r}"
                )
        if not isinstance(self.skip_when_blocked, bool):
            raise ValueError(
                "HealthPolicy(skip_when_blocked=...) must be True or False, "
                f"got {self.skip_when_blocked!r}"
            )
        monitored = (
            self.interval is not None
            or self.initial_delay > 0
            or self.failure_threshold != 1
            or self.success_threshold != 1
        )
        object.__setattr__(self, "monitored", monitored)
        plain = not monitored and self.timeout is None and not self.skip_when_blocked
        object.__setattr__(self, "plain", plain)


DEFAULT_POLICY = HealthPolicy()


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
    ``blocked_by`` names, for a failed check, the failed services it depends on
    (directly, or through services without a check), from what the container recorded
    each factory needed: a failure that is only the echo of another.
    """

    key: str
    scope: str
    outcome: Outcome
    error: Exception | None
    started_at: float
    duration: float
    details: Mapping[str, Any] | None = None
    blocked_by: tuple[str, ...] = ()

    def __init__(
        self,
        key: str,
        scope: str,
        outcome: Outcome,
        error: Exception | None,
        started_at: float,
        duration: float,
        details: Mapping[str, Any] | None = None,
        blocked_by: tuple[str, ...] = (),
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
        _set(self, "blocked_by", blocked_by)

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
            "error_type": None if self.error is None else type_name(self.error, qualified=True),
            "started": self.started.isoformat(),
            "duration_ms": round(self.duration * 1000, 3),
        }
        if self.details:
            data["details"] = dict(self.details)
        if self.blocked_by:
            data["blocked_by"] = list(self.blocked_by)
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

    @property
    def root_causes(self) -> tuple[str, ...]:
        """The failed services none of whose dependencies failed: one per cause.

        A service that failed because one it depends on failed names it in its
        ``blocked_by`` and is not a root cause.
        """
        return tuple(
            check.key for check in self.checks if not check.healthy and not check.blocked_by
        )

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
            "root_causes": list(self.root_causes),
            "checks": [check.to_dict() for check in self.checks],
        }


ERROR_TEXT_LIMIT = 1000
"""Characters of an error's text that a report, an answer, a log line or ``di check``
shows at most; a longer text is cut there, with a mark saying how much was cut."""


def error_text(error: BaseException) -> str:
    """``str(error)``, cut at :data:`ERROR_TEXT_LIMIT` characters, or a stand-in when its
    ``__str__`` fails: rendering a check's error (in a log, an answer, a report) must
    never fail in its turn."""
    return cut(_whole_text(error), ERROR_TEXT_LIMIT)


def _whole_text(error: BaseException) -> str:
    try:
        text = str(error)
        if type(text) is not str:  # a str subclass, whose methods may be anything
            text = str.__str__(text)
    except KeyboardInterrupt:
        raise
    except BaseException as failure:  # whatever __str__ raised is the check's doing
        return f"<str() of the {type_name(error)} raised {type_name(failure)}>"
    return text


def explain_error(error: BaseException, limit: int = ERROR_TEXT_LIMIT) -> str:
    """``Type: text (notes)`` on one printable line (see :func:`printable`), the text cut
    at ``limit`` characters: how logs and the CLI name a failure."""
    text = cut(_whole_text(error), limit)
    notes = "; ".join(cut(note, limit) for note in _notes(error))
    name = type_name(error)
    line = name + (f": {text}" if text else "") + (f" ({notes})" if notes else "")
    return printable(line)


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a mark saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def type_name(value: object, *, qualified: bool = False) -> str:
    """The name (or qualified name) of ``value``'s class; ``"object"`` when even that
    cannot be read."""
    try:
        kind = type(value)
        name = kind.__qualname__ if qualified else kind.__name__
        return name if type(name) is str else "object"
    except Exception:  # a metaclass whose __name__ raises
        return "object"


def printable(text: str) -> str:
    """``text`` with every character a terminal or a log would act on escaped.

    Control characters, line and paragraph separators, bidirectional and other
    invisible format characters (every character ``str.isprintable`` refuses) become
    ``\\n``, ``\\x1b``, ``\\u2028`` and the like, so that a check's error can neither
    start a line of its own (in a log, a table, a text answer) nor move the cursor.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    named = _NAMED.get(char)
    if named is not None:
        return named
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _notes(error: BaseException) -> list[str]:
    """The texts of ``error.__notes__`` (a few, each as :func:`error_text` renders)."""
    try:
        notes = getattr(error, "__notes__", None)
        if not isinstance(notes, list | tuple):
            return []
        texts = []
        for note in notes[:_NOTES]:
            try:
                text = note if type(note) is str else str.__str__(str(note))
            except KeyboardInterrupt:
                raise
            except BaseException as failure:
                text = f"<str() of a note raised {type_name(failure)}>"
            texts.append(text)
        return texts
    except KeyboardInterrupt:
        raise
    except BaseException:
        return []


_NOTES = 10  # notes of one error shown at most
