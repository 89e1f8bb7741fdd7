"""The sidecar's HTTP listener: uvicorn on a bound socket, with bounds added."""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..monitor import HealthMonitor

if TYPE_CHECKING:
    from .serve import Options

IDLE_SECONDS = 5.0  # an HTTP connection must send a whole request head within this


class HttpServer:
    """uvicorn's server on a bound socket, minus its own signal handling (ours rules)."""

    def __init__(self, monitor: HealthMonitor, options: Options) -> None:
        import uvicorn

        from ..asgi import health_app

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(
            health_app(monitor, show_details=options.show_details, metrics=options.metrics),
            http=_protocol(options.limit_concurrency),
            lifespan="off",  # this command runs the monitor
            proxy_headers=False,  # health answers use neither the client's address nor scheme
            log_level="warning",
            access_log=False,
            timeout_keep_alive=int(IDLE_SECONDS),
            timeout_graceful_shutdown=max(1, math.ceil(options.grace)),
        )
        self._server = Server(config)
        self.done = anyio.Event()
        logging.getLogger("uvicorn.error").addFilter(_quiet_cancelled)

    async def run_on(
        self, listener: socket.socket, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        sweeping = anyio.CancelScope()

        async def serve() -> None:
            try:
                await self._server.serve([listener])
            finally:
                sweeping.cancel()

        async def sweep() -> None:
            with sweeping:
                await _sweep(self._server.server_state.connections, IDLE_SECONDS)

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(serve)
                while not self._server.started:  # uvicorn has a flag, no event
                    if sweeping.cancel_called:
                        raise RuntimeError("the HTTP server stopped while starting")
                    await anyio.sleep(0.005)
                tasks.start_soon(sweep)
                task_status.started()
        finally:
            self.done.set()

    def stop(self, grace: float) -> None:
        self._nosniff_in_flight()
        self._server.config.timeout_graceful_shutdown = math.ceil(grace)
        self._server.should_exit = True

    def force(self) -> None:
        self._nosniff_in_flight()
        self._server.should_exit = True
        self._server.force_exit = True

    def _nosniff_in_flight(self) -> None:
        """uvicorn answers 500 for a request cut off by the stop, with only its default
        headers: add nosniff to those of the requests in flight now (no new ones come).
        Done here, once, rather than on every request."""
        for connection in list(self._server.server_state.connections):
            pipeline = getattr(connection, "pipeline", ())
            for cycle in [getattr(connection, "cycle", None), *(c for c, _ in pipeline)]:
                headers = getattr(cycle, "default_headers", None)
                if headers is not None and _NOSNIFF not in headers:
                    cycle.default_headers = [*headers, _NOSNIFF]


MAX_HEAD = 16 * 1024  # bytes of request line and headers, as h11 caps them
_SLICE = 1024  # bytes fed to httptools at a time: bounds the requests one feed can queue


_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _quiet_cancelled(record: logging.LogRecord) -> bool:
    """Drop uvicorn's traceback for a request cut off by a forced stop (it answers 500)."""
    import asyncio

    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, asyncio.CancelledError)


