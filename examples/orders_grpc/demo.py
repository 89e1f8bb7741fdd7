"""``make demo``: the gRPC orders service, called by a real client, then stopped.

Starts the server on a free loopback port, places orders (one RPC commits, one is
refused and one fails, both rolled back), streams them back, reads gRPC health, and
stops: NOT_SERVING, the server stopped, then the shutdown hooks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .app import SERVICE, build, create_server


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


async def call(channel: grpc.aio.Channel) -> None:
    place = channel.unary_unary(
        f"/{SERVICE}/Place", request_serializer=_json, response_deserializer=json.loads
    )
    listing = channel.unary_stream(
        f"/{SERVICE}/List", request_serializer=_json, response_deserializer=json.loads
    )
    health = health_pb2_grpc.HealthStub(channel)
    for user, items in (("ana", ["tea", "jam"]), ("bo", ["bread", ""]), ("cy", ["gremlin"])):
        print(f"Place {items} as {user}:")
        if "gremlin" in items:
            print(
                "  (this handler fails on purpose, with a secret in its error's text:\n"
                "   the server's log keeps the text, the client is told nothing of it)"
            )
        try:
            reply = await place({"items": items}, metadata=(("x-user", user),), timeout=5)
            print(f"  -> {reply}")
        except grpc.aio.AioRpcError as error:
            print(f"  -> {error.code().name}: {error.details()}")
        # context.abort() answers before the RPC's scope closes: let the server print.
        await asyncio.sleep(0.05)
    print("List:")
    async for order in listing({}, timeout=5):
        print(f"  {order}")
    status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    print(f"Health Check(''): {health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)}")


class Brief(logging.Formatter):
    """A log record's exception as its one last line: the demo's log, read in a tour.

    A server logs the whole traceback (the default formatter); here the reader sees
    what the log holds and the client does not, without a page of stack.
    """

    def formatException(self, ei: Any) -> str:
        return f"  [server log]   {ei[0].__name__}: {ei[1]} (traceback omitted here)"


async def main() -> None:
    # The server's log, where the text of a failed RPC goes (its client never sees it).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(Brief("  [server log] %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    with tempfile.TemporaryDirectory() as folder:
        lifecycle, port = create_server(build(Path(folder)), "127.0.0.1:0")
        print(f"gRPC: the orders service on 127.0.0.1:{port}, a scope per RPC")
        async with lifecycle:
            await lifecycle.monitor.wait_ready()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await call(channel)
            print("Stopping: NOT_SERVING, then the server, then the shutdown hooks")
        print("stopped")


if __name__ == "__main__":
    asyncio.run(main())
