"""The exceptions healthdi raises.

Every error names the service (or argument) it is about and says what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from .lifecycle import ServiceShutdown, ShutdownReport

__all__ = [
    "AsyncRequiredError",
    "CircularDependencyError",
    "ContextNotProvidedError",
    "DIError",
    "GraphError",
    "HealthCheckError",
    "HealthCheckTimeoutError",
    "NoHealthCheckError",
    "ScopeClosedError",
    "ScopeRequiredError",
    "ServiceAlreadyProvidedError",
    "ServiceNotBuiltError",
    "ServiceNotFoundError",
    "ShutdownError",
    "ShutdownTimeoutError",
]


class DIError(Exception):
    """Base class of every error raised by the container itself."""


class ServiceNotFoundError(DIError, LookupError):
    """Raised when a service is invoked but no scope in reach provides it.

    ``key`` is the service asked for, ``scope`` the name of the scope asked, and
    ``available`` the services that scope can see.
    """

    def __init__(self, key: str, scope: str, available: Iterable[str]) -> None:
        self.key = key
        self.scope = scope
        self.available = sorted(available)
        self.missing: object = None  # the key object, when a factory's parameter asked
        message = f"service {key!r} is not provided in scope {scope!r} or its ancestors"
        close = _close_match(key, self.available)
        if close == key:
            message += "; another class with the same name is provided (a different object)"
        elif close:
            message += f"; did you mean {close!r}?"
        if self.available:
            shown = ", ".join(repr(a) for a in self.available[:20])
            more = len(self.available) - 20
            message += f" (available: {shown}{f' and {more} more' if more > 0 else ''})"
        else:
            message += " (nothing else is provided there)"
        super().__init__(message)


class ContextNotProvidedError(DIError, LookupError):
    """Raised when a context key is invoked where no enclosing scope's context holds it."""

    def __init__(self, key: str, scope: str) -> None:
        self.key = key
        self.scope = scope
        self.missing: object = None  # the key object
        super().__init__(
            f"context key {key!r} has no value in scope {scope!r} nor its ancestors; open "
            f"the scope with context={{{key}: ...}} (as declared with provide_context)"
        )


class ScopeRequiredError(DIError, LookupError):
    """Raised when a scoped service is asked for where no scope builds it: the root."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.missing: object = None  # the key object
        super().__init__(
            f"service {key!r} is scoped: it is built once per scope, never in the root "
            "injector; open a scope (`with injector.scope() as scope:`) and invoke it there"
        )


class AsyncRequiredError(DIError, RuntimeError):
    """Raised when sync code asks for what only async code can build or wait for."""


class NoHealthCheckError(DIError, ValueError):
    """Raised when a single service's check is asked for and it has none."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"service {key!r} has no health check; give it a health_check() method or "
            "provide it with health_check="
        )


class GraphError(DIError):
    """Raised by ``validate()``: every problem found in the graph, one per line.

    ``problems`` lists them as strings.
    """

    def __init__(self, scope: str, problems: Sequence[str]) -> None:
        self.scope = scope
        self.problems = list(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"the graph seen from scope {scope!r} has {len(self.problems)} {noun}:\n"
            + "\n".join(f"- {problem}" for problem in self.problems)
        )


def _short(label: str) -> str:
    """A service's name without its module: what a person compares by eye."""
    return label.rpartition(".")[2] if "." in label and " " not in label else label


def _close_match(key: str, available: Sequence[str]) -> str | None:
    """The one available service whose short name is close to ``key``'s, if any."""
    shorts: dict[str, str] = {}
    for label in available:
        shorts.setdefault(_short(label), label)
    close = difflib.get_close_matches(_short(key), list(shorts), n=1, cutoff=0.75)
    return shorts[close[0]] if close else None


class ServiceAlreadyProvidedError(DIError, ValueError):
    """Raised when a scope is asked to provide a key it already provides.

    Also when a key would be both collected (``collect=True``) and bound plainly in
    reach of one scope: ``reason`` says which.
    """

    def __init__(self, key: str, scope: str, reason: str | None = None) -> None:
        self.key = key
        self.scope = scope
        if reason is None:
            reason = "use override() to replace it"
        super().__init__(f"service {key!r} is already provided in scope {scope!r}; {reason}")


class ServiceNotBuiltError(DIError, LookupError):
    """Raised when an operation needs a built service that has not been built yet.

    Health checks never build services: a service is checked only once something has
    invoked it.
    """

    def __init__(self, key: str, scope: str) -> None:
        self.key = key
        self.scope = scope
        super().__init__(
            f"service {key!r} in scope {scope!r} is provided but not built yet; "
            "invoke it first (health checks never build services)"
        )


