"""Django: the container's life with the process's, a scope per request, ``@inject``, health.

In ``settings.py``:

>>> INSTALLED_APPS = [..., "di.integrations.django"]
>>> MIDDLEWARE = ["di.integrations.django.RequestScopeMiddleware", ...]
>>> HEALTHDI = {"INJECTOR": "project.container:create_injector"}

In ``urls.py``: ``path("", include(health_urls))``; in views, ``@inject`` and
``Inject[T]`` parameters.

The path of a request: :class:`RequestScopeMiddleware` gives it a slot for its scope
(opened on first use, with the ``HttpRequest`` in its context) and a context variable
pointing to it, which ``@inject`` views read (function views and class-based views'
methods, sync or async, under WSGI or ASGI); a view's exception reaches the slot
through ``process_exception`` and is thrown into generator factories when the scope
closes, after the view (a streamed response's once its body is sent). The health
views hand the request to :func:`di.asgi.health_app` in-process. The app
(:mod:`.apps`) starts the injector at ``AppConfig.ready()`` and shuts it down at exit;
under an ASGI server, :func:`get_asgi_application` runs it in the lifespan instead.
``pip install 'healthdi[django]'``.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import URLPattern, URLResolver, get_resolver, re_path
from django.views.decorators.csrf import csrf_exempt

from ...errors import DIError
from ...inject import Inject
from ...scope import Scope
from .._asgi import CUT_SHORT, StreamAbortedError
from .._health_routes import HealthRoutes
from .._inject import wrap
from .._lifecycle import LazyScope
from .._startup import check_handlers
from .._wsgi import Streamed

__all__ = [
    "Inject",
    "RequestScopeMiddleware",
    "StreamAbortedError",
    "get_asgi_application",
    "health_urls",
    "inject",
    "scope_of",
]

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "_healthdi_slot"  # the request's attribute holding its slot
_current: contextvars.ContextVar[LazyScope] = contextvars.ContextVar("di.integrations.django")


def _process() -> Any:
    from django.apps import apps

    from .apps import HealthdiConfig

    try:
        config = apps.get_app_config("healthdi")
    except LookupError:
        raise DIError(
            "the healthdi app is not installed: add 'di.integrations.django' to "
            "settings.INSTALLED_APPS"
        ) from None
    assert isinstance(config, HealthdiConfig)
    process = config.process
    if process is None:
        raise DIError("the healthdi app is not ready: call django.setup() first")
    return process


# -- a scope per request -------------------------------------------------------------------


# Exceptions Django answers as what the view meant (404, 403): the scope closes as usual.
def _answered(error: BaseException) -> bool:
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    return isinstance(error, Http404 | PermissionDenied)


class RequestScopeMiddleware:
    """A scope per request, with the ``HttpRequest`` in its context, closed after the view.

    Sync and async alike (Django picks the mode of the chain around it). A view's
    exception (not ``Http404`` or ``PermissionDenied``, which are answers) is thrown
    into generator factories, so they roll back; a streamed response's scope closes
    once its body has been sent, with :class:`StreamAbortedError` if the server closed
    it before its end. Made once per handler, at startup: it checks the views the
    URLconf routes to (a ``GraphError`` naming each with ``Inject[...]`` parameters and
    no ``@inject``, or injecting what nothing provides).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        process = self.process = _process()
        check_handlers(process.injector, _views(), "@inject")
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        slot = LazyScope(self.process.injector, HttpRequest, request, guard=self.process.check)
        setattr(request, _ATTRIBUTE, slot)
        token = _current.set(slot)
        try:
            response = self.get_response(request)
        except BaseException as error:
            slot.close(error)
            raise
        finally:
            _current.reset(token)
        if slot.scope is None and not _may_open(response):
            slot.end()
        elif response.streaming:  # the scope closes after the body, which may open it
            response.streaming_content = Streamed(response.streaming_content, slot.close)
        else:
            slot.close()
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        slot = LazyScope(self.process.injector, HttpRequest, request, guard=self.process.check)
        setattr(request, _ATTRIBUTE, slot)
        token = _current.set(slot)
        try:
            response: HttpResponseBase = await self.get_response(request)
        except BaseException as error:
            await slot.aclose(error)
            raise
        finally:
            _current.reset(token)
        if slot.scope is None and not _may_open(response):
            slot.end()
        elif response.streaming:
            content = response.streaming_content
            response.streaming_content = _AsyncStreamed(content, slot)
        else:
            await slot.aclose()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        """Record the view's exception for its scope; Django answers it as usual."""
        slot: LazyScope | None = getattr(request, _ATTRIBUTE, None)
        if slot is not None and not _answered(exception):
            slot.failure = exception


