"""A streamed response its client cuts short rolls back, under a real uvicorn server.

The client reads the first chunk of an endlessly streamed response and closes its
connection. Starlette (and so FastAPI) and Litestar then end the stream quietly: the
app returns, no exception raised. The request scope must still close as a failure, so
that a generator factory rolls back (:class:`~di.integrations.fastapi.StreamAbortedError`)
rather than commits, as Flask's does. Five cut requests in a row, for each framework;
a stream read to its end still commits.
"""

# No `from __future__ import annotations`: the frameworks read the annotations of
# endpoints defined inside functions, which name local imports.
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from di import Injector

from ..timing import PATIENCE, wait_until

FRAMEWORKS = ("fastapi", "starlette", "litestar")
RUNS = 5


class Unit:
    """A unit of work per request: its factory records whether it committed."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


class Ledger:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


def make_injector(request_type: type[Any], tag_of: Any) -> tuple[Injector, Ledger]:
    ledger = Ledger()
    injector = Injector()

    def unit(request: Any) -> Iterator[Unit]:
        made = Unit(tag_of(request))
        try:
            yield made
        except Exception as error:
            ledger.add(f"rollback {made.tag}: {type(error).__name__}: {error}")
            raise
        else:
            ledger.add(f"commit {made.tag}")

    unit.__annotations__["request"] = request_type
    unit.__annotations__["return"] = Iterator[Unit]
    injector.provide_scoped(unit)
    return injector, ledger


async def chunks(unit: Unit, count: int) -> AsyncIterator[bytes]:
    """``count`` chunks (-1: without end, until the client goes), a few ms apart."""
    sent = 0
    while sent != count:
        yield f"{unit.tag} chunk {sent}\n".encode()
        sent += 1
        await anyio.sleep(0.005)


def fastapi_app() -> tuple[Any, Ledger]:
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    from di.integrations.fastapi import Inject, install

    injector, ledger = make_injector(Request, lambda r: r.query_params["id"])
    app = FastAPI()
    install(app, injector)

    @app.get("/stream")
    async def stream(unit: Inject[Unit], count: int = -1) -> StreamingResponse:
        return StreamingResponse(chunks(unit, count))

    return app, ledger


def starlette_app() -> tuple[Any, Ledger]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from di.integrations.starlette import install, scope_of

    injector, ledger = make_injector(Request, lambda r: r.query_params["id"])

    async def stream(request: Request) -> StreamingResponse:
        unit = await scope_of(request).ainvoke(Unit)
        return StreamingResponse(chunks(unit, int(request.query_params.get("count", -1))))

    app = Starlette(routes=[Route("/stream", stream)])
    install(app, injector)
    return app, ledger


def litestar_app() -> tuple[Any, Ledger]:
    from litestar import Litestar, Request, get
    from litestar.di import NamedDependency
    from litestar.response import Stream

    from di.integrations.litestar import DIPlugin, provide

    injector, ledger = make_injector(Request, lambda r: r.query_params["id"])

    @get("/stream", dependencies={"unit": provide(Unit)})
    async def stream(request: Request[Any, Any, Any], unit: NamedDependency[Unit]) -> Stream:
        return Stream(chunks(unit, int(request.query_params.get("count", -1))))

    app = Litestar([stream], plugins=[DIPlugin(injector)], logging_config=None)
    return app, ledger


APPS = {"fastapi": fastapi_app, "starlette": starlette_app, "litestar": litestar_app}


@contextmanager
def uvicorn_serving(app: Any) -> Iterator[int]:
    """``app`` under a real uvicorn server on a loopback port; the port."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
    assert not thread.is_alive()


def read_first_chunk_and_leave(port: int, tag: str) -> bytes:
    """GET an endless stream, read until its first chunk has arrived, and hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as connection:
        connection.sendall(f"GET /stream?id={tag} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        received = b""
        while f"{tag} chunk 0".encode() not in received:
            data = connection.recv(4096)
            assert data, f"the server closed the connection first: {received!r}"
            received += data
    return received


def read_whole_stream(port: int, tag: str, count: int) -> str:
    import httpx

    response = httpx.get(f"http://127.0.0.1:{port}/stream?id={tag}&count={count}")
    response.raise_for_status()
    return response.text


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_stream_the_client_cuts_short_rolls_back_every_time(framework: str) -> None:
    app, ledger = APPS[framework]()
    with uvicorn_serving(app) as port:
        for run in range(RUNS):
            tag = f"cut{run}"
            assert b"200 OK" in read_first_chunk_and_leave(port, tag)
            wait_until(
                lambda tag=tag: any(
                    line.split(":")[0] in (f"commit {tag}", f"rollback {tag}")
                    for line in ledger.lines
                ),
                f"the scope of {tag} to close",
            )
        whole = read_whole_stream(port, "whole", 3)
        assert whole == "whole chunk 0\nwhole chunk 1\nwhole chunk 2\n"
        wait_until(lambda: "commit whole" in ledger.lines, "the whole stream's scope to close")
    cut = "StreamAbortedError: the response's body was cut short"
    assert ledger.lines == [f"rollback cut{run}: {cut}" for run in range(RUNS)] + ["commit whole"]
