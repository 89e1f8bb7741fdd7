"""The sidecar's HTTP listener: HTTP/1.1 on httptools, one request at a time per connection.

``di serve`` answers small GETs (and one small POST) from probes and load balancers,
and must keep answering them whatever other clients do. This module serves an ASGI app
(``di.asgi.health_app``) on a bound socket with asyncio and the httptools parser (the
``http`` extra), and nothing else: every bound below is written here, in the one place
that reads and writes the connection, rather than added to another server's internals.

The path of a request:

1. :class:`HttpServer` accepts the connection (``loop.create_server``). Beyond
   ``limit`` open connections, the one that has waited longest for a request head
   (else the oldest) is closed to make room: silent or busy clients holding every slot
   never lock a probe out.
2. :class:`_Connection` feeds what it reads to the parser up to the end of a request
   head (its blank line), then exactly the body its ``Content-Length`` announces, and
   no further: what follows a whole request is held, with reading paused, until that
   request is answered. One request is in flight per connection, and a client that
   pipelines without reading holds at most one read (256 KiB) of memory. A head over
   :data:`MAX_HEAD` bytes is answered 431, a request that does not parse 400, a body
   without ``Content-Length`` 411 (RFC 9112 lets a server ask for the length; health
   requests have small bodies of known size); each then closes the connection.
3. A whole head starts the app in a task with its own :class:`_Exchange` (the ASGI
   scope, ``receive`` and ``send``). The answer's head is written with its body, in one
   write; a HEAD request's body is never written.
4. After the answer the connection waits for the next head, unless its answer was the
   last: HTTP/1.0 without keep-alive, ``Connection: close``, an upgrade, a body the app
   did not read whole, or a server that is stopping. While the client does not read
   its answers (writing is paused), the next request is not parsed.
5. :meth:`HttpServer._sweep`, every second, closes the connections that have waited
   :data:`IDLE_SECONDS` for a whole request head (since opening or since their last
   answer; bytes that trickle in do not count) and those that have not taken an answer
   for as long (their write buffer stays full).
6. :meth:`HttpServer.stop` stops accepting, closes the connections that wait for a
   head, and lets the requests in flight finish (their answers close their
   connections) for ``grace`` seconds; then, or on :meth:`HttpServer.force`, the app
   is cancelled where it still runs, and a request without an answer gets a 500.

With an ``ssl_context`` (``di serve --tls-cert``), each connection is admitted (1.) as
it opens, then :meth:`_Connection._secure` runs the TLS handshake (``loop.start_tls``)
and asyncio's TLS transport carries all of the above unchanged; the ASGI scope says
``https``. A connection in its handshake waits for its request head: it counts towards
``limit``, makes room at the limit and is closed after :data:`IDLE_SECONDS`, as a silent
plaintext one is, so clients stuck in their handshake hold no more than the limit.

Every answer of the server's own (400, 411, 431, 500) carries ``X-Content-Type-Options:
nosniff``, as the app's answers do.

Why not uvicorn: its httptools protocol parses whatever arrives, queues pipelined
requests without bound and has no limit on a head's size; its h11 protocol has both,
but costs over half the throughput, and neither has a public way to close idle or
stalled connections or to make room at the connection limit (its
``limit_concurrency`` answers 503 to the probe instead). This server does what the
sidecar needs, at the speed of uvicorn's httptools protocol.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.abc
import httptools

logger = logging.getLogger("di.serve")

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

IDLE_SECONDS = 5.0  # an HTTP connection must send a whole request head within this
MAX_HEAD = 16 * 1024  # bytes of request line and headers, as h11 caps them
BODY_BUFFER = 64 * 1024  # body bytes kept for an app that has not read them yet
BACKLOG = 1024
FORCED_WAIT = 1.0  # seconds the app gets to end once cancelled by a forced stop

_BLANK_LINE = b"\r\n\r\n"  # the end of a head: llhttp accepts no bare LF
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}
_METHODS = {name.encode("ascii"): name for name in ("GET", "HEAD", "POST")}
_ASGI = {"version": "3.0", "spec_version": "2.4"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def listen(address: tuple[str, int]) -> socket.socket:
    """A TCP socket bound to ``address`` and listening; a taken port is one clear error."""
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
    listener.listen(BACKLOG)
    return listener


class HttpServer:
    """An ASGI app served over HTTP/1.1 on a bound socket, until :meth:`stop` or
    :meth:`force`; :attr:`done` is set once every connection is closed."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        idle: float = IDLE_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.idle = idle
        self.ssl_context = ssl_context
        self.scheme = "http" if ssl_context is None else "https"
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.done = anyio.Event()
        self._grace = 0.0
        self._forced = False
        self._stop_asked = anyio.Event()
        self._changed = anyio.Event()
        self._second = -1
        self._date = b""

    async def run_on(
        self, listener: socket.socket, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Serve on ``listener`` until stopped; ``task_status`` once accepting."""
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: _Connection(self, loop),
                sock=listener,
                backlog=BACKLOG,
            )
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._sweep)
                    task_status.started()
                    await self._stop_asked.wait()
                    server.close()
                    for connection in list(self.connections):
                        connection.wind_down()
                    with anyio.move_on_after(self._grace):
                        while self.connections and not self._forced:
                            self._changed = anyio.Event()
                            await self._changed.wait()
                    tasks.cancel_scope.cancel()
            finally:
                server.close()
                with anyio.CancelScope(shield=True):
                    await self._end_all()
        finally:
            self.done.set()

    def stop(self, grace: float) -> None:
        """Stop accepting; the requests in flight get ``grace`` seconds to be answered."""
        self.stopping = True
        self._grace = grace
        self._stop_asked.set()

    def force(self) -> None:
        """Stop now: the app is cancelled where it runs, and its request answered 500."""
        self.stopping = True
        self._forced = True
        self._stop_asked.set()
        self._changed.set()

    async def _end_all(self) -> None:
        self.stopping = True
        running = [task for c in list(self.connections) if (task := c.cancel()) is not None]
        if running:
            await asyncio.wait(running, timeout=FORCED_WAIT)
        for connection in list(self.connections):
            connection.drop()

    def admit(self, connection: _Connection) -> None:
        """A new connection; beyond the limit, another one (or this one) is closed."""
        self.connections.add(connection)
        if self.stopping:
            connection.drop()
        elif len(self.connections) > self.limit:
            self._make_room(connection)

    def _make_room(self, new: _Connection) -> None:
        """Close the connection that has waited longest for a request head, else the
        oldest: at the limit, a new probe matters more than an old client."""
        waiting: _Connection | None = None
        waiting_since = 0.0
        oldest: _Connection | None = None
        for connection in self.connections:
            if connection is new or connection.transport.is_closing():
                continue
            since = connection.waiting_since
            if since is not None and (waiting is None or since < waiting_since):
                waiting, waiting_since = connection, since
            if oldest is None or connection.opened < oldest.opened:
                oldest = connection
        (waiting or oldest or new).drop()

    def forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if self.stopping:
            self._changed.set()

    async def _sweep(self) -> None:
        """Close the connections that wait too long for a head, or for their client to
        read an answer."""
        while True:
            await anyio.sleep(min(self.idle / 5, 1.0))
            limit = time.monotonic() - self.idle
            for connection in list(self.connections):
                connection.sweep(limit)

    def date_line(self) -> bytes:
        """The ``Date`` header line, formatted once a second."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._date = b"date: %s\r\n" % email.utils.formatdate(now, usegmt=True).encode()
        return self._date


class _Connection(asyncio.Protocol):
    """One client's connection: bytes in, fed one request at a time, answers out.

    The parser calls :meth:`on_url`, :meth:`on_header`, :meth:`on_headers_complete`,
    :meth:`on_body` and :meth:`on_message_complete` from :meth:`_feed`.
    """

    transport: asyncio.Transport

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.opened = time.monotonic()
        self.waiting_since: float | None = self.opened  # for a whole request head
        self.stalled_since: float | None = None  # since the client stopped reading
        self.exchange: _Exchange | None = None  # the request received or answered now
        self.held = b""  # what followed a whole request, not yet fed to the parser,
        self.held_from = 0  # from this offset
        self.closing = False  # the current answer is the connection's last
        self.refusal: tuple[int, bytes] | None = None
        self.paused = False  # reading is paused
        self.server_address: tuple[str, int] | None = None
        self.client_address: tuple[str, int] | None = None
        # The head being parsed.
        self.head_size = 0
        self.tail = b""  # its last bytes, for a blank line split across two reads
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.length = 0
        self.chunked = False
        self.expect_continue = False
        # TLS: the handshake under way, and what arrived after it before it returned.
        self.handshake: asyncio.Task[None] | None = None
        self.early = b""

    # -- asyncio's callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server_address = _address(transport.get_extra_info("sockname"))
        self.client_address = _address(transport.get_extra_info("peername"))
        context = self.server.ssl_context
        if context is not None:
            transport.pause_reading()  # the handshake reads first
            self.handshake = self.loop.create_task(self._secure(transport, context))
        self.server.admit(self)

    async def _secure(self, plain: asyncio.Transport, context: ssl.SSLContext) -> None:
        """The TLS handshake, then HTTP over the TLS transport; a failed handshake, or a
        connection closed meanwhile (to make room, idle, stopping), is forgotten."""
        secured: asyncio.BaseTransport | None = None
        try:
            secured = await self.loop.start_tls(
                plain, self, context, server_side=True, ssl_handshake_timeout=self.server.idle
            )
        except Exception:  # the client's handshake failed (asyncio logs it in debug mode)
            secured = None
        finally:
            if not isinstance(secured, asyncio.Transport):  # None: closed in the handshake
                plain.abort()
                self.server.forget(self)
        if not isinstance(secured, asyncio.Transport):
            return
        self.transport = secured
        self.handshake = None
        early, self.early = self.early, b""
        if early:
            self.data_received(early)

    def connection_lost(self, exc: Exception | None) -> None:
        self.held, self.held_from = b"", 0
        exchange = self.exchange
        if exchange is not None:
            exchange.disconnect()
        self.server.forget(self)

    def eof_received(self) -> bool | None:
        """The client closed its side: a whole request still gets its answer."""
        exchange = self.exchange
        if exchange is not None and exchange.received and not exchange.answered:
            self.closing = True
            if self.server.ssl_context is None:  # TLS has no half-close: it closes
                return True  # keep the transport open to write the answer
        return None  # asyncio closes the transport

    def data_received(self, data: bytes) -> None:
        if self.handshake is not None:  # decrypted before start_tls returned: one read
            self.early += data
            return
        exchange = self.exchange
        if self.held or (exchange is not None and exchange.received):
            self._hold(data)  # a request is in flight: the next waits
        else:
            self._feed(data)

    def pause_writing(self) -> None:
        self.stalled_since = time.monotonic()

    def resume_writing(self) -> None:
        self.stalled_since = None
        if self.exchange is None and self.held:
            self.loop.call_soon(self._feed_held)

    # -- feeding the parser -----------------------------------------------------------

    def _feed(self, data: bytes, start: int = 0) -> None:
        """Feed ``data[start:]`` up to the end of the request it completes; hold the rest.

        Pieces are cut without copying (``bytes.find`` from an offset, a memoryview),
        so that a read of many pipelined requests costs no more than their parsing.
        """
        parser = self.parser
        size = len(data)
        view: memoryview | None = None
        while start < size:
            exchange = self.exchange
            if exchange is None:  # a head: up to its blank line, and at most MAX_HEAD
                until = -1
                tail = self.tail
                if tail:
                    end = (tail + data[start : start + 3]).find(_BLANK_LINE)
                    if end >= 0:
                        until = start + end + 4 - len(tail)
                if until < 0:
                    end = data.find(_BLANK_LINE, start)
                    until = end + 4 if end >= 0 else size
                self.head_size += until - start
                if self.head_size > MAX_HEAD:
                    self.refuse(431, b"Request header fields too large.")
                    return
                # The last bytes of an unfinished head: its blank line may span two reads.
                self.tail = b"" if end >= 0 else (tail + data[max(start, until - 3) : until])[-3:]
            else:  # its body: what Content-Length announced, no more
                until = start + min(exchange.body_left, size - start)
                exchange.body_left -= until - start
            if start == 0 and until == size:
                piece: bytes | memoryview = data
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[start:until]
            start = until
            try:
                parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self.closing = True  # what follows is not HTTP/1.1: answer, then close
                return
            except httptools.HttpParserError:
                self.refuse(*(self.refusal or (400, b"Invalid HTTP request received.")))
                return
            if self.refusal is not None:
                self.refuse(*self.refusal)
                return
            exchange = self.exchange
            if start < size and exchange is not None and exchange.received:
                self._hold(data, start)
                return

    def _hold(self, data: bytes, start: int = 0) -> None:
        """Keep ``data[start:]`` for after the answer: at most one read, as reading
        pauses until it is fed."""
        if self.held:
            data, start = self.held[self.held_from :] + data[start:], 0
        self.held, self.held_from = data, start
        self.update_reading()

    def _feed_held(self) -> None:
        if self.exchange is not None or self.transport.is_closing():
            return
        held, start = self.held, self.held_from
        self.held, self.held_from = b"", 0
        self._feed(held, start)
        self.update_reading()

    def update_reading(self) -> None:
        """Pause reading while bytes are held or a body waits to be read, else resume."""
        exchange = self.exchange
        pause = bool(self.held) or (exchange is not None and exchange.buffered > BODY_BUFFER)
        if pause != self.paused and not self.transport.is_closing():
            self.paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # -- the parser's callbacks -------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.length = int(value)  # digits only: the parser checked
        elif name == b"transfer-encoding":
            self.chunked = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.waiting_since = None  # a whole head arrived
        self.head_size = 0
        if self.chunked:
            self.refusal = (411, b"A request body needs a Content-Length.")
            return
        parser = self.parser
        url, self.url = self.url, b""
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")
        else:
            parts = httptools.parse_url(url)
            raw_path, query = parts.path or b"/", parts.query or b""
        text = raw_path.decode("ascii")
        method = parser.get_method()
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.server_address,
            "client": self.client_address,
            "scheme": self.server.scheme,
            "method": _METHODS.get(method) or method.decode("ascii"),
            "root_path": "",
            "path": unquote(text) if "%" in text else text,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
        }
        exchange = _Exchange(self, scope, parser.should_keep_alive(), self.length)
        exchange.expect_continue = self.expect_continue
        self.headers = []
        self.length = 0
        self.expect_continue = False
        self.exchange = exchange
        exchange.task = self.loop.create_task(exchange.run(self.server.app))

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and not exchange.answered:
            exchange.take(body)
            if exchange.buffered > BODY_BUFFER:
                self.update_reading()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.mark_received()

    # -- answers ----------------------------------------------------------------------

    def after_answer(self, exchange: _Exchange) -> None:
        """The answer went out whole: wait for the next request, or close."""
        if self.closing or not exchange.keep_alive or not exchange.received:
            self.transport.close()
            return
        self.exchange = None
        self.waiting_since = time.monotonic()
        if self.held and self.stalled_since is None:
            self.loop.call_soon(self._feed_held)

    def refuse(self, status: int, message: bytes) -> None:
        """Answer ``status`` for what the server cannot take, then close."""
        head = [
            _STATUS_LINES[status],
            self.server.date_line(),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(message),
            b"x-content-type-options: nosniff\r\n",
            b"connection: close\r\n\r\n",
            message,
        ]
        self.held, self.held_from = b"", 0
        self.transport.write(b"".join(head))
        self.transport.close()

    # -- bounds -----------------------------------------------------------------------

    def sweep(self, limit: float) -> None:
        """Close the connection if it waited for a head, or for its client to read,
        since before ``limit``."""
        stalled = self.stalled_since
        if stalled is not None and stalled < limit:
            self.transport.abort()  # close() would wait for the unread answers
            return
        since = self.waiting_since
        if since is not None and since < limit:
            self.drop()

    def drop(self) -> None:
        """Close now: at once if an answer it did not read is still buffered."""
        transport = self.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def wind_down(self) -> None:
        """The server stops: close now if no request is under way, else after its answer."""
        if self.exchange is None:
            self.drop()
        else:
            self.closing = True

    def cancel(self) -> asyncio.Task[None] | None:
        """A forced stop: cancel the app where it runs (its request is answered 500)."""
        exchange = self.exchange
        task = exchange.task if exchange is not None else None
        if task is None or task.done():
            self.drop()
            return None
        task.cancel()
        return task


