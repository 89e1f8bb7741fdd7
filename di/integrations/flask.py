"""Flask: a scope per request, ``@inject``, health routes as a blueprint, shutdown at exit.

>>> app = Flask(__name__)
>>> install(app, injector)
>>> @app.get("/orders")
... @inject
... def list_orders(store: Inject[OrderStore]) -> list[str]:
...     return store.items()

Flask apps are sync: :func:`install` starts the injector and runs the
:class:`~di.HealthMonitor` on an event loop in a thread of its own, the same start/stop
sequence every integration runs; the health routes serve the answers
:func:`di.asgi.health_app` serves. ``pip install 'healthdi[flask]'``.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from .._answers import (
    BODY_TOO_LARGE,
    GRPC_CHECK,
    MAX_BODY,
    STATUS_CODES,
    Answer,
    check_json,
    render_health,
    render_probe,
)
from .._answers import (
    status_codes as status_codes_of,
)
from .._extras import needs_extra
from .._ui import Pages
from ..errors import DIError
from ..inject import Inject
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope
from . import _asgi
from ._asgi import StreamAbortedError
from ._inject import Site, check_injected, injected_params, injects, misused, wrap
from ._lifecycle import AppLifetime, monitor_for, registry_for
from ._wsgi import Streamed

with needs_extra("di.integrations.flask", "flask"):
    from flask import Blueprint, Flask, Request, Response, current_app, g, request

__all__ = ["Inject", "StreamAbortedError", "inject", "install", "scope_of", "shutdown"]

F = TypeVar("F", bound=Callable[..., Any])


_EXTENSION = "healthdi"
_G_SCOPE = "_healthdi_scope"
_G_STREAMED = "_healthdi_streamed"  # the scope closes with the streamed body, not before


_apps_lock = threading.Lock()
_running_injectors: dict[int, AppLifetime] = {}  # by id(injector), until shut down
if hasattr(os, "register_at_fork"):  # no thread holds it across a fork
    os.register_at_fork(
        before=_apps_lock.acquire,
        after_in_parent=_apps_lock.release,
        after_in_child=_apps_lock.release,
    )


def _forget(running: AppLifetime) -> None:
    """The app's close has begun: its injector may run with another app."""
    with _apps_lock:
        if _running_injectors.get(id(running.injector)) is running:
            del _running_injectors[id(running.injector)]


