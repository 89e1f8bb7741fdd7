"""di.integrations.grpc under grpcio's real asyncio server, with grpcio's real aio client.

grpcio's server only runs on asyncio, so these tests run on asyncio alone (the module
overrides the trio parametrization of conftest): server and client share the test's
loop and talk over a real loopback socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, ClassVar

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from di import DIError, HealthMonitor, Injector, Named, ServingStatus
from di.integrations.grpc import (
    WITHHELD,
    Inject,
    Lifecycle,
    ScopeInterceptor,
    current_scope,
    inject,
    install,
)

from ..services import Database, Journal, key
from ..timing import PATIENCE, at_most, until

pytestmark = pytest.mark.anyio

SERVICE = "test.Orders"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # grpcio's server runs on asyncio only


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- the application under test --------------------------------------------------------


class Caller:
    """Scoped: who is calling, read from the RPC's metadata through its context."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        self.context = context
        metadata = dict(context.invocation_metadata() or ())
        self.name = str(metadata.get("caller", "anonymous"))


class Transaction:
    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.log: list[str] = []


JOURNAL: list[Transaction] = []


def open_transaction(caller: Caller) -> Iterator[Transaction]:
    """A scoped generator factory: commit on success, rollback on the RPC's exception."""
    transaction = Transaction(caller)
    JOURNAL.append(transaction)
    try:
        yield transaction
        transaction.log.append("commit")
    except Exception as error:
        transaction.log.append(f"rollback: {type(error).__name__}")
        raise
    finally:
        transaction.log.append("closed")


class Replica:
    def __init__(self, name: str) -> None:
        self.name = name


