"""aiohttp: the container's life with the app's, a scope per request, ``@inject``, health.

In-process, requests go through aiohttp's own server (``aiohttp.test_utils.TestServer``
listens on a loopback port) and client. aiohttp runs on asyncio only, so these tests
run their own asyncio loop rather than both anyio backends. The documented example
(``examples/aiohttp_shop.py``) runs under ``python -m aiohttp.web``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("aiohttp")

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from di import Injector
from di.errors import GraphError
from di.integrations.aiohttp import Inject, inject, install, scope_of

from ..processes import Child, steady_port
from ..timing import PATIENCE, wait_until
from .units import Ledger, Work, async_unit_of_work, unit_of_work


class Unprovided:
    """Provided by nothing."""


class Path_:
    """A scoped service that reads the request from the scope's context."""

    def __init__(self, request: web.Request) -> None:
        self.value = request.path


def make_app(factory: object = unit_of_work) -> tuple[web.Application, Injector, Ledger]:
    ledger = Ledger()  # read after the app, and its injector, stopped
    injector = Injector()
    injector.provide_value(ledger)
    injector.provide_scoped(factory)  # type: ignore[arg-type]
    injector.provide_scoped(Path_)
    app = web.Application()
    install(app, injector)
    return app, injector, ledger


def serve(app: web.Application, talk: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    """Run ``app`` under aiohttp's server (startup to cleanup) while ``talk`` uses it."""

    async def run() -> None:
        async with TestClient(TestServer(app)) as client:
            await talk(client)

    asyncio.run(run())


@pytest.mark.parametrize("factory", [unit_of_work, async_unit_of_work])
def test_each_request_commits_on_success_and_rolls_back_on_error_over_10000_requests(
    factory: object,
) -> None:
    app, _, ledger = make_app(factory)

    @inject
    async def place(request: web.Request, work: Inject[Work]) -> web.Response:
        if request.query.get("fail"):
            raise ValueError("no item")
        return web.Response(text="placed")

    app.router.add_post("/place", place)

    async def one(client: TestClient[Any, Any], number: int) -> None:
        answer = await client.post("/place?fail=1" if number % 4 == 0 else "/place")
        assert answer.status == (500 if number % 4 == 0 else 200)
        answer.release()

    async def talk(client: TestClient[Any, Any]) -> None:
        for batch in range(0, 10_000, 50):  # 50 requests at a time, each in its scope
            await asyncio.gather(*(one(client, number) for number in range(batch, batch + 50)))

    serve(app, talk)
    assert ledger.opened == 10_000
    assert (ledger.committed, ledger.rolled_back) == (7_500, 2_500)


def test_an_http_exception_is_an_answer_and_commits() -> None:
    app, _, ledger = make_app()

    @inject
    async def moved(request: web.Request, work: Inject[Work]) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app.router.add_get("/moved", moved)

    async def talk(client: TestClient[Any, Any]) -> None:
        answer = await client.get("/moved", allow_redirects=False)
        assert answer.status == 302

    serve(app, talk)
    assert (ledger.committed, ledger.rolled_back) == (1, 0)


def test_the_request_is_in_the_scope_s_context_and_views_inject_too() -> None:
    app, _, _ = make_app()

    class Where(web.View):
        @inject
        async def get(self, path: Inject[Path_]) -> web.Response:
            same = (await scope_of(self.request).ainvoke(Path_)) is path
            return web.json_response({"path": path.value, "same": same})

    app.router.add_view("/where", Where)

    async def talk(client: TestClient[Any, Any]) -> None:
        answer = await client.get("/where")
        assert await answer.json() == {"path": "/where", "same": True}
        assert (await client.get("/livez")).status == 200
        ready = await client.get("/readyz?verbose")
        assert ready.status == 200, await ready.text()

    serve(app, talk)


def test_the_startup_names_a_forgotten_inject_and_an_unknown_key() -> None:
    app, _, _ = make_app()

    async def forgot(request: web.Request, work: Inject[Work]) -> web.Response:
        return web.Response()

    @inject
    async def unknown(request: web.Request, thing: Inject[Unprovided]) -> web.Response:
        return web.Response()

    app.router.add_get("/forgot", forgot)
    app.router.add_get("/unknown", unknown)

    async def talk(client: TestClient[Any, Any]) -> None:
        raise AssertionError("the app started")

    with pytest.raises(GraphError) as failed:
        serve(app, talk)
    message = str(failed.value)
    assert "forgot" in message and "no @inject" in message
    assert "unknown" in message and "'thing' injects what is not provided" in message


def test_inject_on_a_sync_function_and_a_second_install_are_refused() -> None:
    def handler(request: web.Request, work: Inject[Work]) -> web.Response:
        return web.Response()

    with pytest.raises(TypeError, match="aiohttp handlers are coroutines"):
        inject(handler)
    app, _, _ = make_app()
    with pytest.raises(RuntimeError, match="already called on this aiohttp app"):
        install(app, Injector())


def test_the_example_under_aiohttp_s_server_commits_rolls_back_and_closes(
    tmp_path: Path,
) -> None:
    port = steady_port()
    server = Child(
        [
            sys.executable,
            "-m",
            "aiohttp.web",
            "-H",
            "127.0.0.1",
            "-P",
            str(port),
            "examples.aiohttp_shop:create_app",
        ],
        log=tmp_path / "server.log",
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/ops/readyz", timeout=PATIENCE).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, "the example to be ready")
        with httpx.Client(base_url=base, timeout=PATIENCE) as client:
            assert client.post("/orders?item=tea").json() == {"placed": "tea"}
            assert client.post("/orders").status_code == 500  # rolled back
            assert client.post("/orders?item=jam").json() == {"placed": "jam"}
            assert client.get("/orders").json() == {"orders": ["tea", "jam"]}
            assert "Orders ok" in client.get("/ops/readyz?verbose").text
        server.signal(signal.SIGTERM)
        server.wait(PATIENCE)
        assert "orders closed" in server.output(), server.output()
    finally:
        server.close()


def test_a_request_that_injects_nothing_opens_nothing_and_a_late_scope_is_refused() -> None:
    from di.errors import ScopeClosedError

    app, _, ledger = make_app()
    kept: list[web.Request] = []

    async def plain(request: web.Request) -> web.Response:
        kept.append(request)
        return web.Response(text="plain")

    app.router.add_get("/plain", plain)

    async def talk(client: TestClient[Any, Any]) -> None:
        for _ in range(3):
            assert (await client.get("/plain")).status == 200
        with pytest.raises(ScopeClosedError, match="after the request ended: reach it while"):
            scope_of(kept[0])

    serve(app, talk)
    assert (ledger.opened, ledger.closed) == (0, 0)
