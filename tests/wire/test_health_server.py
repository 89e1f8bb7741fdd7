"""HealthServer: the sidecar's monitor and listeners inside a program with no port.

Real sockets and real clients: HTTP through httpx, gRPC through ``di probe``'s client
(grpcio's). The sync form runs on a thread of its own; the async form on the test's
asyncio loop (under trio it refuses, by name: grpcio's server and the listener run on
asyncio only).
"""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import httpx
import pytest

from di import HealthServer, Injector
from di.errors import AsyncRequiredError

from ..processes import probe
from ..services import Database, key
from ..timing import PATIENCE, at_most, wait_until

pytestmark = pytest.mark.anyio

# The monitor's interval, and so its round timeout: a healthy sync check must finish
# within it on a loaded machine.
INTERVAL = at_most(0)


class Unreachable:
    """An eager service whose start fails."""

    def __init__(self) -> None:
        raise ConnectionError("db.internal:5432 refused the connection")


def make() -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    return injector


def status(url: str) -> int:
    return httpx.get(url, timeout=PATIENCE).status_code


def test_the_sync_form_serves_http_and_grpc_follows_checks_and_shuts_down() -> None:
    injector = make()
    server = HealthServer(
        injector, http="127.0.0.1:0", grpc="127.0.0.1:0", interval=INTERVAL, show_details=True
    )
    with server:
        database = injector.invoke(Database)  # built by the start: eager
        assert server.http_address is not None and server.grpc_address is not None
        base = f"http://127.0.0.1:{server.http_address[1]}"
        grpc_url = f"grpc://127.0.0.1:{server.grpc_address[1]}"
        assert httpx.get(f"{base}/livez", timeout=PATIENCE).text == "ok"
        wait_until(lambda: status(f"{base}/readyz") == 200, "readiness")
        assert probe(grpc_url, "--service", "readiness").returncode == 0
        database.fail("db down")
        wait_until(lambda: status(f"{base}/readyz") == 503, "readiness to follow the check")
        assert "db down" in httpx.get(f"{base}/readyz?verbose", timeout=PATIENCE).text
        assert probe(grpc_url, "--service", "readiness").returncode == 1
        database.recover()
        wait_until(lambda: status(f"{base}/readyz") == 200, "readiness to recover")
    assert database.closed  # the injector shut down with the server
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/livez", timeout=at_most(0))


async def test_the_async_form_runs_on_the_running_loop(anyio_backend: str) -> None:
    injector = make()
    server = HealthServer(injector, http="127.0.0.1:0", interval=INTERVAL)
    if anyio_backend == "trio":
        with pytest.raises(RuntimeError, match="HealthServer runs on asyncio"):
            await server.__aenter__()
        return
    async with server, httpx.AsyncClient(timeout=PATIENCE) as client:
        assert server.http_address is not None
        base = f"http://127.0.0.1:{server.http_address[1]}"
        await server.monitor.wait_ready()
        answer = await client.get(f"{base}/readyz?verbose")
        assert answer.status_code == 200 and f"[+]{key(Database)} ok" in answer.text
        database = await injector.ainvoke(Database)
    assert database.closed


async def test_start_inside_a_running_loop_is_refused_by_name() -> None:
    server = HealthServer(Injector(), http="127.0.0.1:0")
    with pytest.raises(AsyncRequiredError, match="async with HealthServer"):
        server.start()


def test_a_failed_start_raises_and_leaves_no_listener() -> None:
    injector = Injector()
    injector.provide(Unreachable, eager=True)
    server = HealthServer(injector, http="127.0.0.1:0")
    with pytest.raises(ConnectionError, match="refused the connection"):
        server.start()
    assert server.http_address is not None
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", server.http_address[1]))


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError), HealthServer(Injector(), http=f"127.0.0.1:{port}"):
            pass


@pytest.mark.parametrize(
    ("arguments", "error", "says"),
    [
        ({}, ValueError, "serves nothing: give http='HOST:PORT'"),
        ({"http": "8081"}, ValueError, "expected HOST:PORT"),
        ({"http": "127.0.0.1:0", "drain": -1}, ValueError, "drain=...) must be a finite"),
        ({"grpc": "127.0.0.1:0", "metrics": True}, ValueError, "give http= too"),
        ({"http": "127.0.0.1:0", "tls_cert": "cert.pem"}, ValueError, "go together"),
        ({"http": "127.0.0.1:0", "limit_concurrency": 0}, ValueError, "must be >= 1"),
    ],
)
def test_bad_arguments_are_named_when_it_is_made(
    arguments: dict[str, object], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)")):
        HealthServer(Injector(), **arguments)  # type: ignore[arg-type]


def test_started_once() -> None:
    server = HealthServer(Injector(), http="127.0.0.1:0")
    with server:
        pass
    with pytest.raises(RuntimeError, match="started once already"):
        server.start()


async def test_a_consumer_s_error_passes_through_as_raised(anyio_backend: str) -> None:
    """What a consumer does: its own work on its loop (under trio, the server on a
    thread of its own, as the error there says), health beside it; its error leaves
    the block as it was raised, and the injector shuts down all the same."""
    injector = make()
    server = HealthServer(injector, http="127.0.0.1:0", interval=INTERVAL)

    async def consume() -> None:
        assert server.http_address is not None
        url = f"http://127.0.0.1:{server.http_address[1]}/readyz"
        async with httpx.AsyncClient(timeout=PATIENCE) as client:
            await server.monitor.wait_ready()
            assert (await client.get(url)).status_code == 200
        raise LookupError("the consumer's own error")

    with pytest.raises(LookupError, match="the consumer's own error"):
        if anyio_backend == "trio":
            await anyio.to_thread.run_sync(server.start)
            try:
                await consume()
            finally:
                await anyio.to_thread.run_sync(server.stop)
        else:
            async with server:
                await consume()
    assert injector.list_invoked() == []  # shut down: nothing built is left


def test_tls_as_di_serve_takes_it_on_both_ports(tmp_path: Path) -> None:
    """HTTPS and gRPC over TLS, probed as Kubernetes' exec probes would, with the CA."""
    from ..checks.running import Certificates

    files = Certificates(tmp_path)
    cert, key = map(str, files.issue("server"))
    ca = str(files.ca_file)
    server = HealthServer(
        Injector(), http="127.0.0.1:0", grpc="127.0.0.1:0", tls_cert=cert, tls_key=key
    )
    with server:
        assert server.http_address is not None and server.grpc_address is not None
        https = f"https://127.0.0.1:{server.http_address[1]}/livez"
        grpcs = f"grpc://127.0.0.1:{server.grpc_address[1]}"
        assert probe(https, "--tls-ca-cert", ca).returncode == 0
        assert probe(grpcs, "--tls", "--tls-ca-cert", ca).returncode == 0
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(https.replace("https", "http"), timeout=at_most(0))


def test_tls_files_that_do_not_load_are_named_when_it_is_made(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(
        ValueError, match=r"HealthServer\(\): cannot load tls_cert= .* with tls_key="
    ):
        HealthServer(Injector(), http="127.0.0.1:0", tls_cert=missing, tls_key=missing)
