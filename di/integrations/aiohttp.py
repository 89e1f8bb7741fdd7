"""aiohttp: the container's life with the app's, a scope per request, ``@inject``, health.

>>> app = web.Application()
>>> install(app, injector)
>>> @inject
... async def list_orders(request: web.Request, store: Inject[OrderStore]) -> web.Response:
...     return web.json_response(store.items())
>>> app.router.add_get("/orders", list_orders)

The path of a request: :func:`install`'s middleware (the outermost) gives it a slot
for its scope, opened on first use (an ``Inject`` parameter, :func:`scope_of`) with
the ``web.Request`` in its context, and closed once the handler has returned (an
exception that escapes it is thrown into generator factories first); ``@inject``
finds the slot through a context variable the middleware sets, so it works for
function handlers and ``web.View`` methods alike. The health routes hand the request
to :func:`di.asgi.health_app` in-process. The app's startup runs the integrations' one
start/stop sequence (:class:`~di.integrations._lifecycle.Running`) from
``app.cleanup_ctx``. ``pip install 'healthdi[aiohttp]'``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from aiohttp import hdrs, web

from .._answers import BODY_SECONDS, BODY_TOO_SLOW, MAX_BODY
from ..errors import DIError
from ..inject import Inject
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope
from . import _asgi
from ._health_routes import HealthRoutes
from ._inject import wrap
from ._lifecycle import LazyScope, Running, monitor_for
from ._startup import check_handlers

__all__ = ["Inject", "inject", "install", "scope_of"]

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_INSTALLED = web.AppKey("healthdi", object)
# The request's key (web.Request is a mapping) for its slot: a typed key where aiohttp
# has them (3.12 and later), a string before.
_SLOT: Any = (
    web.RequestKey("healthdi.scope", object) if hasattr(web, "RequestKey") else "healthdi.scope"
)
_current: contextvars.ContextVar[LazyScope] = contextvars.ContextVar("di.integrations.aiohttp")


class _Installed:
    """One app's injector and monitor, and whether its startup ran."""

    __slots__ = ("injector", "monitor", "started")

    def __init__(self, injector: Scope, monitor: HealthMonitor) -> None:
        self.injector = injector
        self.monitor = monitor
        self.started = False

    def check(self) -> None:
        """Raise unless the app's startup ran: before a request's scope opens."""
        if not self.started:
            raise DIError(
                "this aiohttp app's startup never ran, so its injector was never started: "
                "run the app with web.run_app() or an AppRunner, and install() on the app "
                "they run"
            )


def install(
    app: web.Application,
    injector: Scope,
    *,
    monitor: HealthMonitor | None = None,
    health_prefix: str = "",
    show_details: bool = False,
    metrics: Any = False,
    unbuilt: Unbuilt | None = None,
    ui: bool = False,
) -> HealthMonitor:
    """Run ``injector`` with ``app``: startup, a scope per request, health routes, cleanup.

    - **Startup and cleanup** (``app.cleanup_ctx``): the startup checks the handlers
      the app routes to (one ``GraphError`` naming each that has ``Inject[...]``
      parameters without ``@inject``, or injects what nothing provides), runs the
      injector's ``astart()`` (a failure fails the startup) and the monitor
      (``monitor``, or ``HealthMonitor(injector)``); at shutdown every status but
      liveness turns NOT_SERVING (``on_shutdown``), then the monitor stops after its
      round and ``ashutdown()`` runs.
    - **Request scopes:** ``web.Request`` is declared with ``provide_context``. Each
      request gets a scope on first use, with the request in its context; it closes
      when the handler has returned, before the response is sent. An exception that
      escapes the handler is thrown into generator factories (so they roll back); an
      ``HTTPException`` raised as an answer (``web.HTTPFound``,
      ``web.HTTPNotFound``) closes it as usual.
    - **Health routes:** ``/health``, ``/livez``, ``/readyz`` (and their ``/{name}``
      forms) and ``POST /grpc.health.v1.Health/Check`` under ``health_prefix``,
      answered by :func:`di.asgi.health_app`; error texts only with
      ``show_details=True``; ``metrics=True`` (or a ``CollectorRegistry``) adds
      ``/metrics``.
    - **Unbuilt services:** ``unbuilt`` is the new monitor's (see
      :class:`~di.HealthMonitor`); a monitor given has its own.
    - **Status page:** ``ui=True`` serves the status page at ``/health/ui`` (under
      ``health_prefix``; see :func:`di.asgi.health_app`), and sends a browser asking
      for ``/health`` there.

    Call it where the app is made, before it runs; once per app. Returns the monitor.
    """
    monitor = monitor_for(injector, monitor, unbuilt)
    if not isinstance(app, web.Application):
        raise TypeError(f"install() needs an aiohttp web.Application, got {app!r}")
    prefix = _asgi.normalize_prefix(health_prefix)
    if _INSTALLED in app:
        raise RuntimeError("install() was already called on this aiohttp app")
    _asgi.declare_context(injector, (web.Request,), "aiohttp")
    installed = _Installed(injector, monitor)
    app[_INSTALLED] = installed

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        check_handlers(injector, _handlers(app), "@inject")
        async with Running(injector, monitor):
            installed.started = True
            yield

    async def going(app: web.Application) -> None:
        await monitor.enter_graceful_shutdown()

    app.cleanup_ctx.append(lifespan)
    app.on_shutdown.append(going)
    app.middlewares.insert(0, _middleware(installed))
    _add_health_routes(app, HealthRoutes(monitor, show_details, metrics, ui), prefix)
    return monitor


