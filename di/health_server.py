"""``HealthServer``: the sidecar's monitor and listeners inside any process.

A worker, a consumer or a script has no HTTP port of its own, and Kubernetes must
probe it all the same. ``HealthServer(injector, http="0.0.0.0:8081")`` is what ``di
serve`` runs beside an application, run inside it instead:

>>> with HealthServer(injector, http="0.0.0.0:8081", grpc="0.0.0.0:50051"):
...     run_the_worker()  # /livez, /readyz, /health and grpc.health.v1 meanwhile

The path of a run, the same in its sync and async forms:

1. Both addresses are bound (a taken port is one clear ``OSError``) and both servers
   answer at once: liveness SERVING, readiness NOT_SERVING until the start and a first
   round. HTTP is :func:`di.asgi.health_app` under :mod:`di._serving.http_server`, gRPC
   the health service on grpcio's server (:func:`di._serving.listeners.start_grpc`),
   both over TLS with ``tls_cert``/``tls_key`` as ``di serve --tls-*`` takes them.
2. The integrations' one start/stop sequence (:class:`di._serving.lifecycle.Running`)
   starts the injector (``astart()``: its eager services) and the monitor's rounds. A
   failed start stops the servers and raises.
3. On the way out every status but liveness turns NOT_SERVING, the servers answer for
   ``drain`` seconds, then stop (requests in flight get ``grace`` seconds), the monitor
   stops after its round, and the injector shuts down; a failing hook raises there.

The sync form (``with``, or :meth:`HealthServer.start` and :meth:`HealthServer.stop`)
runs all of it on an asyncio loop in a thread of its own
(:class:`~di._container.runner.LoopThread`); the async form (``async with``) on the
running asyncio loop. grpcio's server and the HTTP listener run on asyncio only.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from ._container.runner import LoopThread, in_event_loop, running_asyncio_loop
from ._serving.lifecycle import Running, registry_for
from ._serving.listeners import TlsFiles, parse_address, server_context, show, tls_said
from .errors import AsyncRequiredError
from .monitor import HealthMonitor, Unbuilt
from .scope import Scope

if TYPE_CHECKING:
    import socket

    from grpc.aio import Server as GrpcServer

    from ._serving.http_server import HttpServer

__all__ = ["HealthServer"]

logger = logging.getLogger("di.serve")

# What each listener needs installed, and the extra that installs it.
_NEEDS = {"http": ("httptools", "http"), "grpc": ("grpc_health", "grpc")}


class HealthServer:
    """Health over HTTP and gRPC from inside a process: a monitor and its listeners.

    ``http`` and ``grpc`` are ``"HOST:PORT"`` as ``di serve --http``/``--grpc`` take
    them (port 0: the kernel picks one, read it from :attr:`http_address` once
    started); at least one. ``interval`` (5 s by default) is the new monitor's, as are
    ``show_details`` and ``unbuilt``; or give your own ``monitor`` (made for the same
    injector). ``metrics=True`` (or a ``CollectorRegistry``) serves Prometheus metrics
    at ``/metrics`` on the HTTP port. ``tls_cert``/``tls_key`` (PEM files) make both
    ports TLS only, ``tls_client_ca`` requires client certificates that CA signed.
    ``drain`` and ``grace`` are as ``di serve``'s (0 and 5 s by default here: a worker
    has no clients to move away), ``limit_concurrency`` bounds open HTTP connections.
    ``ui=True`` serves the status page at ``/health/ui`` on the HTTP port (see
    :func:`di.asgi.health_app`).

    It owns the injector's life while it runs: entering starts it (its eager services,
    then a round of checks every interval), leaving shuts it down. Bad arguments, a
    missing extra and TLS files that do not load raise here, when it is made.
    Started once.
    """

    def __init__(
        self,
        injector: Scope,
        *,
        http: str | None = None,
        grpc: str | None = None,
        interval: float | None = None,
        show_details: bool = False,
        monitor: HealthMonitor | None = None,
        unbuilt: Unbuilt | None = None,
        metrics: Any = False,
        drain: float = 0.0,
        grace: float = 5.0,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_client_ca: str | None = None,
        limit_concurrency: int = 256,
        ui: bool = False,
    ) -> None:
        if not isinstance(injector, Scope):
            raise TypeError(f"HealthServer() needs an Injector or Scope, got {injector!r}")
        if http is None and grpc is None:
            raise ValueError(
                "HealthServer() serves nothing: give http='HOST:PORT', grpc='HOST:PORT' "
                "or both, such as http='0.0.0.0:8081'"
            )
        self.http_address = None if http is None else parse_address(http, "http")
        self.grpc_address = None if grpc is None else parse_address(grpc, "grpc")
        for kind, wanted in (("http", http), ("grpc", grpc)):
            module, extra = _NEEDS[kind]
            if wanted is not None and importlib.util.find_spec(module) is None:
                raise ImportError(
                    f"HealthServer({kind}=...) needs the {extra} extra ({module} is not "
                    f"installed): pip install 'healthdi[{extra}]'"
                )
        for argument, value in (("drain", drain), ("grace", grace)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"HealthServer({argument}=...) must be a finite number of seconds >= 0, "
                    f"got {value!r}"
                )
        if isinstance(limit_concurrency, bool) or not isinstance(limit_concurrency, int):
            raise TypeError(
                f"HealthServer(limit_concurrency=...) must be an int, got {limit_concurrency!r}"
            )
        if limit_concurrency < 1:
            raise ValueError(
                f"HealthServer(limit_concurrency=...) must be >= 1, got {limit_concurrency}"
            )
        if ui and http is None:
            raise ValueError(
                "HealthServer(ui=True) serves /health/ui on the HTTP port: give http= too"
            )
        if metrics not in (False, None) and http is None:
            raise ValueError(
                "HealthServer(metrics=...) serves /metrics on the HTTP port: give http= too"
            )
        self.tls = _tls(tls_cert, tls_key, tls_client_ca)
        self.monitor = _monitor(injector, monitor, interval, show_details, unbuilt)
        self.injector = injector
        self.show_details = show_details
        self.metrics = metrics
        self.ui = ui
        self.drain = float(drain)
        self.grace = float(grace)
        self.limit_concurrency = limit_concurrency
        self._registry = registry_for(self.monitor, metrics)
        self._started = False
        self._thread: LoopThread | None = None
        self._entered: AbstractAsyncContextManager[Any] | None = None
        self._http: HttpServer | None = None
        self._grpc: GrpcServer | None = None

    def __repr__(self) -> str:
        where = [
            f"{kind}={show(address[0])}:{address[1]}"
            for kind, address in (("http", self.http_address), ("grpc", self.grpc_address))
            if address is not None
        ]
        return f"HealthServer({self.injector.name!r}, {', '.join(where)})"

    # -- sync: a thread of its own --------------------------------------------------------

    def start(self) -> None:
        """Bind, serve, start the injector and the monitor on a thread's asyncio loop.

        Returns once the injector has started (its eager services built); raises what
        failed (a taken port, a failing eager factory), with what was built shut down.
        Refused inside a running event loop: use ``async with`` there.
        """
        if in_event_loop():
            raise AsyncRequiredError(
                "HealthServer.start() was called inside a running event loop; "
                "use `async with HealthServer(...)` there"
            )
        self._claim()
        thread = self._thread = LoopThread("healthdi-health-server")
        thread.start(self._serving)

    def stop(self) -> None:
        """NOT_SERVING, the drain, stop the servers and the monitor, shut the injector down.

        Raises what the shutdown hooks raised. Does nothing before :meth:`start`, and
        a second call only waits for the first.
        """
        thread = self._thread
        if thread is not None:
            thread.stop()

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- async: on the running loop -------------------------------------------------------

    async def __aenter__(self) -> HealthServer:
        if running_asyncio_loop() is None:
            raise RuntimeError(
                "HealthServer runs on asyncio (grpcio's server and its HTTP listener do); "
                "under trio, run it from a thread: await anyio.to_thread.run_sync("
                "server.start), and server.stop the same way"
            )
        self._claim()
        entered = self._serving()
        await entered.__aenter__()
        self._entered = entered
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered, self._entered = self._entered, None
        if entered is not None:
            await entered.__aexit__(kind, error, tb)

    # -- the run ------------------------------------------------------------------------

    def _claim(self) -> None:
        if self._started:
            raise RuntimeError(f"{self!r} was started once already; make a new one")
        self._started = True

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        """Bind and serve (1), run the start/stop sequence (2, 3); see the module."""
        listener = self._listen()
        try:
            if self.grpc_address is not None:
                from ._serving.listeners import start_grpc

                self._grpc, port = await start_grpc(self.monitor, self.grpc_address, self.tls)
                self.grpc_address = (self.grpc_address[0], port)
        except BaseException:
            if listener is not None:
                listener.close()
            raise
        try:
            async with anyio.create_task_group() as tasks:
                if listener is not None:
                    await tasks.start(self._serve_http, listener)
                try:
                    running = Running(
                        self.injector, self.monitor, drain=self.drain, stopping=self._stop_servers
                    )
                    async with running:
                        yield
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # A failed start, a failing hook or the body's own error, as raised: the task
            # group around the listener wraps what passes through it.
            raise _alone(group) from None
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_servers()

    def _listen(self) -> socket.socket | None:
        if self.http_address is None:
            return None
        from ._serving.http_server import listen

        listener = listen(self.http_address)
        self.http_address = self.http_address[0], listener.getsockname()[1]
        return listener

    async def _serve_http(
        self, listener: socket.socket, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        from ._serving.http_server import HttpServer
        from .asgi import health_app

        app = health_app(
            self.monitor,
            show_details=self.show_details,
            metrics=self._registry or False,
            ui=self.ui,
        )
        context = server_context(self.tls) if self.tls is not None else None
        http = self._http = HttpServer(app, limit=self.limit_concurrency, ssl_context=context)
        host, port = self.http_address or ("", 0)
        logger.info(
            "HTTP health on %s://%s:%s (/health, /livez, /readyz%s)%s",
            http.scheme,
            show(host),
            port,
            (", /metrics" if self._registry is not None else "")
            + (", /health/ui" if self.ui else ""),
            tls_said(self.tls),
        )
        await http.run_on(listener, task_status=task_status)

    async def _stop_servers(self) -> None:
        """Stop accepting; requests and RPCs in flight get ``grace`` seconds."""
        self.monitor.close_watches()
        async with anyio.create_task_group() as stopping:
            if self._grpc is not None:
                stopping.start_soon(self._grpc.stop, self.grace)
            if self._http is not None:
                self._http.stop(self.grace)
                stopping.start_soon(self._http.done.wait)

    async def _close_servers(self) -> None:
        """Whatever ended the run, no server is left behind."""
        grpc_server, self._grpc = self._grpc, None
        if grpc_server is not None:
            await grpc_server.stop(None)
        http, self._http = self._http, None
        if http is not None:
            http.force()
            with anyio.move_on_after(5):
                await http.done.wait()


def _alone(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside ``group`` (through nested groups), or the group itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _tls(cert: str | None, key: str | None, client_ca: str | None) -> TlsFiles | None:
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None or key is None:
        raise ValueError(
            "HealthServer(tls_cert=..., tls_key=...) go together: give both "
            "(and tls_client_ca= for mutual TLS)"
        )
    tls = TlsFiles(str(cert), str(key), None if client_ca is None else str(client_ca))
    try:
        server_context(tls)  # the files load now, or this says which does not
    except ValueError as error:
        # The listeners name di serve's options; here they are arguments.
        text = str(error)
        for option, argument in (
            ("--tls-client-ca", "tls_client_ca="),
            ("--tls-cert", "tls_cert="),
            ("--tls-key", "tls_key="),
        ):
            text = text.replace(option, argument)
        raise ValueError(f"HealthServer(): {text}") from None
    return tls


def _monitor(
    injector: Scope,
    monitor: HealthMonitor | None,
    interval: float | None,
    show_details: bool,
    unbuilt: Unbuilt | None,
) -> HealthMonitor:
    if monitor is None:
        return HealthMonitor(
            injector,
            interval=5.0 if interval is None else interval,
            show_details=show_details,
            unbuilt="warn" if unbuilt is None else unbuilt,
        )
    if not isinstance(monitor, HealthMonitor):
        raise TypeError(f"HealthServer(monitor=...) needs a HealthMonitor, got {monitor!r}")
    if monitor.injector is not injector:
        raise ValueError(
            "HealthServer(monitor=...): the monitor checks another injector; make it with "
            "HealthMonitor(injector) for the injector given to HealthServer()"
        )
    for argument, value in (("interval", interval), ("unbuilt", unbuilt)):
        if value is not None:
            raise ValueError(
                f"HealthServer({argument}=..., monitor=...): the monitor given has its own "
                f"{argument}; pass {argument}= to HealthMonitor() instead"
            )
    return monitor
