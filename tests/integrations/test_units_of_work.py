"""Every web integration: a generator factory's unit of work per request, 10,000 times.

One request in four fails; each unit of work must have closed, the failing ones rolled
back and the others committed: ``opened == committed + rolled_back``, with the exact
split. FastAPI, Starlette and Litestar get each request as a server passes it to their ASGI
apps (their lifespan around the requests), Flask through its test client. Django, aiohttp, Celery
and taskiq have the same test in their own modules, and gRPC's request scopes are
tested in test_grpc_integration.py.
"""

# No `from __future__ import annotations`: the handlers' annotations name local imports.
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest

from di import Injector

from .units import Ledger, Work, async_unit_of_work, unit_of_work

pytestmark = pytest.mark.anyio

REQUESTS = 10_000


def injector_with(ledger: Ledger, factory: Callable[..., Any]) -> Injector:
    injector = Injector()
    injector.provide_value(ledger)
    injector.provide_scoped(factory)
    return injector


def fastapi_app(ledger: Ledger) -> Any:
    from fastapi import FastAPI

    from di.integrations.fastapi import Inject, install

    app = FastAPI()
    install(app, injector_with(ledger, async_unit_of_work))

    @app.get("/place")
    async def place(fail: bool, work: Inject[Work]) -> str:
        if fail:
            raise ValueError("no item")
        return "placed"

    return app


def starlette_app(ledger: Ledger) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from di.integrations.starlette import install, scope_of

    async def place(request: Request) -> PlainTextResponse:
        await scope_of(request).ainvoke(Work)
        if request.query_params["fail"] == "true":
            raise ValueError("no item")
        return PlainTextResponse("placed")

    app = Starlette(routes=[Route("/place", place)])
    install(app, injector_with(ledger, unit_of_work))
    return app


def litestar_app(ledger: Ledger) -> Any:
    from litestar import Litestar, get
    from litestar.di import NamedDependency

    from di.integrations.litestar import DIPlugin

    @get("/place")
    async def place(fail: bool, work: NamedDependency[Work]) -> str:
        if fail:
            raise ValueError("no item")
        return "placed"

    plugin = DIPlugin(injector_with(ledger, async_unit_of_work), dependencies={"work": Work})
    return Litestar([place], plugins=[plugin], logging_config=None)


ASGI = {"fastapi": fastapi_app, "starlette": starlette_app, "litestar": litestar_app}


async def get(app: Any, query: bytes) -> int:
    """One request straight to the ASGI app, as a server makes it: its status."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/place",
        "raw_path": b"/place",
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"app")],
        "server": ("app", 80),
        "client": ("127.0.0.1", 50000),
    }
    try:
        await app(scope, receive, send)
    except ValueError:
        return 500  # re-raised to the server, after the app answered 500
    return status


@pytest.mark.parametrize("framework", ASGI)
async def test_asgi_integrations_commit_or_roll_back_each_of_10000_requests(
    framework: str,
) -> None:
    ledger = Ledger()
    app = ASGI[framework](ledger)
    lifespan = app.lifespan() if framework == "litestar" else app.router.lifespan_context(app)
    async with lifespan:
        for number in range(REQUESTS):
            failing = number % 4 == 0
            status = await get(app, b"fail=true" if failing else b"fail=false")
            assert status == (500 if failing else 200)
    assert ledger.opened == REQUESTS
    assert (ledger.committed, ledger.rolled_back) == (7_500, 2_500)


def test_flask_commits_or_rolls_back_each_of_10000_requests() -> None:
    from flask import Flask, request

    from di.integrations.flask import Inject, inject, install, shutdown

    ledger = Ledger()
    app = Flask(__name__)
    install(app, injector_with(ledger, unit_of_work))

    @app.get("/place")
    @inject
    def place(work: Inject[Work]) -> str:
        if request.args["fail"] == "true":
            raise ValueError("no item")
        return "placed"

    client = app.test_client()
    try:
        for number in range(REQUESTS):
            failing = number % 4 == 0
            answer = client.get("/place", query_string={"fail": str(failing).lower()})
            assert answer.status_code == (500 if failing else 200)
    finally:
        shutdown(app)
    assert ledger.opened == REQUESTS
    assert (ledger.committed, ledger.rolled_back) == (7_500, 2_500)
