"""Starlette: the container's lifespan, a scope per request, and health routes.

>>> app = Starlette(routes=[Route("/orders", list_orders)])
>>> install(app, injector)
>>> async def list_orders(request: Request) -> Response:
...     orders = await scope_of(request).ainvoke(OrderStore)

:func:`install` wraps the app's lifespan (the injector's ``astart()`` and a
:class:`~di.HealthMonitor` at startup; NOT_SERVING, then ``ashutdown()`` at shutdown),
adds a middleware giving each HTTP request and WebSocket connection a scope, and adds
the health routes. ``pip install 'healthdi[starlette]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from .._extras import needs_extra
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope
from . import _asgi
from ._asgi import StreamAbortedError
from ._lifecycle import monitor_for

with needs_extra("di.integrations.starlette", "starlette"):
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection, Request
    from starlette.routing import BaseRoute, Match, NoMatchFound
    from starlette.types import Receive, Send
    from starlette.types import Scope as ASGIScope
    from starlette.websockets import WebSocket

__all__ = ["StreamAbortedError", "install", "scope_of"]

# The context keys each request scope receives: the connection as its own class, and as
# HTTPConnection (either kind) for services that serve both.
CONTEXT_KEYS = (Request, WebSocket, HTTPConnection)


def install(
    app: Starlette,
    injector: Scope,
    *,
    monitor: HealthMonitor | None = None,
    health_prefix: str = "",
    show_details: bool = False,
    metrics: Any = False,
    unbuilt: Unbuilt | None = None,
    status_codes: Mapping[str, int] | None = None,
    ui: bool = False,
) -> HealthMonitor:
    """Run ``injector`` with ``app``: lifespan, a scope per request, health routes.

    - **Lifespan:** the app's own lifespan runs inside the container's: startup runs
      ``astart()`` (a failure fails the app's startup) and the monitor (``monitor``,
      or ``HealthMonitor(injector)``); at shutdown every status but liveness turns NOT_SERVING,
      the app's own shutdown runs, the monitor stops and ``ashutdown()`` runs.
    - **Request scopes:** ``Request``, ``WebSocket`` and ``HTTPConnection`` are
      declared with ``provide_context`` (unless they already are). Each HTTP request
      and WebSocket connection gets its own scope when a handler first asks for it
      with :func:`scope_of`, with the connection in its context; it closes when the
      response has been sent (background tasks included), and an exception escaping
      the app is thrown into generator factories, and so is
      :class:`StreamAbortedError` when the app returns before its response's end (a
      stream whose client went away). One the app answers with an exception handler
      (``HTTPException``) is handled: the scope closes as usual. What a handler asks
      ``scope_of()`` for is seen only when it runs: it is not checked at startup.
    - **Health routes:** ``/health``, ``/livez``, ``/readyz`` (and their ``/{name}``
      forms), ``/startupz`` and ``POST /grpc.health.v1.Health/Check`` under ``health_prefix``, as
      :func:`di.asgi.health_app` answers them; error texts only with
      ``show_details=True``. An app route below ``/health/``, ``/livez/`` or
      ``/readyz/`` (``/health/version``) takes precedence, wherever it is added.
    - **Metrics:** ``metrics=True`` serves Prometheus metrics at ``/metrics`` (under
      ``health_prefix``) from the default registry, the monitor's collector
      registered on it (:mod:`di.metrics`); or pass a ``CollectorRegistry``.
    - **Unbuilt services:** ``unbuilt`` is the new monitor's (``"warn"`` by default,
      ``"fail"``, ``"ignore"``): what to do about services with a health check that
      were not built, so never checked (see :class:`~di.HealthMonitor`). A monitor
      given has its own.
    - **Status codes:** ``status_codes`` maps ``/health``'s ``pass``, ``warn`` and
      ``fail`` to HTTP codes (default ``{"pass": 200, "warn": 200, "fail": 503}``).
    - **Status page:** ``ui=True`` serves the status page at ``/health/ui`` (under
      ``health_prefix``; see :func:`di.asgi.health_app`), and sends a browser asking
      for ``/health`` there.

    Install on the app the server runs (the top-level one): a mounted app's lifespan
    never runs, and a request to an app whose lifespan never started logs an error,
    and fails where it injects. Once per app.

    Call it where the app is made, before it serves. Returns the monitor, also
    recorded as ``app.state.healthdi_monitor`` (``di run`` drains it).
    """
    monitor = monitor_for(injector, monitor, unbuilt)
    prefix = _asgi.normalize_prefix(health_prefix)
    if any(m.cls is _asgi.RequestScopes for m in app.user_middleware):  # type: ignore[comparison-overlap]
        raise RuntimeError("install() was already called on this app")
    _asgi.declare_context(injector, CONTEXT_KEYS, "starlette")
    lifespan = _asgi.Lifespan()
    install_lifespan(app, injector, monitor, lifespan)
    app.add_middleware(
        _asgi.RequestScopes,
        injector=injector,
        context=context_of,
        lifespan=lifespan,
    )
    endpoint = _asgi.HealthEndpoint(monitor, show_details, prefix, metrics, status_codes, ui)
    app.router.routes.append(HealthRoutes(endpoint, _asgi.metrics_paths(metrics)))
    setattr(app.state, _asgi.MONITOR_STATE, monitor)  # for `di run`'s drain
    return monitor


def scope_of(connection: HTTPConnection) -> Scope:
    """The scope of this request (or WebSocket connection), opened on first use.

    >>> order = await scope_of(request).ainvoke(Order)
    """
    return _asgi.scope_of(connection, connection.scope, "starlette")


def context_of(connection: HTTPConnection) -> Mapping[Any, Any]:
    """A request scope's context: the connection under its class and HTTPConnection."""
    if isinstance(connection, Request):
        return {Request: connection, HTTPConnection: connection}
    if isinstance(connection, WebSocket):
        return {WebSocket: connection, HTTPConnection: connection}
    return {HTTPConnection: connection}


def install_lifespan(
    app: Starlette, injector: Scope, monitor: HealthMonitor, started: _asgi.Lifespan | None = None
) -> None:
    """Wrap the app's lifespan in the container's."""
    router = app.router
    inner = router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with _asgi.running(injector, monitor, started), inner(app) as state:
            try:
                yield state
            finally:
                await monitor.enter_graceful_shutdown()  # before the app's own shutdown

    router.lifespan_context = lifespan


class HealthRoutes(BaseRoute):
    """The health routes as one route: a set lookup and a prefix test per request.

    Routes are tried in order, and these are added before the app's later routes: one
    cheap test keeps them from slowing every other request down. A path below a health
    route (``/health/...``) is only a partial match, so that an app's own route there,
    added later, takes it.
    """

    def __init__(self, endpoint: _asgi.HealthEndpoint, extra: tuple[str, ...] = ()) -> None:
        self.endpoint = endpoint
        self.exact = frozenset(endpoint.prefix + path for path in (*_asgi.HEALTH_EXACT, *extra))
        self.below = tuple(endpoint.prefix + path for path in _asgi.HEALTH_BELOW)

    def matches(self, scope: ASGIScope) -> tuple[Match, ASGIScope]:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path in self.exact:
                return Match.FULL, {}
            if path.startswith(self.below):
                return Match.PARTIAL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)
