"""Load generators, run as child processes so that each has a core to itself.

``python -m benchmarks.load http PORT PATH CONNECTIONS SECONDS``: keep-alive clients on
raw asyncio streams, each sending its next request when the last answer is read.
A server that answers ``Connection: close`` (gunicorn's sync worker) is connected to
again for the next request. ``python -m benchmarks.load grpc PORT CLIENTS SECONDS``:
grpcio asyncio clients, each on its own channel, calling Check("") back to back;
``grpc-call PORT METHOD CLIENTS SECONDS`` calls unary ``METHOD`` (a full path) with a
``HealthCheckRequest`` instead.

Each prints one JSON line: requests per second and the median latency in ms, counted
after the warm-up, and every request answered, the warm-up's too (what the server
served, for a figure of its CPU time per request).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

WARM_UP = 0.5  # seconds not counted, while connections open and caches fill


Timings = list[tuple[float, float]]  # (sent at, latency) of each request answered


async def _http_client(port: int, path: str, end: float, out: Timings) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    try:
        while (now := time.perf_counter()) < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            close = False
            for line in head.split(b"\r\n"):
                lowered = line.lower()
                if lowered[:15] == b"content-length:":
                    length = int(line[15:])
                elif lowered.replace(b" ", b"") == b"connection:close":
                    close = True
            if length:
                await reader.readexactly(length)
            out.append((now, time.perf_counter() - now))
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def _grpc_client(port: int, end: float, out: Timings) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        while (now := time.perf_counter()) < end:
            await stub.Check(request, timeout=5)
            out.append((now, time.perf_counter() - now))


async def _grpc_caller(port: int, method: str, end: float, out: Timings) -> None:
    import grpc
    from grpc_health.v1 import health_pb2

    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        request = health_pb2.HealthCheckRequest(service="")
        while (now := time.perf_counter()) < end:
            await call(request, timeout=5)
            out.append((now, time.perf_counter() - now))


async def run(kind: str, args: list[str]) -> dict[str, float]:
    seconds = float(args[-1])
    clients = int(args[-2])
    start = time.perf_counter() + WARM_UP
    end = start + seconds
    answered: Timings = []
    if kind == "http":
        port, path = int(args[0]), args[1]
        calls = [_http_client(port, path, end, answered) for _ in range(clients)]
    elif kind == "grpc-call":
        port, method = int(args[0]), args[1]
        calls = [_grpc_caller(port, method, end, answered) for _ in range(clients)]
    else:
        calls = [_grpc_client(int(args[0]), end, answered) for _ in range(clients)]
    await asyncio.gather(*calls)
    latencies = [latency for sent, latency in answered if sent >= start]
    return {
        "requests": len(answered),
        "rps": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2:]))))
