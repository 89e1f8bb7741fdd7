"""di.integrations against the real frameworks: FastAPI, Starlette, Litestar and Flask.

For each: eager services built at startup, one scope per request with the request
object injectable, scoped services shared within a request and closed after it, 100
concurrent requests without cross-talk, /readyz following a check that starts failing,
error texts withheld, shutdown hooks run when the app stops.

FastAPI and Starlette are driven through their lifespan and httpx's ASGI transport, so
their async tests run on asyncio and on trio; once more under a real uvicorn server.
Litestar's test client and uvicorn run on asyncio only, so those tests are sync.
Flask is sync: its test client, and threads for concurrency.
"""

# No `from __future__ import annotations`: the frameworks read the annotations of
# endpoints defined inside functions, which name local imports.
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import httpx
import pytest

from di import HealthMonitor, Injector, Named

from ..services import Cache, Database, Journal, key
from ..timing import PATIENCE, at_most, wait_until

pytestmark = pytest.mark.anyio

SECRET = "password=hunter2@db.internal"
"""In the text of the database's failing check: withheld unless details are asked for."""


class Unit:
    """A scoped unit of work holding its request; its generator records how it ended."""

    def __init__(self, request: Any, tag: str) -> None:
        self.request = request
        self.tag = tag


def make_injector(request_type: type[Any], tag: Callable[[Any], str]) -> tuple[Injector, Journal]:
    events = Journal()
    injector = Injector()
    injector.provide_value(events)
    injector.provide(Database, eager=True)

    def unit(request: Any) -> Iterator[Unit]:
        made = Unit(request, tag(request))
        events.add(f"open {made.tag}")
        try:
            yield made
        except Exception as error:
            events.add(f"rollback {made.tag}: {error}")
            raise
        else:
            events.add(f"close {made.tag}")

    # The framework's own request class, as the annotation (not a string) names it.
    unit.__annotations__["request"] = request_type
    unit.__annotations__["return"] = Iterator[Unit]
    injector.provide_scoped(unit)
    injector.provide_value("named value", name="greeting")
    return injector, events


def fast_monitor(injector: Injector) -> HealthMonitor:
    """Rounds every 50 ms, each with a timeout healthy checks meet on a loaded machine."""
    return HealthMonitor(injector, interval=0.05, timeout=at_most(0))


async def wait_for_status(client: Any, path: str, status: int) -> Any:
    with anyio.fail_after(PATIENCE):
        while True:
            response = await client.get(path)
            if response.status_code == status:
                return response
            await anyio.sleep(0.02)


# -- FastAPI ------------------------------------------------------------------------------


def fastapi_app(monitor_of: Callable[[Injector], HealthMonitor] = fast_monitor) -> Any:
    from fastapi import Depends, FastAPI, Request

    from di.integrations.fastapi import Inject, install

    injector, events = make_injector(Request, lambda r: r.query_params.get("id", "-"))
    app = FastAPI()
    monitor = install(app, injector, monitor=monitor_of(injector))

    def tag_of(unit: Inject[Unit]) -> str:  # a sync dependency using Inject
        return unit.tag

    @app.get("/unit")
    async def read(
        request: Request,
        unit: Inject[Unit],
        again: Inject[Unit],
        tag: Annotated[str, Depends(tag_of)],
        greeting: Inject[Annotated[str, Named("greeting")]],
    ) -> dict[str, Any]:
        await anyio.sleep(0.01)  # other requests run meanwhile
        assert ("close " + unit.tag) not in events.lines  # closed after, not before
        return {
            "tag": unit.tag,
            "same": unit is again,
            "request": unit.request is request,
            "dependency": tag == unit.tag,
            "greeting": greeting,
        }

    @app.get("/sync")
    def read_sync(request: Request, unit: Inject[Unit]) -> dict[str, Any]:
        return {"tag": unit.tag, "request": unit.request is request}

    @app.get("/fail")
    async def fail(unit: Inject[Unit]) -> None:
        raise RuntimeError("request failed")

    @app.get("/plain")
    async def plain() -> str:
        return "no scope"

    return app, injector, events, monitor


