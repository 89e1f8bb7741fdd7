"""The one start/stop sequence, as every integration imports it, and the one scope of a
unit of work that opens on first use.

:class:`Running` (and :func:`monitor_for`, :func:`registry_for`) live in
:mod:`di._serving.lifecycle`, below the integrations, so that :class:`di.HealthServer`
runs the same sequence: see that module.

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
from collections.abc import Callable
from typing import Any

from .._serving.lifecycle import Running, logger, monitor_for, registry_for
from ..errors import ScopeClosedError
from ..health_server import HealthServer
from ..scope import Scope

__all__ = [
    "LazyScope",
    "Running",
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
