"""The orders service over gRPC (grpc.aio), wired with ``di.integrations.grpc``.

Messages are JSON through a generic handler, so there is no generated code:
``orders.Orders/Place`` (unary) places an order, ``orders.Orders/List`` (response
streaming) sends every order. Each RPC runs in a scope of its own: its ``UnitOfWork``
commits when the RPC succeeds and rolls back when it fails. ``grpc.health.v1.Health``
is served beside it.

Serve on 127.0.0.1:50052 until Ctrl-C: ``python -m examples.orders_grpc.app``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from di import Injector
from di.integrations.grpc import Inject, Lifecycle, ScopeInterceptor, inject, install

SERVICE = "orders.Orders"


@dataclass
class Settings:
    data_dir: Path


def open_database(settings: Settings) -> Iterator[sqlite3.Connection]:
    """The singleton connection, opened at startup and closed at shutdown."""
    # Sync shutdown hooks and health checks run in worker threads.
    connection = sqlite3.connect(settings.data_dir / "orders.sqlite3", check_same_thread=False)
    connection.execute(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, user TEXT, item TEXT)"
    )
    yield connection
    connection.close()
    print("  [server] database closed")


def check_database(connection: sqlite3.Connection) -> None:
    connection.execute("SELECT 1").fetchone()


class Caller:
    """Who calls: read from the RPC's metadata, through its ServicerContext."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        metadata = dict(context.invocation_metadata() or ())
        self.user = str(metadata.get("x-user", "anonymous"))


class UnitOfWork:
    """The writes of one RPC, written together when it succeeds."""

    def __init__(self, connection: sqlite3.Connection, caller: Caller) -> None:
        self.connection = connection
        self.caller = caller
        self.pending: list[str] = []

    def place(self, item: str) -> None:
        self.pending.append(item)


def open_unit_of_work(connection: sqlite3.Connection, caller: Caller) -> Iterator[UnitOfWork]:
    """Scoped: one per RPC. The RPC's exception arrives at the ``yield``."""
    work = UnitOfWork(connection, caller)
    try:
        yield work
    except Exception as error:
        print(f"  [server] rollback ({type(error).__name__}): {len(work.pending)} order(s) dropped")
        raise
    with connection:
        connection.executemany(
            "INSERT INTO orders (user, item) VALUES (?, ?)",
            [(caller.user, item) for item in work.pending],
        )
    print(f"  [server] commit: {len(work.pending)} order(s) of {caller.user}")


class Orders:
    """The servicer: its methods take the RPC's arguments, then what they inject."""

    @inject
    async def Place(
        self,
        request: dict[str, Any],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        work: Inject[UnitOfWork],
    ) -> dict[str, Any]:
        for item in request["items"]:
            if not item:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an item has no name")
            if item == "gremlin":
                raise RuntimeError("the warehouse password is hunter2")  # withheld
            work.place(item)
        return {"placed": len(work.pending), "user": work.caller.user}

    @inject
    async def List(
        self,
        request: dict[str, Any],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        connection: Inject[sqlite3.Connection],
    ) -> AsyncIterator[dict[str, Any]]:
        for user, item in connection.execute("SELECT user, item FROM orders ORDER BY id"):
            yield {"user": user, "item": item}


def build(data_dir: Path) -> Injector:
    injector = Injector()
    injector.provide_value(Settings(data_dir))
    injector.provide(open_database, eager=True, health_check=check_database)
    injector.provide_scoped(Caller)
    injector.provide_scoped(open_unit_of_work)
    return injector


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def create_server(injector: Injector, address: str) -> tuple[Lifecycle, int]:
    """The server's lifecycle (``lifecycle.server``) and its port (``:0`` picks one)."""
    server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
    servicer = Orders()
    handlers = {
        "Place": grpc.unary_unary_rpc_method_handler(
            servicer.Place, request_deserializer=json.loads, response_serializer=_json
        ),
        "List": grpc.unary_stream_rpc_method_handler(
            servicer.List, request_deserializer=json.loads, response_serializer=_json
        ),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    lifecycle = install(server, injector, grace=5.0)
    port = server.add_insecure_port(address)
    return lifecycle, port


async def main(address: str = "127.0.0.1:50052") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with tempfile.TemporaryDirectory() as folder:
        lifecycle, port = create_server(build(Path(folder)), address)
        async with lifecycle:  # eager services, the monitor, then the server
            print(f"orders over gRPC on port {port}; Ctrl-C stops")
            await stop.wait()
        # On exit: NOT_SERVING, the server stopped with a grace, the shutdown hooks run.


if __name__ == "__main__":
    asyncio.run(main())