class CircularDependencyError(DIError):
    """Raised when building a service needs that service again.

    ``path`` lists the keys from the first request to the repeated one.
    """

    def __init__(self, path: Sequence[str]) -> None:
        self.path = list(path)
        super().__init__("circular dependency: " + " -> ".join(self.path))


class HealthCheckTimeoutError(DIError, TimeoutError):
    """A health check ran out of time.

    ``limit`` names the limit that fired: ``"per-check"`` (``health_check_timeout``),
    ``"global"`` (``health_check_global_timeout``) or ``"round"`` (a monitor's round
    timeout); ``seconds`` is that limit's value.
    """

    def __init__(self, key: str, limit: str, seconds: float, detail: str = "") -> None:
        self.key = key
        self.limit = limit
        self.seconds = seconds
        what = "the monitor's round timeout" if limit == "round" else f"the {limit} timeout"
        message = f"health check of {key!r} timed out: {what} of {seconds:g} s fired"
        super().__init__(f"{message}; {detail}" if detail else message)


class HealthCheckError(DIError):
    """A health check failed without raising an ``Exception`` of its own.

    It raised a ``BaseException`` that is not an ``Exception`` (``CancelledError`` that
    nothing outside it caused, ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``),
    now in ``__cause__``; or it returned False; or it ended without a result.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"health check of {key!r} failed: {reason}")


class ScopeClosedError(DIError, RuntimeError):
    """Raised when a scope that is shut down (or shutting down) is asked to build or provide.

    A child scope is closed for good once its shutdown begins: open a new one. The root
    injector is open again once its shutdown has run every hook.
    """

    def __init__(self, scope: str, action: str, *, fix: str | None = None) -> None:
        self.scope = scope
        super().__init__(
            f"cannot {action}: {fix}"
            if fix is not None
            else f"cannot {action}: scope {scope!r} is shut down or shutting down; "
            "open a new scope (or wait for the injector's shutdown to finish)"
        )


class ShutdownTimeoutError(DIError, TimeoutError):
    """A shutdown hook overran ``Injector(shutdown_timeout=...)`` and was abandoned."""

    def __init__(self, key: str, seconds: float) -> None:
        self.key = key
        self.seconds = seconds
        super().__init__(
            f"the shutdown hook of {key!r} did not finish within the shutdown timeout of "
            f"{seconds:g} s; it was abandoned and the remaining hooks ran"
        )


class ShutdownError(DIError, ExceptionGroup[Exception]):
    """Some shutdown hooks failed; every other hook still ran.

    An ``ExceptionGroup`` of the original exceptions, each carrying a note that names
    its service (a hook that overran the shutdown timeout is a
    :class:`ShutdownTimeoutError`). ``errors`` maps each failed service to its exception:
    by key for the scope being shut down, as ``"key (scope 'name')"`` for its child
    scopes' services, so a child's service that shadows a parent's keeps its own entry.
    ``report`` is the whole shutdown's :class:`~di.ShutdownReport`, the services that
    shut down cleanly included.

    >>> try:
    ...     injector.shutdown()
    ... except ShutdownError as group:
    ...     for key, error in group.errors.items():
    ...         log.warning("%s did not shut down: %s", key, error)
    """

    errors: Mapping[str, Exception]
    report: ShutdownReport

    def __new__(
        cls,
        scope: str,
        errors: Mapping[str, Exception],
        report: ShutdownReport | None = None,
    ) -> ShutdownError:
        for key, error in errors.items():
            error.add_note(f"while shutting down service {key!r}")
        noun = "service" if len(errors) == 1 else "services"
        message = f"shutdown of scope {scope!r} failed for {len(errors)} {noun}: " + ", ".join(
            repr(k) for k in errors
        )
        self = super().__new__(cls, message, list(errors.values()))
        self.errors = dict(errors)
        if report is None:  # raised without one: the failures alone
            report = ShutdownReport(
                scope,
                tuple(
                    ServiceShutdown(
                        key,
                        scope,
                        "timed_out" if isinstance(error, ShutdownTimeoutError) else "failed",
                        0.0,
                        error,
                    )
                    for key, error in errors.items()
                ),
            )
        self.report = report
        return self

    def __init__(
        self,
        scope: str,
        errors: Mapping[str, Exception],
        report: ShutdownReport | None = None,
    ) -> None:
        # ExceptionGroup takes (message, exceptions); __new__ already built both.
        pass