def _may_open(response: HttpResponseBase) -> bool:
    """Whether sending ``response`` may still open its request's scope: a streamed body
    may (it runs code of the view's), but not a file's (a ``FileResponse``, left
    unwrapped so that the server may send the file as it is)."""
    return bool(response.streaming) and getattr(response, "file_to_stream", None) is None


class _AsyncStreamed:
    """A streamed body under ASGI that closes its request's scope (if the view or the
    body opened it) after its last chunk,
    with the body's exception if it fails part-way, or StreamAbortedError if it is cut
    short (:class:`~di.integrations._wsgi.Streamed` under WSGI)."""

    __slots__ = ("body", "slot")

    def __init__(self, body: Any, slot: LazyScope) -> None:
        self.body = body
        self.slot = slot

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items()

    async def _items(self) -> AsyncIterator[Any]:
        finished = False
        failure: BaseException | None = None
        try:
            if hasattr(self.body, "__aiter__"):
                async for item in self.body:
                    yield item
            else:
                # A sync view's body, read in the sync views' thread as Django reads it
                # under ASGI: not on the event loop, which it would block (and where
                # the ORM refuses to run).
                body = self.body
                for item in await sync_to_async(lambda: list(body))():
                    yield item
            finished = True
        except BaseException as error:
            failure = error
            raise
        finally:
            if not self.slot.done:
                if failure is None and not finished:
                    failure = StreamAbortedError(CUT_SHORT)
                await self.slot.aclose(failure)


def scope_of(request: HttpRequest | None = None) -> Scope:
    """The scope of this request (or of the request being handled), opened on first use.

    >>> order = scope_of(request).invoke(Order)
    """
    slot: LazyScope | None
    slot = getattr(request, _ATTRIBUTE, None) if request is not None else _current.get(None)
    if slot is None:
        raise DIError(
            "no request scope here: add 'di.integrations.django.RequestScopeMiddleware' "
            "to settings.MIDDLEWARE, and reach the scope while a request is handled"
        )
    return slot.scope or slot.open()


# -- injection into views ----------------------------------------------------------------


def inject(view: F) -> F:
    """Fill the view's ``Inject[T]`` parameters from the request's scope.

    For function views and class-based views' methods (``def get(self, request,
    orders: Inject[Orders])``), sync or ``async def``; the request and URL parameters
    pass as Django passes them.
    """
    if isinstance(view, type):
        raise TypeError(
            f"@inject: {view.__qualname__} is a class; decorate its methods (get, post...) instead"
        )
    return wrap(view, _request_scope, required="@inject")  # type: ignore[return-value]


def _request_scope(kwargs: dict[str, Any]) -> Scope:
    return scope_of()


