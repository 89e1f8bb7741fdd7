"""``di serve``: the monitor, HTTP under uvicorn and gRPC under grpcio, until a signal.

Needs the ``http`` and ``grpc`` extras for the servers it runs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from .monitor import HealthMonitor
from .scope import Scope

if TYPE_CHECKING:
    import grpc

logger = logging.getLogger("di.serve")


def configure_logging() -> None:
    """Timestamped INFO logs on stderr: status changes, servers, signals."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def serve(
    injector: Scope,
    http: tuple[str, int] | None,
    grpc_address: tuple[str, int] | None,
    interval: float,
    show_details: bool,
) -> None:
    """Serve until SIGINT or SIGTERM, then go NOT_SERVING and stop both servers.

    The caller shuts the container down afterwards. Raises OSError when an address
    cannot be bound.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    monitor = HealthMonitor(injector, interval=interval)
    # Bind both addresses before anything runs: a taken port is one clear error.
    listener = _listen(http) if http else None
    try:
        grpc_server = await _start_grpc(monitor, grpc_address) if grpc_address else None
    except OSError:
        if listener is not None:
            listener.close()
        raise
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(monitor.run)
        http_server = (
            await _start_http(tasks, monitor, listener, show_details) if listener else None
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for received in signals:
                logger.info("received %s: going NOT_SERVING", signal.Signals(received).name)
                break
        await monitor.enter_graceful_shutdown()
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        if http_server is not None:
            http_server.should_exit = True
            await http_server.done.wait()
        tasks.cancel_scope.cancel()
    logger.info("servers stopped; shutting the container down")


async def _start_http(
    tasks: anyio.abc.TaskGroup,
    monitor: HealthMonitor,
    listener: socket.socket,
    show_details: bool,
) -> _Uvicorn:
    import uvicorn

    from .asgi import health_app

    config = uvicorn.Config(
        health_app(monitor, show_details=show_details), log_level="warning", lifespan="on"
    )
    server = _Uvicorn(config)
    tasks.start_soon(server.run_on, listener)
    while not server.started and not server.done.is_set():  # noqa: ASYNC110 - uvicorn has a flag, no event
        await anyio.sleep(0.01)
    host, port = listener.getsockname()[:2]
    logger.info("HTTP health on http://%s:%s (/health, /livez, /readyz)", _show(host), port)
    return server


class _Uvicorn:
    """uvicorn's server, minus its own signal handling: this command owns the signals."""

    def __init__(self, config: object) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self._server = Server(config)  # type: ignore[arg-type]
        self.done = anyio.Event()

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    @property
    def should_exit(self) -> bool:
        return bool(self._server.should_exit)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._server.should_exit = value

    async def run_on(self, listener: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[listener])
        finally:
            self.done.set()


async def _start_grpc(monitor: HealthMonitor, address: tuple[str, int]) -> grpc.aio.Server:
    import grpc

    from .grpc import add_health_servicer

    server = grpc.aio.server()
    add_health_servicer(server, monitor)
    host, port = address
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(target)
    except RuntimeError:
        bound = 0
    if not bound:
        raise OSError(f"cannot listen for gRPC on {target}: address in use or not available")
    await server.start()
    logger.info("gRPC health on %s:%s (grpc.health.v1.Health)", _show(host), bound)
    return server


def _listen(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {error.strerror}") from None
    listener.listen(128)
    listener.set_inheritable(True)
    return listener


def _show(host: str) -> str:
    return f"[{host}]" if ":" in host else host