def _protocol(limit: int) -> type[Any]:
    """uvicorn's HTTP protocol (httptools where installed), with bounds added.

    - it notes when a connection starts waiting for a request head (on opening, and
      after each answer) and when one arrives, and since when an answer cannot be
      written (the client does not read), for :func:`_sweep` to close connections
      that wait or stall too long (uvicorn's own keep-alive timeout only starts after
      a first answer, and any byte stops it);
    - beyond ``limit`` open connections, the one that has waited longest for a request
      head is closed to make room, or if none waits the oldest: silent or busy clients
      holding every slot never lock probes out;
    - over httptools: a connection's requests are parsed one at a time (bytes that
      follow a request are held, with reading paused, until it is answered), and a
      request head over :data:`MAX_HEAD` bytes is answered 431 and closed. uvicorn's
      httptools protocol parses whatever arrives, queues pipelined requests without
      bound and has no limit on a head's size; h11 does both already.
    - uvicorn's 400 for what does not parse carries ``X-Content-Type-Options:
      nosniff`` like the application's answers (for its 500, see ``HttpServer.stop``).
    """
    import time

    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.flow_control import FlowControl
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class Base(H11Protocol):
            waiting_since: float | None = None  # time.monotonic() when it began to wait
            _seen: Any = None

            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                cycle = self.cycle
                if cycle is not self._seen:
                    self._seen = cycle  # a request head arrived: the app has it now
                    self.waiting_since = None

            def on_response_complete(self) -> None:
                self.waiting_since = time.monotonic()
                super().on_response_complete()

    else:

        class Flow(FlowControl):
            """Reading stays paused while the connection holds bytes not yet parsed."""

            holding = False

            def resume_reading(self) -> None:  # FlowControl's, inlined: once a request
                if self.read_paused and not self.holding:
                    self.read_paused = False
                    self._transport.resume_reading()

        # Called directly: these run once or more per request.
        parse = HttpToolsProtocol.data_received
        headers_complete = HttpToolsProtocol.on_headers_complete
        message_complete = HttpToolsProtocol.on_message_complete
        response_complete = HttpToolsProtocol.on_response_complete

        class Base(HttpToolsProtocol):  # type: ignore[no-redef]
            waiting_since: float | None = None
            _held = b""  # bytes received after a complete request, not yet parsed
            _head = 0  # bytes fed since the head of the next request began to be awaited
            _in_head = True  # awaiting a request head (not its body)
            _message_done = False  # the latest request was received whole

            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                self.flow = self._flow = Flow(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                self._held = b""
                super().connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                cycle = self.cycle
                if (
                    self._held
                    or self.pipeline
                    or (cycle is not None and self._message_done and not cycle.response_complete)
                ):  # _busy(), inlined
                    self._hold(data)
                elif len(data) <= _SLICE and (
                    not self._in_head or self._head + len(data) <= MAX_HEAD
                ):
                    # The common case, kept cheap: one small read, nothing in flight.
                    if self._in_head:
                        self._head += len(data)
                    parse(self, data)
                else:
                    self._feed(data)

            def _busy(self) -> bool:
                """Whether a request was received whole and awaits its answer."""
                if self.pipeline:
                    return True
                cycle = self.cycle
                return cycle is not None and self._message_done and not cycle.response_complete

            def _hold(self, data: bytes) -> None:
                self._held += data  # at most one read: reading is paused until it is fed
                self._flow.holding = True
                self._flow.pause_reading()

            def _feed(self, data: bytes) -> None:
                while data:
                    piece, data = data[:_SLICE], data[_SLICE:]
                    if self._in_head:
                        self._head += len(piece)
                        if self._head > MAX_HEAD:
                            self._refuse(431, "Request header fields too large.")
                            return
                    parse(self, piece)
                    if self.parser is None or self.transport.is_closing():
                        return
                    if data and self._busy():
                        self._hold(data)
                        return

            def _feed_held(self) -> None:
                if not self._held or self._busy() or self.parser is None:
                    return
                held, self._held = self._held, b""
                self._flow.holding = False
                self._feed(held)
                if not self._held and self.parser is not None:
                    self.flow.resume_reading()

            def on_headers_complete(self) -> None:
                self.waiting_since = None  # a request head arrived
                self._in_head = self._message_done = False
                headers_complete(self)

            def on_message_complete(self) -> None:
                self._message_done = self._in_head = True
                self._head = 0
                message_complete(self)

            def on_response_complete(self) -> None:
                # Waiting for the next head, unless it came already and now runs.
                self.waiting_since = None if self.pipeline else time.monotonic()
                response_complete(self)
                if self._held:
                    self.flow.pause_reading()
                    self.loop.call_soon(self._feed_held)

            def send_400_response(self, msg: str) -> None:
                self._refuse(400, msg)

            def _refuse(self, status: int, message: str) -> None:
                body = message.encode("ascii")
                head = [
                    *(self.server_state.default_headers),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"x-content-type-options", b"nosniff"),
                    (b"connection", b"close"),
                ]
                lines = b"".join(name + b": " + value + b"\r\n" for name, value in head)
                self.transport.write(STATUS_LINE[status] + lines + b"\r\n" + body)
                self.transport.close()

    class Protocol(Base):
        stalled_since: float | None = None  # time.monotonic() when writing was paused
        opened = 0.0

        def connection_made(self, transport: Any) -> None:
            self.opened = time.monotonic()
            super().connection_made(transport)
            if len(self.connections) > limit and not self._make_room():
                transport.close()
                return
            self.waiting_since = time.monotonic()

        def _make_room(self) -> bool:
            """Close the connection that has waited longest for a request head, else
            the oldest: at the limit, a new probe matters more than an old client."""
            waiting: Any = None
            opened: Any = None
            connections: set[Any] = self.connections
            for connection in connections:
                if connection is self or connection.transport.is_closing():
                    continue
                since = getattr(connection, "waiting_since", None)
                if since is not None and (waiting is None or since < waiting.waiting_since):
                    waiting = connection
                if opened is None or connection.opened < opened.opened:
                    opened = connection
            chosen = waiting or opened
            if chosen is None:
                return False
            _drop(chosen.transport)
            return True

        def pause_writing(self) -> None:
            self.stalled_since = time.monotonic()
            super().pause_writing()

        def resume_writing(self) -> None:
            self.stalled_since = None
            super().resume_writing()

    return Protocol


async def _sweep(connections: set[Any], idle: float) -> None:
    """Close connections that have waited ``idle`` seconds for a request head, or that
    have not taken an answer for as long (their write buffer stays full)."""
    import time

    while True:
        await anyio.sleep(min(idle / 5, 1.0))
        limit = time.monotonic() - idle
        for connection in list(connections):
            transport = connection.transport
            stalled = getattr(connection, "stalled_since", None)
            if stalled is not None and stalled < limit:
                transport.abort()  # close() would wait for the unread answers
                continue
            since = getattr(connection, "waiting_since", None)
            if since is not None and since < limit:
                _drop(transport)


def _drop(transport: Any) -> None:
    """Close a connection now: at once if an answer it did not read is still buffered."""
    if transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()


def listen(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on TCP-protocol sockets, and
    # without it every keep-alive answer waits ~40 ms on Nagle and delayed ACKs.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {error.strerror}") from None
    listener.listen(1024)
    return listener
