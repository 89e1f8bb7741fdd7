"""``di serve``: the monitor, HTTP and gRPC health servers beside it, until a signal.

The order of a run:

1. SIGINT and SIGTERM are handled from the first line of the command to its exit
   (:class:`Signals`); nothing below is ever cut off by one.
2. The application factory builds the container. A signal meanwhile is acted on once
   a sync factory returns (what it built is shut down); an async factory is cancelled,
   and one that ignores it is left behind on a second signal.
3. Both addresses are bound (a taken port is one clear error), and the servers start
   answering at once: liveness is SERVING, readiness is NOT_SERVING ("startup: not
   started"). HTTP is ``di.asgi.health_app`` under the listener of
   :mod:`di._serving.http_server` (with its bounds on connections); gRPC is
   ``di.grpc.add_health_servicer`` on a grpcio asyncio server (:data:`GRPC_OPTIONS`).
   With ``--tls-cert``/``--tls-key`` both speak TLS only (:func:`server_context` for
   HTTPS, ``di.grpc.server_credentials`` for gRPC), and with ``--tls-client-ca`` both
   require a client certificate that CA signed (mutual TLS).
4. The monitor starts the container's eager services (``astart()``), then checks every
   interval. Readiness follows the first round. A failed start exits 1.
5. On SIGTERM every status but liveness turns NOT_SERVING, both servers answering for the
   drain period; then they stop accepting and in-flight calls get the grace period.
   SIGINT skips the drain, and a second signal skips what is left of drain and grace.
   The round in progress gets :data:`ROUND_WAIT` s, then is cancelled; what ignores the
   cancellation is left behind after :data:`LEFT_BEHIND` s (the process then leaves
   with ``os._exit`` once the hooks have run).
6. The container is shut down, whatever ended the run (a ``finally``). The exit status
   is 0 only when a signal asked for the stop and every shutdown hook succeeded.

Needs the ``http`` extra to serve HTTP (its httptools) and the ``grpc`` extra to serve
gRPC, each only when asked for. Runs on asyncio only: grpcio's server does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._serving.listeners import TlsFiles, server_context, show, start_grpc, tls_said
from ..health import HealthPolicy, explain_error
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope

if TYPE_CHECKING:
    import asyncio

    import grpc

    from .._serving.http_server import HttpServer

logger = logging.getLogger("di.serve")

EXTRAS = {
    "http": ("httptools",),
    "grpc": ("grpc", "grpc_health.v1.health_pb2"),
    "prometheus": ("prometheus_client",),
}
_SERVING = {"http": "serving HTTP", "grpc": "serving gRPC", "prometheus": "--metrics"}
# On the way out, the round of checks in progress gets ROUND_WAIT seconds to finish,
# then is cancelled; work that ignores its cancellation is left behind after LEFT_BEHIND.
ROUND_WAIT = 1.0
LEFT_BEHIND = 1.0
STALL_WARNING = 1.0  # a loop blocked this long (s) is logged: answers waited meanwhile
DESCRIPTORS_WARNING = 60.0  # s between two warnings that accept() ran out of descriptors
DOCS_BLOCKING = (
    "https://github.com/healthdi/healthdi/blob/main/docs/exposure.md#blocking-the-event-loop"
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def configure_logging() -> None:
    """Timestamped INFO logs on stderr: status changes, failing checks, servers, signals."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@dataclass
class Options:
    """What ``di serve`` was asked to do."""

    http: tuple[str, int] | None
    grpc: tuple[str, int] | None
    interval: float = 5.0
    drain: float = 5.0
    grace: float = 5.0
    show_details: bool = False
    limit_concurrency: int = 256
    metrics: bool = False
    ui: bool = False  # --ui: the status page at /health/ui
    tls: TlsFiles | None = None
    unbuilt: Unbuilt = "warn"
    policy: HealthPolicy | None = None  # --failure-threshold, --success-threshold
    info: dict[str, str] = field(default_factory=dict)  # --info KEY=VALUE
    # --grpc-service NAME[=MEMBER,...]: each gRPC service name and what it reads.
    grpc_services: dict[str, list[str]] = field(default_factory=dict)


