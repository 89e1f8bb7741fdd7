"""Applications for the `di run` tests and the rolling restart behind HAProxy.

Each is a factory (``di run --factory``): the app is made in the process that serves
it. Shutdown hooks and the app's own lifespan print, so a test sees the order things
ran in; ``REPLICA`` names the replica in every answer.
"""

# No `from __future__ import annotations`: the frameworks read the annotations of
# endpoints defined inside functions, which name local imports.
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from di import HealthMonitor, Injector


def say(text: str) -> None:
    print(text, flush=True)


class Database:
    """Healthy; its shutdown hook says it ran."""

    def __init__(self) -> None:
        if os.environ.get("DATABASE_DOWN"):
            raise ConnectionError("the database is down")
        self.orders = 0

    def health_check(self) -> None:
        pass

    def shutdown(self) -> None:
        say(f"database closed after {self.orders} orders")


def _monitor(injector: Injector) -> HealthMonitor:
    return HealthMonitor(injector, interval=float(os.environ.get("HEALTH_INTERVAL", "0.2")))


def create_fastapi_app() -> Any:
    """A FastAPI app: ``POST /orders`` (a little work), ``/slow`` (takes a while),
    ``/events`` (streams until the connection closes)."""
    from fastapi import FastAPI

    from di.integrations.fastapi import Inject, install

    replica = os.environ.get("REPLICA", "app")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        say("app lifespan started")
        yield
        say("app lifespan ended")

    injector = Injector()
    injector.provide(Database, eager=True)
    app = FastAPI(lifespan=lifespan)
    install(app, injector, monitor=_monitor(injector))

    @app.post("/orders")
    async def place(db: Inject[Database]) -> dict[str, Any]:
        db.orders += 1
        await anyio.sleep(0.001)
        return {"replica": replica, "order": db.orders}

    @app.get("/events")
    async def events() -> Any:
        """A stream without end (server-sent events), until the client or the server
        closes it."""
        from fastapi.responses import StreamingResponse

        async def ticks() -> AsyncIterator[bytes]:
            say("events stream started")
            while True:
                yield b"data: tick\n\n"
                await anyio.sleep(0.1)

        return StreamingResponse(ticks(), media_type="text/event-stream")

    @app.get("/slow")
    async def slow(seconds: float = 1.0) -> dict[str, Any]:
        say("slow request started")
        await anyio.sleep(seconds)
        return {"replica": replica, "slept": seconds}

    return app


def create_litestar_app() -> Any:
    """The same orders on Litestar: its plugin records its monitor for `di run` too."""
    from litestar import Litestar, post
    from litestar.di import NamedDependency

    from di.integrations.litestar import DIPlugin

    injector = Injector()
    injector.provide(Database, eager=True)

    @post("/orders")
    async def place(db: NamedDependency[Database]) -> dict[str, Any]:
        db.orders += 1
        return {"order": db.orders}

    plugin = DIPlugin(injector, monitor=_monitor(injector), dependencies={"db": Database})
    return Litestar([place], plugins=[plugin])


def create_starlette_app() -> Any:
    """The same orders on Starlette: its install records its monitor for `di run` too."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from di.integrations.starlette import install, scope_of

    async def place(request: Request) -> JSONResponse:
        db = await scope_of(request).ainvoke(Database)
        db.orders += 1
        return JSONResponse({"order": db.orders})

    injector = Injector()
    injector.provide(Database, eager=True)
    app = Starlette(routes=[Route("/orders", place, methods=["POST"])])
    install(app, injector, monitor=_monitor(injector))
    return app


def create_plain_app() -> Any:
    """An ASGI app with no monitor installed: `di run` serves it only with --drain 0."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    return app