class Orders:
    """A servicer of generic handlers (JSON in, JSON out) using @inject."""

    @inject
    async def Place(
        self,
        request: dict[str, Any],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        transaction: Inject[Transaction],
        again: Inject[Transaction],
        caller: Inject[Caller],
        rpc: Inject[grpc.aio.ServicerContext],  # type: ignore[type-arg]
        db: Inject[Database],
    ) -> dict[str, Any]:
        await asyncio.sleep(request.get("sleep", 0))
        if request.get("fail"):
            raise ValueError("password=hunter2 in the order")
        if request.get("abort"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such item")
        transaction.log.append(f"place {request['item']}")
        return {
            "item": request["item"],
            "caller": caller.name,
            "shared": transaction is again and caller is transaction.caller,
            "context": rpc is context and caller.context is context,
            "scope": current_scope().name,
            "db": id(db),
        }

    @inject
    async def Track(
        self,
        request: dict[str, Any],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        transaction: Inject[Transaction],
    ) -> AsyncIterator[dict[str, Any]]:
        """Response streaming: one scope for the whole stream."""
        for step in range(request["steps"]):
            shared = transaction is current_scope().invoke(Transaction)
            transaction.log.append(f"step {step}")
            yield {"step": step, "shared": shared, "closed": "closed" in transaction.log}
            await asyncio.sleep(request.get("pause", 0))
        if request.get("fail"):
            raise RuntimeError("the carrier's token is abc123")

    @inject
    async def Batch(
        self,
        requests: AsyncIterator[dict[str, Any]],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        transaction: Inject[Transaction],
    ) -> dict[str, Any]:
        """Request streaming."""
        async for request in requests:
            transaction.log.append(f"place {request['item']}")
        return {"placed": len(transaction.log)}

    @inject
    async def Echo(
        self,
        requests: AsyncIterator[dict[str, Any]],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        transaction: Inject[Transaction],
        replica: Inject[Annotated[Replica, Named("replica")]],
    ) -> AsyncIterator[dict[str, Any]]:
        """Bidirectional streaming, with a named service."""
        async for request in requests:
            transaction.log.append(request["item"])
            yield {"item": request["item"], "replica": replica.name, "seen": len(transaction.log)}

    @inject
    def Count(
        self,
        request: dict[str, Any],
        context: Any,
        transaction: Inject[Transaction],
        caller: Inject[Caller],
    ) -> dict[str, Any]:
        """A sync method: grpc.aio runs it in the server's migration thread pool."""
        transaction.log.append("count")
        time.sleep(request.get("sleep", 0))
        return {"caller": caller.name, "shared": caller is transaction.caller}

    @inject
    def Tally(
        self,
        request: dict[str, Any],
        context: Any,
        transaction: Inject[Transaction],
    ) -> Iterator[dict[str, Any]]:
        """A sync response stream."""
        for step in range(request["steps"]):
            transaction.log.append(f"step {step}")
            yield {"step": step}
            time.sleep(request.get("pause", 0))


def handlers(orders: Orders) -> grpc.GenericRpcHandler:
    def method(kind: Any, behavior: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return kind(  # type: ignore[no-any-return]
            behavior, request_deserializer=json.loads, response_serializer=encode
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Place": method(grpc.unary_unary_rpc_method_handler, orders.Place),
            "Track": method(grpc.unary_stream_rpc_method_handler, orders.Track),
            "Batch": method(grpc.stream_unary_rpc_method_handler, orders.Batch),
            "Echo": method(grpc.stream_stream_rpc_method_handler, orders.Echo),
            "Count": method(grpc.unary_unary_rpc_method_handler, orders.Count),
            "Tally": method(grpc.unary_stream_rpc_method_handler, orders.Tally),
        },
    )


def make_injector() -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide_scoped(Caller)
    injector.provide_scoped(open_transaction)
    injector.provide_value(Replica("replica-1"), name="replica")
    return injector


class Served:
    def __init__(self, lifecycle: Lifecycle, channel: grpc.aio.Channel, injector: Injector) -> None:
        self.lifecycle = lifecycle
        self.channel = channel
        self.injector = injector
        self.health = health_pb2_grpc.HealthStub(channel)

    def unary(self, name: str) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            f"/{SERVICE}/{name}", request_serializer=encode, response_deserializer=json.loads
        )

    def unary_stream(self, name: str) -> grpc.aio.UnaryStreamMultiCallable[Any, Any]:
        return self.channel.unary_stream(
            f"/{SERVICE}/{name}", request_serializer=encode, response_deserializer=json.loads
        )

    def stream_unary(self, name: str) -> grpc.aio.StreamUnaryMultiCallable[Any, Any]:
        return self.channel.stream_unary(
            f"/{SERVICE}/{name}", request_serializer=encode, response_deserializer=json.loads
        )

    def stream_stream(self, name: str) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
        return self.channel.stream_stream(
            f"/{SERVICE}/{name}", request_serializer=encode, response_deserializer=json.loads
        )

    async def check(self, name: str = "") -> int:
        request = health_pb2.HealthCheckRequest(service=name)
        return int((await self.health.Check(request, timeout=5)).status)


@asynccontextmanager
async def serve(injector: Injector | None = None, **monitor: Any) -> AsyncIterator[Served]:
    """The application on a real server on a loopback port, and a channel to it."""
    from concurrent.futures import ThreadPoolExecutor

    JOURNAL.clear()
    injector = injector or make_injector()
    with ThreadPoolExecutor(4) as pool:
        server = grpc.aio.server(
            interceptors=[ScopeInterceptor(injector, executor=pool)], migration_thread_pool=pool
        )
        server.add_generic_rpc_handlers([handlers(Orders())])
        # Rounds run when a test asks for one (monitor.check()), after the start's first:
        # a background round would share its result with a test's round, from before the
        # change the test made.
        options = {"interval": 3600, "timeout": at_most(0), **monitor}
        lifecycle = install(server, injector, monitor=HealthMonitor(injector, **options), grace=1)
        port = server.add_insecure_port("127.0.0.1:0")
        async with lifecycle, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(lifecycle, channel, injector)


# -- the tests ---------------------------------------------------------------------------


async def test_eager_services_are_built_at_startup_before_any_rpc(built: Journal) -> None:
    async with serve() as served:
        assert built.count("Database") == 1
        assert key(Database) in served.injector.list_invoked()
        await served.lifecycle.monitor.wait_ready()
        assert await served.check() == health_pb2.HealthCheckResponse.SERVING


