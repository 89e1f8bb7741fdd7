"""Servers the serving benchmarks start as child processes, and the targets they serve.

``python -m benchmarks.servers constant PORT``: a constant-200 ASGI app under plain
uvicorn, on httptools (the parser of ``di serve``'s own HTTP listener).
``python -m benchmarks.servers watch {healthdi|stock} PORT``: a gRPC health server that
flips the name ``svc`` between SERVING and NOT_SERVING on each line read from stdin.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from di import Injector


class Database:
    def health_check(self) -> None:
        pass


def app() -> Injector:
    """What ``di serve`` serves in the benchmarks: one healthy service."""
    injector = Injector()
    injector.provide(Database, eager=True)
    return injector


_BODY = b"ok"
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
}
_END = {"type": "http.response.body", "body": _BODY}


async def constant(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[Any], Awaitable[None]],
) -> None:
    """The least an ASGI app can do: 200 "ok"."""
    if scope["type"] == "http":
        await send(_START)
        await send(_END)


async def watch_server(kind: str, port: int) -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    flip: Callable[[bool], Awaitable[None]]
    if kind == "stock":
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)

        async def flip(up: bool) -> None:
            status = health_pb2.HealthCheckResponse
            await servicer.set("svc", status.SERVING if up else status.NOT_SERVING)

    else:
        import di.grpc
        from di import HealthMonitor, ServingStatus

        monitor = HealthMonitor(app())
        di.grpc.add_health_servicer(server, monitor)

        async def flip(up: bool) -> None:
            monitor.set_status("svc", ServingStatus.SERVING if up else ServingStatus.NOT_SERVING)

    await flip(True)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    up = True
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "flip":
            up = not up
            await flip(up)
    await server.stop(0)


def main() -> None:
    if sys.argv[1] == "constant":
        import uvicorn

        uvicorn.run(
            "benchmarks.servers:constant",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    else:
        asyncio.run(watch_server(sys.argv[2], int(sys.argv[3])))


if __name__ == "__main__":
    main()
