"""grpc.health.v1.Health under grpcio's real asyncio server, with grpcio's real client."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from di import Injector, ServingStatus

from ..servers import Served, serve
from ..services import Cache, Database, key
from ..timing import at_most, wait_until

DB, CACHE = key(Database), key(Cache)
Status = health_pb2.HealthCheckResponse


def serving(interval: float) -> Iterator[tuple[Served, Database, health_pb2_grpc.HealthStub]]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    db = injector.invoke(Database)
    injector.invoke(Cache)
    with (
        serve(injector, interval=interval, timeout=at_most(0)) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel,
    ):
        yield server, db, health_pb2_grpc.HealthStub(channel)


@pytest.fixture
def served() -> Iterator[tuple[Served, Database, health_pb2_grpc.HealthStub]]:
    """Served, with rounds when the test asks for one (``server.check()``)."""
    yield from serving(interval=3600)


@pytest.fixture
def watched() -> Iterator[tuple[Served, Database, health_pb2_grpc.HealthStub]]:
    """Served, with a round every 50 ms: a change shows without asking."""
    yield from serving(interval=0.05)


def check(stub: health_pb2_grpc.HealthStub, name: str) -> int:
    response = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
    return int(response.status)


def test_check_answers_each_name_and_not_found_for_an_unknown_one(
    served: tuple[Served, Database, health_pb2_grpc.HealthStub],
) -> None:
    server, db, stub = served
    assert check(stub, "") == Status.SERVING
    assert check(stub, DB) == Status.SERVING
    assert check(stub, "readiness") == Status.SERVING
    db.fail()
    server.check()
    assert check(stub, "") == Status.NOT_SERVING
    assert check(stub, DB) == Status.NOT_SERVING
    assert check(stub, CACHE) == Status.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        check(stub, "greet.GreetService")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert check(stub, "") == Status.NOT_SERVING  # still serving after a bad name


def _watch(stub: health_pb2_grpc.HealthStub, name: str) -> tuple[object, queue.Queue[int]]:
    stream = stub.Watch(health_pb2.HealthCheckRequest(service=name), timeout=30)
    seen: queue.Queue[int] = queue.Queue()

    def read() -> None:
        try:
            for response in stream:
                seen.put(int(response.status))
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    return stream, seen


def test_watch_sends_now_then_every_change(
    watched: tuple[Served, Database, health_pb2_grpc.HealthStub],
) -> None:
    _server, db, stub = watched
    stream, seen = _watch(stub, DB)
    statuses = [seen.get(timeout=5)]
    if statuses[0] != Status.SERVING:  # before the monitor's first check
        statuses.append(seen.get(timeout=5))
    assert statuses[-1] == Status.SERVING
    db.fail()
    assert seen.get(timeout=5) == Status.NOT_SERVING
    db.recover()
    assert seen.get(timeout=5) == Status.SERVING
    stream.cancel()  # type: ignore[attr-defined]


def test_watch_unknown_name_waits_for_it(
    served: tuple[Served, Database, health_pb2_grpc.HealthStub],
) -> None:
    server, _, stub = served
    stream, seen = _watch(stub, "maintenance")
    assert seen.get(timeout=5) == Status.SERVICE_UNKNOWN

    async def appear() -> None:
        server.monitor.set_status("maintenance", ServingStatus.NOT_SERVING)

    server.loop.run(appear())
    assert seen.get(timeout=5) == Status.NOT_SERVING
    stream.cancel()  # type: ignore[attr-defined]


def test_watch_cancelled_by_the_client_leaves_no_task_behind(
    served: tuple[Served, Database, health_pb2_grpc.HealthStub],
) -> None:
    server, _, stub = served

    async def tasks() -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks()

    before = server.loop.run(tasks())
    streams = [_watch(stub, DB) for _ in range(5)]
    for _, seen in streams:
        seen.get(timeout=5)
    # The watches' tasks, maybe some of a monitor's round, which end by themselves, and
    # the server's task waiting for the next call, which waits on.
    started = server.loop.run(tasks()) - before
    assert len(started) >= 5

    def left_behind() -> list[asyncio.Task[Any]]:
        return [
            task
            for task in started
            if not task.done()
            and task.get_coro().__qualname__ != "AioServer._request_registered_call"
        ]

    for stream, _ in streams:
        stream.cancel()  # type: ignore[attr-defined]
    wait_until(lambda: not left_behind(), "the watches' tasks to end")


def test_list_answers_every_name_with_its_status(
    served: tuple[Served, Database, health_pb2_grpc.HealthStub],
) -> None:
    server, db, stub = served
    db.fail()
    server.check()
    response = stub.List(health_pb2.HealthListRequest(), timeout=5)
    statuses = {name: int(r.status) for name, r in response.statuses.items()}
    assert statuses == {
        "": Status.NOT_SERVING,
        "liveness": Status.SERVING,
        "readiness": Status.NOT_SERVING,
        "startup": Status.SERVING,
        DB: Status.NOT_SERVING,
        CACHE: Status.SERVING,
    }


def test_list_over_100_names_is_resource_exhausted() -> None:
    injector = Injector()
    for i in range(101):
        injector.provide(Database, name=f"db{i}")
        injector.invoke(f"db{i}")
    with (
        serve(injector) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.List(health_pb2.HealthListRequest(), timeout=5)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert check(stub, "db7") == Status.SERVING  # still serving
