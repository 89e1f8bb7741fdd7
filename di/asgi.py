"""HTTP health endpoints as a plain ASGI app, with no dependency beyond the core.

Mount it in Starlette, FastAPI or Litestar, or serve it with any ASGI server:

>>> app.mount("/", di.asgi.health_app(monitor))

Routes (HEAD wherever GET is; ``Cache-Control: no-store`` and
``X-Content-Type-Options: nosniff`` on every answer):

- ``GET /health``, ``GET /health/{name}``: ``application/health+json``, 200 with
  ``"status": "pass"`` (or ``"warn"`` when a check is degraded) or 503 with
  ``"fail"``, one entry per check. Error texts and the details checks return can
  carry secrets (hostnames, DSNs), so they are shown only with ``show_details=True``:
  a single detail is the entry's ``observedValue`` (its name the ``observedUnit``),
  several are fields of the entry.
- ``GET /livez``, ``GET /readyz`` (groups ``liveness`` and ``readiness``) and
  ``/livez/{check}``, ``/readyz/{check}``: the Kubernetes text format, with
  ``?verbose`` (a degraded check reads ``[+]name degraded``) and ``?exclude=name``.
- ``GET /metrics`` with ``metrics=True``: Prometheus metrics (the ``prometheus``
  extra; see :mod:`di.metrics`).
- ``POST /grpc.health.v1.Health/Check`` with ``{"service": "..."}``: the gRPC health
  check over plain HTTP and JSON, as dubbo-go's triple protocol answers it.
- ``GET /health/history``: each name's last rounds (``HealthMonitor(history=...)``).
- ``GET /health/ui`` with ``ui=True``: the status page (and ``/health`` asked by a
  browser is sent there); see :mod:`di._ui`.

The answers themselves are rendered by :mod:`di._answers` (the page's and the
history's by :mod:`di._ui`) from the monitor's latest
:class:`~di.monitor.HealthSnapshot`; this module is the ASGI adapter over them: it routes
by path, reads a request's body within ``BODY_SECONDS``, keeps each rendered answer
until the monitor publishes a new snapshot, and runs the lifespan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio

from ._answers import (
    BODY_SECONDS,
    BODY_TOO_LARGE,
    BODY_TOO_SLOW,
    DISCONNECTED,
    GRPC_CHECK,
    MAX_BODY,
    PROBES,
    STATUS_CODES,
    Abort,
    Answer,
    check_json,
    metrics_registry,
    no_route,
    not_allowed,
    render_health,
    render_probe,
)
from ._answers import status_codes as status_codes_of
from ._ui import SEE_PAGE, Pages, wants_page
from .health import error_text, explain_error
from .monitor import HealthMonitor, HealthSnapshot

__all__ = ["BODY_SECONDS", "MAX_BODY", "health_app"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_CACHED = 256  # rendered answers kept per published snapshot


def health_app(
    monitor: HealthMonitor,
    show_details: bool = False,
    metrics: Any = False,
    status_codes: Mapping[str, int] | None = None,
    ui: bool = False,
) -> ASGIApp:
    """An ASGI app serving what ``monitor`` publishes over HTTP.

    Answers read the monitor's latest statuses and never wait for a check, so the
    monitor must run: when this app is the top ASGI app, its lifespan runs it (starts
    the injector's eager services, then checks every interval) and at shutdown runs the
    injector's shutdown hooks; mounted inside another app, run it in that app's lifespan
    (``async with monitor``). Each answer is rendered once per published change.
    ``show_details=True`` puts error texts and details in answers; otherwise they read
    "reason withheld" (the ``di.health`` log has them).

    ``metrics=True`` serves Prometheus metrics at ``/metrics``: the monitor's (see
    :mod:`di.metrics`, registered if need be) and the rest of the default registry;
    or pass a ``CollectorRegistry`` to serve that one instead.

    ``status_codes`` maps ``/health``'s status to its HTTP status code (by default
    ``{"pass": 200, "warn": 200, "fail": 503}``); ``/health?tag=db`` reports only the
    services provided with that tag, and ``/startupz`` is the startup probe.

    ``ui=True`` serves the status page at ``/health/ui``: a row per service with its
    last rounds, and the dependency graph coloured by status, live while the page is
    open; a browser asking for ``/health`` (``Accept: text/html``) is sent there.
    Read-only, same-origin only (a strict Content-Security-Policy); error texts and
    details only with ``show_details``.
    """
    codes = status_codes_of(status_codes, "health_app")
    registry = metrics_registry(metrics, "health_app")
    if registry is not None:
        from .metrics import register

        register(monitor, registry)
    pages = Pages(monitor, show_details, ui)
    cache: dict[tuple[str, str, bytes], Answer] = {}
    cached_for: HealthSnapshot | None = None

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        nonlocal cached_for
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(monitor, receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"health_app serves HTTP, not {kind!r}")
        method = scope["method"]
        if registry is not None and _path(scope) == "/metrics":
            answer = _metrics(registry) if method in ("GET", "HEAD") else _GET_ONLY
        elif ui and _path(scope) == "/health" and wants_page(_accept(scope)):
            answer = SEE_PAGE if method in ("GET", "HEAD") else _GET_ONLY
        elif method == "GET" or method == "HEAD":
            snapshot = monitor.snapshot
            if snapshot is not cached_for:
                cache.clear()
                cached_for = snapshot
            key = (scope["path"], scope.get("root_path", ""), scope["query_string"])
            found = cache.get(key)
            if found is None:
                path = _path(scope)
                found = pages.answer(snapshot, path) if path.startswith("/health/") else None
                if found is None:
                    found = _get(snapshot, show_details, path, scope["query_string"], codes)
                if len(cache) < _CACHED:
                    cache[key] = found
            answer = found
        else:
            answer = await _other(monitor, method, _path(scope), receive)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.head})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})

    return app


def _get(
    snapshot: HealthSnapshot,
    details: bool,
    path: str,
    query: bytes,
    codes: Mapping[str, int] = STATUS_CODES,
) -> Answer:
    """The answer to a GET (or HEAD) of ``path``, rendered from ``snapshot``."""
    if path == "/health" or path.startswith("/health/"):
        tag = ",".join(parse_qs(query.decode("latin-1")).get("tag", ())) if query else None
        return render_health(snapshot, path[len("/health/") :], details, tag, codes)
    probe = _probe(path)
    if probe is not None:
        endpoint, single = probe
        parsed = parse_qs(query.decode("latin-1"), keep_blank_values=True)
        return render_probe(snapshot, endpoint, single, parsed, details)
    if path == GRPC_CHECK:
        return _POST_ONLY
    return no_route(path)


async def _other(monitor: HealthMonitor, method: str, path: str, receive: Receive) -> Answer:
    """The answer to a request by any other method: the JSON Check takes a POST."""
    if path == GRPC_CHECK:
        if method != "POST":
            return _POST_ONLY
        try:
            body = await _read_body(receive)
        except Abort as stopped:
            return stopped.answer
        return check_json(monitor.snapshot, body)
    if path == "/health" or path.startswith("/health/") or _probe(path) is not None:
        return _GET_ONLY
    return no_route(path)


def _metrics(registry: Any) -> Answer:
    """Prometheus' text format of ``registry``, rendered at each scrape (never kept)."""
    from .metrics import render

    body, content_type = render(registry)
    return Answer(200, body, content_type)


