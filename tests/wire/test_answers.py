"""di._answers: the HTTP health answers rendered from a snapshot, whatever the framework."""

from __future__ import annotations

import json

import pytest

from di import HealthMonitor, Injector, ServingStatus
from di._answers import (
    ECHO,
    MAX_BODY,
    Abort,
    Answer,
    check_json,
    not_allowed,
    render_health,
    render_probe,
)
from di.monitor import HealthSnapshot

from ..services import Cache, Database, key

pytestmark = pytest.mark.anyio

DB, CACHE = key(Database), key(Cache)


async def checked(*, fail: bool = False) -> HealthSnapshot:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    db = injector.invoke(Database)
    injector.invoke(Cache)
    if fail:
        db.fail()
    monitor = HealthMonitor(injector)
    await monitor.check()
    return monitor.snapshot


def test_an_answer_is_a_value_with_its_headers_rendered_once() -> None:
    answer = Answer(200, b"ok", "text/plain", allow="GET")
    assert answer.headers == (
        ("content-type", "text/plain"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("allow", "GET"),
    )
    assert answer.head[0] == (b"content-length", b"2")
    assert (b"allow", b"GET") in answer.head
    stopped = Abort(answer)
    assert stopped.answer is answer and isinstance(stopped, Exception)
    refused = not_allowed("GET", "HEAD")
    assert refused.status == 405 and ("allow", "GET, HEAD") in refused.headers
    assert not_allowed("GET", "HEAD") is refused  # made once


async def test_render_health_answers_health_json_from_a_snapshot_withholding_errors() -> None:
    snapshot = await checked(fail=True)
    answer = render_health(snapshot, "", details=False)
    assert answer.status == 503 and answer.content_type == "application/health+json"
    body = json.loads(answer.body)
    assert body["status"] == "fail" and body["checks"][DB][0]["output"] == "reason withheld"
    shown = json.loads(render_health(snapshot, DB, details=True).body)
    assert "Database is down" in shown["checks"][DB][0]["output"]
    assert render_health(snapshot, CACHE, details=False).status == 200
    unknown = render_health(snapshot, "n" * 10_000, details=False)
    assert unknown.status == 404 and len(unknown.body) < ECHO + 100


async def test_render_probe_answers_livez_and_readyz_with_verbose_and_exclude() -> None:
    snapshot = await checked(fail=True)
    assert render_probe(snapshot, "livez", None, {}, details=False).body == b"ok"
    failed = render_probe(snapshot, "readyz", None, {}, details=False)
    assert failed.status == 503 and f"[-]{DB} failed: reason withheld".encode() in failed.body
    excluded = render_probe(snapshot, "readyz", None, {"exclude": [DB], "verbose": [""]}, False)
    assert excluded.status == 200
    *checks, verdict = excluded.body.decode().splitlines()
    assert sorted(checks) == sorted([f"[+]{CACHE} ok", f"[+]{DB} excluded: ok"])
    assert verdict == "readyz check passed"
    assert render_probe(snapshot, "readyz", CACHE, {}, details=False).body == b"ok"
    assert render_probe(snapshot, "readyz", DB, {}, details=False).status == 503
    assert render_probe(snapshot, "readyz", "nothing", {}, details=False).status == 404


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 200, None),
        (b'{"service": null}', 200, None),
        (b"[" * 60_000, 400, "body is not JSON: nested too deep"),
        (b"{not json", 400, "body is not JSON"),
        (b"\xff\xfe", 400, "body is not JSON"),
        (b'["service"]', 400, 'expected {"service": "<name>"}'),
        (b'{"service": 7}', 400, 'expected {"service": "<name>"}'),
        (b" " * (MAX_BODY + 1), 400, f"body over {MAX_BODY} bytes"),
        (json.dumps({"service": "n" * 50_000}).encode(), 404, "unknown service 'nnn"),
    ],
)
async def test_check_json_answers_a_body_or_refuses_it_saying_why(
    body: bytes, status: int, message: str | None
) -> None:
    snapshot = await checked()
    answer = check_json(snapshot, body)
    assert answer.status == status
    payload = json.loads(answer.body)
    if message is None:
        assert payload == {"status": ServingStatus.SERVING.name}
    else:
        assert payload["message"].startswith(message)
        assert len(payload["message"]) < ECHO + 100
