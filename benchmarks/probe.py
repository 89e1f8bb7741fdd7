"""How long `di probe` takes from start to exit, beside minimal scripts doing the same.

Docker runs the probe every few seconds in every container. Goals: over HTTP, at most
1.3x a minimal ``http.client`` script; over gRPC (the probe speaks HTTP/2 itself, without
importing grpcio), at most 1.5x ``python -I -c pass``. The minimal grpcio Check script
is measured beside it, to show what importing grpcio costs.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _best(command: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True)
        best = min(best, time.perf_counter() - started)
        assert done.returncode == 0, done
    return best * 1000


MINIMAL_HTTP = """
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", {port}, timeout=1)
connection.request("GET", "/livez")
sys.exit(0 if connection.getresponse().status < 400 else 1)
"""

MINIMAL_GRPC = """
import grpc, sys
from grpc_health.v1 import health_pb2, health_pb2_grpc
channel = grpc.insecure_channel("127.0.0.1:{port}")
answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
channel.close()
sys.exit(0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1)
"""


def _grpc_server() -> tuple[Any, int]:
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@contextmanager
def local_servers() -> Iterator[tuple[int, int]]:
    """An HTTP server answering 200 and a stock gRPC health server, in this process:
    their ports, for as long as the block runs."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    grpc_server, grpc_port = _grpc_server()
    try:
        yield server.server_address[1], grpc_port
    finally:
        server.shutdown()
        grpc_server.stop(None)


def probe_urls(http_port: int, grpc_port: int) -> dict[str, str]:
    """What `di probe` is pointed at, per scheme."""
    return {"http": f"http://127.0.0.1:{http_port}/livez", "grpc": f"grpc://127.0.0.1:{grpc_port}"}


def measure(runs: int = 15) -> dict[str, float]:
    python = sys.executable
    with local_servers() as (http_port, grpc_port):
        urls = probe_urls(http_port, grpc_port)
        return {
            "python -c pass (the floor)": _best([python, "-c", "pass"], runs),
            "python -I -c pass": _best([python, "-I", "-c", "pass"], runs),
            "minimal http.client script": _best(
                [python, "-c", MINIMAL_HTTP.format(port=http_port)], runs
            ),
            "python -m di probe http://...": _best(
                [python, "-m", "di", "probe", urls["http"]], runs
            ),
            "minimal grpcio Check script": _best(
                [python, "-c", MINIMAL_GRPC.format(port=grpc_port)], runs
            ),
            "python -m di probe grpc://...": _best(
                [python, "-m", "di", "probe", urls["grpc"]], runs
            ),
        }