class _Exchange:
    """One request and its answer: the ASGI scope, ``receive`` and ``send``."""

    __slots__ = (
        "answered",
        "body",
        "body_left",
        "buffered",
        "connection",
        "delivered",
        "disconnected",
        "expect_continue",
        "has_length",
        "head",
        "head_only",
        "keep_alive",
        "received",
        "scope",
        "started",
        "task",
        "wake",
        "written",
    )

    def __init__(
        self, connection: _Connection, scope: Scope, keep_alive: bool, length: int
    ) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.body_left = length  # body bytes not yet fed to the parser
        self.body: list[bytes] = []  # received, not yet read by the app
        self.buffered = 0
        self.received = False  # the whole request arrived
        self.delivered = False  # the app read the whole body
        self.disconnected = False
        self.expect_continue = False
        self.head_only = scope["method"] == "HEAD"
        self.head: bytes | None = None  # the answer's head, written with its first body
        self.has_length = False
        self.started = False
        self.written = False  # bytes of the answer went out
        self.answered = False  # the answer went out whole (or never will)
        self.task: asyncio.Task[None] | None = None
        self.wake: asyncio.Event | None = None

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._fail()  # a forced stop: nobody awaits this task
        except Exception:
            scope = self.scope
            logger.exception("the HTTP app failed on %s %s", scope["method"], scope["path"])
            self._fail()
        else:
            if not self.answered:
                self._fail()

    def _fail(self) -> None:
        """No whole answer: a 500 if nothing was written yet, and the connection closes."""
        if self.answered or self.disconnected:
            return
        self.answered = True
        connection = self.connection
        if not self.written:
            connection.refuse(500, b"Internal Server Error")
        else:
            connection.transport.close()
        self._notify()

    # -- the request body -------------------------------------------------------------

    def take(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        self._notify()

    def mark_received(self) -> None:
        self.received = True
        self._notify()

    def disconnect(self) -> None:
        self.disconnected = True
        self._notify()

    def _notify(self) -> None:
        if self.wake is not None:
            self.wake.set()

    async def _wait(self) -> None:
        self.wake = asyncio.Event()
        await self.wake.wait()

    async def receive(self) -> Message:
        if self.delivered:  # the whole body was read: wait for the end of the exchange
            while not (self.disconnected or self.answered):
                await self._wait()
            return {"type": "http.disconnect"}
        if self.expect_continue and not self.received and not self.written:
            self.expect_continue = False
            self.connection.transport.write(_CONTINUE)
        while not (self.body or self.received or self.disconnected):
            await self._wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        body = b"".join(self.body)
        self.body.clear()
        paused = self.buffered > BODY_BUFFER
        self.buffered = 0
        if paused:
            self.connection.update_reading()
        self.delivered = self.received
        return {"type": "http.request", "body": body, "more_body": not self.received}

    # -- the answer -------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the answer's head was sent already")
            self.started = True
            self._compose(message["status"], message.get("headers", ()))
        elif kind == "http.response.body":
            if not self.started or self.answered:
                raise RuntimeError("an answer's body needs its head first, and ends once")
            more = bool(message.get("more_body", False))
            body = b"" if self.head_only else bytes(message.get("body", b""))
            if self.disconnected:
                self.answered = not more
                return
            head = self.head
            if head is not None:
                self.head = None
                if not self.has_length and not self.head_only:
                    if not more:
                        head += b"content-length: %d\r\n" % len(body)
                    elif self.keep_alive and not self.connection.closing:
                        self.connection.closing = True  # length unknown: the close ends it
                        head += b"connection: close\r\n"
                body = head + b"\r\n" + body
            if body:
                self.connection.transport.write(body)
                self.written = True
            if not more:
                self.answered = True
                self._notify()
                self.connection.after_answer(self)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an HTTP answer")

    def _compose(self, status: int, headers: Any) -> None:
        connection = self.connection
        lines = [
            _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
            connection.server.date_line(),
        ]
        for name, value in headers:
            if b"\n" in name or b"\n" in value or b"\r" in name or b"\r" in value:
                raise RuntimeError(f"a line break in the answer's header {name!r}")
            if name.lower() == b"content-length":
                self.has_length = True
            lines.append(b"%s: %s\r\n" % (name, value))
        if connection.closing or not self.keep_alive:
            lines.append(b"connection: close\r\n")
        self.head = b"".join(lines)


def _address(info: Any) -> tuple[str, int] | None:
    return (str(info[0]), int(info[1])) if isinstance(info, tuple) else None
