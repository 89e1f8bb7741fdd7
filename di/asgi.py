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
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio

from .health import HealthCheckResult, Outcome, error_text, explain_error
from .monitor import HealthMonitor, ServingStatus

__all__ = ["BODY_SECONDS", "MAX_BODY", "health_app"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024
BODY_SECONDS = 5.0  # a request body must arrive within this
_ECHO = 200  # characters of a client-supplied name that error texts repeat
_CACHED = 256  # rendered answers kept per published change
_GRPC_CHECK = "/grpc.health.v1.Health/Check"
_PROBES = {"/livez": "liveness", "/readyz": "readiness"}


class _Answer(Exception):
    """Stops handling with a ready response (an error, usually)."""

    def __init__(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.status, self.body = status, body
        # Rendered once: every answer carries these.
        self.head = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]
        self.start = {"type": "http.response.start", "status": status, "headers": self.head}
        self.whole = {"type": "http.response.body", "body": body}


def _json(status: int, payload: object, content_type: str = "application/json") -> _Answer:
    return _Answer(status, json.dumps(payload, default=str).encode(), content_type)


def _text(status: int, text: str) -> _Answer:
    return _Answer(status, text.encode(), "text/plain; charset=utf-8")


def health_app(monitor: HealthMonitor, show_details: bool = False, metrics: Any = False) -> ASGIApp:
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
    """
    cache: dict[tuple[str, str, bytes], _Answer] = {}
    version = -1
    registry: Any = None
    if metrics is not False and metrics is not None:
        try:
            import prometheus_client
        except ImportError:
            raise ImportError(
                "health_app(metrics=...) needs prometheus-client: "
                "pip install 'healthdi[prometheus]'"
            ) from None

        from . import metrics as di_metrics

        registry = prometheus_client.REGISTRY if metrics is True else metrics
        di_metrics.register(monitor, registry)

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        nonlocal version
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(monitor, receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"health_app serves HTTP, not {kind!r}")
        method = scope["method"]
        answer: _Answer | None = None
        key = ("", "", b"")
        if registry is not None and _path(scope) == "/metrics":
            answer = _metrics(registry, method)
        elif method == "GET" or method == "HEAD":
            if monitor.version != version:
                cache.clear()
                version = monitor.version
            key = (scope["path"], scope.get("root_path", ""), scope["query_string"])
            answer = cache.get(key)
        if answer is None:
            try:
                answer = await _route(monitor, show_details, scope, receive)
            except _Answer as raised:
                answer = raised
            if (method == "GET" or method == "HEAD") and len(cache) < _CACHED:
                cache[key] = answer
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.head})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})

    return app


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


def _path(scope: MutableMapping[str, Any]) -> str:
    # ASGI servers decode the path once; it is not decoded again here.
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"  # mounted under a prefix
    return path


def _metrics(registry: Any, method: str) -> _Answer:
    """Prometheus' text format, rendered at each scrape (never cached)."""
    if method not in ("GET", "HEAD"):
        try:
            _allow(method, "GET", "HEAD")
        except _Answer as refused:
            return refused
    from .metrics import render

    body, content_type = render(registry)
    return _Answer(200, body, content_type)


async def _route(
    monitor: HealthMonitor, details: bool, scope: MutableMapping[str, Any], receive: Receive
) -> _Answer:
    path = _path(scope)
    method: str = scope["method"]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)

    if path == _GRPC_CHECK:
        _allow(method, "POST")
        return await _grpc_check(monitor, receive)
    if path == "/health" or path.startswith("/health/"):
        _allow(method, "GET", "HEAD")
        name = path[len("/health/") :] if path.startswith("/health/") else ""
        return _health(monitor, details, name)
    for prefix, group in _PROBES.items():
        if path == prefix or path.startswith(prefix + "/"):
            _allow(method, "GET", "HEAD")
            single = path[len(prefix) + 1 :] if path != prefix else None
            return _probe(monitor, details, prefix[1:], group, single, query)
    raise _json(404, {"code": "not_found", "message": f"no route {_short(path)}"})


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _Answer(
            405,
            json.dumps(
                {"code": "method_not_allowed", "message": f"use {' or '.join(allowed)}"}
            ).encode(),
            "application/json",
            allow=", ".join(allowed),
        )


def _health(monitor: HealthMonitor, details: bool, name: str) -> _Answer:
    """The ``application/health+json`` answer for the whole application or one name."""
    status = monitor.health_status(name)
    results = monitor.results(name)
    if status is None or results is None:
        raise _json(404, {"code": "not_found", "message": f"unknown health check {_short(name)}"})
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        entry: dict[str, Any] = {
            "status": result.status,
            "time": result.started.isoformat(),
            "observedValue": round(result.duration * 1000, 3),
            "observedUnit": "ms",
        }
        if result.outcome is not Outcome.HEALTHY:
            entry["output"] = _reason(result, details)
        if details and result.details:
            if len(result.details) == 1:
                ((unit, value),) = result.details.items()
                entry["observedValue"], entry["observedUnit"] = value, unit
            else:
                for field, value in result.details.items():
                    entry.setdefault(field, value)  # the format's own fields win
        checks[result.key] = [entry]
    for label in monitor.missing(name):
        checks[label] = [{"status": "fail", "output": "not checked: not built or no check"}]
    serving = status != "fail"
    payload: dict[str, Any] = {"status": status}
    reasons = monitor.reasons() if not serving else []
    if reasons:
        payload["output"] = "; ".join(f"{what}: {why}" for what, why in reasons)
    payload["checks"] = checks
    return _json(200 if serving else 503, payload, "application/health+json")


