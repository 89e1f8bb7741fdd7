"""What the ASGI integrations share: the lifespan, a scope per connection, health routes.

Framework-free (the core's dependencies only): the Starlette, FastAPI and Litestar
modules build on it. The lifespan is the integrations' one start/stop sequence
(:mod:`._lifecycle`); the health routes are :func:`di.asgi.health_app`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from .._container import views
from ..asgi import ASGIApp, Receive, Send, health_app
from ..errors import DIError, ScopeClosedError
from ..monitor import HealthMonitor
from ..scope import Scope
from ._lifecycle import Running

# The ASGI scope key under which each HTTP request and WebSocket connection keeps its slot.
SLOT = "healthdi.scope"

# Where install() records the monitor on the app (``app.state.healthdi_monitor``), for a
# server that drains the app on its way out (``di run``) to find.
MONITOR_STATE = "healthdi_monitor"

# The paths of the health routes, in the syntax Starlette and Litestar share.
HEALTH_PATHS = (
    "/health",
    "/health/{name:path}",
    "/livez",
    "/livez/{check:str}",
    "/readyz",
    "/readyz/{check:str}",
    "/startupz",
    "/grpc.health.v1.Health/Check",
)

# The same routes as exact paths and as prefixes of the paths below them.
HEALTH_EXACT = ("/health", "/livez", "/readyz", "/startupz", "/grpc.health.v1.Health/Check")
HEALTH_BELOW = ("/health/", "/livez/", "/readyz/")

_opening = threading.Lock()  # a sync endpoint's worker thread may open the scope too
logger = logging.getLogger("di.integrations")

NOT_STARTED = (
    "the app's lifespan never ran, so its injector was never started (no eager services, "
    "no monitor, no shutdown hooks): serve the app with its lifespan on, and install "
    "on the top-level app; a mounted app's lifespan never runs"
)


class StreamAbortedError(Exception):
    """Thrown into a request's generator factories when its response was cut short.

    The app returned before the last chunk of its response was sent (the client went
    away mid-stream, and the framework stopped the stream quietly): what the request
    did rolls back rather than commits.
    """


CUT_SHORT = "the response's body was cut short"


class Lifespan:
    """Whether the app's lifespan has started the injector: requests check it."""

    __slots__ = ("started", "warned")

    def __init__(self) -> None:
        self.started = False
        self.warned = False

    def check(self) -> None:
        """Log once, at the first request of an app whose lifespan never ran."""
        if not self.started and not self.warned:
            self.warned = True
            logger.error("%s", NOT_STARTED)


class Slot:
    """A connection's request scope, opened on first use and closed after the response.

    Opening it on first use keeps requests that inject nothing (health probes, static
    files) free of any scope work; a closed slot refuses to open. For an HTTP request
    it is also the ``send`` the app is given: it records when the response's last
    message has gone, then passes each message on.
    """

    __slots__ = ("done", "downstream", "failure", "owner", "scope", "sent")

    def __init__(self, owner: RequestScopes, downstream: Send) -> None:
        self.owner = owner  # the middleware: the injector, the context, the lifespan
        self.downstream = downstream  # the server's send
        self.scope: Scope | None = None
        self.done = False
        self.sent = False  # whether the response's last message was sent (HTTP)
        # A handler's exception that the framework turned into a response, seen by an
        # injecting dependency: the scope closes with it all the same.
        self.failure: Exception | None = None

    def open(self, connection: Any) -> Scope:
        """The request's scope, opened with ``connection`` in its context if need be."""
        with _opening:
            scope = self.scope
            if scope is None:
                if self.done:
                    raise ScopeClosedError(
                        "request", "open a request scope after the response was sent"
                    )
                owner = self.owner
                lifespan = owner.lifespan
                if lifespan is not None and not lifespan.started:
                    raise DIError(NOT_STARTED)
                scope = self.scope = owner.injector.scope(context=owner.context(connection))
            return scope

    async def send(self, message: MutableMapping[str, Any]) -> None:
        """The app's ``send`` (HTTP): note the response's end, then send ``message``."""
        kind = message["type"]
        if (kind in _BODY and not message.get("more_body", False)) or kind == _PATHSEND:
            self.sent = True
        await self.downstream(message)