def starlette_app(monitor_of: Callable[[Injector], HealthMonitor] = fast_monitor) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from di.integrations.starlette import install, scope_of

    injector, events = make_injector(Request, lambda r: r.query_params.get("id", "-"))

    async def read(request: Request) -> JSONResponse:
        scope = scope_of(request)
        unit = await scope.ainvoke(Unit)
        await anyio.sleep(0.01)
        again = await scope_of(request).ainvoke(Unit)
        greeting = await scope.ainvoke(str, "greeting")
        return JSONResponse(
            {
                "tag": unit.tag,
                "same": unit is again,
                "request": unit.request is request,
                "dependency": True,
                "greeting": greeting,
            }
        )

    def read_sync(request: Request) -> JSONResponse:
        unit = scope_of(request).invoke(Unit)
        return JSONResponse({"tag": unit.tag, "request": unit.request is request})

    async def fail(request: Request) -> None:
        await scope_of(request).ainvoke(Unit)
        raise RuntimeError("request failed")

    app = Starlette(routes=[Route("/unit", read), Route("/sync", read_sync), Route("/fail", fail)])
    monitor = install(app, injector, monitor=monitor_of(injector))
    return app, injector, events, monitor


ASGI_APPS = {"fastapi": fastapi_app, "starlette": starlette_app}


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan (as an ASGI server runs it) around an in-process client."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client


@pytest.mark.parametrize("framework", ASGI_APPS)
async def test_asgi_app_builds_at_startup_scopes_each_request_and_shuts_down_at_exit(
    framework: str,
) -> None:
    app, _, events, monitor = ASGI_APPS[framework]()
    assert events.lines == []
    async with served(app) as client:
        assert events.lines == ["database built"]  # eager, at startup
        await monitor.wait_ready()
        answer = (await client.get("/unit?id=a")).json()
        assert answer == {
            "tag": "a",
            "same": True,
            "request": True,
            "dependency": True,
            "greeting": "named value",
        }
        assert events.lines[-2:] == ["open a", "close a"]  # one scope, closed after it
        assert (await client.get("/sync?id=s")).json() == {"tag": "s", "request": True}
        assert (await client.get("/fail?id=f")).status_code == 500
        assert events.lines[-1] == "rollback f: request failed"
        assert not any(line.startswith("open -") for line in events.lines)
        assert (await client.get("/readyz")).text == "ok"
        assert not monitor.injector.children()  # every request scope closed
    assert events.lines[-1] == "database shut down"  # at shutdown
    assert monitor.status("") is not None and monitor.status("").name == "NOT_SERVING"


@pytest.mark.parametrize("framework", ASGI_APPS)
async def test_asgi_100_concurrent_requests_do_not_cross(framework: str) -> None:
    app, injector, events, _ = ASGI_APPS[framework]()
    async with served(app) as client:
        answers: dict[int, Any] = {}

        async def one(number: int) -> None:
            answers[number] = (await client.get(f"/unit?id={number}")).json()

        async with anyio.create_task_group() as tasks:
            for number in range(100):
                tasks.start_soon(one, number)
        for number, answer in answers.items():
            assert answer["tag"] == str(number) and answer["same"] and answer["request"]
        assert len(answers) == 100
        assert sum(line.startswith("close ") for line in events.lines) == 100
        assert not injector.children()


@pytest.mark.parametrize("framework", ASGI_APPS)
async def test_asgi_readyz_follows_a_failing_check_and_withholds_its_text(framework: str) -> None:
    app, injector, _, monitor = ASGI_APPS[framework]()
    async with served(app) as client:
        await monitor.wait_ready()
        assert (await client.get("/readyz")).status_code == 200
        (await injector.ainvoke(Database)).fail(f"cannot reach {SECRET}")
        failed = await wait_for_status(client, "/readyz?verbose", 503)
        assert "reason withheld" in failed.text and SECRET not in failed.text
        health = await client.get("/health")
        assert health.status_code == 503 and SECRET not in health.text
        check = await client.post("/grpc.health.v1.Health/Check", json={"service": ""})
        assert check.json() == {"status": "NOT_SERVING"}
        assert (await client.get("/livez")).status_code == 200
        (await injector.ainvoke(Database)).recover()
        await wait_for_status(client, "/readyz", 200)


async def test_fastapi_health_under_a_prefix_shows_details_and_stays_out_of_the_schema() -> None:
    from fastapi import FastAPI, Request

    from di.integrations.fastapi import install

    injector, _ = make_injector(Request, str)
    app = FastAPI()
    monitor = install(app, injector, health_prefix="/ops", show_details=True)
    async with served(app) as client:
        await monitor.wait_ready()
        (await injector.ainvoke(Database)).fail(f"cannot reach {SECRET}")
        await monitor.check()
        failed = await client.get("/ops/readyz?verbose")
        assert failed.status_code == 503 and SECRET in failed.text  # shown when asked
        assert (await client.get("/readyz")).status_code == 404
        assert (await client.get("/ops/livez")).text == "ok"
    assert "/ops/readyz" not in app.openapi()["paths"]


