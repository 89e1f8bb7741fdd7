"""What the integrations report, under real servers: unbuilt services, the drain, Flask's
hardening.

- ``install(..., unbuilt=...)`` on every integration reaches the monitor: FastAPI,
  Starlette and Litestar under uvicorn, Flask under werkzeug's server, grpc.aio under
  grpcio, each asked by a real client.
- Through the grpc.aio integration's drain, liveness stays SERVING while the rest
  reads NOT_SERVING.
- Flask's health routes answer hostile requests as di.asgi does, through a real server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from di import HealthMonitor, Injector, ServingStatus
from di.asgi import MAX_BODY

from ..hostile_targets import DOWN_CACHE, DownCache
from ..services import Database, key
from ..timing import PATIENCE, at_most, until, wait_until

DB = key(Database)
NOT_BUILT = "not built: never checked"


def lazy_cache_injector() -> Injector:
    """A database built at the start, and a cache with a failing check nobody builds."""
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(DownCache)
    return injector


# -- real servers ------------------------------------------------------------------------------


@contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)


@contextmanager
def werkzeug_serving(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(PATIENCE)


def fastapi_served(injector: Injector, **options: Any) -> tuple[Any, HealthMonitor]:
    from fastapi import FastAPI

    from di.integrations.fastapi import install

    app = FastAPI()
    return uvicorn_serving(app), install(app, injector, **options)


def starlette_served(injector: Injector, **options: Any) -> tuple[Any, HealthMonitor]:
    from starlette.applications import Starlette

    from di.integrations.starlette import install

    app = Starlette()
    return uvicorn_serving(app), install(app, injector, **options)


def litestar_served(injector: Injector, **options: Any) -> tuple[Any, HealthMonitor]:
    from litestar import Litestar

    from di.integrations.litestar import DIPlugin

    plugin = DIPlugin(injector, **options)
    app = Litestar([], plugins=[plugin], logging_config=None)
    return uvicorn_serving(app), plugin.monitor


@contextmanager
def flask_running(app: Any) -> Iterator[str]:
    from di.integrations.flask import shutdown

    try:
        with werkzeug_serving(app) as url:
            yield url
    finally:
        shutdown(app)


def flask_served(injector: Injector, **options: Any) -> tuple[Any, HealthMonitor]:
    from flask import Flask

    from di.integrations.flask import install

    app = Flask(__name__)
    return flask_running(app), install(app, injector, **options)


HTTP_FRAMEWORKS: dict[str, Callable[..., tuple[Any, HealthMonitor]]] = {
    "fastapi": fastapi_served,
    "starlette": starlette_served,
    "litestar": litestar_served,
    "flask": flask_served,
}


# -- unbuilt= reaches the monitor of every integration -------------------------------------


@pytest.mark.parametrize("framework", HTTP_FRAMEWORKS)
@pytest.mark.parametrize("unbuilt", ["warn", "fail", "ignore", None])
def test_install_passes_unbuilt_to_the_monitor_it_makes(
    framework: str, unbuilt: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    options = {} if unbuilt is None else {"unbuilt": unbuilt}
    running, monitor = HTTP_FRAMEWORKS[framework](lazy_cache_injector(), **options)
    assert monitor.unbuilt == (unbuilt or "warn")
    with running as url, httpx.Client(base_url=url, timeout=10) as client:
        wait_until(lambda: monitor.ready, "the start and a first round")
        readyz = client.get("/readyz?verbose")
        health = client.get("/health")
    body = health.json()
    if unbuilt == "ignore":
        assert readyz.status_code == 200 and "DownCache" not in readyz.text
        assert body["status"] == "pass" and set(body["checks"]) == {DB}
    elif unbuilt == "fail":
        assert readyz.status_code == 503
        assert f"[-]{DOWN_CACHE} failed: {NOT_BUILT}" in readyz.text.splitlines()
        assert "[-]unbuilt: 1 service with a health check is not built" in readyz.text
        assert health.status_code == 503 and body["status"] == "fail"
        assert body["checks"][DOWN_CACHE] == [{"status": "fail", "output": NOT_BUILT}]
    else:  # warn, the default: serving, and saying so
        assert readyz.status_code == 200
        assert f"[+]{DOWN_CACHE} {NOT_BUILT}" in readyz.text.splitlines()
        assert health.status_code == 200 and body["status"] == "warn"
        assert body["checks"][DOWN_CACHE] == [{"status": "warn", "output": NOT_BUILT}]
    warnings = [r.getMessage() for r in caplog.records if "neither eager nor built" in r.message]
    assert len(warnings) == (0 if unbuilt == "ignore" else 1)


def test_install_refuses_unbuilt_that_contradicts_the_monitor_given() -> None:
    from starlette.applications import Starlette

    from di.integrations.starlette import install

    injector = lazy_cache_injector()
    monitor = HealthMonitor(injector, unbuilt="fail")
    with pytest.raises(ValueError, match=r"pass unbuilt= to HealthMonitor\(\) instead"):
        install(Starlette(), injector, monitor=monitor, unbuilt="ignore")
    assert install(Starlette(), injector, monitor=monitor, unbuilt="fail") is monitor


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # grpcio's server runs on asyncio
@pytest.mark.parametrize("unbuilt", ["warn", "fail", "ignore"])
async def test_grpc_install_passes_unbuilt_and_liveness_stays_serving_through_the_drain(
    unbuilt: str,
) -> None:
    from di.integrations.grpc import install

    injector = lazy_cache_injector()
    server = grpc.aio.server()
    lifecycle = install(server, injector, unbuilt=unbuilt)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    assert lifecycle.monitor.unbuilt == unbuilt
    async with lifecycle, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def status(name: str) -> int:
            request = health_pb2.HealthCheckRequest(service=name)
            return int((await stub.Check(request, timeout=5)).status)

        await lifecycle.monitor.wait_ready()
        expected = ServingStatus.NOT_SERVING if unbuilt == "fail" else ServingStatus.SERVING
        assert await status("readiness") == expected
        assert await status("") == expected
        assert await status("liveness") == ServingStatus.SERVING
        drain = at_most(0)  # longer than the checks made while it drains
        stopping = asyncio.ensure_future(lifecycle.stop(grace=1, drain=drain))
        await until(lambda: lifecycle.monitor.snapshot.shutting_down, "the drain")
        # Draining: nothing takes traffic, but the process is alive and says so.
        assert await status("readiness") == ServingStatus.NOT_SERVING
        assert await status("") == ServingStatus.NOT_SERVING
        assert await status(DB) == ServingStatus.NOT_SERVING
        assert await status("liveness") == ServingStatus.SERVING
        assert not stopping.done()
        await stopping


# -- Flask's health routes, hardened as di.asgi's, through a real server ---------------------


@pytest.fixture
def flask_url() -> Iterator[str]:
    from flask import Flask

    from di.integrations.flask import install

    app = Flask(__name__)
    app.testing = False  # an exception would be a 500, as in production
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = install(app, injector)
    with flask_running(app) as url:
        wait_until(lambda: monitor.ready, "the start and a first round")
        yield url


CHECK = "/grpc.health.v1.Health/Check"


def test_flask_answers_a_body_nested_too_deep_with_a_400(flask_url: str) -> None:
    deep = httpx.post(flask_url + CHECK, content=b"[" * 60_000, timeout=10)
    assert deep.status_code == 400
    assert deep.json() == {
        "code": "invalid_argument",
        "message": "body is not JSON: nested too deep",
    }


def test_flask_never_echoes_a_long_name(flask_url: str) -> None:
    huge = "n" * 5_000_000
    # In the body: over MAX_BODY, refused unread, and not repeated.
    answer = httpx.post(flask_url + CHECK, json={"service": huge}, timeout=30)
    assert answer.status_code == 400 and len(answer.content) < 300
    assert answer.json()["message"] == f"body over {MAX_BODY} bytes"
    # Under MAX_BODY, but no such name: 404, the name cut at 200 characters.
    long = "n" * (MAX_BODY // 2)
    unknown = httpx.post(flask_url + CHECK, json={"service": long}, timeout=10)
    assert unknown.status_code == 404 and len(unknown.content) < 300
    assert "n" * 200 in unknown.text and "n" * 201 not in unknown.text
    # In the path, as long as the server takes a request line: the same.
    for path in ("/health/", "/readyz/"):
        named = httpx.get(flask_url + path + "n" * 30_000, timeout=10)
        assert named.status_code == 404 and len(named.content) < 300
        assert "n" * 200 in named.text and "n" * 201 not in named.text


def test_flask_bounds_a_body_without_a_length(flask_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * MAX_BODY

    answer = httpx.post(flask_url + CHECK, content=chunks(), timeout=30)
    assert answer.status_code == 400
    assert answer.json()["message"] == f"body over {MAX_BODY} bytes"
    assert httpx.post(flask_url + CHECK, json={"service": ""}, timeout=10).json() == {
        "status": "SERVING"
    }