def _middleware(installed: _Installed) -> Any:
    # Read once: each request pays only for its slot, and for its scope if it opens one.
    injector, guard, state = installed.injector, installed.check, web.Request

    @web.middleware
    async def request_scope(request: web.Request, handler: Handler) -> web.StreamResponse:
        slot = LazyScope(injector, state, request, guard=guard)
        request[_SLOT] = slot
        token = _current.set(slot)
        try:
            response = await handler(request)
        except web.HTTPException:
            await slot.aclose(None)  # an answer, raised: the request did what it meant to
            raise
        except BaseException as error:
            await slot.aclose(error)
            raise
        finally:
            _current.reset(token)
        if slot.scope is None:
            slot.end()  # nothing opened: nothing to close
        else:
            await slot.aclose(None)
        return response

    return request_scope


def scope_of(request: web.Request) -> Scope:
    """The scope of this request, opened on first use.

    >>> order = await scope_of(request).ainvoke(Order)
    """
    slot: LazyScope | None = request.get(_SLOT)
    if slot is None:
        raise DIError(
            "this aiohttp app has no request scopes: call "
            "di.integrations.aiohttp.install(app, injector) where the app is made"
        )
    return slot.scope or slot.open()


def inject(handler: F) -> F:
    """Fill the handler's ``Inject[T]`` parameters from the request's scope.

    For ``async def`` handlers (``request`` stays a parameter aiohttp passes) and
    ``web.View`` methods. The request's scope is found through the middleware, so the
    handler need not take the request to inject.
    """
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(
            f"@inject: {getattr(handler, '__qualname__', handler)!r} is not an async def "
            "function; aiohttp handlers are coroutines"
        )
    return wrap(handler, _request_scope, required="@inject")  # type: ignore[return-value]


def _request_scope(kwargs: dict[str, Any]) -> Scope:
    try:
        slot = _current.get()
    except LookupError:
        raise DIError(
            "no aiohttp request here: an @inject handler is called by the app that "
            "install(app, injector) was given, while it handles a request"
        ) from None
    return slot.scope or slot.open()


def _handlers(app: web.Application) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Each handler ``app`` routes to, named by its route: functions, and the methods
    of ``web.View`` classes."""
    for route in app.router.routes():
        handler = route.handler
        where = f"{route.method} {route.resource.canonical if route.resource else '?'}"
        if isinstance(handler, type) and issubclass(handler, web.View):
            for method in hdrs.METH_ALL:
                found = getattr(handler, method.lower(), None)
                if found is not None:
                    yield f"view {handler.__qualname__}.{method.lower()} at {where}", found
        elif callable(handler):
            name = getattr(handler, "__qualname__", repr(handler))
            yield f"route {where} ({name})", handler


def _add_health_routes(app: web.Application, routes: HealthRoutes, prefix: str) -> None:
    exact, below = routes.paths()

    async def health(request: web.Request) -> web.StreamResponse:
        path = request.path[len(prefix) :]
        body = b""
        if request.method == hdrs.METH_POST:
            try:
                body = await asyncio.wait_for(_read(request), BODY_SECONDS)
            except TimeoutError:
                answer = BODY_TOO_SLOW
                return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        query = request.query_string.encode()
        accept = request.headers.get(hdrs.ACCEPT, "")
        reply = await routes.answer(request.method, path, query, body, accept)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    for path in exact:
        app.router.add_route("*", prefix + path, health, name=None)
    for path in below:
        app.router.add_route("*", prefix + path + "{below:.*}", health)


async def _read(request: web.Request) -> bytes:
    """The request's body, at most MAX_BODY + 1 bytes (the health app refuses more)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