async def test_a_failed_start_fails_the_app_startup() -> None:
    from fastapi import FastAPI

    from di.integrations.fastapi import install

    events = Journal()

    class Broken:
        def __init__(self) -> None:
            raise ConnectionError("no database")

    class Fine:
        def shutdown(self) -> None:
            events.add("fine shut down")

    injector = Injector()
    injector.provide(Fine, eager=True)
    injector.provide(Broken, eager=True)
    app = FastAPI()
    install(app, injector)
    with pytest.raises(ConnectionError, match="no database"):
        async with app.router.lifespan_context(app):
            pass
    assert events.lines == ["fine shut down"]  # what the start had built


async def test_inject_without_install_says_what_to_do() -> None:
    from fastapi import FastAPI

    from di.integrations.fastapi import Inject

    app = FastAPI()

    @app.get("/")
    async def read(unit: Inject[Unit]) -> None: ...

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(Exception, match=r"install\(app, injector\)"):
            await client.get("/")


async def test_fastapi_websocket_gets_a_scope_for_its_connection() -> None:
    from fastapi import FastAPI, WebSocket
    from fastapi.testclient import TestClient

    from di.integrations.fastapi import Inject, install

    events = Journal()
    injector = Injector()

    class Session:
        def __init__(self, socket: WebSocket) -> None:
            self.socket = socket

        def shutdown(self) -> None:
            events.add("session closed")

    injector.provide_scoped(Session)
    app = FastAPI()
    install(app, injector)

    @app.websocket("/ws")
    async def talk(socket: WebSocket, session: Inject[Session]) -> None:
        await socket.accept()
        await socket.send_text(str(session.socket is socket))
        await socket.close()

    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "True"
    assert events.lines == ["session closed"]


async def test_fastapi_routes_inject_directly_and_routers_through_dependencies() -> None:
    from fastapi import APIRouter, FastAPI, Request

    from di.integrations.fastapi import Inject, InjectingRoute, install

    injector, events = make_injector(Request, lambda r: r.query_params.get("id", "-"))
    app = FastAPI()
    install(app, injector)
    made: list[str] = []

    @app.get("/direct/{number}")
    async def direct(number: int, request: Request, unit: Inject[Unit]) -> dict[str, int]:
        """Reads a unit."""
        made.append(unit.tag)
        return {"number": number, "same": int(unit.request is request)}

    router = APIRouter()  # its own route class: Inject stays a dependency there

    @router.get("/routed")
    async def routed(unit: Inject[Unit]) -> str:
        return unit.tag

    opted = APIRouter(route_class=InjectingRoute)

    @opted.get("/opted")
    async def opted_in(unit: Inject[Unit], again: Inject[Unit]) -> bool:
        return unit is again

    app.include_router(router)
    app.include_router(opted)
    route = next(r for r in app.routes if getattr(r, "path", "") == "/direct/{number}")
    assert isinstance(route, InjectingRoute) and route.name == "direct"
    assert route.endpoint.__wrapped__ is direct  # type: ignore[attr-defined]
    operation = app.openapi()["paths"]["/direct/{number}"]["get"]
    assert [p["name"] for p in operation.get("parameters", [])] == ["number"]
    assert operation["description"] == "Reads a unit."
    async with served(app) as client:
        assert (await client.get("/direct/7?id=d")).json() == {"number": 7, "same": 1}
        assert (await client.get("/routed?id=r")).json() == "r"
        assert (await client.get("/opted?id=o")).json() is True
        # Parameters that fail validation: refused before any service is built.
        assert (await client.get("/direct/seven?id=x")).status_code == 422
        assert made == ["d"] and "open x" not in events.lines
        assert not injector.children()
    assert [line for line in events.lines if line.startswith("close ")] == [
        "close d",
        "close r",
        "close o",
    ]


async def test_fastapi_direct_injection_reads_string_annotations() -> None:
    from fastapi import FastAPI, Request

    from di.integrations import fastapi as integration

    injector, _ = make_injector(Request, lambda r: r.query_params.get("id", "-"))
    app = FastAPI()
    integration.install(app, injector)
    namespace: dict[str, Any] = {"Inject": integration.Inject, "Unit": Unit, "Named": Named}
    namespace["Annotated"] = Annotated
    source = (
        "from __future__ import annotations\n"
        "async def endpoint(unit: Inject[Unit], "
        "greeting: Inject[Annotated[str, Named('greeting')]]) -> dict:\n"
        "    return {'tag': unit.tag, 'greeting': greeting}\n"
    )
    exec(compile(source, "<endpoint>", "exec"), namespace)
    app.get("/")(namespace["endpoint"])
    async with served(app) as client:
        assert (await client.get("/?id=s")).json() == {"tag": "s", "greeting": "named value"}