def _probe(path: str) -> tuple[str, str | None] | None:
    """``(endpoint, single check or None)`` for a ``/livez`` or ``/readyz`` path."""
    for endpoint in PROBES:
        prefix = "/" + endpoint
        if path == prefix:
            return endpoint, None
        if path.startswith(prefix + "/"):
            return endpoint, path[len(prefix) + 1 :]
    return None


async def _read_body(receive: Receive) -> bytes:
    """The request's body, at most MAX_BODY bytes within BODY_SECONDS; else Abort."""
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(BODY_SECONDS):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Abort(DISCONNECTED)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise Abort(BODY_TOO_LARGE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    raise Abort(BODY_TOO_SLOW)


async def _lifespan(monitor: HealthMonitor, receive: Receive, send: Send) -> None:
    """As the top app: run the monitor from startup to shutdown (unless it already runs).

    The lifespan that started the injector shuts it down: its hooks run at shutdown,
    and after a failed start, for what the start built.
    """
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    if monitor.running:
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})
        return
    try:
        await monitor.__aenter__()
    except Exception as error:
        await _shut_down(monitor)
        await send({"type": "lifespan.startup.failed", "message": explain_error(error)})
        return
    failure = None
    try:
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
    finally:
        try:
            await monitor.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                failure = await _shut_down(monitor)
    if failure is not None:
        await send({"type": "lifespan.shutdown.failed", "message": failure})
    else:
        await send({"type": "lifespan.shutdown.complete"})


async def _shut_down(monitor: HealthMonitor) -> str | None:
    """Run the injector's shutdown hooks; what failed, or None."""
    from .errors import ShutdownError

    try:
        await monitor.injector.ashutdown()
    except ShutdownError as error:
        return error_text(error)
    return None


def _accept(scope: MutableMapping[str, Any]) -> str:
    """The request's ``Accept`` header (the first), or ""."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"accept":
            return str(value.decode("latin-1"))
    return ""


def _path(scope: MutableMapping[str, Any]) -> str:
    # ASGI servers decode the path once; it is not decoded again here.
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"  # mounted under a prefix
    return path


_GET_ONLY = not_allowed("GET", "HEAD")
_POST_ONLY = not_allowed("POST")