def scope_of(connection: Any, scope: MutableMapping[str, Any], framework: str) -> Scope:
    """The request scope of ``connection``, whose ASGI scope is ``scope``."""
    slot: Slot | None = scope.get(SLOT)
    if slot is None:
        raise DIError(
            f"this {framework} app has no request scopes: call "
            f"di.integrations.{framework}.install(app, injector) where the app is made"
        )
    return slot.scope or slot.open(connection)


class RequestScopes:
    """ASGI middleware: a slot per HTTP request and WebSocket connection, closed after it.

    The scope closes once the app has returned (the response sent, background tasks
    run); an exception that escapes the app is thrown into generator factories first,
    and so is :class:`StreamAbortedError` when the app returned before its response's
    last chunk was sent (a streamed response whose client went away).
    """

    __slots__ = ("app", "context", "injector", "lifespan")

    def __init__(
        self,
        app: ASGIApp,
        injector: Scope,
        context: Callable[[Any], Mapping[Any, Any]],
        lifespan: Lifespan | None = None,
    ) -> None:
        self.app = app
        self.injector = injector
        self.context = context
        self.lifespan = lifespan

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        slot = Slot(self, send)
        if kind == "http":
            send = slot.send
        lifespan = self.lifespan
        if lifespan is not None and not lifespan.started:
            lifespan.check()
        scope[SLOT] = slot
        try:
            await self.app(scope, receive, send)
        except BaseException as error:
            slot.done = True
            slot.downstream = _sent
            opened = slot.scope
            if opened is not None:
                await opened.__aexit__(type(error), error, error.__traceback__)
            raise
        slot.done = True
        # The server's send holds its request cycle, which holds this ASGI scope, which
        # holds the slot: let go of it, or every request is left to the garbage collector.
        slot.downstream = _sent
        opened = slot.scope
        if opened is not None:
            failure = slot.failure
            if failure is None and kind == "http" and not slot.sent:
                # The app returned, its response unfinished: the client went away
                # mid-stream and the framework ended the stream without an exception.
                failure = StreamAbortedError(CUT_SHORT)
            if failure is None:
                await opened.__aexit__(None, None, None)
            else:
                await opened.__aexit__(type(failure), failure, failure.__traceback__)


async def _sent(message: MutableMapping[str, Any]) -> None:
    """A slot's ``send`` once the app has returned: nothing more can be sent."""
    raise RuntimeError(f"the app returned: {message.get('type')!r} sent after the response")


# The messages that end a response when their ``more_body`` is false (or always).
_BODY = ("http.response.body", "http.response.zerocopysend")
_PATHSEND = "http.response.pathsend"


def declare_context(injector: Scope, keys: tuple[type[Any], ...], framework: str) -> None:
    """Declare each connection type as a context key, unless it already is one."""
    for key in keys:
        views.declare_context(injector, key, framework)


@asynccontextmanager
async def running(
    injector: Scope, monitor: HealthMonitor, lifespan: Lifespan | None = None
) -> AsyncIterator[None]:
    """The integrations' start/stop sequence (:class:`~._lifecycle.Running`) as a
    lifespan; requests may open scopes once it has started."""
    async with Running(injector, monitor):
        if lifespan is not None:
            lifespan.started = True
        yield


def normalize_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        raise ValueError(f"health_prefix must be '' or start with '/', got {prefix!r}")
    if any(c in prefix for c in "?#{}<>%\\ ") or any(ord(c) < 32 for c in prefix):
        raise ValueError(f"health_prefix must be a plain path, got {prefix!r}")
    return prefix.rstrip("/")


def metrics_paths(metrics: Any) -> tuple[str, ...]:
    """``("/metrics",)`` when ``metrics`` asks for it (True, or a registry)."""
    return () if metrics is False or metrics is None else ("/metrics",)


class HealthEndpoint:
    """The health app behind routes under ``prefix``: it sees the path below the prefix."""

    __slots__ = ("app", "prefix")

    def __init__(
        self,
        monitor: HealthMonitor,
        show_details: bool,
        prefix: str,
        metrics: Any = False,
        status_codes: Mapping[str, int] | None = None,
        ui: bool = False,
    ) -> None:
        self.app = health_app(
            monitor, show_details=show_details, metrics=metrics, status_codes=status_codes, ui=ui
        )
        self.prefix = prefix

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        child = dict(scope)
        child["path"] = path[len(self.prefix) :] or "/"
        child["root_path"] = ""
        await self.app(child, receive, send)