def test_an_apps_own_route_class_is_kept() -> None:
    from fastapi import FastAPI
    from fastapi.routing import APIRoute

    from di.integrations.fastapi import install

    class Mine(APIRoute):
        pass

    app = FastAPI()
    app.router.route_class = Mine
    install(app, Injector())
    assert app.router.route_class is Mine


def test_fastapi_under_uvicorn_serves_100_concurrent_requests_and_shuts_down() -> None:
    """TestClient aside, a real server: startup, 100 concurrent requests, shutdown."""
    import asyncio

    import uvicorn

    app, injector, events, monitor = fastapi_app()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        assert events.lines == ["database built"]

        async def load() -> list[Any]:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answers = await asyncio.gather(*(client.get(f"/unit?id={n}") for n in range(100)))
                return [a.json()["tag"] for a in answers]

        assert asyncio.run(load()) == [str(n) for n in range(100)]
        assert httpx.get(f"http://127.0.0.1:{port}/livez").text == "ok"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
    assert not thread.is_alive()
    assert sum(line.startswith("close ") for line in events.lines) == 100
    assert events.lines[-1] == "database shut down"
    assert monitor.status("readiness") is not None
    assert not injector.children()


# -- Litestar (its test client runs on asyncio) ---------------------------------------------


def readyz_follows_a_failing_check(client: Any, injector: Injector) -> None:
    """Through a sync test client: /readyz turns 503 once the database check fails,
    and neither it nor /health shows the failure's text."""
    wait_until(lambda: client.get("/readyz").status_code == 200, "readiness")
    injector.invoke(Database).fail(f"cannot reach {SECRET}")
    wait_until(lambda: client.get("/readyz").status_code == 503, "readiness to fail")
    failed = client.get("/readyz?verbose")
    assert "reason withheld" in failed.text and SECRET not in failed.text
    assert SECRET not in client.get("/health").text


def litestar_app() -> Any:
    from litestar import Litestar, Request, get
    from litestar.di import NamedDependency
    from litestar.exceptions import HTTPException

    from di.integrations.litestar import DIPlugin, provide

    injector, events = make_injector(Request, lambda r: r.query_params.get("id", "-"))

    @get("/unit", dependencies={"greeting": provide(Annotated[str, Named("greeting")])})
    async def read(
        request: Request[Any, Any, Any],
        unit: NamedDependency[Unit],
        again: NamedDependency[Unit],
        greeting: NamedDependency[str],
    ) -> Any:
        await anyio.sleep(0.01)
        return {
            "tag": unit.tag,
            "same": unit is again,
            "request": unit.request is request,
            "greeting": greeting,
        }

    @get("/sync", sync_to_thread=True)
    def read_sync(request: Request[Any, Any, Any], unit: NamedDependency[Unit]) -> Any:
        return {"tag": unit.tag, "request": unit.request is request}

    @get("/conflict")
    async def conflict(unit: NamedDependency[Unit]) -> None:
        raise HTTPException(status_code=409, detail="conflict")

    monitor = fast_monitor(injector)
    plugin = DIPlugin(injector, monitor=monitor, dependencies={"unit": Unit, "again": Unit})
    app = Litestar([read, read_sync, conflict], plugins=[plugin], logging_config=None)
    return app, injector, events, monitor


def test_litestar_app_builds_at_startup_scopes_each_request_and_follows_its_checks() -> None:
    from litestar.testing import TestClient

    app, injector, events, monitor = litestar_app()
    with TestClient(app) as client:
        assert events.lines == ["database built"]
        answer = client.get("/unit?id=a").json()
        assert answer == {"tag": "a", "same": True, "request": True, "greeting": "named value"}
        assert events.lines[-2:] == ["open a", "close a"]
        assert client.get("/sync?id=s").json() == {"tag": "s", "request": True}
        assert client.get("/conflict?id=c").status_code == 409
        assert events.lines[-1].startswith("rollback c: ")  # handled, and thrown in
        readyz_follows_a_failing_check(client, injector)
        check = client.post("/grpc.health.v1.Health/Check", json={"service": "readiness"})
        assert check.json() == {"status": "NOT_SERVING"}
        assert client.get("/livez").text == "ok"
        assert not injector.children()
    assert events.lines[-1] == "database shut down"
    assert monitor.status("").name == "NOT_SERVING"  # type: ignore[union-attr]


