"""The ASGI health app under a real uvicorn server, with httpx as the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from di import HealthMonitor, Injector, ServingStatus
from di.asgi import MAX_BODY, health_app

from ..servers import Served, serve
from ..services import Cache, Database, key
from ..timing import PATIENCE, at_most

DB, CACHE = key(Database), key(Cache)


def make() -> tuple[Injector, Database, Cache]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    return injector, injector.invoke(Database), injector.invoke(Cache)


@pytest.fixture
def app() -> Iterator[tuple[Served, Database, httpx.Client]]:
    injector, db, _ = make()
    with (
        # Rounds when the test asks (served.check()): none of the monitor's own meanwhile.
        serve(injector, groups={"db": [Database]}, interval=3600) as served,
        httpx.Client(base_url=served.url, timeout=5) as client,
    ):
        yield served, db, client


def test_health_answers_health_json_and_withholds_a_failures_text(
    app: tuple[Served, Database, httpx.Client],
) -> None:
    served, db, client = app
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/health+json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    body = answer.json()
    assert body["status"] == "pass"
    assert set(body["checks"]) == {DB, CACHE}
    entry = body["checks"][DB][0]
    assert entry["status"] == "pass" and entry["observedUnit"] == "ms"
    assert entry["observedValue"] >= 0 and entry["time"].endswith("+00:00")
    assert "output" not in entry

    db.fail()
    served.check()
    answer = client.get("/health")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "fail"
    assert body["checks"][DB][0] == body["checks"][DB][0] | {
        "status": "fail",
        "output": "reason withheld",
    }
    assert "secret-host" not in answer.text  # errors can carry secrets
    assert body["checks"][CACHE][0]["status"] == "pass"


def test_show_details_opts_in_to_error_text() -> None:
    injector, db, _ = make()
    db.fail()
    with serve(injector, show_details=True) as served:
        answer = httpx.get(served.url + "/health", timeout=5)
    assert answer.status_code == 503
    assert "ConnectionError: Database is down" in answer.json()["checks"][DB][0]["output"]


def test_health_of_one_name_or_group_answers_for_it_alone(
    app: tuple[Served, Database, httpx.Client],
) -> None:
    served, db, client = app
    assert client.get(f"/health/{CACHE}").json()["status"] == "pass"
    db.fail()
    served.check()
    answer = client.get("/health/db")
    assert answer.status_code == 503 and set(answer.json()["checks"]) == {DB}
    assert client.get(f"/health/{CACHE}").status_code == 200
    missing = client.get("/health/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_livez_and_readyz_answer_as_kubernetes_probes_read_them(
    app: tuple[Served, Database, httpx.Client],
) -> None:
    served, db, client = app
    assert (client.get("/livez").status_code, client.get("/livez").text) == (200, "ok")
    assert client.get("/readyz").text == "ok"
    verbose = client.get("/readyz?verbose")
    assert verbose.status_code == 200
    assert verbose.text.splitlines() == [f"[+]{CACHE} ok", f"[+]{DB} ok", "readyz check passed"]

    db.fail()
    served.check()
    failed = client.get("/readyz")
    assert failed.status_code == 503
    assert failed.text.splitlines() == [
        f"[+]{CACHE} ok",
        f"[-]{DB} failed: reason withheld",
        "readyz check failed",
    ]
    assert client.get("/livez").status_code == 200  # liveness checks nothing external
    excluded = client.get(f"/readyz?exclude={DB}&verbose")
    assert excluded.status_code == 200
    assert f"[+]{DB} excluded: ok" in excluded.text
    assert client.get(f"/readyz/{CACHE}").text == "ok"
    single = client.get(f"/readyz/{DB}")
    assert single.status_code == 503 and single.text.startswith(f"[-]{DB} failed")
    assert client.get("/readyz/nothing").status_code == 404


def test_manual_status_shows_everywhere(app: tuple[Served, Database, httpx.Client]) -> None:
    served, _, client = app

    async def drain() -> None:
        served.monitor.set_status("readiness", ServingStatus.NOT_SERVING)

    served.loop.run(drain())
    answer = client.get("/readyz?verbose")
    assert answer.status_code == 503
    assert "[-]readiness failed: status NOT_SERVING" in answer.text
    assert client.post("/grpc.health.v1.Health/Check", json={"service": "readiness"}).json() == {
        "status": "NOT_SERVING"
    }


def test_the_grpc_check_answers_json_over_http(app: tuple[Served, Database, httpx.Client]) -> None:
    served, db, client = app
    path = "/grpc.health.v1.Health/Check"
    assert client.post(path, json={"service": ""}).json() == {"status": "SERVING"}
    assert client.post(path, json={}).json() == {"status": "SERVING"}
    assert client.post(path, json={"service": None}).json() == {"status": "SERVING"}
    assert client.post(path, content=b"").json() == {"status": "SERVING"}
    db.fail()
    served.check()
    assert client.post(path, json={"service": DB}).json() == {"status": "NOT_SERVING"}
    unknown = client.post(path, json={"service": "greet.GreetService"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/grpc.health.v1.Health/Check", {"content": b"{not json"}, 400),
        ("POST", "/grpc.health.v1.Health/Check", {"content": b"\xff\xfe"}, 400),
        ("POST", "/grpc.health.v1.Health/Check", {"json": ["service"]}, 400),
        ("POST", "/grpc.health.v1.Health/Check", {"json": {"service": 7}}, 400),
        ("POST", "/grpc.health.v1.Health/Check", {"content": b"x" * (MAX_BODY + 1)}, 400),
        ("POST", "/grpc.health.v1.Health/Check", {"content": b"[" * 60_000}, 400),
        ("GET", "/grpc.health.v1.Health/Check", {}, 405),
        ("POST", "/health", {}, 405),
        ("DELETE", "/livez", {}, 405),
        ("PUT", "/readyz", {}, 405),
        ("GET", "/", {}, 404),
        ("GET", "/healthz", {}, 404),
        ("GET", "/health/%00%ff", {}, 404),
    ],
)
def test_malformed_requests_get_clear_answers_and_the_server_keeps_serving(
    app: tuple[Served, Database, httpx.Client],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    _, _, client = app
    answer = client.request(method, path, **kwargs)
    assert answer.status_code == status
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    if status == 405:
        assert answer.headers["allow"]
    if answer.headers["content-type"] == "application/json":
        assert set(json.loads(answer.text)) == {"code", "message"}
    assert client.get("/health").status_code == 200  # still serving


def test_head_answers_like_get_without_a_body() -> None:
    injector, _, _ = make()
    # A long TTL: GET and HEAD read the same report, so their lengths must agree.
    with serve(injector, success_ttl=60) as served, httpx.Client(base_url=served.url) as client:
        for path in ("/health", f"/health/{DB}", "/livez", "/readyz"):
            get, head = client.get(path), client.head(path)
            assert head.status_code == get.status_code
            assert head.content == b""
            assert head.headers["content-length"] == str(len(get.content))


@pytest.mark.anyio
async def test_app_is_backend_neutral_when_mounted_under_a_prefix() -> None:
    """The app only uses anyio: called as ASGI on asyncio and on trio, mounted at /ops."""
    injector, _, _ = make()
    monitor = HealthMonitor(injector)
    app = health_app(monitor)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep(0)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ops/livez",
        "root_path": "/ops",
        "query_string": b"",
        "headers": [],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"


@pytest.mark.anyio
async def test_mounted_in_a_starlette_app_it_answers_below_its_prefix() -> None:
    """Starlette's Mount (what FastAPI's app.mount uses) in front of the health app."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    injector, db, _ = make()
    monitor = HealthMonitor(injector, interval=3600)  # rounds: the first, and the test's

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("shop")

    app = Starlette(routes=[Route("/", home), Mount("/ops", app=health_app(monitor))])
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
        monitor,  # mounted, the app has no lifespan of its own: the host runs the monitor
    ):
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()
        assert (await client.get("/")).text == "shop"
        assert (await client.get("/ops/livez")).text == "ok"
        assert (await client.get("/ops/health")).json()["status"] == "pass"
        db.fail()
        await monitor.check()
        assert (await client.get("/ops/readyz")).status_code == 503
        assert (await client.get("/ops/nothing")).status_code == 404


