"""The root scope, which owns the settings shared by its whole tree."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from ._container.keys import check_name
from ._container.runner import Threads, after_fork_in_child
from ._health import HealthSettings
from .health import HealthCheckResult
from .scope import Scope

__all__ = ["Injector"]


class Injector(Scope):
    """The root scope of a container, holding the health-check settings of its tree.

    - ``health_check_parallelism``: at most this many checks run at once, across every
      call on this tree; 0 means unlimited, 1 sequential.
    - ``health_check_timeout``: seconds each check may take, from when it starts (default
      5); None for no limit. A check past it is reported as timed out, even if it then
      returns.
    - ``health_check_global_timeout``: seconds a whole call may take; None for no limit.
    - ``on_health_check``: called as ``on_health_check(key, result)`` after each check,
      for logging and metrics; its exceptions are logged and change nothing. Sync
      checks call it from their worker thread.
    - ``shutdown_timeout``: seconds each shutdown hook may take (default 30); one that
      overruns is abandoned and reported, and the others still run. Sync hooks then run
      in a worker thread; None runs them in the calling thread, with no limit.

    >>> injector = Injector(health_check_timeout=1.0, health_check_global_timeout=3.0)
    >>> injector.provide(Database)
    >>> db = injector.invoke(Database)
    >>> with injector.scope("request") as request:
    ...     request.provide(RequestContext)
    """

    __slots__ = (
        "__weakref__",
        "_counter",
        "_health",
        "_mutex",
        "_scope_numbers",
        "_shutdown_timeout",
        "_threads",
    )

    def __init__(
        self,
        *,
        name: str = "root",
        health_check_parallelism: int = 100,
        health_check_timeout: float | None = 5.0,
        health_check_global_timeout: float | None = None,
        on_health_check: Callable[[str, HealthCheckResult], object] | None = None,
        shutdown_timeout: float | None = 30.0,
    ) -> None:
        if (
            not isinstance(health_check_parallelism, int)
            or isinstance(health_check_parallelism, bool)
            or health_check_parallelism < 0
        ):
            raise ValueError(
                "Injector(health_check_parallelism=...) must be an int >= 0 "
                f"(0 = unlimited, 1 = sequential), got {health_check_parallelism!r}"
            )
        _check_seconds("health_check_timeout", health_check_timeout)
        _check_seconds("health_check_global_timeout", health_check_global_timeout)
        _check_seconds("shutdown_timeout", shutdown_timeout)
        if on_health_check is not None and not callable(on_health_check):
            raise TypeError(
                f"Injector(on_health_check=...) must be callable, got {on_health_check!r}"
            )
        self._root = self
        # Guards the tree's structure (services, children, instances being cached) and
        # builds in flight; never held while user code runs.
        self._mutex = threading.RLock()
        # One invocation counter per tree: an index orders builds across all scopes.
        self._counter = itertools.count(1)
        self._scope_numbers = itertools.count(1)  # names of anonymous scopes
        self._shutdown_timeout = shutdown_timeout
        # Worker threads for sync health checks and sync shutdown hooks alike.
        self._threads = Threads(f"di-{name}")
        self._health = HealthSettings(
            parallelism=health_check_parallelism,
            timeout=health_check_timeout,
            global_timeout=health_check_global_timeout,
            on_check=on_health_check,
            threads=self._threads,
        )
        Scope.__init__(self, check_name(name, "Injector()"), self)
        self._parent = None
        after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        # In a forked child, a thread of the parent that held the mutex (a monitor's
        # round reading the tree) does not exist: its hold would never end. No code
        # that could fork runs under it, so nothing in this thread holds it.
        self._mutex = threading.RLock()

    def __enter__(self) -> Injector:
        return self

    async def __aenter__(self) -> Injector:
        return self


def _check_seconds(argument: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(
            f"Injector({argument}=...) must be a number of seconds > 0 or None, got {value!r}"
        )