@pytest.mark.parametrize("prefix", ["", "/ops"])
def test_litestar_health_routes_with_a_name_answer_as_the_health_app_does(prefix: str) -> None:
    """/health/{name}, /livez/{check} and /readyz/{check} answer (not a 500), under a
    prefix too, and the app's own route below /health still takes precedence."""
    from litestar import Litestar, get
    from litestar.testing import TestClient

    from di.integrations.litestar import DIPlugin

    @get(f"{prefix}/health/version")
    async def version() -> str:
        return "v1"

    injector = Injector()
    injector.provide(Database, eager=True)
    plugin = DIPlugin(injector, monitor=fast_monitor(injector), health_prefix=prefix)
    with TestClient(Litestar([version], plugins=[plugin], logging_config=None)) as client:
        wait_until(lambda: client.get(f"{prefix}/readyz").status_code == 200, "readiness")
        named = client.get(f"{prefix}/health/{key(Database)}")
        assert named.status_code == 200 and named.json()["status"] == "pass"
        assert client.head(f"{prefix}/health/{key(Database)}").status_code == 200
        for path, name in (
            ("/health/no-such", "no-such"),
            ("/health/a/b", "a/b"),
            ("/livez/x", "x"),
            ("/readyz/x", "x"),
        ):
            missing = client.get(prefix + path)  # the health app's 404, naming what it sought
            assert missing.status_code == 404 and f"'{name}'" in missing.text, missing.text
        assert client.get(f"{prefix}/health/version").text == "v1"
        assert client.delete(f"{prefix}/health/{key(Database)}").status_code == 405
        assert client.get(f"{prefix}/healthx").status_code == 404


def test_litestar_100_concurrent_requests_do_not_cross() -> None:
    import asyncio

    from litestar.testing import AsyncTestClient

    app, injector, events, _ = litestar_app()

    async def run() -> list[Any]:
        async with AsyncTestClient(app) as client:
            answers = await asyncio.gather(*(client.get(f"/unit?id={n}") for n in range(100)))
            return [a.json() for a in answers]

    answers = asyncio.run(run())
    assert [a["tag"] for a in answers] == [str(n) for n in range(100)]
    assert all(a["same"] and a["request"] for a in answers)
    assert sum(line.startswith("close ") for line in events.lines) == 100
    assert not injector.children()


# -- Flask (sync) ---------------------------------------------------------------------------


def flask_app() -> Any:
    from flask import Flask, Request, request

    from di.integrations.flask import Inject, inject, install

    injector, events = make_injector(Request, lambda r: r.args.get("id", "-"))
    app = Flask(__name__)
    monitor = install(app, injector, monitor=fast_monitor(injector))

    @app.get("/unit/<int:number>")
    @inject
    def read(
        number: int,
        unit: Inject[Unit],
        again: Inject[Unit],
        greeting: Inject[Annotated[str, Named("greeting")]],
    ) -> Any:
        time.sleep(0.01)
        return {
            "tag": unit.tag,
            "number": number,
            "same": unit is again,
            "request": unit.request is request._get_current_object(),  # type: ignore[attr-defined]
            "greeting": greeting,
        }

    @app.get("/fail")
    @inject
    def fail(unit: Inject[Unit]) -> None:
        raise RuntimeError("request failed")

    return app, injector, events, monitor


def test_flask_app_builds_at_install_scopes_each_request_and_shuts_down_once() -> None:
    from di.integrations.flask import shutdown

    app, injector, events, _ = flask_app()
    assert events.lines == ["database built"]  # install() started it
    client = app.test_client()
    try:
        answer = client.get("/unit/7?id=a").json
        assert answer == {
            "tag": "a",
            "number": 7,
            "same": True,
            "request": True,
            "greeting": "named value",
        }
        assert events.lines[-2:] == ["open a", "close a"]
        app.testing = False  # an unhandled exception becomes a 500, as in production
        assert client.get("/fail?id=f").status_code == 500
        assert events.lines[-1] == "rollback f: request failed"
        readyz_follows_a_failing_check(client, injector)
        check = client.post("/grpc.health.v1.Health/Check", json={"service": ""})
        assert check.json == {"status": "NOT_SERVING"}
        assert client.get("/livez").text == "ok"
        assert client.head("/livez").status_code == 200
        assert not injector.children()
    finally:
        shutdown(app)
    assert events.lines[-1] == "database shut down"
    assert client.get("/readyz").status_code == 503  # NOT_SERVING for good
    shutdown(app)  # once only, as at exit


