"""A grpcio client with client-side health checking routes by the server's service name.

The client's service config names ``shop.Orders`` in ``healthCheckConfig`` with the
``round_robin`` policy: grpcio's core then watches ``grpc.health.v1.Health`` on each
backend for that name and sends calls only to the backends that answer SERVING. Two
real grpcio servers answer health with ``install(..., services=["shop.Orders"])``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import grpc

from di import HealthMonitor, Injector
from di.integrations.grpc import Lifecycle, install

from ..processes import wait_for
from ..servers import LoopThread
from ..timing import PATIENCE

SERVICE = "shop.Orders"


class Orders:
    """The backend's health: down while told so."""

    def __init__(self) -> None:
        self.down = False

    def health_check(self) -> None:
        if self.down:
            raise ConnectionError("orders store unreachable")


class Backend:
    """A grpcio server serving ``shop.Orders/Who`` (its name) and health, its monitor
    checking every 50 ms."""

    def __init__(self, loop: LoopThread, name: str) -> None:
        self.loop = loop
        self.name = name
        self.injector = Injector()
        self.injector.provide(Orders, eager=True)
        self.port = 0
        self.lifecycle: Lifecycle | None = None

    @property
    def orders(self) -> Orders:
        return self.injector.invoke(Orders)

    async def start(self) -> None:
        server = grpc.aio.server()
        name = self.name.encode()

        async def who(request: bytes, context: object) -> bytes:
            return name

        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Who": grpc.unary_unary_rpc_method_handler(who)}
        )
        server.add_generic_rpc_handlers((handler,))
        monitor = HealthMonitor(self.injector, interval=0.05)
        self.lifecycle = install(
            server, self.injector, monitor=monitor, services=[SERVICE], grace=0
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        await self.lifecycle.start()  # type: ignore[attr-defined]
        async with asyncio.timeout(PATIENCE):
            await monitor.wait_ready()

    async def stop(self) -> None:
        assert self.lifecycle is not None
        await self.lifecycle.stop()


@contextmanager
def backends() -> Iterator[tuple[Backend, Backend]]:
    loop = LoopThread()
    a, b = Backend(loop, "a"), Backend(loop, "b")
    with ExitStack() as stack:
        stack.callback(loop.close)
        for backend in (a, b):
            loop.run(backend.start())
            stack.callback(loop.run, backend.stop())
        yield a, b


def channel(a: Backend, b: Backend) -> grpc.Channel:
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": SERVICE},
    }
    return grpc.insecure_channel(
        f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}",
        options=[("grpc.service_config", json.dumps(config))],
    )


def answered(stub: grpc.UnaryUnaryMultiCallable, calls: int = 20) -> set[str]:
    return {stub(b"", timeout=5, wait_for_ready=True).decode() for _ in range(calls)}


def test_calls_go_to_the_serving_backend_and_follow_it() -> None:
    with backends() as (a, b):
        a.orders.down = True
        with channel(a, b) as client:
            who = client.unary_unary(f"/{SERVICE}/Who")
            wait_for(lambda: answered(who) == {"b"}, "calls to go to b only")
            a.orders.down = False
            b.orders.down = True
            wait_for(lambda: answered(who) == {"a"}, "calls to follow to a")
            b.orders.down = False
            wait_for(lambda: answered(who) == {"a", "b"}, "calls to reach both")


def test_without_health_checking_both_backends_take_calls() -> None:
    with backends() as (a, b):
        a.orders.down = True
        config = {"loadBalancingConfig": [{"round_robin": {}}]}
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        options = [("grpc.service_config", json.dumps(config))]
        with grpc.insecure_channel(target, options=options) as client:
            who = client.unary_unary(f"/{SERVICE}/Who")
            wait_for(lambda: answered(who) == {"a", "b"}, "calls to reach both")
