"""What the container tells about its services' lives: hook events and shutdown reports.

- :class:`HookEvent` is what a lifecycle hook receives (``scope.add_hook(event, fn)``):
  a service provided, building, built or failing to build, shutting down, shut down;
- :class:`ShutdownReport` is what ``shutdown()`` and ``ashutdown()`` return (and what a
  :class:`~di.ShutdownError` carries): one :class:`ServiceShutdown` per service, in
  the order they were shut down.

Plain values, made by :mod:`di._container` and read by anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

__all__ = ["EVENTS", "EventName", "HookEvent", "Outcome", "ServiceShutdown", "ShutdownReport"]

EventName = Literal["provided", "building", "built", "build_failed", "shutting_down", "shut_down"]
"""The events a hook can be added for (``add_hook``), in a service's life order."""

EVENTS: tuple[EventName, ...] = (
    "provided",
    "building",
    "built",
    "build_failed",
    "shutting_down",
    "shut_down",
)
"""Every event a hook can be added for, in the order a service meets them."""


class HookEvent(NamedTuple):
    """One event in a service's life, as a hook receives it (frozen).

    - ``name``: the event: ``"provided"`` (a ``provide*``/``override*`` call; a value's
      ``instance``), ``"building"`` (its factory is about to run), ``"built"`` (it
      returned the ``instance``), ``"build_failed"`` (it raised ``error``),
      ``"shutting_down"`` (its shutdown hook is about to run, on ``instance``),
      ``"shut_down"`` (the hook ran; ``error`` if it failed or timed out);
    - ``scope``: the name of the scope the service is provided, built or shut down in;
    - ``key``: the service's name, as reports and errors give it;
    - ``duration``: seconds, for ``"built"``, ``"build_failed"`` (the build,
      dependencies included) and ``"shut_down"`` (its hook); None for the others.
    """

    name: EventName
    scope: str
    key: str
    instance: Any = None
    error: BaseException | None = None
    duration: float | None = None


Outcome = Literal["ok", "failed", "timed_out"]
"""How a service's shutdown hook ended (:class:`ServiceShutdown`)."""


@dataclass(frozen=True, slots=True)
class ServiceShutdown:
    """How one service's shutdown went.

    ``outcome`` is ``"ok"`` (its hook returned, or it had none), ``"failed"`` (the hook
    raised ``error``) or ``"timed_out"`` (it overran ``shutdown_timeout`` and was
    abandoned; ``error`` is the :class:`~di.ShutdownTimeoutError`). ``duration`` is
    seconds spent on its hook; ``scope`` names the scope that held it.
    """

    name: str
    scope: str
    outcome: Outcome
    duration: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What a shutdown did: every service it shut down, in order, and how it went.

    >>> report = injector.shutdown()
    >>> for service in report:
    ...     print(service.name, service.outcome)
    app.Orders ok
    app.Database ok
    >>> report.ok
    True

    ``scope`` names the scope shut down (its children's services are listed too, with
    their own scope's name); ``duration`` is the whole shutdown's seconds.
    """

    scope: str
    services: tuple[ServiceShutdown, ...] = ()
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every service shut down cleanly."""
        return all(service.outcome == "ok" for service in self.services)

    @property
    def failed(self) -> tuple[ServiceShutdown, ...]:
        """The services whose hook failed or timed out, in shutdown order."""
        return tuple(service for service in self.services if service.outcome != "ok")

    def __iter__(self) -> Iterator[ServiceShutdown]:
        return iter(self.services)

    def __len__(self) -> int:
        return len(self.services)

    def __str__(self) -> str:
        if not self.services:
            return f"shutdown of scope {self.scope!r}: nothing to shut down"
        count = len(self.services)
        lines = [
            f"shutdown of scope {self.scope!r}: {count} service{'' if count == 1 else 's'}, "
            f"{len(self.failed)} failed, {self.duration:.3f} s"
        ]
        for service in self.services:
            where = "" if service.scope == self.scope else f" (scope {service.scope!r})"
            error = "" if service.error is None else f": {service.error!r}"
            lines.append(
                f"  {service.name}{where} {service.outcome} {service.duration:.3f} s{error}"
            )
        return "\n".join(lines)