def test_flask_100_concurrent_requests_do_not_cross() -> None:
    from di.integrations.flask import shutdown

    app, injector, events, _ = flask_app()
    try:

        def one(number: int) -> Any:
            return app.test_client().get(f"/unit/{number}?id={number}").json

        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(pool.map(one, range(100)))
        for number, answer in enumerate(answers):
            assert answer["tag"] == str(number) and answer["number"] == number
            assert answer["same"] and answer["request"]
        assert sum(line.startswith("close ") for line in events.lines) == 100
        assert not injector.children()
    finally:
        shutdown(app)


def test_flask_failed_start_raises_from_install() -> None:
    from flask import Flask

    from di.integrations.flask import install

    class Broken:
        def __init__(self) -> None:
            raise ConnectionError("no database")

    injector = Injector()
    injector.provide(Broken, eager=True)
    with pytest.raises(ConnectionError, match="no database"):
        install(Flask(__name__), injector)


def test_litestar_handlers_reaching_their_scope_by_hand_roll_back_when_they_fail() -> None:
    from litestar import Litestar, Request, get
    from litestar.exceptions import HTTPException
    from litestar.testing import TestClient

    from di.integrations.litestar import DIPlugin, scope_of

    injector, events = make_injector(Request, lambda r: r.query_params.get("id", "-"))

    @get("/boom")
    async def boom(request: Request[Any, Any, Any]) -> None:
        await scope_of(request).ainvoke(Unit)
        raise RuntimeError("request failed")

    @get("/conflict")
    async def conflict(request: Request[Any, Any, Any]) -> None:
        await scope_of(request).ainvoke(Unit)
        raise HTTPException(status_code=409, detail="conflict")

    @get("/sync-boom", sync_to_thread=True)
    def sync_boom(request: Request[Any, Any, Any]) -> None:
        scope_of(request).invoke(Unit)
        raise RuntimeError("sync request failed")

    @get("/fine")
    async def fine(request: Request[Any, Any, Any]) -> str:
        return (await scope_of(request).ainvoke(Unit)).tag

    plugin = DIPlugin(injector, monitor=fast_monitor(injector))
    app = Litestar([boom, conflict, sync_boom, fine], plugins=[plugin], logging_config=None)
    with TestClient(app) as client:
        assert client.get("/boom?id=b").status_code == 500
        assert events.lines[-1] == "rollback b: request failed"
        assert client.get("/conflict?id=c").status_code == 409
        assert events.lines[-1].startswith("rollback c: ")
        assert client.get("/sync-boom?id=s").status_code == 500
        assert events.lines[-1] == "rollback s: sync request failed"
        assert client.get("/fine?id=f").text == "f"
        assert events.lines[-1] == "close f"
        assert not injector.children()


def test_litestar_plugin_refuses_a_dependency_name_the_app_provides() -> None:
    from litestar import Litestar
    from litestar.di import Provide
    from litestar.exceptions import ImproperlyConfiguredException

    from di.integrations.litestar import DIPlugin

    def config() -> str:
        return "the app's"

    injector = Injector()
    injector.provide_value("ours", name="config")
    plugin = DIPlugin(injector, dependencies={"config": Annotated[str, Named("config")]})
    with pytest.raises(ImproperlyConfiguredException, match="'config'"):
        Litestar(
            [], dependencies={"config": Provide(config, sync_to_thread=False)}, plugins=[plugin]
        )


def test_flask_a_streamed_response_keeps_its_scope_until_its_body_is_sent() -> None:
    from flask import Flask, Request, stream_with_context

    from di.integrations.flask import Inject, inject, install, shutdown

    injector, events = make_injector(Request, lambda r: r.args.get("id", "-"))
    app = Flask(__name__)
    install(app, injector, monitor=fast_monitor(injector))

    @app.get("/rows")
    @inject
    def rows(unit: Inject[Unit]) -> Any:
        def body() -> Iterator[str]:
            for n in range(3):
                assert f"close {unit.tag}" not in events.lines  # still open
                yield f"row {n}\n"
            if unit.request.args.get("fail"):
                raise RuntimeError("export failed half-way")

        wrapped = stream_with_context(body()) if unit.request.args.get("ctx") else body()
        return app.response_class(wrapped)

    client = app.test_client()
    try:
        for n, context in enumerate(("", "&ctx=1")):
            assert client.get(f"/rows?id=a{n}{context}").text == "row 0\nrow 1\nrow 2\n"
            assert events.lines[-2:] == [f"open a{n}", f"close a{n}"]
            with pytest.raises(RuntimeError, match="half-way"):
                client.get(f"/rows?id=f{n}&fail=1{context}").get_data()
            assert events.lines[-1] == f"rollback f{n}: export failed half-way"
            cut = client.get(f"/rows?id=c{n}{context}")
            assert next(iter(cut.response)) == b"row 0\n"
            cut.close()  # the client went away after the first chunk
            assert events.lines[-1] == f"rollback c{n}: the response's body was cut short"
            head = client.head(f"/rows?id=h{n}{context}")
            head.close()  # as a server does once it has sent the headers
            assert head.status_code == 200
            assert events.lines[-1] == f"close h{n}"
        assert not injector.children()
    finally:
        shutdown(app)


