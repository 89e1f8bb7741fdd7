"""Protocols a service can implement to take part in shutdown and health checks."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = [
    "AsyncHealthChecker",
    "AsyncShutdowner",
    "HealthChecker",
    "Healthchecker",
    "HealthcheckerWithContext",
    "Shutdowner",
]


@runtime_checkable
class Shutdowner(Protocol):
    """A service with a synchronous ``shutdown()``, called when its scope shuts down."""

    def shutdown(self) -> object: ...


@runtime_checkable
class AsyncShutdowner(Protocol):
    """A service with an ``async def shutdown()``, awaited when its scope shuts down."""

    async def shutdown(self) -> object: ...


@runtime_checkable
class HealthChecker(Protocol):
    """A service with a synchronous ``health_check()``: raise to report it unhealthy.

    Sync checks run in worker threads, never on the event loop.
    """

    def health_check(self) -> object: ...


@runtime_checkable
class AsyncHealthChecker(Protocol):
    """A service with an ``async def health_check()``: raise to report it unhealthy.

    The check runs under the call's deadline: it is cancelled when its timeout fires,
    and can read the deadline with ``anyio.current_effective_deadline()``.
    """

    async def health_check(self) -> object: ...


# samber/do's names for the same protocols.
Healthchecker = HealthChecker
"""samber/do's name for :class:`HealthChecker`."""
HealthcheckerWithContext = AsyncHealthChecker
"""samber/do's name for :class:`AsyncHealthChecker`."""
