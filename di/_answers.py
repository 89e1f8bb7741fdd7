"""The HTTP health answers, framework-free: what :mod:`di.asgi` and Flask both serve.

The path of one request, whichever adapter received it:

- the adapter routes by path (``/health``, ``/livez``, ``/readyz``, the JSON Check;
  ``/metrics`` is :mod:`di.metrics`'s, its registry named by :func:`metrics_registry`);
  a method a route does not take gets :func:`not_allowed` (405, with
  ``Allow``), a path no route takes :func:`no_route` (404);
- it reads the monitor's latest :class:`~di.monitor.HealthSnapshot` once and renders
  the answer from it: :func:`render_health` (``application/health+json``),
  :func:`render_probe` (the Kubernetes text format of ``/livez`` and ``/readyz``) or
  :func:`check_json` (``grpc.health.v1.Health/Check`` over JSON, from the request's
  body, which the adapter reads up to :data:`MAX_BODY` bytes within
  :data:`BODY_SECONDS`);
- the :class:`Answer` is a value (status, body, content type, headers), its header
  list rendered once, so an adapter can keep it until the snapshot changes. Where the
  adapter stops early (a body too large, too slow), an :class:`Abort` carries the
  answer out.

Whatever the request, the answer is bounded: a client-supplied name is echoed at most
:data:`ECHO` characters long, a body over :data:`MAX_BODY` bytes or nested deeper than
the JSON parser goes is a 400, and error texts and check details are shown only when
the adapter was told to show them (``show_details``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .health import HealthCheckResult, Outcome, Status, error_text, printable
from .monitor import ServingStatus

if TYPE_CHECKING:
    from .monitor import HealthSnapshot

MAX_BODY = 64 * 1024  # bytes of a request body read, at most
"""The most bytes of a request body read (a JSON Check's); a longer body is refused."""
BODY_SECONDS = 5.0  # a request body must arrive within this
"""Seconds a request body has to arrive; a slower one is refused."""
ECHO = 200  # characters of a client-supplied name that error texts repeat
GRPC_CHECK = "/grpc.health.v1.Health/Check"
# The Kubernetes endpoints and the name each reports.
PROBES = {"livez": "liveness", "readyz": "readiness", "startupz": "startup"}
# health+json's status codes: what /health answers for each status, unless told otherwise.
STATUS_CODES: Mapping[str, int] = {"pass": 200, "warn": 200, "fail": 503}


def status_codes(codes: object, where: str) -> Mapping[str, int]:
    """``status_codes=`` checked, over the defaults: ``pass`` and ``warn`` take a 2xx or
    3xx code, ``fail`` a 4xx or 5xx (as health+json says, and probes read)."""
    if codes is None:
        return STATUS_CODES
    if not isinstance(codes, Mapping):
        raise TypeError(
            f"{where}(status_codes=...) takes a mapping such as "
            f"{{'pass': 200, 'warn': 200, 'fail': 503}}; got {codes!r}"
        )
    merged = dict(STATUS_CODES)
    for status, code in codes.items():
        if status not in STATUS_CODES:
            raise ValueError(
                f"{where}(status_codes=...): {status!r} is not a status; use 'pass', 'warn' "
                "or 'fail'"
            )
        low, high = (400, 599) if status == "fail" else (200, 399)
        if isinstance(code, bool) or not isinstance(code, int) or not low <= code <= high:
            raise ValueError(
                f"{where}(status_codes=...): {status!r} needs an HTTP status code from {low} "
                f"to {high}, got {code!r}"
            )
        merged[status] = code
    return merged


class Answer:
    """An HTTP answer as a value: status, body, content type and headers.

    Every answer says ``Cache-Control: no-store`` and ``X-Content-Type-Options:
    nosniff``. ``headers`` lists them (content type first) for frameworks that set the
    length themselves; ``head`` is the whole ASGI header list, length included,
    rendered once.
    """

    __slots__ = ("body", "content_type", "head", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: str, **extra: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers: tuple[tuple[str, str], ...] = (
            ("content-type", content_type),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            *extra.items(),
        )
        self.head: list[tuple[bytes, bytes]] = [
            (b"content-length", str(len(body)).encode()),
            *((name.encode(), value.encode()) for name, value in self.headers),
        ]

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.content_type!r}, {len(self.body)} bytes)"