# -- mounting, route precedence, guards and metrics on the ASGI apps --------------------------


def metric_families(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.mark.parametrize("framework", ASGI_APPS)
async def test_asgi_an_app_mounted_in_another_says_its_lifespan_never_ran(
    framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app, _, events, _ = ASGI_APPS[framework]()
    parent = Starlette(routes=[Mount("/sub", app=app)])
    async with served(parent) as client:
        assert events.lines == []  # a mounted app's lifespan never runs
        assert (await client.get("/sub/unit?id=a")).status_code == 500
        assert (await client.get("/sub/unit?id=b")).status_code == 500
        assert (await client.get("/sub/readyz")).status_code == 503
    said = [r.getMessage() for r in caplog.records if "lifespan never ran" in r.getMessage()]
    assert len(said) == 1 and "top-level app" in said[0]  # logged once, at the first request
    assert events.lines == []  # nothing was built lazily either


@pytest.mark.parametrize("framework", ASGI_APPS)
async def test_asgi_app_routes_below_the_health_routes_take_precedence(framework: str) -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app, _, _, monitor = ASGI_APPS[framework]()

    async def version(request: Any) -> PlainTextResponse:
        return PlainTextResponse("v1")

    app.router.routes.append(Route("/health/version", version))  # added after install
    async with served(app) as client:
        await monitor.wait_ready()
        assert (await client.get("/health/version")).text == "v1"
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/health/nothing-by-that-name")).status_code == 404
        assert (await client.get(f"/health/{key(Database)}")).status_code == 200


@pytest.mark.parametrize("framework", ASGI_APPS)
def test_asgi_install_refuses_a_second_call_and_a_prefix_that_never_matches(
    framework: str,
) -> None:
    import importlib

    app, injector, _, _ = ASGI_APPS[framework]()
    install = importlib.import_module(f"di.integrations.{framework}").install
    with pytest.raises(RuntimeError, match="already"):
        install(app, injector)
    fresh = type(app)()
    for prefix in ("/ops?x", "/ops#x", "/ops/{name}", "/o ps"):
        with pytest.raises(ValueError, match="plain path"):
            install(fresh, Injector(), health_prefix=prefix)


@pytest.mark.parametrize("framework", ASGI_APPS)
async def test_asgi_metrics_are_scraped_at_metrics(framework: str) -> None:
    import importlib

    from prometheus_client import CollectorRegistry

    install = importlib.import_module(f"di.integrations.{framework}").install
    registry = CollectorRegistry()
    app = type(ASGI_APPS[framework]()[0])()  # a fresh FastAPI or Starlette app
    injector = Injector()
    injector.provide(Cache, eager=True)
    monitor = install(app, injector, monitor=fast_monitor(injector), metrics=registry)
    bare = type(app)()
    install(bare, Injector())
    async with served(app) as client, served(bare) as plain:
        await monitor.wait_ready()
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        families = metric_families(scraped.text)
        status = families["healthdi_health_status"]
        assert any(
            s.labels == {"name": "", "status": "pass"} and s.value == 1 for s in status.samples
        )
        assert "healthdi_service_build_duration_seconds" in families
        assert (await plain.get("/metrics")).status_code == 404  # metrics=False: none


def test_litestar_metrics_are_scraped_at_metrics() -> None:
    from litestar import Litestar
    from litestar.testing import TestClient
    from prometheus_client import CollectorRegistry

    from di.integrations.litestar import DIPlugin

    injector = Injector()
    monitor = fast_monitor(injector)
    plugin = DIPlugin(injector, monitor=monitor, metrics=CollectorRegistry())
    with TestClient(Litestar([], plugins=[plugin], logging_config=None)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, "readiness")
        families = metric_families(client.get("/metrics").text)
        assert {"healthdi_health_status", "healthdi_health_check"} <= set(families)
    bare = Litestar([], plugins=[DIPlugin(Injector())], logging_config=None)
    with TestClient(bare) as client:
        assert client.get("/metrics").status_code == 404


def test_flask_inject_reads_annotations_defined_after_the_view() -> None:
    from flask import Flask

    from di.integrations.flask import Inject, inject, install, shutdown

    app = Flask(__name__)
    injector = Injector()

    @app.get("/later")
    @inject
    def later(thing: Inject["Later"]) -> str:  # a module-level class not defined yet
        return thing.name

    class Later:
        name = "defined after the view"

    globals()["Later"] = Later  # as if defined further down the view's module
    try:
        injector.provide(Later)
        install(app, injector, monitor=fast_monitor(injector))
        assert app.test_client().get("/later").text == "defined after the view"
    finally:
        del globals()["Later"]
        shutdown(app)


def test_flask_one_injector_serves_one_app_and_not_after_shutdown() -> None:
    from flask import Flask

    from di.integrations.flask import Inject, inject, install, shutdown

    def factory(injector: Injector) -> Flask:
        app = Flask(__name__)
        install(app, injector, monitor=fast_monitor(injector))

        @app.get("/unit")
        @inject
        def read(unit: Inject[str]) -> str:
            return unit

        return app

    injector = Injector()
    injector.provide_value("a value")
    first = factory(injector)
    with pytest.raises(RuntimeError, match="already runs with another Flask app"):
        factory(injector)
    client = first.test_client()
    assert client.get("/unit").text == "a value"
    shutdown(first)
    first.testing = False
    assert client.get("/unit").status_code == 500  # refused: its services are shut down
    assert client.get("/readyz").status_code == 503
    second = factory(injector)  # once shut down, the injector may serve another app
    shutdown(second)


def test_flask_metrics_are_scraped_at_metrics() -> None:
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from di.integrations.flask import install, shutdown

    injector = Injector()
    app = Flask(__name__)
    install(app, injector, monitor=fast_monitor(injector), metrics=CollectorRegistry())
    bare = Flask(__name__)
    install(bare, Injector())
    try:
        client = app.test_client()
        wait_until(lambda: client.get("/readyz").status_code == 200, "readiness")
        scraped = client.get("/metrics")
        assert scraped.content_type.startswith("text/plain")
        families = metric_families(scraped.text)
        assert {"healthdi_health_status", "healthdi_health_check"} <= set(families)
        assert bare.test_client().get("/metrics").status_code == 404
    finally:
        shutdown(app)
        shutdown(bare)


def test_flask_answers_the_json_check_with_the_asgi_apps_hardening() -> None:
    """A body too deep, too large or too long-named gets a short 4xx, never a 500."""
    import io

    from flask import Flask

    from di.asgi import MAX_BODY
    from di.integrations.flask import install, shutdown

    app = Flask(__name__)
    app.testing = False  # an exception would be a 500, as in production
    injector = Injector()
    install(app, injector, monitor=fast_monitor(injector))
    client = app.test_client()
    path = "/grpc.health.v1.Health/Check"
    try:
        deep = client.post(path, data=b"[" * 60_000)
        assert deep.status_code == 400
        assert deep.json == {
            "code": "invalid_argument",
            "message": "body is not JSON: nested too deep",
        }
        assert client.post(path, data=b"{not json").status_code == 400
        assert client.post(path, json={"service": 7}).status_code == 400
        assert client.post(path, data=b"x" * (MAX_BODY + 1)).json["message"].startswith("body over")
        # Without a length, at most MAX_BODY bytes are read all the same.
        unsized = client.post(
            path,
            input_stream=io.BytesIO(b" " * (5 * MAX_BODY)),
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert unsized.status_code == 400 and unsized.json["message"].startswith("body over")
        long = "n" * (MAX_BODY // 2)
        unknown = client.post(path, json={"service": long})
        assert unknown.status_code == 404 and len(unknown.data) < 300
        assert "n" * 200 in unknown.text and "n" * 201 not in unknown.text
        huge = "n" * 5_000_000
        assert client.post(path, json={"service": huge}).status_code == 400  # over MAX_BODY
        for answer in (client.get(f"/health/{huge}"), client.get(f"/readyz/{huge}")):
            assert answer.status_code == 404 and len(answer.data) < 300
            assert "n" * 200 in answer.text and "n" * 201 not in answer.text
        assert client.post(path, json={"service": ""}).status_code == 200
    finally:
        shutdown(app)