class Signals:
    """SIGINT and SIGTERM, recorded from installation until the process exits.

    The handler only records the signal and wakes the event loop, if one is attached;
    what to do about it is decided by the code that reads :attr:`received`.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._wake: Callable[[], object] | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        wake = self._wake
        if wake is not None:
            wake()

    @contextlib.contextmanager
    def attached(self, wake: Callable[[], object]) -> Iterator[None]:
        """Call ``wake`` (from the handler: it must be safe there) on every signal."""
        self._wake = wake
        try:
            yield
        finally:
            self._wake = None

    @property
    def first(self) -> str:
        return signal.Signals(self.received[0]).name if self.received else ""


def missing_extra(options: Options) -> str | None:
    """The one line to print when an extra that ``options`` need is not installed."""
    import importlib.util

    for extra, wanted in (
        ("http", options.http),
        ("grpc", options.grpc),
        ("prometheus", options.metrics or None),
    ):
        if wanted is None:
            continue
        for module in EXTRAS[extra]:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return (
                    f"{_SERVING[extra]} needs the {extra} extra "
                    f"({module} is not installed): pip install 'healthdi[{extra}]'"
                )
    return None


class Run:
    """One run of ``di serve``: :meth:`main` returns the exit status.

    ``failed`` says why the run ended other than by a signal, in one line.
    """

    def __init__(
        self,
        options: Options,
        build: Callable[[], Awaitable[Scope]],
        signals: Signals,
        shut_down: Callable[[Scope], Awaitable[bool]],
    ) -> None:
        self.options = options
        self.build = build
        self.signals = signals
        self.shut_down = shut_down
        self.failed: str | None = None
        self.injector: Scope | None = None
        self.shutdown_started = False
        self.stopping = False
        self.wake = anyio.Event()
        self.monitor_done = anyio.Event()
        self.monitor_task: asyncio.Task[None] | None = None
        self.left_behind: list[asyncio.Task[Any]] = []  # ignored cancellation: not awaited
        self.http: HttpServer | None = None
        self.grpc: grpc.aio.Server | None = None

    def run(self) -> int:
        """Run :meth:`main` on a new asyncio loop (grpcio's server runs on asyncio only).

        As ``asyncio.run`` does, the loop's teardown cancels the tasks left, but it waits
        for them :data:`LEFT_BEHIND` seconds at most: code that ignores cancellation (a
        check that swallows ``CancelledError``) was left behind by :meth:`main` and must
        not hold the exit.
        """
        import asyncio

        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_LoopErrors())
        try:
            return loop.run_until_complete(self.main())
        finally:
            try:
                _cancel_tasks_left(loop, self.left_behind)
            finally:
                loop.close()

    async def main(self) -> int:
        import asyncio

        loop = asyncio.get_running_loop()
        with self.signals.attached(lambda: loop.call_soon_threadsafe(self._wake)):
            injector = await self._build()
            if injector is None:
                return 1 if self.failed is not None else 0
            self.injector = injector
            hooks_ok = True
            try:
                if self.signals.received:
                    logger.info(
                        "received %s while the application was being built: shutting down",
                        self.signals.first,
                    )
                else:
                    await self._serve(injector)
            except OSError as error:
                self.failed = str(error)  # an address that cannot be bound
            except Exception as error:
                logger.exception("di serve failed")
                self.failed = explain_error(error)
            except BaseException as error:
                if isinstance(error, anyio.get_cancelled_exc_class()):
                    raise
                self.failed = f"stopped by {explain_error(error)}"
            finally:
                with anyio.CancelScope(shield=True):
                    await self._close_servers()
                    logger.info("shutting the container down")
                    self.shutdown_started = True
                    hooks_ok = await self.shut_down(injector)
        if self.failed is not None:
            return 1
        return 0 if hooks_ok else 1

    async def _build(self) -> Scope | None:
        """The application factory's container; None if a signal stopped the factory.

        A sync factory runs to its end (a signal is acted on once it returns: what it
        built is shut down). An async one is cancelled on the first signal, and one that
        ignores the cancellation is left behind on the second.
        """
        import asyncio

        task = asyncio.ensure_future(self.build())
        task.add_done_callback(lambda _: self._wake())
        cancelled = 0
        while not task.done():
            self.wake = anyio.Event()
            received = len(self.signals.received)
            if received > cancelled:
                if cancelled:
                    logger.error(
                        "received %s again: leaving the application factory behind",
                        signal.Signals(self.signals.received[-1]).name,
                    )
                    self._leave_behind(task)
                    self.failed = "stopped while the application factory ignored cancellation"
                    return None
                logger.info(
                    "received %s while the application factory was running: cancelling it",
                    self.signals.first,
                )
                task.cancel()
                cancelled = received
                continue
            await self.wake.wait()
        if task.cancelled():
            if cancelled:
                logger.info("the application factory was cancelled: it returned nothing")
                return None
            self.failed = "the application factory raised CancelledError"
            return None
        return task.result()

    def _leave_behind(self, task: asyncio.Task[Any]) -> None:
        self.left_behind.append(task)

    def _wake(self) -> None:
        self.wake.set()

    # -- serving ----------------------------------------------------------------------

    async def _serve(self, injector: Scope) -> None:
        options = self.options
        monitor = HealthMonitor(
            injector,
            interval=options.interval,
            show_details=options.show_details,
            unbuilt=options.unbuilt,
            policy=options.policy,
            info=options.info,
        )
        for name, members in options.grpc_services.items():  # over HTTP too
            monitor.add_group(name, members)
        listener: socket.socket | None = None
        if options.http:
            from .._serving.http_server import listen

            # Bind both addresses before anything runs: a taken port is one clear error.
            listener = listen(options.http)
        try:
            if options.grpc:
                self.grpc, _ = await start_grpc(monitor, options.grpc, options.tls)
        except BaseException:
            if listener is not None:
                listener.close()
            raise
        import asyncio

        try:
            async with anyio.create_task_group() as tasks:
                if listener is not None:
                    self.http = _http_server(monitor, options)
                    await tasks.start(self.http.run_on, listener)
                    host, port = listener.getsockname()[:2]
                    logger.info(
                        "HTTP health on %s://%s:%s (/health, /livez, /readyz%s)%s",
                        "http" if options.tls is None else "https",
                        show(host),
                        port,
                        (", /metrics" if options.metrics else "")
                        + (", /health/ui" if options.ui else ""),
                        tls_said(options.tls),
                    )
                    tasks.start_soon(self._watch_http, self.http)
                tasks.start_soon(_watch_loop, monitor)
                # The monitor runs in a task of its own, outside the task group: a check
                # that ignores cancellation would hold the group's exit forever.
                self.monitor_task = asyncio.ensure_future(self._run_monitor(monitor))
                await self._until_signal(1, math.inf)
                await self._stop(monitor)
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._end_monitor(monitor)

    async def _run_monitor(self, monitor: HealthMonitor) -> None:
        from .._container.runner import cancel_requests

        try:
            await monitor.run()
        except BaseException as error:
            if isinstance(error, anyio.get_cancelled_exc_class()) and cancel_requests():
                raise  # _end_monitor cancelled it
            error = _leaf(error)
            if not monitor.started:  # the monitor logged why
                self.failed = f"start failed: {explain_error(error)}"
            elif isinstance(error, Exception):
                self.failed = f"monitor failed: {explain_error(error)}"
                logger.exception("the health monitor failed")
            else:
                # A check raised SystemExit or the like: stop, with the shutdown hooks run.
                self.failed = f"a health check raised {explain_error(error)}"
                logger.error("%s; stopping", self.failed)
            self._wake()
        finally:
            self.monitor_done.set()

    async def _end_monitor(self, monitor: HealthMonitor) -> None:
        """Stop the monitor before the hooks run, in bounded time whatever a check does.

        The round in progress gets :data:`ROUND_WAIT` seconds to finish; then it is
        cancelled, and after :data:`LEFT_BEHIND` more seconds a check that ignores the
        cancellation is left behind: the hooks run and the process exits all the same.
        """
        task = self.monitor_task
        if task is None or task.done() or task in self.left_behind:
            return
        monitor.stop()
        with anyio.move_on_after(ROUND_WAIT):
            await self.monitor_done.wait()
        if task.done():
            return
        task.cancel()
        with anyio.move_on_after(LEFT_BEHIND):
            await self.monitor_done.wait()
        if not task.done():
            logger.warning(
                "a health check ignores cancellation: leaving it behind (its service is "
                "shut down all the same)"
            )
            self._leave_behind(task)

    async def _watch_http(self, http: HttpServer) -> None:
        await http.done.wait()
        if not self.stopping:
            self.failed = self.failed or "the HTTP server stopped unexpectedly"
            self._wake()

    async def _stop(self, monitor: HealthMonitor) -> None:
        self.stopping = True
        options = self.options
        first = self.signals.first
        if first == "SIGTERM" and self.failed is None and monitor.ready and options.drain > 0:
            logger.info(
                "received SIGTERM: NOT_SERVING, draining for %g s before stopping",
                options.drain,
            )
            await monitor.enter_graceful_shutdown()
            await self._until_signal(2, options.drain)
        else:
            if first:
                logger.info("received %s: going NOT_SERVING and stopping", first)
            await monitor.enter_graceful_shutdown()
        monitor.close_watches()
        grace = 0.0 if len(self.signals.received) > 1 else options.grace
        logger.info("stopping the servers (grace %g s for calls in flight)", grace)
        async with anyio.create_task_group() as stopping:
            stopping.start_soon(self._hurry_on_signal)
            async with anyio.create_task_group() as servers:
                if self.grpc is not None:
                    servers.start_soon(self.grpc.stop, grace)
                if self.http is not None:
                    self.http.stop(grace)
                    servers.start_soon(self.http.done.wait)
                servers.start_soon(self._end_monitor, monitor)
            stopping.cancel_scope.cancel()
        logger.info("servers stopped")

    async def _hurry_on_signal(self) -> None:
        """A further signal cuts the grace period short (the hooks still run)."""
        if len(self.signals.received) > 1:
            return  # grace is 0 already
        await self._until_signal(2, math.inf)
        logger.info(
            "received %s again: stopping now", signal.Signals(self.signals.received[-1]).name
        )
        if self.http is not None:
            self.http.force()
        if self.grpc is not None:
            await self.grpc.stop(None)

    async def _until_signal(self, count: int, seconds: float) -> None:
        """Wait ``seconds``, or until ``count`` signals were received or the run failed."""
        with anyio.move_on_after(seconds):
            while len(self.signals.received) < count and not (count == 1 and self.failed):
                self.wake = anyio.Event()
                if len(self.signals.received) >= count:
                    break  # received between the test and the new event
                await self.wake.wait()

    def rescue(self, error: BaseException) -> int:
        """After ``error`` stopped the event loop itself: shut down on a fresh loop.

        asyncio lets SystemExit and KeyboardInterrupt raised in any task out of the loop
        (a health check that calls ``sys.exit()`` does that); the hooks still run.
        """
        error = _leaf(error)
        self.failed = self.failed or f"stopped by {explain_error(error)}"
        logger.error("di serve stopped: %s", self.failed)
        if self.injector is not None and not self.shutdown_started:
            logger.info("shutting the container down")
            self.shutdown_started = True
            anyio.run(self.shut_down, self.injector, backend="asyncio")
        return 1

    async def _close_servers(self) -> None:
        """Whatever ended the run, no server is left for the loop's teardown."""
        if self.grpc is not None:
            await self.grpc.stop(None)
            self.grpc = None
        if self.http is not None:
            self.http.force()
            with anyio.move_on_after(5):
                await self.http.done.wait()
            self.http = None


class _LoopErrors:
    """The loop's exception handler: asyncio's, but a failed ``accept()`` for want of
    file descriptors is one warning every :data:`DESCRIPTORS_WARNING` seconds.

    asyncio logs a traceback for each connection waiting in the backlog, up to
    :data:`~di._serving.http_server.BACKLOG` each time the port is readable: a burst of connections
    would write thousands of lines.
    """

    def __init__(self) -> None:
        self.said = -math.inf

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - self.said >= DESCRIPTORS_WARNING:
            self.said = now
            logger.warning(
                "cannot accept connections: out of file descriptors (%s); new connections "
                "wait until some close: raise the limit (ulimit -n) or lower "
                "--limit-concurrency",
                context.get("exception"),
            )


def _http_server(monitor: HealthMonitor, options: Options) -> HttpServer:
    """The HTTP listener serving ``monitor``'s health app (:mod:`di._serving.http_server`)."""
    from .._serving.http_server import HttpServer
    from ..asgi import health_app

    app = health_app(
        monitor, show_details=options.show_details, metrics=options.metrics, ui=options.ui
    )
    context = server_context(options.tls) if options.tls is not None else None
    return HttpServer(app, limit=options.limit_concurrency, ssl_context=context)


async def _watch_loop(monitor: HealthMonitor) -> None:
    """Log when something blocked the event loop: no request was answered meanwhile.

    Nothing here can stop it: a sync factory of the start and an ``async def`` check
    both run on the loop that answers. The log names the cause to look for.
    """
    import time

    while True:
        starting = not monitor.started
        before = time.monotonic()
        await anyio.sleep(0.25)
        blocked = time.monotonic() - before - 0.25
        if blocked >= STALL_WARNING:
            cause = (
                "while the application started (a sync factory, or a blocking call in an async one)"
                if starting
                else "(a blocking call in an async health check?)"
            )
            logger.warning(
                "the event loop was blocked for %.1f s %s: no request was answered "
                "meanwhile; see %s",
                blocked,
                cause,
                DOCS_BLOCKING,
            )


def _cancel_tasks_left(loop: asyncio.AbstractEventLoop, left_behind: list[Any]) -> None:
    """Cancel every task still pending and wait for them, :data:`LEFT_BEHIND` s at most."""
    import asyncio

    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    waited = [task for task in tasks if task not in left_behind]
    if waited:
        loop.run_until_complete(asyncio.wait(waited, timeout=LEFT_BEHIND))
    generators = loop.create_task(loop.shutdown_asyncgens())
    loop.run_until_complete(asyncio.wait([generators], timeout=LEFT_BEHIND))
    for task in asyncio.all_tasks(loop):
        task._log_destroy_pending = False  # type: ignore[attr-defined]  # noqa: SLF001 - asyncio would warn of each task left behind, logged already; no public switch


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
