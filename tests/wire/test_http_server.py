"""The sidecar's HTTP listener (`di._serving.http_server`) on its own, under raw sockets.

The server runs on an asyncio loop in a thread (it serves `di serve`, which runs on
asyncio only, for grpcio); each test talks to it as a client would, byte by byte where
it matters. `tests/wire/test_serve.py` covers the same bounds through the whole command.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from di._serving.http_server import HttpServer, listen

from ..timing import Stopwatch, at_most, wait_until

Message = MutableMapping[str, Any]


@dataclass
class Served:
    port: int
    server: HttpServer
    loop: asyncio.AbstractEventLoop
    seen: list[str] = field(default_factory=list)  # "path body" of every request
    in_flight: int = 0
    most_in_flight: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def call(self, action: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(action)


def make_app(served: Served) -> Callable[..., Awaitable[None]]:
    """Echoes the method, path and body; /fail raises, /stream answers in two parts
    without a length, /hold waits for ``served.release``."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        served.in_flight += 1
        served.most_in_flight = max(served.most_in_flight, served.in_flight)
        try:
            body = b""
            if scope["path"] != "/ignore-body":
                while True:
                    message = await receive()
                    body += message.get("body", b"")
                    if not message.get("more_body"):
                        break
            served.seen.append(f"{scope['path']} {body.decode()}")
            if scope["path"] == "/fail":
                raise RuntimeError("the app failed")
            if scope["path"] == "/stream":  # no Content-Length: the close ends the body
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"one ", "more_body": True})
                await send({"type": "http.response.body", "body": b"two"})
                return
            if scope["path"] == "/hold":
                while not served.release.is_set():
                    await asyncio.sleep(0.01)
            text = f"{scope['method']} {scope['path']} {body.decode()}".encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(text)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": text})
        finally:
            served.in_flight -= 1

    return app


@contextlib.contextmanager
def serving(limit: int = 16, idle: float = 5.0) -> Iterator[Served]:
    listener = listen(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ready = threading.Event()
    holder: list[Served] = []

    async def main() -> None:
        served = Served(port, None, asyncio.get_running_loop())  # type: ignore[arg-type]
        served.server = HttpServer(make_app(served), limit=limit, idle=idle)
        holder.append(served)
        async with anyio.create_task_group() as tasks:
            await tasks.start(served.server.run_on, listener)
            ready.set()

    thread = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(10)
    served = holder[0]
    try:
        yield served
    finally:
        served.release.set()
        with contextlib.suppress(RuntimeError):  # the loop ended already
            served.call(served.server.force)
        thread.join(10)
        assert not thread.is_alive()


def wait_in_flight(served: Served) -> None:
    wait_until(lambda: served.in_flight, "the request to reach the app")


def read_until_closed(connection: socket.socket, timeout: float = 5) -> bytes:
    connection.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            data += chunk
    return data


def read_answers(connection: socket.socket, count: int) -> list[bytes]:
    """``count`` whole answers (heads with Content-Length and their bodies)."""
    connection.settimeout(5)
    data = b""
    answers: list[bytes] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            assert chunk, (answers, data)
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        while len(data) < length:
            chunk = connection.recv(65536)
            assert chunk, (answers, data)
            data += chunk
        answers.append(head + b"\r\n\r\n" + data[:length])
        data = data[length:]
    return answers


def test_pipelined_requests_reach_the_app_one_at_a_time_in_order() -> None:
    with serving() as served, served.connect() as connection:
        requests = b"".join(
            b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (i, i % 10)
            for i in range(50)
        )
        connection.sendall(requests)
        answers = read_answers(connection, 50)
    assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [
        b"POST /%d %d" % (i, i % 10) for i in range(50)
    ]
    assert served.most_in_flight == 1


def test_a_blank_line_split_across_reads_ends_the_head() -> None:
    with serving() as served, served.connect() as connection:
        for piece in (b"GET /a HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"):
            connection.sendall(piece)
            time.sleep(0.05)
        assert read_answers(connection, 1)[0].endswith(b"GET /a ")


def test_a_head_over_16_kib_is_answered_431_and_closed() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000)
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"x-content-type-options: nosniff" in answer
    assert served.seen == []


