"""The one start/stop sequence, as every integration imports it, and the one scope of a
unit of work that opens on first use.

:class:`Running` (and :func:`monitor_for`, :func:`registry_for`) live in
:mod:`di._serving.lifecycle`, below the integrations, so that :class:`di.HealthServer`
runs the same sequence: see that module.

:class:`AppLifetime` is that sequence for an app that has no lifespan of its own
(Flask; Django): :meth:`~AppLifetime.start` runs it on the event loop of a thread of its
own (the container's :class:`~di._container.runner.LoopThread`), returning once the
monitor's first round is done, and again in a forked child (the parent's thread does
not exist there); :meth:`~AppLifetime.close` ends it, once (at exit, or earlier). Its
async twins :meth:`~AppLifetime.astart` and :meth:`~AppLifetime.aclose` run it on the
running loop instead (Django's ASGI lifespan). :class:`di.HealthServer` runs its
listeners on a :class:`~di._container.runner.LoopThread` too, but is not an app's life:
it neither restarts in a fork nor closes at exit.

:class:`LazyScope` is a request's or a task's scope where the framework calls no ASGI
app (Django, aiohttp, Celery, taskiq): made for each unit of work, it opens a scope on
first use (an ``Inject`` parameter, ``scope_of``/``current_scope``) with the unit's
object (the request, the task's request or message) in its context, and closes it once
the work has ended: :meth:`~LazyScope.close` from sync code, :meth:`~LazyScope.aclose`
from async code, with the work's exception (or its recorded ``failure``) thrown into
generator factories so that they roll back. Work that injects nothing opens nothing;
threads of one unit of work that open its scope at once share one; a scope asked for
after the work ended is refused (``ScopeClosedError``, saying what to do instead).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .._container.runner import LoopThread, after_fork_in_child
from .._serving.lifecycle import Running, logger, monitor_for, registry_for
from ..errors import ScopeClosedError
from ..health_server import HealthServer
from ..monitor import HealthMonitor
from ..scope import Scope

__all__ = [
    "LazyScope",
    "Running",
    "AppLifetime",
    "check_health_server",
    "logger",
    "monitor_for",
    "registry_for",
]

# Taken only to open a scope (the first use of each unit of work's), never around a build.
_OPENING = threading.Lock()


def check_health_server(injector: Scope, health_server: object) -> None:
    """Refuse an ``install(..., health_server=...)`` that is not a
    :class:`~di.HealthServer` of the injector given to ``install()``."""
    if health_server is None:
        return
    if not isinstance(health_server, HealthServer):
        raise TypeError(f"install(health_server=...) needs a HealthServer, got {health_server!r}")
    if health_server.injector is not injector:
        raise ValueError(
            "install(health_server=...): the health server runs another injector; make "
            "it with HealthServer(injector, ...) for the injector given to install()"
        )


class AppLifetime:
    """An app's injector and monitor, run through :class:`Running` from :meth:`start` to
    :meth:`close` on a thread's loop, or from :meth:`astart` to :meth:`aclose` on the
    running one; see the module.

    ``started`` and ``done`` say whether the injector serves: an app's requests check
    them. ``closing(self)``, if given, runs once when the close begins, before the stop.
    """

    def __init__(
        self,
        injector: Scope,
        monitor: HealthMonitor,
        *,
        closing: Callable[[AppLifetime], None] | None = None,
    ) -> None:
        self.injector = injector
        self.monitor = monitor
        self.closing = closing
        self.loop: LoopThread | None = None
        self.running: Running | None = None  # entered by astart(), on the running loop
        self.started = False
        self.done = False
        self.lock = threading.Lock()

    def start(self) -> None:
        """Start the injector and its monitor on a thread's loop, and wait for the
        monitor's first round (bounded by its timeout); raise what failed.

        Waiting for that round means readiness answers from the checks at once, and the
        thread has done what it imports on its first round before a server can fork
        this process: a fork while another thread imports leaves the child a module
        that never finishes importing.
        """
        loop = self.loop = LoopThread("healthdi-monitor")
        loop.start(self._first_round)
        self.started = True
        after_fork_in_child(self._after_fork)

    @asynccontextmanager
    async def _first_round(self) -> AsyncIterator[None]:
        async with Running(self.injector, self.monitor):
            with anyio.move_on_after(self.monitor.timeout + 1.0):
                await self.monitor.wait_ready()
            yield

    def _after_fork(self) -> None:
        """In a forked child (a gunicorn worker of a ``--preload`` app, say): the
        monitor's thread is the parent's, so a new one runs its rounds here.

        The injector started in the parent, and its services are the child's copies:
        the rounds check them; the monitor (reset itself by then) starts no new build.
        """
        self.lock = threading.Lock()
        if self.done or not self.started:
            return
        self.loop = LoopThread("healthdi-monitor")
        self.loop.start(lambda: Running(self.injector, self.monitor))

    async def astart(self) -> None:
        """:meth:`start` on the running loop (a server's lifespan runs it): returns once
        the injector has started, raises what failed, starts no thread."""
        running = Running(self.injector, self.monitor)
        await running.__aenter__()
        self.running = running
        self.started = True

    def close(self) -> None:
        """NOT_SERVING, stop the monitor (after its round), then shut the injector down;
        raise what the shutdown hooks raised. Only the first call does anything."""
        if not self._closing():
            return
        loop = self.loop
        if loop is not None:
            loop.stop()

    async def aclose(self) -> None:
        """:meth:`close` on the running loop, for what :meth:`astart` started."""
        if not self._closing():
            return
        running, self.running = self.running, None
        if running is not None:
            await running.__aexit__(None, None, None)

    def _closing(self) -> bool:
        """Mark the close begun; whether this call is the first."""
        with self.lock:
            if self.done:
                return False
            self.done = True
        if self.closing is not None:
            self.closing(self)
        return True


class LazyScope:
    """A unit of work's scope, opened on first use and closed once the work has ended.

    ``key: value`` is the scope's context (``HttpRequest: request``); ``guard``, if
    given, runs before the scope opens and raises when the injector cannot serve now
    (never started, shut down). ``owner`` is what the framework's signals name the
    work by, ``token`` the context variable's, ``failure`` an exception recorded
    before the close (a task's, a view's the framework answered); ``unit`` names the
    work (``"request"``, ``"task"``) in the error of a scope opened after it ended.
    """

    __slots__ = (
        "done",
        "failure",
        "guard",
        "injector",
        "key",
        "owner",
        "scope",
        "token",
        "unit",
        "value",
    )

    def __init__(
        self,
        injector: Scope,
        key: Any,
        value: Any,
        *,
        guard: Callable[[], None] | None = None,
        owner: Any = None,
        unit: str = "request",
    ) -> None:
        self.injector = injector
        self.key = key
        self.value = value
        self.guard = guard
        self.owner = owner
        self.unit = unit  # what the work is called in errors: "request", "task"
        self.scope: Scope | None = None
        self.done = False
        self.failure: BaseException | None = None
        self.token: contextvars.Token[Any] | None = None

    def open(self) -> Scope:
        """The scope, opened now if it was not; after the close, ``ScopeClosedError``."""
        scope = self.scope
        if scope is None:
            if self.guard is not None:
                self.guard()
            with _OPENING:  # threads of one unit of work that open it at once share one
                scope = self.scope
                if scope is None:
                    if self.done:
                        unit = self.unit
                        raise ScopeClosedError(
                            unit,
                            f"open a {unit}'s scope after the {unit} ended",
                            fix=f"reach it while the {unit} runs, or open a scope of your "
                            "own with injector.scope()",
                        )
                    scope = self.scope = self.injector.scope(context={self.key: self.value})
        return scope

    def end(self) -> None:
        """The work has ended: no scope opens any more, and the slot lets go of its
        context value (the request holds the slot: a request freed by its count of
        references, not by the garbage collector)."""
        self.done = True
        self.value = None

    def close(self, error: BaseException | None = None) -> None:
        """Close the scope (if opened) with ``error``, else the recorded failure."""
        self.end()
        scope, self.scope = self.scope, None
        if scope is not None:
            if error is None:
                error = self.failure
            if error is None:
                scope.__exit__(None, None, None)
            else:
                scope.__exit__(type(error), error, error.__traceback__)

    async def aclose(self, error: BaseException | None = None) -> None:
        """:meth:`close` from async code: the scope's async exit."""
        self.end()
        scope, self.scope = self.scope, None
        if scope is not None:
            if error is None:
                error = self.failure
            if error is None:
                await scope.__aexit__(None, None, None)
            else:
                await scope.__aexit__(type(error), error, error.__traceback__)