async def test_one_scope_per_rpc_with_the_servicer_context_injectable() -> None:
    async with serve() as served:
        place = served.unary("Place")
        first = await place({"item": "tea"}, metadata=(("caller", "ana"),), timeout=5)
        second = await place({"item": "jam"}, metadata=(("caller", "bo"),), timeout=5)
        assert first["caller"] == "ana" and second["caller"] == "bo"
        assert first["context"] and second["context"]  # Inject[ServicerContext] is the RPC's
        assert first["shared"] and second["shared"]
        assert first["scope"] != second["scope"]
        assert first["db"] == second["db"]  # singletons are shared by every RPC
        assert [t.log for t in JOURNAL] == [
            ["place tea", "commit", "closed"],
            ["place jam", "commit", "closed"],
        ]
        assert served.injector.children() == []  # each RPC's scope closed and left


async def test_a_sync_method_gets_its_scope_in_the_thread_pool() -> None:
    async with serve() as served:
        reply = await served.unary("Count")({}, metadata=(("caller", "cy"),), timeout=5)
        assert reply == {"caller": "cy", "shared": True}
        assert JOURNAL[0].log == ["count", "commit", "closed"]


async def test_a_response_stream_shares_one_scope_closed_after_the_last_message() -> None:
    async with serve() as served:
        replies = [r async for r in served.unary_stream("Track")({"steps": 3}, timeout=5)]
        assert replies == [{"step": i, "shared": True, "closed": False} for i in range(3)]
        (transaction,) = JOURNAL
        assert transaction.log == ["step 0", "step 1", "step 2", "commit", "closed"]
        assert served.injector.children() == []


async def test_request_and_bidirectional_streams_share_one_scope() -> None:
    async with serve() as served:

        async def items() -> AsyncIterator[dict[str, Any]]:
            for item in ("a", "b", "c"):
                yield {"item": item}

        assert await served.stream_unary("Batch")(items(), timeout=5) == {"placed": 3}
        echoed = [r async for r in served.stream_stream("Echo")(items(), timeout=5)]
        assert echoed == [
            {"item": item, "replica": "replica-1", "seen": n}
            for n, item in enumerate("abc", start=1)
        ]
        assert [t.log for t in JOURNAL] == [
            ["place a", "place b", "place c", "commit", "closed"],
            ["a", "b", "c", "commit", "closed"],
        ]


async def test_a_cancelled_stream_closes_its_scope_at_once() -> None:
    async with serve() as served:
        call = served.unary_stream("Track")({"steps": 1000, "pause": 0.01}, timeout=10)
        async for reply in call:
            if reply["step"] == 2:
                break
        call.cancel()
        # Rolled back, not committed: the factory sees the cancellation as an exception.
        assert (await closed(served))[-2:] == ["rollback: RpcCancelledError", "closed"]


# A deadline the call meets on its way to the method on the loaded machine, so that it
# passes while the method runs: a shorter one can pass before the method starts, and the
# server then never opens its scope.
DEADLINE = at_most(0)


async def test_an_rpc_past_its_deadline_rolls_back() -> None:
    async with serve() as served:
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await served.unary("Place")({"item": "tea", "sleep": PATIENCE}, timeout=DEADLINE)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert await closed(served) == ["rollback: RpcCancelledError", "closed"]


async def closed(served: Served) -> list[str]:
    """The first RPC's transaction log, once its scope closed and left the tree."""
    await until(lambda: JOURNAL and "closed" in JOURNAL[0].log, "the scope to close")
    await until(lambda: served.injector.children() == [], "the scope to leave the tree")
    return JOURNAL[0].log


# A sync method blocks its thread this long: past any deadline or cancellation made
# meanwhile, which it cannot see until it returns.
BLOCKED = DEADLINE + 0.5


async def test_a_sync_method_past_its_deadline_rolls_back() -> None:
    async with serve() as served:
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await served.unary("Count")({"sleep": BLOCKED}, timeout=DEADLINE)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert await closed(served) == ["count", "rollback: RpcCancelledError", "closed"]


