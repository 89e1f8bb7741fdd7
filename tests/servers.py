"""Real servers for the tests: uvicorn and grpcio's asyncio server on loopback.

grpcio's server only runs on asyncio, so both run on an asyncio loop of their own in a
thread, with the monitor; the tests talk to them over real sockets with real clients.
The health app is uvicorn's top app, so its lifespan runs the monitor, as it would in
production; answers read what the monitor publishes, so a test that changes a check's
outcome calls ``served.check()`` (one round, published) before reading.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
import uvicorn

import di.grpc
from di import HealthMonitor, Injector
from di.asgi import health_app

from .timing import PATIENCE

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = PATIENCE) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(PATIENCE)


class Served:
    """A monitor served over HTTP and gRPC."""

    def __init__(self, loop: LoopThread, monitor: HealthMonitor) -> None:
        self.loop = loop
        self.monitor = monitor
        self.http_port = 0
        self.grpc_port = 0
        self._uvicorn: uvicorn.Server | None = None
        self._grpc: grpc.aio.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(
        self,
        show_details: bool,
        metrics: Any = False,
        status_codes: Any = None,
        grpc_services: Any = None,
    ) -> None:
        config = uvicorn.Config(
            health_app(
                self.monitor, show_details=show_details, metrics=metrics, status_codes=status_codes
            ),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
        )
        self._uvicorn = uvicorn.Server(config)
        self._serving = asyncio.get_running_loop().create_task(self._uvicorn.serve())
        async with asyncio.timeout(PATIENCE):
            while not (self._uvicorn.started and self.monitor.ready):
                await asyncio.sleep(0.01)
        self.http_port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        self._grpc = grpc.aio.server()
        di.grpc.add_health_servicer(self._grpc, self.monitor, services=grpc_services)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        await self._grpc.start()

    def check(self) -> None:
        """One round of checks, published: what the monitor's next round would show.

        A round the monitor runs on its own meanwhile may have started before the change
        the test just made, and this one would share its result: a test calling it
        serves a monitor whose interval is long.
        """

        async def check() -> None:
            await self.monitor.check()

        self.loop.run(check())

    async def stop(self) -> None:
        assert self._uvicorn is not None and self._grpc is not None
        assert self._serving is not None
        await self._grpc.stop(None)
        self._uvicorn.should_exit = True
        await asyncio.wait_for(self._serving, PATIENCE)  # the lifespan stops the monitor


@contextmanager
def serve(
    injector: Injector,
    show_details: bool = False,
    metrics: Any = False,
    status_codes: Any = None,
    grpc_services: Any = None,
    **monitor_options: Any,
) -> Iterator[Served]:
    loop = LoopThread()

    async def make() -> Served:
        served = Served(loop, HealthMonitor(injector, **monitor_options))
        await served.start(show_details, metrics, status_codes, grpc_services)
        return served

    served = loop.run(make())
    try:
        yield served
    finally:
        loop.run(served.stop())
        loop.close()
