"""How long `di probe` takes from start to exit, beside Python itself and minimal scripts.

Docker runs the probe every few seconds in every container. Goals, against
``python -I -c pass`` (the interpreter starting and stopping): over HTTP at most 1.3x,
over gRPC (the probe speaks HTTP/2 itself, without importing grpcio) at most 1.5x. A
minimal ``http.client`` script and a minimal grpcio Check script are measured beside it,
the second to show what importing grpcio costs.

What is measured is what users run: the ``di`` console script the installer wrote into
this environment's ``bin`` (beside ``sys.executable``; ``python -m di`` if there is
none, and the row says so), with di's bytecode compiled first, as installing a wheel
compiles it (an editable install, or PYTHONDONTWRITEBYTECODE, would otherwise have every
run compile di's modules from source). The commands run in turn, one run of each per
round, so that a machine whose speed drifts slows them all alike; each row gives the
best and the median run, of wall-clock time (what Docker waits for, the server's answer
included) and of the process's CPU time (its own work only: what a busy machine's other
processes do not change).
"""

from __future__ import annotations

import compileall
import http.server
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import di


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _once(command: list[str]) -> tuple[float, float]:
    """Milliseconds from starting ``command`` to its exit (it must exit 0), and of CPU
    time it used (user and system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed * 1000, cpu * 1000


def di_command() -> tuple[list[str], str]:
    """How users start ``di``: the console script beside this interpreter, and its name
    in the rows."""
    script = Path(sys.executable).parent / "di"
    if script.exists():
        return [str(script)], "di"
    return [sys.executable, "-m", "di"], "python -m di"


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


def measure(runs: int = 21) -> dict[str, dict[str, float]]:
    """Each command's best and median milliseconds over ``runs`` rounds, start to exit
    (``wall``, ``wall median``) and of CPU time (``cpu``, ``cpu median``)."""
    python = sys.executable
    command, named = di_command()
    compileall.compile_dir(Path(di.__file__).parent, quiet=1)
    with local_servers() as (http_port, grpc_port):
        urls = probe_urls(http_port, grpc_port)
        commands = {
            "python -I -c pass": [python, "-I", "-c", "pass"],
            "minimal http.client script": [python, "-c", MINIMAL_HTTP.format(port=http_port)],
            f"{named} probe http://...": [*command, "probe", urls["http"]],
            "minimal grpcio Check script": [python, "-c", MINIMAL_GRPC.format(port=grpc_port)],
            f"{named} probe grpc://...": [*command, "probe", urls["grpc"]],
        }
        for argv in commands.values():  # a first run of each, not counted: files cached
            _once(argv)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_once(argv))
    figures = {}
    for name, runs_of in times.items():
        walls, cpus = [wall for wall, _ in runs_of], [cpu for _, cpu in runs_of]
        figures[name] = {
            "wall": min(walls),
            "wall median": statistics.median(walls),
            "cpu": min(cpus),
            "cpu median": statistics.median(cpus),
        }
    return figures
