"""FastAPI: ``Inject[T]`` in endpoints and dependencies, the lifespan, health routes.

>>> app = FastAPI()
>>> install(app, injector)
>>> @app.get("/orders")
... async def orders(store: Inject[OrderStore]) -> list[str]:
...     return store.items()

``Inject`` is :data:`di.Inject`, the one marker of the core and every integration.
Once FastAPI is loaded, ``Inject[T]`` is ``Annotated[T, Depends(...), <marker>]``
(the dependency made here, :func:`inject_metadata`): it works wherever FastAPI resolves
dependencies (async and sync endpoints, other dependencies, WebSocket endpoints, routers
of any route class), and ``Inject[Annotated[T, Named("replica")]]`` asks for a named
service. Services come from the request's scope (see :func:`install`). The marker is
what :class:`InjectingRoute` reads to wrap an async endpoint with the wrapper every
integration uses (:func:`di.integrations._inject.wrap`) instead.
``pip install 'healthdi[fastapi]'``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from .._container.keys import parse_named
from .._extras import needs_extra
from ..inject import Inject
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope
from . import _asgi
from ._asgi import StreamAbortedError
from ._inject import INJECTS, Plan, Site, check_injected, injected_params, injects, wrap

with needs_extra("di.integrations.fastapi", "fastapi"):
    from fastapi import Depends, FastAPI
    from fastapi.exceptions import FastAPIError
    from fastapi.requests import HTTPConnection
    from fastapi.routing import APIRoute
    from starlette.routing import BaseRoute

    from . import starlette as _starlette

__all__ = [
    "Inject",
    "InjectingRoute",
    "StreamAbortedError",
    "inject_metadata",
    "install",
    "scope_of",
]


def install(
    app: FastAPI,
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

    - **Lifespan:** the app's ``lifespan`` runs inside the container's: startup runs
      ``astart()`` (validation, then eager services; a failure fails the app's
      startup) and the monitor (``monitor``, or ``HealthMonitor(injector)``); at
      shutdown every status but liveness turns NOT_SERVING, the app's own shutdown runs, the
      monitor stops and ``ashutdown()`` runs.
    - **Request scopes:** ``Request``, ``WebSocket`` and ``HTTPConnection`` are
      declared with ``provide_context`` (unless they already are), so services can
      take the request. Each request (and WebSocket connection) gets its own scope on
      its first ``Inject``; it closes after the response has been sent (background
      tasks included), and an exception escaping the app is thrown into generator
      factories, and so is :class:`StreamAbortedError` when the app returns before
      its response's end (a stream whose client went away). An exception FastAPI
      answers with an exception handler (``HTTPException``, validation errors) is
      handled: the scope closes as usual.
    - **Checked at startup:** every route's ``Inject[T]`` (endpoints, dependencies,
      included routers, mounted apps) is looked up before the container starts; one
      the container cannot build fails the startup with a ``GraphError`` naming each
      route.
    - **Health routes:** ``/health``, ``/livez``, ``/readyz`` (and their ``/{name}``
      forms), ``/startupz`` and ``POST /grpc.health.v1.Health/Check`` under ``health_prefix``, left
      out of the OpenAPI schema; error texts only with ``show_details=True``. An app
      route below ``/health/``, ``/livez/`` or ``/readyz/`` (``/health/version``)
      takes precedence, wherever it is added.
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

    - **Routes:** an ``async def`` endpoint added to ``app`` afterwards gets its
      ``Inject`` parameters from the request's scope directly, without a FastAPI
      dependency for each (the same services, less work per request); anywhere else
      (sync endpoints, routers made apart, other dependencies) ``Inject`` is a
      dependency. Not done when the app already has its own ``route_class``.

    Call it where the app is made, before it serves, on the app the server runs: a
    mounted app's lifespan never runs, and a request to an app whose lifespan never
    started logs an error, and fails where it injects. Once per app. Returns the
    monitor, also recorded as ``app.state.healthdi_monitor`` (``di run`` drains it).
    """
    monitor = _starlette.install(
        app,
        injector,
        monitor=monitor,
        health_prefix=health_prefix,
        show_details=show_details,
        metrics=metrics,
        unbuilt=unbuilt,
        status_codes=status_codes,
        ui=ui,
    )
    if app.router.route_class is APIRoute:
        app.router.route_class = InjectingRoute
    _check_routes_first(app, injector)
    return monitor


def _check_routes_first(app: FastAPI, injector: Scope) -> None:
    """Startup checks what every route injects before the container starts."""
    router = app.router
    inner = router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        check_injected(injector, _sites(router.routes))
        async with inner(app) as state:
            yield state

    router.lifespan_context = lifespan


def _sites(routes: Sequence[BaseRoute]) -> Iterator[Site]:
    """Each ``Inject`` of each route (its endpoint's, its dependencies'), mounted apps'
    routes included: ``(where, plan)``."""
    for route in routes:
        # A Mount or a Host (a mounted app's routes), or a router included lazily (its
        # own routes, FastAPI >= 0.160).
        below = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None
        )
        if below:
            yield from _sites(below)
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        methods = ",".join(sorted(getattr(route, "methods", None) or ())) or "WebSocket"
        endpoint = getattr(route, "endpoint", None)
        where = f"route {methods} {getattr(route, 'path', '?')} ({_name(endpoint)})"
        read = injects(endpoint)
        if read is not None:
            yield where, read
        pending = list(dependant.dependencies)
        while pending:
            dependency = pending.pop()
            pending.extend(dependency.dependencies)
            read = injects(dependency.call)
            if read is not None:
                yield where, _named(read, dependency.name)