def _probe(
    monitor: HealthMonitor,
    details: bool,
    endpoint: str,
    group: str,
    single: str | None,
    query: dict[str, list[str]],
) -> _Answer:
    """The Kubernetes ``/livez`` and ``/readyz`` text format."""
    results = monitor.results(group)
    if results is None:
        raise _text(404, f"no {group!r} group is configured\n")
    status = monitor.status(group)
    reasons = [] if status is ServingStatus.SERVING else monitor.reasons()
    held = [f"[-]{what}: {why}" for what, why in reasons]
    if single is not None:
        found = [r for r in results if r.key == single]
        if not found:
            raise _text(404, f"no check {_short(single)} in {endpoint}\n")
        if found[0].healthy and not held:
            if found[0].outcome is Outcome.DEGRADED:
                line = f"[+]{single} degraded: {_reason(found[0], details)}"
                return _text(200, f"{line}\n{endpoint} check passed\n")
            return _text(200, "ok")
        lines = held if found[0].healthy else [f"[-]{single} failed: {_reason(found[0], details)}"]
        return _text(503, "\n".join([*lines, f"{endpoint} check failed"]) + "\n")
    exclude = [name for values in query.get("exclude", []) for name in values.split(",") if name]
    if exclude:
        status = monitor.evaluate(group, exclude)
    ok = status is ServingStatus.SERVING
    if ok and "verbose" not in query:
        return _text(200, "ok")
    lines = []
    for result in results:
        if result.key in exclude:
            lines.append(f"[+]{result.key} excluded: ok")
        elif result.outcome is Outcome.DEGRADED:
            lines.append(f"[+]{result.key} degraded: {_reason(result, details)}")
        elif result.healthy:
            lines.append(f"[+]{result.key} ok")
        else:
            lines.append(f"[-]{result.key} failed: {_reason(result, details)}")
    lines += [
        f"[-]{label} failed: not checked"
        for label in monitor.missing(group)
        if label not in exclude
    ]
    lines += held
    if not ok and all(line.startswith("[+]") for line in lines):
        lines.append(f"[-]{group} failed: status {status.name if status else 'UNKNOWN'}")
    lines.append(f"{endpoint} check {'passed' if ok else 'failed'}")
    return _text(200 if ok else 503, "\n".join(lines) + "\n")


async def _grpc_check(monitor: HealthMonitor, receive: Receive) -> _Answer:
    """``grpc.health.v1.Health/Check`` over HTTP with JSON, like dubbo-go's triple."""
    body = await _read_body(receive)
    try:
        request = json.loads(body) if body.strip() else {}
    except RecursionError:
        raise _json(
            400, {"code": "invalid_argument", "message": "body is not JSON: nested too deep"}
        ) from None
    except (UnicodeDecodeError, ValueError) as error:
        raise _json(
            400, {"code": "invalid_argument", "message": f"body is not JSON: {error}"}
        ) from None
    if not isinstance(request, dict):
        raise _json(400, {"code": "invalid_argument", "message": _EXPECTED})
    name = request.get("service")
    if name is None:
        name = ""  # as protobuf's JSON mapping reads null: the default
    elif not isinstance(name, str):
        raise _json(400, {"code": "invalid_argument", "message": _EXPECTED})
    status = monitor.status(name)
    if status is None:
        raise _json(404, {"code": "not_found", "message": f"unknown service {_short(name)}"})
    return _BY_STATUS[status]


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(BODY_SECONDS) as waiting:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _json(400, {"code": "invalid_argument", "message": "client disconnected"})
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise _json(
                    400, {"code": "invalid_argument", "message": f"body over {MAX_BODY} bytes"}
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    assert waiting.cancel_called
    raise _json(408, {"code": "deadline_exceeded", "message": f"body took over {BODY_SECONDS} s"})


def _reason(result: HealthCheckResult, details: bool) -> str:
    if not details:
        return "reason withheld"
    error = result.error
    return (
        f"{type(error).__name__}: {error_text(error)}"
        if error is not None
        else result.outcome.value
    )


def _short(name: str) -> str:
    """A client-supplied name for an error text: quoted, at most 200 characters of it."""
    return repr(name if len(name) <= _ECHO else name[:_ECHO] + "...")


_EMPTY = {"type": "http.response.body", "body": b""}
_EXPECTED = 'expected {"service": "<name>"}'
_BY_STATUS = {status: _json(200, {"status": status.name}) for status in ServingStatus}