async def test_a_sync_method_cancelled_by_its_client_rolls_back() -> None:
    async with serve() as served:
        call = served.unary("Count")({"sleep": BLOCKED}, timeout=PATIENCE)
        await until(lambda: JOURNAL and "count" in JOURNAL[0].log, "the method to run")
        call.cancel()
        assert await closed(served) == ["count", "rollback: RpcCancelledError", "closed"]


async def test_a_cancelled_sync_stream_closes_its_scope_at_once() -> None:
    async with serve() as served:
        pause = 0.1
        call = served.unary_stream("Tally")({"steps": 1000, "pause": pause}, timeout=PATIENCE)
        async for reply in call:
            if reply["step"] == 2:
                break
        call.cancel()
        log = await closed(served)
        assert log[-2:] == ["rollback: RpcCancelledError", "closed"]
        # Stopped producing once cancelled: steps made meanwhile, not 1000.
        assert len(log) < 3 + 2 * at_most(3 * pause) / pause


async def test_a_sync_stream_past_its_deadline_rolls_back() -> None:
    async with serve() as served:
        call = served.unary_stream("Tally")({"steps": 1000, "pause": 0.05}, timeout=DEADLINE)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            _ = [reply async for reply in call]
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert (await closed(served))[-2:] == ["rollback: RpcCancelledError", "closed"]


async def test_a_sync_stream_commits_after_its_last_message() -> None:
    async with serve() as served:
        replies = [r async for r in served.unary_stream("Tally")({"steps": 2}, timeout=5)]
        assert replies == [{"step": 0}, {"step": 1}]
        assert await closed(served) == ["step 0", "step 1", "commit", "closed"]


async def test_100_concurrent_rpcs_do_not_cross_talk() -> None:
    async with serve() as served:
        place = served.unary("Place")

        async def one(i: int) -> dict[str, Any]:
            request = {"item": f"item-{i}", "sleep": (i % 7) / 500}
            return await place(request, metadata=(("caller", f"caller-{i}"),), timeout=10)  # type: ignore[no-any-return]

        replies = await asyncio.gather(*(one(i) for i in range(100)))
        for i, reply in enumerate(replies):
            assert reply["item"] == f"item-{i}" and reply["caller"] == f"caller-{i}"
            assert reply["shared"] and reply["context"]
        assert len({reply["scope"] for reply in replies}) == 100
        assert len(JOURNAL) == 100
        for transaction in JOURNAL:
            number = transaction.caller.name.removeprefix("caller-")
            assert transaction.log == [f"place item-{number}", "commit", "closed"]
        assert served.injector.children() == []


async def test_health_check_follows_a_check_that_starts_failing() -> None:
    async with serve() as served:
        monitor = served.lifecycle.monitor
        await monitor.wait_ready()
        database = served.injector.invoke(Database)
        assert await served.check() == health_pb2.HealthCheckResponse.SERVING
        database.fail("password=hunter2 refused")
        await monitor.check()
        assert await served.check() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await served.check("readiness") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await served.check("liveness") == health_pb2.HealthCheckResponse.SERVING
        database.recover()
        await monitor.check()
        assert await served.check() == health_pb2.HealthCheckResponse.SERVING