def test_a_path_is_decoded_once() -> None:
    injector = Injector()
    injector.provide(Database, name="a.b")
    injector.invoke("a.b")
    with serve(injector) as served, httpx.Client(base_url=served.url, timeout=5) as client:
        assert client.get("/health/a%2Eb").status_code == 200  # decoded once by the server
        assert client.get("/health/a%252Eb").status_code == 404  # "a%2Eb": no such name
        assert client.get("/readyz/a%252Eb").status_code == 404


def test_error_texts_echo_at_most_200_characters_of_a_name(
    app: tuple[Served, Database, httpx.Client],
) -> None:
    _, _, client = app
    name = "n" * 5000
    for answer in (
        client.get(f"/health/{name}"),
        client.get(f"/readyz/{name}"),
        client.post("/grpc.health.v1.Health/Check", json={"service": name}),
    ):
        assert answer.status_code == 404
        assert "n" * 200 in answer.text and "n" * 201 not in answer.text


async def _get(app: Any, path: str) -> tuple[int, str]:
    """One GET through the ASGI interface, in this test's own event loop."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path_only, _, query = path.partition("?")
    scope = {"type": "http", "method": "GET", "path": path_only, "query_string": query.encode()}
    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"].decode()


@pytest.mark.anyio
async def test_readiness_reads_not_started_until_start_and_a_first_round() -> None:
    injector, _, _ = make()
    monitor = HealthMonitor(injector)
    app = health_app(monitor)
    assert await _get(app, "/livez") == (200, "ok")  # liveness depends on no check
    code, text = await _get(app, "/readyz?verbose")
    assert code == 503 and "[-]startup: not started" in text.splitlines()
    assert (await _get(app, "/health"))[0] == 503
    await monitor.check()  # starts, then checks
    assert await _get(app, "/readyz") == (200, "ok")


@pytest.mark.anyio
async def test_as_the_top_app_its_lifespan_runs_the_monitor() -> None:
    closed: list[str] = []

    def database() -> Iterator[Database]:
        yield Database()
        closed.append("database")

    injector = Injector()
    injector.provide(database, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    app = health_app(monitor)
    to_app = anyio.create_memory_object_stream[dict[str, Any]](10)
    from_app = anyio.create_memory_object_stream[dict[str, Any]](10)

    async def lifespan() -> None:
        await app({"type": "lifespan"}, to_app[1].receive, from_app[0].send)

    with anyio.fail_after(PATIENCE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lifespan)
            await to_app[0].send({"type": "lifespan.startup"})
            assert (await from_app[1].receive())["type"] == "lifespan.startup.complete"
            assert monitor.running
            await monitor.wait_ready()
            assert monitor.status(DB) is ServingStatus.SERVING  # built by the start
            await to_app[0].send({"type": "lifespan.shutdown"})
            assert (await from_app[1].receive())["type"] == "lifespan.shutdown.complete"
    assert not monitor.running
    assert closed == ["database"]  # the lifespan that started it shut it down


@pytest.mark.anyio
async def test_a_failed_start_fails_the_lifespan_startup() -> None:
    def refuse() -> Database:
        raise ConnectionRefusedError("cannot reach the database")

    injector = Injector()
    injector.provide(refuse, eager=True)
    app = health_app(HealthMonitor(injector))
    to_app = anyio.create_memory_object_stream[dict[str, Any]](10)
    from_app = anyio.create_memory_object_stream[dict[str, Any]](10)
    await to_app[0].send({"type": "lifespan.startup"})
    with anyio.fail_after(PATIENCE):
        await app({"type": "lifespan"}, to_app[1].receive, from_app[0].send)
    failed = await from_app[1].receive()
    assert failed["type"] == "lifespan.startup.failed"
    assert "ConnectionRefusedError: cannot reach the database" in failed["message"]