class Abort(Exception):
    """Stops an adapter's handling with a ready :class:`Answer` (an error, usually)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def json_answer(status: int, payload: object, content_type: str = "application/json") -> Answer:
    return Answer(status, json.dumps(payload, default=str).encode(), content_type)


def text_answer(status: int, text: str) -> Answer:
    return Answer(status, text.encode(), "text/plain; charset=utf-8")


def short(name: str) -> str:
    """A client-supplied name for an error text: quoted, at most :data:`ECHO` characters."""
    return repr(name if len(name) <= ECHO else name[:ECHO] + "...")


def not_allowed(*allowed: str) -> Answer:
    """405: the route takes only the ``allowed`` methods, as its ``Allow`` header says."""
    answer = _NOT_ALLOWED.get(allowed)
    if answer is None:
        answer = Answer(
            405,
            json.dumps(
                {"code": "method_not_allowed", "message": f"use {' or '.join(allowed)}"}
            ).encode(),
            "application/json",
            allow=", ".join(allowed),
        )
    return answer


def no_route(path: str) -> Answer:
    """404: no health route at ``path``."""
    return json_answer(404, {"code": "not_found", "message": f"no route {short(path)}"})


def _invalid(message: str) -> Answer:
    return json_answer(400, {"code": "invalid_argument", "message": message})


BODY_TOO_LARGE = _invalid(f"body over {MAX_BODY} bytes")
DISCONNECTED = _invalid("client disconnected")
BODY_TOO_SLOW = json_answer(
    408, {"code": "deadline_exceeded", "message": f"body took over {BODY_SECONDS} s"}
)
_NOT_ALLOWED: dict[tuple[str, ...], Answer] = {}
_NOT_ALLOWED.update({allowed: not_allowed(*allowed) for allowed in (("GET", "HEAD"), ("POST",))})


# -- /health -------------------------------------------------------------------------------


def render_health(
    snapshot: HealthSnapshot,
    name: str,
    details: bool,
    tag: str | None = None,
    codes: Mapping[str, int] = STATUS_CODES,
) -> Answer:
    """The ``application/health+json`` answer for the whole application (``""``) or a
    name; with ``tag`` (one or several, comma-separated), only the checks of the services
    provided with one of those tags. A tag no service has is a 404, not a "pass" over no
    checks.

    Each check shows its failed dependencies (``blockedBy``), its consecutive failures
    and passes, and the age of a result carried over from an earlier round; the
    monitor's ``info`` fields come first. ``codes`` maps the status to the HTTP code.
    """
    status = snapshot.health.get(name)
    results = snapshot.results.get(name)
    if status is None or results is None:
        return json_answer(
            404, {"code": "not_found", "message": f"unknown health check {short(name)}"}
        )
    wanted = {each for each in (tag or "").split(",") if each}
    if wanted:
        unknown = wanted.difference(*snapshot.tags.values())
        if unknown:
            return json_answer(
                404,
                {
                    "code": "not_found",
                    "message": f"no service has the tag {short(min(unknown))}; "
                    "provide one with tags=(...) or ask for another tag",
                },
            )
        results = tuple(r for r in results if wanted & snapshot.tags.get(r.key, frozenset()))
        status = _worst(snapshot, results)
    checks: dict[str, list[dict[str, Any]]] = {}
    streaks = snapshot.streaks
    for result in results:
        entry: dict[str, Any] = {
            "status": result.status,
            "time": result.started.isoformat(),
            "observedValue": round(result.duration * 1000, 3),
            "observedUnit": "ms",
        }
        manual = snapshot.manual.get(result.key)
        if manual is not None and (manual is ServingStatus.SERVING) != result.healthy:
            entry["status"] = "pass" if manual is ServingStatus.SERVING else "fail"
            entry["output"] = f"status set to {manual.name}"
        elif result.outcome is not Outcome.HEALTHY:
            entry["output"] = reason(result, details)
        if result.blocked_by:
            entry["blockedBy"] = list(result.blocked_by)
        if not result.healthy and manual is None and _published(snapshot, result):
            entry["status"] = "warn"  # failing, below its failure threshold
        streak = streaks.get(result.key)
        if streak is not None and (streak[0] or streak[1] > 1):
            entry["consecutiveFailures"], entry["consecutiveSuccesses"] = streak
        age = snapshot.ages.get(result.key)
        if age is not None:
            entry["ageSeconds"] = round(age, 3)  # carried over: its policy's interval
        if details and result.details:
            if len(result.details) == 1:
                ((unit, value),) = result.details.items()
                entry["observedValue"], entry["observedUnit"] = value, unit
            else:
                for field, value in result.details.items():
                    entry.setdefault(field, value)  # the format's own fields win
        checks[result.key] = [entry]
    if not wanted:
        for label in snapshot.missing.get(name, ()):
            if label not in snapshot.waiting:
                checks[label] = [{"status": "fail", "output": _not_checked(snapshot, label)}]
        for label in _unbuilt(snapshot, name):
            passes, output = _unbuilt_state(snapshot, label)
            checks.setdefault(label, [{"status": "warn" if passes else "fail", "output": output}])
        for label in _waiting(snapshot, name):
            checks[label] = [{"status": "warn", "output": WAITING}]
    serving = status != "fail"
    payload: dict[str, Any] = {"status": status, **snapshot.info}
    if not serving and snapshot.reasons:
        payload["output"] = "; ".join(f"{what}: {why}" for what, why in snapshot.reasons)
    payload["checks"] = checks
    return json_answer(codes[status], payload, "application/health+json")


WAITING = "waiting: not checked until its initial delay has passed"


def _worst(snapshot: HealthSnapshot, results: Sequence[HealthCheckResult]) -> Status:
    """The status of a selection of checks, as the names of the monitor read them."""
    status: Status = "pass"
    for result in results:
        if result.healthy or _published(snapshot, result):
            if result.outcome is not Outcome.HEALTHY:
                status = "warn"
        else:
            return "fail"
    return "fail" if not snapshot.ready or snapshot.shutting_down else status


def _published(snapshot: HealthSnapshot, result: HealthCheckResult) -> bool:
    """Whether a failed check still reads SERVING (below its failure threshold)."""
    return snapshot.statuses.get(result.key) is ServingStatus.SERVING


def _waiting(snapshot: HealthSnapshot, name: str) -> tuple[str, ...]:
    """The services in their initial delay that ``name`` answers for."""
    if not snapshot.waiting:
        return ()
    if name in snapshot.every_check:
        return snapshot.waiting
    listed = snapshot.missing.get(name, ())
    return tuple(label for label in snapshot.waiting if label in listed or label == name)


# -- /livez and /readyz ----------------------------------------------------------------------


def render_probe(
    snapshot: HealthSnapshot,
    endpoint: str,
    single: str | None,
    query: Mapping[str, Sequence[str]],
    details: bool,
) -> Answer:
    """The Kubernetes text format of ``endpoint`` (``"livez"`` or ``"readyz"``).

    ``single`` is the check of ``/readyz/{check}`` (else None); ``query`` the request's
    query, for ``?verbose`` and ``?exclude=name`` (repeated, or comma-separated).
    """
    group = PROBES[endpoint]
    results = snapshot.results.get(group)
    status = snapshot.statuses.get(group)
    if "tag" in query and results is not None:  # only the checks of services so tagged
        tags = {tag for values in query["tag"] for tag in values.split(",") if tag}
        results = tuple(r for r in results if tags & snapshot.tags.get(r.key, frozenset()))
    if results is None or status is None:
        return text_answer(404, f"no {group!r} group is configured\n")
    reasons = () if status is ServingStatus.SERVING else snapshot.reasons
    held = [f"[-]{what}: {why}" for what, why in reasons]
    unbuilt = _unbuilt(snapshot, group)
    if single is not None:
        found = [r for r in results if r.key == single]
        if not found and single in unbuilt:
            line = _unbuilt_line(snapshot, single)
            if line.startswith("[+]") and not held:
                return text_answer(200, f"{line}\n{endpoint} check passed\n")
            lines = held if line.startswith("[+]") else [line]
            return text_answer(503, "\n".join([*lines, f"{endpoint} check failed"]) + "\n")
        if not found:
            return text_answer(404, f"no check {short(single)} in {endpoint}\n")
        line = _line(snapshot, found[0], details)
        if line.startswith("[+]") and not held:
            if line == printable(f"[+]{single} ok"):
                return _OK
            return text_answer(200, f"{line}\n{endpoint} check passed\n")
        lines = held if line.startswith("[+]") else [line]
        return text_answer(503, "\n".join([*lines, f"{endpoint} check failed"]) + "\n")
    exclude = [name for values in query.get("exclude", ()) for name in values.split(",") if name]
    evaluated = snapshot.evaluate(group, exclude) if exclude else status
    ok = evaluated is ServingStatus.SERVING
    if ok and "verbose" not in query:
        return _OK
    lines = []
    for result in results:
        if result.key in exclude:
            lines.append(f"[+]{printable(result.key)} excluded: ok")
        else:
            lines.append(_line(snapshot, result, details))
    waiting = _waiting(snapshot, group)
    for label in snapshot.missing.get(group, ()):
        if label not in exclude and label not in waiting:
            lines.append(printable(f"[-]{label} failed: {_not_checked(snapshot, label)}"))
    lines += [printable(f"[~]{label} {WAITING}") for label in waiting if label not in exclude]
    lines += [_unbuilt_line(snapshot, label) for label in unbuilt if label not in exclude]
    lines += held
    if not ok and all(line.startswith("[+]") for line in lines):
        lines.append(f"[-]{group} failed: status {evaluated.name if evaluated else 'UNKNOWN'}")
    lines.append(f"{endpoint} check {'passed' if ok else 'failed'}")
    return text_answer(200 if ok else 503, "\n".join(lines) + "\n")


_OK = text_answer(200, "ok")

NOT_BUILT = "not built: never checked"


def _line(snapshot: HealthSnapshot, result: HealthCheckResult, details: bool) -> str:
    """One check's line of a verbose probe answer: ``[+]name ok``, ``[-]name failed: ...``.

    A status set by hand for the service wins over its check, and says so. Every line
    is :func:`~di.health.printable`: no text a check raised can start a line of its own.
    """
    key = result.key
    manual = snapshot.manual.get(key)
    if manual is not None and (manual is ServingStatus.SERVING) != result.healthy:
        if manual is ServingStatus.SERVING:
            line = f"[+]{key} ok: status set to SERVING"
        else:
            line = f"[-]{key} failed: status set to {manual.name}"
    elif result.outcome is Outcome.DEGRADED:
        line = f"[+]{key} degraded: {reason(result, details)}"
    elif result.healthy:
        line = f"[+]{key} ok"
    elif _published(snapshot, result):  # below its failure threshold: still SERVING
        failures = snapshot.streaks.get(key, (1, 0))[0]
        line = f"[+]{key} ok: failing {failures} time{'s' if failures != 1 else ''} in a row"
    elif result.blocked_by:
        line = f"[-]{key} failed: blocked by {', '.join(result.blocked_by)}"
    else:
        line = f"[-]{key} failed: {reason(result, details)}"
    return printable(line)


def _unbuilt(snapshot: HealthSnapshot, name: str) -> tuple[str, ...]:
    """The services with a check that were not built, which ``name`` lists when it
    answers for every checked service (``""``, a ``"*"`` group)."""
    return snapshot.unbuilt if name in snapshot.every_check else ()


def _unbuilt_state(snapshot: HealthSnapshot, label: str) -> tuple[bool, str]:
    """Whether an unbuilt service passes for now (it holds nothing unless the monitor's
    ``unbuilt`` is ``"fail"``, or its status was set by hand), and why."""
    manual = snapshot.manual.get(label)
    if manual is not None:
        return manual is ServingStatus.SERVING, f"{NOT_BUILT}; status set to {manual.name}"
    return not any(what == "unbuilt" for what, _ in snapshot.reasons), NOT_BUILT


def _unbuilt_line(snapshot: HealthSnapshot, label: str) -> str:
    passes, why = _unbuilt_state(snapshot, label)
    return printable(f"[+]{label} {why}" if passes else f"[-]{label} failed: {why}")


def _not_checked(snapshot: HealthSnapshot, label: str) -> str:
    if label in snapshot.unbuilt:
        return NOT_BUILT
    return "not checked: not built or no check"


# -- grpc.health.v1.Health/Check over JSON -------------------------------------------------


def check_json(snapshot: HealthSnapshot, body: bytes) -> Answer:
    """``grpc.health.v1.Health/Check`` over HTTP with JSON, as dubbo-go's triple answers it.

    ``body`` is the request's, as read: over :data:`MAX_BODY` bytes, or not the JSON
    ``{"service": "<name>"}``, it is a 400; an unknown name is a 404.
    """
    if len(body) > MAX_BODY:
        return BODY_TOO_LARGE
    try:
        request = json.loads(body) if body.strip() else {}
    except RecursionError:
        return _invalid("body is not JSON: nested too deep")
    except (UnicodeDecodeError, ValueError) as error:
        return _invalid(f"body is not JSON: {error}")
    if not isinstance(request, dict):
        return _EXPECTED
    name = request.get("service")
    if name is None:
        name = ""  # as protobuf's JSON mapping reads null: the default
    elif not isinstance(name, str):
        return _EXPECTED
    status = snapshot.statuses.get(name)
    if status is None:
        return json_answer(404, {"code": "not_found", "message": f"unknown service {short(name)}"})
    return _BY_STATUS[status]


_EXPECTED = _invalid('expected {"service": "<name>"}')
_BY_STATUS = {status: json_answer(200, {"status": status.name}) for status in ServingStatus}


# -- /metrics --------------------------------------------------------------------------------


def metrics_registry(metrics: Any, where: str) -> Any:
    """The Prometheus registry a ``metrics=`` argument names; None for no metrics.

    ``True`` names the default registry, a ``CollectorRegistry`` itself; ``False`` or
    None is no metrics. Raises an ``ImportError`` naming the extra when
    prometheus-client is missing (``where`` names the call). The caller then registers
    the monitor's collector on it with :func:`di.metrics.register`, which this module
    (beside :mod:`di.metrics`, not above it) does not import.
    """
    if metrics is False or metrics is None:
        return None
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            f"{where}(metrics=...) needs prometheus-client: pip install 'healthdi[prometheus]'"
        ) from None
    return prometheus_client.REGISTRY if metrics is True else metrics


# -- pieces ----------------------------------------------------------------------------------


def reason(result: HealthCheckResult, details: bool) -> str:
    """Why a check did not pass, as an answer shows it: withheld unless ``details``."""
    if not details:
        return "reason withheld"
    error = result.error
    return (
        f"{type(error).__name__}: {error_text(error)}"
        if error is not None
        else result.outcome.value
    )
