"""Litestar: a plugin running the container with the app, and ``Provide`` for services.

>>> app = Litestar(
...     route_handlers=[list_orders],
...     plugins=[DIPlugin(injector, dependencies={"store": OrderStore})],
... )
>>> @get("/orders")
... async def list_orders(store: OrderStore) -> list[str]: ...

Litestar injects by parameter name: :class:`DIPlugin` ``dependencies=`` maps names to
services for the whole app, and :func:`provide` makes the ``Provide`` for a handler's,
controller's or router's own ``dependencies``. ``pip install 'healthdi[litestar]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from .._container import views
from .._container.keys import parse_named
from .._extras import needs_extra
from .._ui import HISTORY, UI_PATHS
from ..errors import DIError
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope
from . import _asgi
from ._asgi import StreamAbortedError
from ._inject import INJECTS, Plan, Site, check_injected, injects, misused
from ._lifecycle import monitor_for

with needs_extra("di.integrations.litestar", "litestar"):
    from litestar import Litestar, Request, WebSocket, route
    from litestar.config.app import AppConfig
    from litestar.connection import ASGIConnection
    from litestar.constants import RESERVED_KWARGS
    from litestar.di import Provide
    from litestar.enums import HttpMethod
    from litestar.exceptions import ImproperlyConfiguredException
    from litestar.middleware import DefineMiddleware
    from litestar.plugins import InitPlugin
    from litestar.types import ASGIApp
    from litestar.types import Scope as ASGIScope

__all__ = ["DIPlugin", "StreamAbortedError", "provide", "scope_of"]

# The context keys each request scope receives: the connection as its own class, and as
# ASGIConnection (either kind) for services that serve both.
CONTEXT_KEYS = (Request, WebSocket, ASGIConnection)


class DIPlugin(InitPlugin):
    """Runs ``injector`` with the app: lifespan, a scope per request, ``Provide``, health.

    - **Lifespan:** a lifespan manager, entered before the app's own, runs
      ``astart()`` (a failure fails the app's startup) and the monitor (``monitor``,
      or ``HealthMonitor(injector)``); at shutdown every status but liveness turns NOT_SERVING,
      the app's own lifespan ends, the monitor stops and ``ashutdown()`` runs.
    - **Request scopes:** ``Request``, ``WebSocket`` and ``ASGIConnection`` are
      declared with ``provide_context`` (unless they already are). Each request (and
      WebSocket connection) to a route gets its own scope on its first injected
      service, with the connection in its context; it closes after the response has
      been sent. An exception raised by the handler (``HTTPException`` included),
      however it reached the scope (``provide()``, ``scope_of()``, a sync handler), is
      thrown into generator factories when the scope closes, as Litestar throws it
      into its own generator dependencies (an ``after_exception`` hook records it);
      a response cut short (a stream whose client went away) throws
      :class:`StreamAbortedError`.
    - **Injection:** ``dependencies`` maps parameter names to services (a type, a
      name, or ``Annotated[T, Named("x")]``), as app-level ``Provide`` dependencies;
      a name the app's own ``dependencies`` provide already is refused. Each
      ``provide()`` a handler uses, and each of ``dependencies``, is looked up at
      startup: one the container cannot build fails it (``GraphError``).
    - **Health routes:** ``/health``, ``/livez``, ``/readyz`` (and their ``/{name}``
      forms), ``/startupz`` and ``POST /grpc.health.v1.Health/Check`` under
      ``health_prefix``; error texts only with ``show_details=True``; ``status_codes``
      maps ``/health``'s ``pass``, ``warn`` and ``fail`` to HTTP codes.
    - **Status page:** ``ui=True`` serves the status page at ``/health/ui`` (under
      ``health_prefix``; see :func:`di.asgi.health_app`), and sends a browser asking
      for ``/health`` there.
    - **Metrics:** ``metrics=True`` serves Prometheus metrics at ``/metrics`` (under
      ``health_prefix``) from the default registry, the monitor's collector
      registered on it (:mod:`di.metrics`); or pass a ``CollectorRegistry``.
    - **Unbuilt services:** ``unbuilt`` is the new monitor's (``"warn"`` by default,
      ``"fail"``, ``"ignore"``): what to do about services with a health check that
      were not built, so never checked (see :class:`~di.HealthMonitor`). A monitor
      given has its own.

    A request to an app whose lifespan never started logs an error, and fails where
    it injects. The monitor is recorded as ``app.state.healthdi_monitor`` (``di run``
    drains it).
    """

    __slots__ = (
        "dependencies",
        "health_prefix",
        "injector",
        "metrics",
        "monitor",
        "show_details",
        "status_codes",
        "ui",
    )

    def __init__(
        self,
        injector: Scope,
        *,
        monitor: HealthMonitor | None = None,
        health_prefix: str = "",
        show_details: bool = False,
        dependencies: Mapping[str, Any] | None = None,
        metrics: Any = False,
        unbuilt: Unbuilt | None = None,
        status_codes: Mapping[str, int] | None = None,
        ui: bool = False,
    ) -> None:
        self.injector = injector
        self.ui = ui
        self.status_codes = status_codes
        self.metrics = metrics
        self.monitor = monitor_for(injector, monitor, unbuilt)
        self.health_prefix = _asgi.normalize_prefix(health_prefix)
        self.show_details = show_details
        self.dependencies = dict(dependencies or {})

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        injector, monitor = self.injector, self.monitor
        _asgi.declare_context(injector, CONTEXT_KEYS, "litestar")
        lifespan = _asgi.Lifespan()

        plugin_dependencies = dict(self.dependencies)

        @asynccontextmanager
        async def running(app: Litestar) -> AsyncIterator[None]:
            check_injected(injector, _sites(app, plugin_dependencies, injector))
            async with _asgi.running(injector, monitor, lifespan):
                yield

        @asynccontextmanager
        async def draining(app: Litestar) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await monitor.enter_graceful_shutdown()  # before the app's own shutdown

        app_config.lifespan = [running, *app_config.lifespan, draining]
        app_config.state[_asgi.MONITOR_STATE] = monitor  # for `di run`'s drain
        app_config.middleware = [
            DefineMiddleware(
                _asgi.RequestScopes,  # type: ignore[arg-type]  # plain ASGI types
                injector=injector,
                context=context_of,
                lifespan=lifespan,
            ),
            *app_config.middleware,
        ]
        for name, key in self.dependencies.items():
            if name in app_config.dependencies:
                raise ImproperlyConfiguredException(
                    f"DIPlugin(dependencies=...) provides {name!r}, which the app's own "
                    "dependencies provide already: rename one of them"
                )
            app_config.dependencies[name] = provide(key)
        # Every exception a handler raises (HTTPException included) reaches the request
        # scope's generator factories, however the handler reached its scope.
        app_config.after_exception = [*app_config.after_exception, record_failure]
        endpoint = _asgi.HealthEndpoint(
            monitor, self.show_details, self.health_prefix, self.metrics, self.status_codes, self.ui
        )

        # An HTTP route handler answering with the health app, not an ASGI handler:
        # Litestar (2.25) looks an ASGI handler's path parameters up under the request's
        # method, finds them under "asgi", and fails every request to /health/{name},
        # /livez/{check} and /readyz/{check} with a 500 (KeyError 'GET').
        @route(
            path=[
                self.health_prefix + path
                for path in (
                    HISTORY,
                    *(UI_PATHS if self.ui else ()),
                    *_asgi.HEALTH_PATHS,
                    *_asgi.metrics_paths(self.metrics),
                )
            ],
            http_method=list(HttpMethod),
            name="healthdi.health",
            include_in_schema=False,
        )
        async def health() -> ASGIApp:
            return endpoint  # type: ignore[return-value]  # plain ASGI types

        app_config.route_handlers = [*app_config.route_handlers, health]
        return app_config


def _sites(app: Litestar, plugin: Mapping[str, Any], injector: Scope) -> Iterator[Site]:
    """Each ``provide()`` a route handler uses (through its own parameters, or another
    dependency's), each of ``DIPlugin(dependencies=...)`` that none uses, and each
    handler parameter typed as a service that no dependency provides (Litestar would
    read it from the query string)."""
    used: set[str] = set()
    for route in app.routes:
        handlers = getattr(route, "route_handlers", None) or [getattr(route, "route_handler", None)]
        for handler in handlers:
            if handler is None or not hasattr(handler, "resolve_dependencies"):
                continue
            dependencies = handler.resolve_dependencies()
            methods = ",".join(sorted(getattr(handler, "http_methods", None) or ())) or "WebSocket"
            where = f"handler {methods} {route.path} ({handler.handler_name})"
            wanted = list(handler.parsed_fn_signature.parameters)
            for name in wanted:
                if name not in dependencies:
                    read = _unprovided(handler, name, injector)
                    if read is not None:
                        yield where, read
            seen: set[str] = set()
            while wanted:
                name = wanted.pop()
                provider = dependencies.get(name)
                if provider is None or name in seen:
                    continue
                seen.add(name)
                wanted.extend(provider.parsed_fn_signature.parameters)
                read = injects(provider.dependency)
                if read is not None:
                    yield where, _named(read, name)
            used |= seen
    for name in plugin:
        if name not in used:
            read = injects(getattr(app.dependencies.get(name), "dependency", None))
            if read is not None:
                yield f"DIPlugin(dependencies={{{name!r}: ...}})", _named(read, name)


def _unprovided(handler: Any, name: str, injector: Scope) -> Callable[[], Plan] | None:
    """The mistake of a parameter typed as a service that no dependency provides."""
    if name in RESERVED_KWARGS:
        return None  # request, state, headers...: Litestar's own
    annotation = handler.parsed_fn_signature.parameters[name].annotation
    if not isinstance(annotation, type) or annotation.__module__ == "builtins":
        return None  # a query or path parameter's type
    try:
        views.find(injector, annotation)
    except DIError:
        return None  # not a service: Litestar reads it from the request as it does
    service = annotation.__qualname__
    return misused(
        f"parameter {name!r} is typed {service}, a service of the container, but no "
        f"dependency provides {name!r}, so Litestar would read it from the query string: "
        f'add dependencies={{"{name}": provide({service})}} to the handler (or its '
        f'controller or router), or DIPlugin(injector, dependencies={{"{name}": {service}}})'
    )


def _named(read: Callable[[], Plan], parameter: str) -> Callable[[], Plan]:
    """A dependency's plan, with the name the handler knows it by."""
    return lambda: [(parameter, key, name) for _, key, name in read()]


async def record_failure(error: Exception, scope: ASGIScope) -> None:
    """Keep the handler's exception for its request scope, which closes with it."""
    slot: Any = scope.get(_asgi.SLOT)
    if slot is not None and slot.failure is None:
        slot.failure = error


def provide(service: Any, *, use_cache: bool = False) -> Provide:
    """The ``Provide`` for ``service``, invoked from the request's scope.

    ``service`` is a type, a name, or ``Annotated[T, Named("x")]``:

    >>> @get("/orders", dependencies={"store": provide(OrderStore)})
    ... async def list_orders(store: OrderStore) -> list[str]: ...
    """
    key, name, _ = parse_named(service)

    # A plain coroutine, not a generator dependency (which Litestar drives once more
    # after the handler): a handler's exception reaches the request scope through the
    # plugin's after_exception hook (record_failure), whoever injected what.
    async def resolve(request: ASGIConnection[Any, Any, Any, Any]) -> Any:
        slot: Any = request.scope.get(_asgi.SLOT)
        # Without a slot, scope_of() raises: the plugin is missing.
        scope = scope_of(request) if slot is None else slot.scope or slot.open(request)
        if name is None:
            return await scope.ainvoke(key)
        return await scope.ainvoke(key, name)

    resolve.__qualname__ = f"provide({getattr(key, '__qualname__', key)})"
    plan: Plan = ((None, key, name),)
    setattr(resolve, INJECTS, lambda: plan)
    return Provide(resolve, use_cache=use_cache)


def scope_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Scope:
    """The scope of this request (or WebSocket connection), opened on first use."""
    return _asgi.scope_of(connection, connection.scope, "litestar")  # type: ignore[arg-type]


def context_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Mapping[Any, Any]:
    """A request scope's context: the connection under its class and ASGIConnection."""
    if isinstance(connection, Request):
        return {Request: connection, ASGIConnection: connection}
    if isinstance(connection, WebSocket):
        return {WebSocket: connection, ASGIConnection: connection}
    return {ASGIConnection: connection}
