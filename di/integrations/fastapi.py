"""FastAPI: ``Inject[T]`` in endpoints and dependencies, the lifespan, health routes.

>>> app = FastAPI()
>>> install(app, injector)
>>> @app.get("/orders")
... async def orders(store: Inject[OrderStore]) -> list[str]:
...     return store.items()

``Inject[T]`` is ``Annotated[T, Depends(...)]``: it works wherever FastAPI resolves
dependencies (async and sync endpoints, other dependencies, WebSocket endpoints), and
``Inject[Annotated[T, Named("replica")]]`` asks for a named service. Services come
from the request's scope (see :func:`install`). ``pip install 'healthdi[fastapi]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, TypeVar, get_args, get_origin

from fastapi import Depends, FastAPI
from fastapi.requests import HTTPConnection

from .._keys import Named
from ..monitor import HealthMonitor
from ..scope import Scope
from . import _asgi
from . import starlette as _starlette

__all__ = ["Inject", "install", "scope_of"]

T = TypeVar("T")


def install(
    app: FastAPI,
    injector: Scope,
    *,
    monitor: HealthMonitor | None = None,
    health_prefix: str = "",
    show_details: bool = False,
    metrics: Any = False,
) -> HealthMonitor:
    """Run ``injector`` with ``app``: lifespan, a scope per request, health routes.

    - **Lifespan:** the app's ``lifespan`` runs inside the container's: startup runs
      ``astart()`` (validation, then eager services; a failure fails the app's
      startup) and the monitor (``monitor``, or ``HealthMonitor(injector)``); at
      shutdown every status turns NOT_SERVING, the app's own shutdown runs, the
      monitor stops and ``ashutdown()`` runs.
    - **Request scopes:** ``Request``, ``WebSocket`` and ``HTTPConnection`` are
      declared with ``provide_context`` (unless they already are), so services can
      take the request. Each request (and WebSocket connection) gets its own scope on
      its first ``Inject``; it closes after the response has been sent (background
      tasks included), and an exception escaping the app is thrown into generator
      factories. An exception FastAPI answers with an exception handler
      (``HTTPException``, validation errors) is handled: the scope closes as usual.
    - **Health routes:** ``/health``, ``/livez``, ``/readyz`` (and their ``/{name}``
      forms) and ``POST /grpc.health.v1.Health/Check`` under ``health_prefix``, left
      out of the OpenAPI schema; error texts only with ``show_details=True``. An app
      route below ``/health/``, ``/livez/`` or ``/readyz/`` (``/health/version``)
      takes precedence, wherever it is added.
    - **Metrics:** ``metrics=True`` serves Prometheus metrics at ``/metrics`` (under
      ``health_prefix``) from the default registry, the monitor's collector
      registered on it (:mod:`di.metrics`); or pass a ``CollectorRegistry``.

    Call it where the app is made, before it serves, on the app the server runs: a
    mounted app's lifespan never runs, and a request to an app whose lifespan never
    started logs an error, and fails where it injects. Once per app. Returns the
    monitor.
    """
    return _starlette.install(
        app,
        injector,
        monitor=monitor,
        health_prefix=health_prefix,
        show_details=show_details,
        metrics=metrics,
    )


def scope_of(connection: HTTPConnection) -> Scope:
    """The scope of this request (or WebSocket connection), opened on first use."""
    return _asgi.scope_of(connection, connection.scope, "fastapi")


_resolvers: dict[Any, Any] = {}


def _inject(item: Any) -> Any:
    """``Annotated[item, Depends(...)]``, its dependency made once per ``item``."""
    try:
        return _resolvers[item]
    except KeyError:
        pass
    except TypeError:  # unhashable: made anew
        return Annotated[item, Depends(_resolver(item), use_cache=False)]
    annotated = Annotated[item, Depends(_resolver(item), use_cache=False)]
    _resolvers[item] = annotated
    return annotated


def _resolver(item: Any) -> Any:
    key, name = item, None
    if get_origin(item) is Annotated:
        key, *metadata = get_args(item)
        names = [m.name for m in metadata if isinstance(m, Named)]
        name = names[-1] if names else None
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
    return resolve


if TYPE_CHECKING:
    # For type checkers, Inject[T] is T.
    Inject: TypeAlias = Annotated[T, "di.integrations.fastapi.Inject"]
else:

    class Inject:
        """``Inject[T]``: a parameter FastAPI fills with the service ``T``.

        It is ``Annotated[T, Depends(...)]``, the service invoked from the request's
        scope; ``Inject[Annotated[T, Named("x")]]`` asks for the service named ``x``.
        Each ``Inject`` is resolved on its own (``use_cache=False``), so a transient
        service is built for each parameter; singletons and scoped services are
        cached by the container itself.
        """

        __slots__ = ()

        def __class_getitem__(cls, item: Any) -> Any:
            return _inject(item)