def install(
    app: Flask,
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
    """Run ``injector`` with ``app``: start now, a scope per request, health, shutdown.

    - **Start:** the injector's ``astart()`` runs now (validation, then eager
      services), on the event loop of a thread of its own: a failure shuts down what
      it built and raises here, so the app is never made. The monitor (``monitor``,
      or ``HealthMonitor(injector)``) then checks every interval on that loop;
      ``install`` returns once its first round has completed (or its timeout has
      passed).
    - **Request scopes:** ``flask.Request`` is declared with ``provide_context``
      (unless it already is). Each request gets its own scope on first use (an
      ``Inject`` parameter, :func:`scope_of`), with the request in its context; it
      closes in ``teardown_request``, and an unhandled exception of the request is
      thrown into generator factories. One that an ``errorhandler`` or ``abort()``
      answered is handled: the scope closes as usual. A streamed response's scope
      closes once its body has been sent instead, with the body's exception if it
      fails part-way (:class:`StreamAbortedError` if it is cut short).
    - **Checked as registered:** an ``@inject`` view asking for what the container
      cannot build raises ``GraphError`` where it is registered (views registered
      before now are checked here).
    - **Forks:** after ``fork()`` (``gunicorn --preload``) the child runs the
      monitor's rounds on a thread of its own.
    - **Health routes:** a blueprint serving ``/health``, ``/livez``, ``/readyz``
      (and their ``/<name>`` forms), ``/startupz`` and ``POST /grpc.health.v1.Health/Check`` under
      ``health_prefix``, as :func:`di.asgi.health_app` answers them.
    - **Metrics:** ``metrics=True`` adds ``/metrics`` (under ``health_prefix``):
      Prometheus metrics from the default registry, the monitor's collector
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
    - **Shutdown:** at interpreter exit (``atexit``), or earlier with
      :func:`shutdown`: every status but liveness turns NOT_SERVING, the monitor stops after its
      round, and the injector's ``ashutdown()`` runs (its failure is raised there).

    Returns the monitor.
    """
    codes = status_codes_of(status_codes, "install")
    monitor = monitor_for(injector, monitor, unbuilt)
    prefix = _asgi.normalize_prefix(health_prefix)
    if _EXTENSION in app.extensions:
        raise RuntimeError("install() was already called on this Flask app")
    _asgi.declare_context(injector, (Request,), "flask")
    # The views registered so far now, and each one registered later as it is.
    check_injected(injector, _sites(app, app.view_functions.items()))
    app.view_functions = _CheckedViews(app, injector, app.view_functions)
    running = AppLifetime(injector, monitor, closing=_forget)
    with _apps_lock:
        if id(injector) in _running_injectors:
            raise RuntimeError(
                "this injector already runs with another Flask app: call shutdown() on "
                "that app first, or give each app (each call of an app factory) its own "
                "injector"
            )
        _running_injectors[id(injector)] = running
    try:
        running.start()
    except BaseException:
        with _apps_lock:
            del _running_injectors[id(injector)]
        raise
    app.extensions[_EXTENSION] = running
    atexit.register(running.close)
    app.after_request(_hand_scope_to_stream)
    app.teardown_request(_close_scope)
    registry = registry_for(monitor, metrics)
    blueprint = _blueprint(monitor, show_details, registry, codes, ui)
    app.register_blueprint(blueprint, url_prefix=prefix or None)
    return monitor


class _CheckedViews(dict[str, Any]):
    """An app's views, each checked as it is registered: an ``@inject`` view that asks
    for what the container cannot build fails its registration (the app's making)."""

    def __init__(self, app: Flask, injector: Scope, views: dict[str, Any]) -> None:
        super().__init__(views)
        self.app = app
        self.injector = injector

    def __setitem__(self, endpoint: str, view: Any) -> None:
        check_injected(self.injector, _sites(self.app, [(endpoint, view)]))
        super().__setitem__(endpoint, view)


def _sites(app: Flask, views: Iterable[tuple[str, Any]]) -> Iterator[Site]:
    """Each ``@inject`` view among ``views``: ``(where, plan)``; and each view with
    ``Inject`` parameters but no ``@inject``, which Flask would call without them."""
    for endpoint, view in views:
        read = injects(view)
        if read is None:
            read = _not_decorated(view)
        if read is not None:
            try:
                rules = ", ".join(rule.rule for rule in app.url_map.iter_rules(endpoint))
            except KeyError:  # registered without a rule (add_url_rule does add one)
                rules = "no rule"
            name = getattr(view, "__qualname__", endpoint)
            yield f"view {endpoint!r} ({name}, at {rules})", read


def _not_decorated(view: Any) -> Callable[[], Any] | None:
    """The mistake of a view with ``Inject`` parameters that ``@inject`` does not wrap."""
    try:
        marked = injected_params(view)
    except Exception:  # not a function, or annotations not readable yet: not ours to say
        return None
    if not marked:
        return None
    names = ", ".join(repr(name) for name in marked)
    return misused(
        f"its parameters {names} are Inject[...], but the view is not decorated with "
        "@inject, so Flask would call it without them: add @inject (from "
        "di.integrations.flask import inject) below the @app.route decorator"
    )


def shutdown(app: Flask) -> None:
    """What runs at exit, now: NOT_SERVING, stop the monitor, shut the injector down."""
    running: AppLifetime | None = app.extensions.get(_EXTENSION)
    if running is None:
        raise DIError("this Flask app has no injector: call install(app, injector) first")
    running.close()


def scope_of(req: Request | None = None) -> Scope:
    """The scope of the current request, opened on first use.

    >>> order = scope_of().invoke(Order)
    """
    store = _request_globals()
    scope: Scope | None = store.get(_G_SCOPE)
    if scope is not None:
        return scope
    running: AppLifetime | None = current_app.extensions.get(_EXTENSION)
    if running is None:
        raise DIError(
            "this Flask app has no request scopes: call "
            "di.integrations.flask.install(app, injector) where the app is made"
        )
    if running.done:
        raise DIError(
            "this Flask app's injector was shut down (shutdown(app), or exit): it serves "
            "no more requests that need it"
        )
    current = req if req is not None else request._get_current_object()  # type: ignore[attr-defined]  # noqa: SLF001 - werkzeug documents it as the way to unwrap its LocalProxy
    scope = running.injector.scope(context={Request: current})
    store[_G_SCOPE] = scope
    return scope


def _request_globals() -> dict[str, Any]:
    """The attributes of ``flask.g``, unwrapped from its proxy once: each of the
    request's reads of them is then one dict lookup (``g`` keeps them in its
    ``__dict__``, as ``g.get()`` and ``g.pop()`` read them)."""
    attributes: dict[str, Any] = vars(g._get_current_object())  # noqa: SLF001 - werkzeug documents it as the way to unwrap its LocalProxy
    return attributes


def _hand_scope_to_stream(response: Response) -> Response:
    """A streamed response's body closes the request's scope, once it has been sent."""
    store = _request_globals()
    scope: Scope | None = store.get(_G_SCOPE)
    if scope is None:
        return response  # a request that injected nothing
    # Flask answers an unhandled exception while handling it: that scope closes with the
    # exception, in teardown_request.
    unhandled = sys.exc_info()[1] is not None
    if response.is_streamed and not unhandled and not store.get(_G_STREAMED):
        store[_G_STREAMED] = True
        response.response = Streamed(response.response, functools.partial(_exit, scope))
    return response


def _close_scope(error: BaseException | None) -> None:
    store = _request_globals()
    if store.get(_G_STREAMED):
        return  # the streamed body closes it
    scope: Scope | None = store.pop(_G_SCOPE, None)
    if scope is not None:
        _exit(scope, error)


def _exit(scope: Scope, error: BaseException | None) -> None:
    if error is None:
        scope.__exit__(None, None, None)
    else:
        scope.__exit__(type(error), error, error.__traceback__)


def inject(view: F) -> F:
    """Fill the view's ``Inject[T]`` parameters from the request's scope.

    Other parameters (URL variables) are passed as Flask passes them; the view's
    signature loses the injected ones, so Flask never sees them.
    """
    if inspect.iscoroutinefunction(view):
        raise TypeError(f"@inject: {view.__qualname__} is async; Flask views here are sync")
    return wrap(view, _request_scope, required="@inject")  # type: ignore[return-value]


def _request_scope(kwargs: dict[str, Any]) -> Scope:
    return scope_of()


def _blueprint(
    monitor: HealthMonitor,
    details: bool,
    registry: Any = None,
    codes: Mapping[str, int] = STATUS_CODES,
    ui: bool = False,
) -> Blueprint:
    """The health routes: Flask's routing over the answers :mod:`di.asgi` serves too."""
    blueprint = Blueprint("healthdi", __name__)
    pages = Pages(monitor, details, ui)

    if registry is not None:

        @blueprint.get("/metrics")
        def metrics() -> Response:
            from ..metrics import render

            body, content_type = render(registry)
            return Response(body, status=200, content_type=content_type)

    @blueprint.get("/health", defaults={"name": ""})
    @blueprint.get("/health/<path:name>")
    def health(name: str) -> Response:
        snapshot = monitor.snapshot
        path = f"/health/{name}" if name else "/health"
        page = pages.answer(snapshot, path, request.headers.get("Accept", ""))
        if page is not None:  # the history, the status page, or a browser sent there
            return _response(page)
        tag = request.args.getlist("tag")
        return _response(render_health(snapshot, name, details, ",".join(tag), codes))

    def probe(endpoint: str, single: str | None) -> Response:
        query = {key: request.args.getlist(key) for key in request.args}
        return _response(render_probe(monitor.snapshot, endpoint, single, query, details))

    @blueprint.get("/livez", defaults={"check": None})
    @blueprint.get("/livez/<check>")
    def livez(check: str | None) -> Response:
        return probe("livez", check)

    @blueprint.get("/readyz", defaults={"check": None})
    @blueprint.get("/readyz/<check>")
    def readyz(check: str | None) -> Response:
        return probe("readyz", check)

    @blueprint.get("/startupz")
    def startupz() -> Response:
        return probe("startupz", None)

    @blueprint.post(GRPC_CHECK)
    def check() -> Response:
        body = _read_body()
        if body is None:
            return _response(BODY_TOO_LARGE)
        return _response(check_json(monitor.snapshot, body))

    return blueprint


def _read_body() -> bytes | None:
    """The request's body, or None when it is over MAX_BODY bytes (none read beyond)."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return None
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = stream.read(MAX_BODY + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def _response(answer: Answer) -> Response:
    # Werkzeug sets the length, and leaves the body out of a HEAD answer.
    return Response(answer.body, status=answer.status, headers=answer.headers)