def test_a_body_without_content_length_is_answered_411() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert b"x-content-type-options: nosniff" in answer
    assert served.seen == []


def test_what_does_not_parse_is_answered_400_and_closed() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(b"GET / HTTP/1.1\nHost: x\n\n")
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"x-content-type-options: nosniff" in answer


def test_an_app_that_fails_is_a_500_with_nosniff_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serving() as served:
        with served.connect() as connection:
            connection.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_until_closed(connection)
        assert answer.startswith(b"HTTP/1.1 500 ")
        assert b"x-content-type-options: nosniff" in answer
        with served.connect() as connection:
            connection.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answers(connection, 1)[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert "the HTTP app failed on GET /fail" in caplog.text


def test_head_answers_carry_no_body() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.settimeout(5)
        data = b""
        while not data.endswith(b"GET /b "):
            chunk = connection.recv(65536)
            assert chunk, data
            data += chunk
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\n")  # a head with its Content-Length, no body
    assert b"content-length: 8" in first
    assert second.endswith(b"\r\n\r\nGET /b ")


def test_http_1_0_and_connection_close_end_the_connection_after_the_answer() -> None:
    with serving() as served:
        for request in (
            b"GET /a HTTP/1.0\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        ):
            with served.connect() as connection:
                connection.sendall(request)
                answer = read_until_closed(connection)
            assert answer.count(b"HTTP/1.1 200 OK") == 1
            assert b"connection: close" in answer
    assert served.seen == ["/a ", "/a "]


def test_a_client_that_closes_its_side_after_a_request_gets_the_answer() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.shutdown(socket.SHUT_WR)
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"GET /a ")


def test_expect_100_continue_is_answered_when_the_app_reads_the_body() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        connection.settimeout(5)
        assert connection.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(b"hello")
        assert read_answers(connection, 1)[0].endswith(b"POST /a hello")


def test_a_body_the_app_did_not_read_ends_the_connection_after_the_answer() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(
            b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
        )
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" not in answer  # decided after its head was sent


def test_an_upgrade_is_answered_as_http_then_the_connection_closes() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"\x81\x05hello"
        )
        answer = read_until_closed(connection)
    assert answer.count(b"HTTP/1.1 200 OK") == 1 and answer.endswith(b"GET /a ")


def test_a_connection_silent_since_its_last_answer_is_closed_after_idle() -> None:
    with serving(idle=0.5) as served, served.connect() as connection:
        connection.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answers(connection, 1)
        connection.sendall(b"GET /b HTTP/1.1\r\n")  # a head never finished
        with Stopwatch() as watch:
            assert read_until_closed(connection) == b""
        assert watch.seconds < at_most(0.5 + 0.1)  # idle, then the next sweep


def test_at_the_limit_the_connection_waiting_for_a_head_makes_room() -> None:
    with serving(limit=2) as served:
        busy = served.connect()
        silent = served.connect()
        try:
            busy.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_in_flight(served)
            with served.connect() as probe:
                probe.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answers(probe, 1)[0].endswith(b"GET /probe ")
            assert read_until_closed(silent) == b""  # closed to make room
            served.release.set()
            assert read_answers(busy, 1)[0].endswith(b"GET /hold ")  # never dropped
        finally:
            busy.close()
            silent.close()


def test_stopping_closes_idle_connections_and_answers_those_in_flight() -> None:
    with serving() as served:
        busy = served.connect()
        idle = served.connect()
        try:
            busy.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_in_flight(served)
            served.call(lambda: served.server.stop(30))
            assert read_until_closed(idle) == b""
            served.release.set()
            answer = read_until_closed(busy)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"connection: close" in answer
            with pytest.raises(OSError):
                served.connect().close()  # no longer accepting
        finally:
            busy.close()
            idle.close()


def test_a_forced_stop_answers_500_to_a_request_in_flight() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        wait_in_flight(served)
        served.call(served.server.force)
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert b"x-content-type-options: nosniff" in answer


def test_an_answer_of_unknown_length_is_ended_by_the_close() -> None:
    with serving() as served, served.connect() as connection:
        connection.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.count(b"connection: close") == 1
    assert answer.endswith(b"\r\n\r\none two")