def _named(read: Callable[[], Plan], parameter: str | None) -> Callable[[], Plan]:
    """A dependency's plan, with the parameter FastAPI binds it to."""
    return lambda: [(parameter, key, name) for _, key, name in read()]


def _name(endpoint: Any) -> str:
    return str(getattr(endpoint, "__qualname__", None) or endpoint)


class InjectingRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose async endpoint is handed its ``Inject``
    parameters by a wrapper, from the request's scope, rather than by FastAPI solving a
    dependency for each. :func:`install` makes it the app's route class; pass it as an
    ``APIRouter``'s ``route_class`` for the same on a router's routes.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        try:
            super().__init__(path, _injecting(endpoint), **kwargs)
        except FastAPIError as error:
            mistake = _unmarked(path, endpoint, kwargs.get("methods"), error)
            if mistake is None:
                raise
            raise FastAPIError(mistake) from error


def _unmarked(path: str, endpoint: Any, methods: Any, error: FastAPIError) -> str | None:
    """What FastAPI refused, said as the mistake it most often is: a parameter typed as a
    service, without ``Inject``; None when it is not that."""
    verbs = ",".join(sorted(methods or ())) or "WebSocket"
    try:
        signature = inspect.signature(endpoint)
        hints = typing.get_type_hints(endpoint)
    except Exception:
        return None
    try:
        injected_params(endpoint)  # Annotated[T, Inject], Inject on a positional-only
    except TypeError as mistake:
        said = str(mistake).removeprefix(f"{getattr(endpoint, '__qualname__', '')}: ")
        return f"route {verbs} {path} ({_name(endpoint)}): {said}"
    except Exception:  # not ours to say: FastAPI's own error stands, or the one below
        pass
    for parameter in signature.parameters.values():
        hint = hints.get(parameter.name)
        if isinstance(hint, type) and repr(hint) in str(error):
            name, kind = parameter.name, hint.__qualname__
            return (
                f"route {verbs} {path} ({_name(endpoint)}): parameter {name!r} is typed "
                f"{kind}, which FastAPI cannot read from a request: to have the container "
                f"inject it, write {name}: Inject[{kind}] (from di.integrations.fastapi "
                "import Inject)"
            )
    return None


_CONNECTION = "_di_connection"
# The parameter the wrapper adds, so that FastAPI passes it the connection.
_CONNECTION_PARAM = inspect.Parameter(
    _CONNECTION, inspect.Parameter.KEYWORD_ONLY, annotation=HTTPConnection
)


def _injecting(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` wrapped to fill its ``Inject`` parameters itself; as is if it cannot be.

    The wrapper (:func:`~._inject.wrap`) has the endpoint's signature without those
    parameters, plus the connection (so FastAPI passes it); it keeps the endpoint's
    name, docs and return annotation, and its ``__wrapped__`` lets FastAPI read the
    annotations against the endpoint's module.
    """
    if not inspect.iscoroutinefunction(endpoint):
        return endpoint  # FastAPI runs a sync endpoint in a thread: Inject stays a dependency
    try:
        signature = inspect.signature(endpoint)
        kinds = {p.kind for p in signature.parameters.values()}
        if _CONNECTION in signature.parameters or kinds & {
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        }:
            return endpoint
        injected = injected_params(endpoint)
    except Exception:
        return endpoint  # unresolvable annotations: FastAPI reports them as it does
    if not injected:
        return endpoint
    return wrap(endpoint, _connection_scope, params=injected, extra=(_CONNECTION_PARAM,))


def _connection_scope(kwargs: dict[str, Any]) -> Scope:
    """The request scope of the connection FastAPI passed the wrapper."""
    connection: HTTPConnection = kwargs.pop(_CONNECTION)
    slot: _asgi.Slot | None = connection.scope.get(_asgi.SLOT)
    return scope_of(connection) if slot is None else (slot.scope or slot.open(connection))


def scope_of(connection: HTTPConnection) -> Scope:
    """The scope of this request (or WebSocket connection), opened on first use."""
    return _asgi.scope_of(connection, connection.scope, "fastapi")


def inject_metadata(item: Any) -> tuple[Any, ...]:
    """What ``Inject[item]`` carries for FastAPI: the dependency FastAPI solves, made
    anew for each ``Inject[...]`` annotation (:mod:`di.inject` keeps those).

    Each ``Inject`` is resolved on its own (``use_cache=False``), so a transient
    service is built for each parameter; singletons and scoped services are cached by
    the container itself.
    """
    return (Depends(_resolver(item), use_cache=False),)


def _resolver(item: Any) -> Any:
    key, name, _ = parse_named(item)
    slot_key = _asgi.SLOT

    if name is None:

        async def resolve(connection: HTTPConnection) -> Any:
            slot: _asgi.Slot | None = connection.scope.get(slot_key)
            if slot is None:
                return await scope_of(connection).ainvoke(key)  # raises: not installed
            return await (slot.scope or slot.open(connection)).ainvoke(key)

    else:

        async def resolve(connection: HTTPConnection) -> Any:
            return await scope_of(connection).ainvoke(key, name)

    resolve.__qualname__ = f"Inject[{getattr(key, '__qualname__', key)}]"
    plan: Plan = ((None, key, name),)
    setattr(resolve, INJECTS, lambda: plan)
    return resolve