def _views() -> Iterator[tuple[str, Callable[..., Any]]]:
    """Each view the URLconf routes to, named by its route: functions, and the handler
    methods of class-based views."""
    pending: list[tuple[str, Any]] = [("", get_resolver())]
    while pending:
        prefix, resolver = pending.pop()
        for entry in resolver.url_patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                pending.append((route, entry))
            elif isinstance(entry, URLPattern):
                callback = entry.callback
                view_class = getattr(callback, "view_class", None)
                if isinstance(view_class, type):
                    for method in getattr(view_class, "http_method_names", ()):
                        handler = getattr(view_class, method, None)
                        if handler is not None and method != "options":
                            yield f"view {view_class.__qualname__}.{method} at {route!r}", handler
                else:
                    name = getattr(callback, "__qualname__", repr(callback))
                    yield f"view {name} at {route!r}", callback


# -- health views -------------------------------------------------------------------------


class _HealthViews:
    """The health app of this process's monitor, made on first use."""

    __slots__ = ("monitor", "routes")

    def __init__(self) -> None:
        self.routes: HealthRoutes | None = None
        self.monitor: Any = None

    def get(self) -> HealthRoutes:
        process = _process()
        routes = self.routes
        if routes is None or self.monitor is not process.monitor:  # a new one after fork
            options = process.options
            routes = self.routes = HealthRoutes(
                process.monitor, options.show_details, False, options.ui
            )
            self.monitor = process.monitor
        return routes


_health = _HealthViews()


async def health_view(request: HttpRequest, path: str) -> HttpResponse:
    """``/health``, ``/livez``, ``/readyz`` and the JSON Check, as the health app answers."""
    body = request.body if request.method == "POST" else b""
    reply = await _health.get().answer(
        request.method or "GET",
        "/" + path,
        request.META.get("QUERY_STRING", "").encode(),
        body,
        request.META.get("HTTP_ACCEPT", ""),
    )
    response = HttpResponse(reply.body, status=reply.status)
    for name, value in reply.headers:
        response[name] = value
    return response


# The JSON Check is a POST from a probe: no CSRF token to give.
health_view = csrf_exempt(health_view)


def _health_pattern() -> str:
    exact, below = HealthRoutes.paths_of(metrics=False)
    names = "|".join(
        [
            *(_escape(path[1:]) + "/?" for path in exact),
            *(_escape(path[1:]) + ".+" for path in below),
        ]
    )
    return rf"^(?P<path>{names})$"


def _escape(text: str) -> str:
    import re

    return re.escape(text)


health_urls = [re_path(_health_pattern(), health_view, name="healthdi-health")]
"""The health routes, to ``include()``: ``path("", include(health_urls))`` serves
``/health``, ``/livez``, ``/readyz`` (and their ``/<name>`` forms) and ``POST
/grpc.health.v1.Health/Check``; ``path("ops/", include(health_urls))`` under ``/ops/``."""


# -- ASGI: the lifespan -------------------------------------------------------------------


def get_asgi_application() -> Callable[..., Awaitable[None]]:
    """Django's ASGI application, with the lifespan: use it in ``asgi.py`` in place of
    ``django.core.asgi.get_asgi_application``.

    The lifespan's startup runs the injector's start and the monitor on the server's
    event loop (uvicorn's), where async views run, and its shutdown turns
    NOT_SERVING, stops the monitor and shuts the injector down. Django alone answers
    the lifespan with an error; a server that does not run it leaves the injector
    unstarted (set ``lifespan="on"`` where the server asks).
    """
    import django
    from django.core.handlers.asgi import ASGIHandler

    from .apps import HealthdiConfig

    HealthdiConfig.wait_for_lifespan = True
    django.setup(set_prefix=False)
    handler = ASGIHandler()

    async def application(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        else:
            await handler(scope, receive, send)

    return application


async def _lifespan(
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    from ...health import explain_error

    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    process = _process()
    try:
        await process.astart()
    except Exception as error:
        await send({"type": "lifespan.startup.failed", "message": explain_error(error)})
        return
    try:
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
    finally:
        try:
            await process.aclose()
        except Exception as error:
            await send({"type": "lifespan.shutdown.failed", "message": explain_error(error)})
            return
    await send({"type": "lifespan.shutdown.complete"})
