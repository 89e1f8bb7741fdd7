"""The root scope, which owns the settings shared by its whole tree.

Besides the settings, what only a whole tree can do: :meth:`Injector.clone` (the same
providers, nothing built: a test's own container) and
:meth:`Injector.shutdown_on_signals` (a plain program's or a worker's end: wait for
SIGTERM or SIGINT, then shut down).
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Literal

import anyio

from ._container import registry
from ._container.hooks import own_hooks, refresh
from ._container.keys import check_name
from ._container.resolve import forget_other_threads_flights, resolve_sync
from ._container.runner import Threads, after_fork_in_child, in_event_loop
from ._container.service import BLANK
from ._health import HealthSettings
from ._health.settings import check_seconds
from .errors import AsyncRequiredError, ShutdownError
from .health import HealthCheckResult
from .lifecycle import ShutdownReport
from .scope import Scope

logger = logging.getLogger("di")
# What shutdown_on_signals() waits for by default: a container's stop, and Ctrl-C.
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# What no handler can be installed for.
_UNCATCHABLE = {getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)}

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
    - ``request_shutdown``: how the ``with`` / ``async with`` block of a request scope
      (``scope(context=...)``, a child that provides nothing itself) runs its finalizers
      (generator factories' code after ``yield``, ``shutdown()`` methods). ``"inline"``
      (the default): in the closing thread, async ones awaited on the loop, with no
      worker thread and no timeout, at the cost of their own code. ``"bounded"``: as
      every other scope, each within ``shutdown_timeout``, sync ones in a worker
      thread. ``shutdown()`` and ``ashutdown()`` are always bounded.

    >>> injector = Injector(health_check_timeout=1.0, health_check_global_timeout=3.0)
    >>> injector.provide(Database)
    >>> db = injector.invoke(Database)
    >>> with injector.scope("request") as request:
    ...     request.provide(RequestContext)
    """

    __slots__ = (
        "__weakref__",
        "_counter",
        "_flights",
        "_health",
        "_mutex",
        "_request_shutdown",
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
        request_shutdown: Literal["inline", "bounded"] = "inline",
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
        check_seconds("Injector(health_check_timeout=...)", health_check_timeout)
        check_seconds("Injector(health_check_global_timeout=...)", health_check_global_timeout)
        check_seconds("Injector(shutdown_timeout=...)", shutdown_timeout)
        if request_shutdown not in ("inline", "bounded"):
            raise ValueError(
                "Injector(request_shutdown=...) must be 'inline' (finalizers run in the "
                "closing thread or on its loop) or 'bounded' (each within "
                f"shutdown_timeout), got {request_shutdown!r}"
            )
        if on_health_check is not None and not callable(on_health_check):
            raise TypeError(
                f"Injector(on_health_check=...) must be callable, got {on_health_check!r}"
            )
        self._root = self
        self._listeners = BLANK  # no hooks yet (see add_hook)
        # Guards the tree's structure (services, children, instances being cached) and
        # builds in flight; never held while user code runs.
        self._mutex = threading.RLock()
        self._flights: set[Any] = set()  # the builds in flight in the tree (under the mutex)
        # One invocation counter per tree: an index orders builds across all scopes.
        self._counter = itertools.count(1)
        self._scope_numbers = itertools.count(1)  # names of anonymous scopes
        self._shutdown_timeout = shutdown_timeout
        self._request_shutdown = request_shutdown
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
        # that could fork runs under it, so nothing in this thread holds it. Builds in
        # flight in the parent's other threads never land here: they build afresh.
        self._mutex = threading.RLock()
        forget_other_threads_flights(self._flights)

    def __enter__(self) -> Injector:
        return self

    async def __aenter__(self) -> Injector:
        return self

    def clone(self) -> Injector:
        """A new injector with this one's providers, settings, hooks and health
        configuration, nothing built and nothing shared: the per-test container.

        Each service is provided anew, unbuilt (eager ones too: ``start()`` builds
        them). Instances given to ``provide_value`` are the exception: they are the same
        objects, counted as built, and the clone never shuts them down (this injector
        does). Child scopes, overrides in progress and ``@inject`` functions stay here.

        >>> def test_orders(app_injector: Injector) -> None:
        ...     with app_injector.clone() as injector:
        ...         injector.override_value(FakeMailer(), provides=Mailer)
        """
        health = self._health
        clone = Injector(
            name=self.name,
            health_check_parallelism=health.parallelism,
            health_check_timeout=health.timeout,
            health_check_global_timeout=health.global_timeout,
            on_health_check=health.on_check,
            shutdown_timeout=self._shutdown_timeout,
            request_shutdown=self._request_shutdown,
        )
        values = registry.copy_into(self, clone)
        hooks = own_hooks(self)
        if hooks:
            clone._hooks = dict(hooks)
            refresh(clone)
        for value in values:
            resolve_sync(value, clone)
        return clone

    def shutdown_on_signals(self, *signals: int) -> ShutdownReport:
        """Block until one of ``signals`` arrives, then shut down; the report.

        For a plain program or a worker: ``main()`` starts what it runs, then calls
        this. The default signals are SIGTERM (a container or a service manager
        stopping it) and SIGINT (Ctrl-C). Once one arrives the signals' former handlers
        are back, so a second Ctrl-C stops a shutdown that hangs. Failed hooks do not
        raise: they are logged, and in the report (``report.ok`` is False). Call it from
        the main thread (only it may handle signals), outside any event loop; with
        one running, use :meth:`ashutdown_on_signals`.
        """
        if in_event_loop():
            raise AsyncRequiredError(
                "shutdown_on_signals() was called inside a running event loop; use "
                "`await injector.ashutdown_on_signals()` there"
            )
        chosen = _catchable(signals, "shutdown_on_signals")
        arrived = threading.Event()

        def handle(number: int, frame: FrameType | None) -> None:
            arrived.set()

        former: dict[int, Any] = {}
        try:
            for caught in chosen:
                former[caught] = signal.signal(caught, handle)
            while not arrived.wait(1.0):  # wakes now and then, as signals need on some systems
                pass
        finally:
            for number, handler in former.items():
                signal.signal(number, handler)
        return _reported(self.shutdown)

    async def ashutdown_on_signals(self, *signals: int) -> ShutdownReport:
        """:meth:`shutdown_on_signals` for async code, on asyncio or trio: waits for one
        of ``signals`` without blocking the loop, then awaits :meth:`ashutdown`."""
        chosen = _catchable(signals, "ashutdown_on_signals")
        with anyio.open_signal_receiver(*chosen) as received:
            async for _ in received:
                break
        try:
            return await self.ashutdown()
        except ShutdownError as error:
            logger.error("%s", error, exc_info=error)
            return error.report


def _catchable(signals: tuple[int, ...], where: str) -> list[signal.Signals]:
    """``signals`` (the default ones if none), each one a program may catch, from the
    main thread; else the error that says why not, before any handler is installed."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{where}() must be called from the main thread: only it may handle signals; "
            "call it at the end of main(), and run your work in other threads"
        )
    chosen = []
    for number in signals or _SIGNALS:
        try:
            chosen.append(signal.Signals(number))
        except ValueError:
            raise ValueError(
                f"{where}({number!r}): {number!r} is not a signal; pass signals such as "
                "signal.SIGTERM and signal.SIGINT"
            ) from None
        if chosen[-1] in _UNCATCHABLE:
            raise ValueError(
                f"{where}({chosen[-1].name}): no program can catch it; pass signals such "
                "as SIGTERM, SIGINT or SIGHUP"
            )
    return list(dict.fromkeys(chosen))  # once each: a handler installed twice stays


def _reported(shutdown: Callable[[], ShutdownReport]) -> ShutdownReport:
    """The report of ``shutdown()``, failed hooks logged instead of raised."""
    try:
        return shutdown()
    except ShutdownError as error:
        logger.error("%s", error, exc_info=error)
        return error.report