async def test_error_texts_are_withheld_from_clients_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serve() as served:
        with caplog.at_level(logging.ERROR, "di.integrations.grpc"):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await served.unary("Place")({"item": "tea", "fail": True}, timeout=5)
            assert failed.value.code() is grpc.StatusCode.UNKNOWN
            assert failed.value.details() == WITHHELD
            assert "hunter2" in caplog.text and "/test.Orders/Place" in caplog.text

            stream = served.unary_stream("Track")({"steps": 1, "fail": True}, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                _ = [reply async for reply in stream]
            assert failed.value.details() == WITHHELD
            assert "abc123" in caplog.text

            # What a handler says with context.abort() is meant for the client.
            with pytest.raises(grpc.aio.AioRpcError) as aborted:
                await served.unary("Place")({"item": "tea", "abort": True}, timeout=5)
            assert aborted.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert aborted.value.details() == "no such item"

        # A failing health check's text is withheld too: Check answers a status only.
        served.injector.invoke(Database).fail("password=hunter2 refused")
        await served.lifecycle.monitor.check()
        response = await served.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert "hunter2" not in str(response)


async def test_the_rpc_exception_reaches_generator_factories() -> None:
    async with serve() as served:
        with pytest.raises(grpc.aio.AioRpcError):
            await served.unary("Place")({"item": "tea", "fail": True}, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await served.unary("Place")({"item": "tea", "abort": True}, timeout=5)
        stream = served.unary_stream("Track")({"steps": 2, "fail": True}, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            _ = [reply async for reply in stream]
        await served.unary("Place")({"item": "jam"}, timeout=5)
        assert [t.log for t in JOURNAL] == [
            ["rollback: ValueError", "closed"],
            ["rollback: AbortError", "closed"],
            ["step 0", "step 1", "rollback: RuntimeError", "closed"],
            ["place jam", "commit", "closed"],
        ]


async def test_stopping_goes_not_serving_then_stops_the_server_then_runs_shutdown_hooks() -> None:
    async with serve() as served:
        database = served.injector.invoke(Database)
        lifecycle = served.lifecycle
        await lifecycle.monitor.wait_ready()
        assert await served.check() == health_pb2.HealthCheckResponse.SERVING
        drain = at_most(0)  # longer than the health check made while it drains
        slow = asyncio.ensure_future(
            served.unary("Place")({"item": "tea", "sleep": drain + 0.5}, timeout=PATIENCE)
        )
        await until(lambda: JOURNAL, "the call to be in flight")
        stopping = asyncio.ensure_future(lifecycle.stop(grace=5, drain=drain))
        await until(lambda: lifecycle.monitor.status("") is ServingStatus.NOT_SERVING, "the drain")
        # While draining, health reads NOT_SERVING and the server still answers.
        assert await served.check() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not database.closed
        assert (await slow)["item"] == "tea"  # finished within the grace
        await stopping
        assert database.closed
        assert not lifecycle.monitor.running
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await served.unary("Place")({"item": "jam"}, timeout=1)
        assert refused.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        assert JOURNAL[0].log == ["place tea", "commit", "closed"]
    # Leaving the block stops again: a second stop waits for the first, and is a no-op.
    assert database.closed


async def test_a_failed_start_raises_and_shuts_down_what_it_built() -> None:
    class Broker:
        def __init__(self, database: Database) -> None:
            raise ConnectionError("broker unreachable")

    injector = make_injector()
    injector.provide(Broker, eager=True)
    server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
    lifecycle = install(server, injector)
    port = server.add_insecure_port("127.0.0.1:0")
    with pytest.raises(ConnectionError, match="broker unreachable"):
        await lifecycle.start()
    assert not lifecycle.monitor.started
    assert injector.list_invoked() == []  # Database, built first, was shut down
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        assert refused.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )


async def test_inject_outside_an_rpc_says_what_to_do() -> None:
    with pytest.raises(DIError, match=r"interceptors=\[ScopeInterceptor\(injector\)\]"):
        await Orders().Place({"item": "tea"}, None)


def test_the_servicer_context_key_is_declared_once_and_not_shadowed() -> None:
    injector = Injector()
    ScopeInterceptor(injector)
    ScopeInterceptor(injector)  # again: already declared
    with injector.scope(context={grpc.aio.ServicerContext: "ctx"}) as scope:
        assert scope.invoke(grpc.aio.ServicerContext) == "ctx"  # type: ignore[type-abstract]

    def fake() -> grpc.aio.ServicerContext:  # type: ignore[type-arg]
        raise AssertionError("never built")

    taken = Injector()
    taken.provide(fake)
    with pytest.raises(DIError, match="gives each request scope its own"):
        ScopeInterceptor(taken)


def test_inject_hides_what_it_injects_from_the_signature() -> None:
    import inspect

    assert list(inspect.signature(Orders.Place).parameters) == ["self", "request", "context"]
    assert list(inspect.signature(Orders.Echo).parameters) == ["self", "requests", "context"]
    assert inspect.isasyncgenfunction(Orders.Track)
    assert inspect.iscoroutinefunction(Orders.Place)


def lifecycle_of(injector: Injector, **options: Any) -> Lifecycle:
    server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
    server.add_insecure_port("127.0.0.1:0")
    return install(server, injector, grace=0.5, **options)


async def test_a_stop_before_start_leaves_the_later_stop_its_work() -> None:
    injector = make_injector()
    lifecycle = lifecycle_of(injector)
    await lifecycle.stop()  # nothing started: nothing to stop
    await lifecycle.start()
    database = injector.invoke(Database)
    assert lifecycle.monitor.running
    await lifecycle.stop()
    assert database.closed and not lifecycle.monitor.running
    with pytest.raises(RuntimeError, match="once"):
        await lifecycle.start()


class Slow:
    """An eager service whose async factory takes a while."""

    events: ClassVar[list[str]] = []

    def shutdown(self) -> None:
        Slow.events.append("shut down")


async def slow() -> Slow:
    Slow.events.append("building")
    await asyncio.sleep(0.3)
    Slow.events.append("built")
    return Slow()


async def test_a_stop_during_a_slow_start_waits_for_the_start() -> None:
    events = Slow.events
    events.clear()

    injector = Injector()
    injector.provide(slow, eager=True)
    lifecycle = lifecycle_of(injector)
    starting = asyncio.create_task(lifecycle.start())
    await until(lambda: events, "the start to build")
    await lifecycle.stop()
    assert events == ["building", "built", "shut down"]  # the build finished, then the hooks
    await starting


async def test_metrics_register_the_monitors_collector() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from di.metrics import render

    registry = CollectorRegistry()
    injector = make_injector()
    async with lifecycle_of(injector, metrics=registry) as lifecycle:
        await lifecycle.monitor.wait_ready()
        text = render(registry)[0].decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"healthdi_health_status", "healthdi_health_check"} <= names


async def test_sync_methods_run_in_the_loops_default_executor_without_one_given() -> None:
    JOURNAL.clear()
    injector = make_injector()
    server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
    server.add_generic_rpc_handlers([handlers(Orders())])
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    lifecycle = install(server, injector, monitor=monitor, grace=1)
    port = server.add_insecure_port("127.0.0.1:0")
    async with lifecycle, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        served = Served(lifecycle, channel, injector)
        reply = await served.unary("Count")({}, metadata=(("caller", "di"),), timeout=5)
        assert reply == {"caller": "di", "shared": True}
        steps = [r async for r in served.unary_stream("Tally")({"steps": 2}, timeout=5)]
        assert steps == [{"step": 0}, {"step": 1}]
    assert [t.log for t in JOURNAL] == [
        ["count", "commit", "closed"],
        ["step 0", "step 1", "commit", "closed"],
    ]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_interceptor_wraps_each_methods_handler_once() -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handlers = {
        "/shop.Orders/Place": grpc.unary_unary_rpc_method_handler(echo),
        "/shop.Orders/Cancel": grpc.unary_unary_rpc_method_handler(echo),
    }

    async def continuation(details: Any) -> Any:
        return handlers.get(details.method)

    class Details:
        def __init__(self, method: str) -> None:
            self.method = method

    interceptor = ScopeInterceptor(Injector())
    place = [
        await interceptor.intercept_service(continuation, Details("/shop.Orders/Place"))  # type: ignore[arg-type]
        for _ in range(3)
    ]
    cancel = await interceptor.intercept_service(continuation, Details("/shop.Orders/Cancel"))  # type: ignore[arg-type]
    assert place[0] is place[1] is place[2] is not handlers["/shop.Orders/Place"]
    assert cancel is not place[0]
    handlers["/shop.Orders/Place"] = grpc.unary_unary_rpc_method_handler(echo)  # replaced
    again = await interceptor.intercept_service(continuation, Details("/shop.Orders/Place"))  # type: ignore[arg-type]
    assert again is not place[0]
    assert await interceptor.intercept_service(continuation, Details("/none")) is None  # type: ignore[arg-type]
