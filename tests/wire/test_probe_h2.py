"""``di probe grpc://`` speaks HTTP/2 itself: real grpcio servers, and hostile bytes.

Every answer grpcio's health servicer gives (SERVING, NOT_SERVING, SERVICE_UNKNOWN,
NOT_FOUND for a service it does not know, UNIMPLEMENTED without a health servicer) is
read by the probe's own HTTP/2 and HPACK; the decoder also reads RFC 7541's own
examples. Then a raw socket server sends what no gRPC server should (garbage, frames
too large, broken HPACK, a stream that never ends): the probe says ``unhealthy: ...``
in one line, never a traceback, within its ``--timeout``.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from di._cli import h2
from di._cli.probe import probe as probe_in_process

from ..processes import di, probe
from ..timing import PATIENCE, Stopwatch, at_most

Status = health_pb2.HealthCheckResponse


@pytest.fixture(scope="module")
def grpcio() -> Iterator[tuple[int, health.HealthServicer]]:
    """A real grpcio server with the stock health servicer, and a second port with none."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", Status.SERVING)
    servicer.set("down", Status.NOT_SERVING)
    servicer.set("unsure", Status.UNKNOWN)
    servicer.set("gone", Status.SERVICE_UNKNOWN)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


@pytest.mark.parametrize(
    ("service", "code", "said"),
    [
        ("", 0, "SERVING"),
        ("down", 1, "NOT_SERVING"),
        ("unsure", 1, "UNKNOWN"),
        ("gone", 1, "SERVICE_UNKNOWN"),
        ("never-registered", 1, "NOT_FOUND"),
        ("é" * 200, 1, "NOT_FOUND"),  # a request past one-byte lengths, in UTF-8
    ],
)
def test_every_answer_of_grpcios_health_servicer(
    grpcio: tuple[int, Any], service: str, code: int, said: str
) -> None:
    port, _ = grpcio
    done = probe(f"grpc://127.0.0.1:{port}", "--service", service)
    assert (done.returncode, done.stderr) == (code, ""), done
    word = "healthy" if code == 0 else "unhealthy"
    assert done.stdout == f"{word}: {said} from 127.0.0.1:{port} for {service!r}\n"


def test_a_grpc_server_without_a_health_servicer_is_unimplemented() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        done = probe(f"grpc://127.0.0.1:{port}")
    finally:
        server.stop(None)
    assert done.returncode == 1, done
    assert done.stdout == f"unhealthy: UNIMPLEMENTED from 127.0.0.1:{port} for ''\n"


def test_the_same_connection_state_reads_many_answers(grpcio: tuple[int, Any]) -> None:
    """grpcio indexes its headers in HPACK's dynamic table and Huffman-codes them: many
    calls in this process, in turn, read the same as one."""
    port, _ = grpcio
    for service in ("", "down", "never-registered") * 5:
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as connection:
            reply = h2.health_check(connection, "x", False, service, _deadline())
        assert reply.code in (0, 5), reply


def _deadline() -> float:
    import time

    return time.monotonic() + PATIENCE


def test_hpack_decodes_rfc_7541s_huffman_examples() -> None:
    """RFC 7541, C.4.1 and C.4.2: two requests, Huffman-coded, the second indexing the
    first's :authority in the dynamic table."""
    decoder = h2._Hpack()
    first = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
    assert decoder.decode(first) == [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ]
    second = bytes.fromhex("828684be5886a8eb10649cbf")
    assert decoder.decode(second) == [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ]


# -- a raw socket server sending what it likes -----------------------------------------

SETTINGS = h2._frame(h2._SETTINGS, 0, 0, b"")


def headers(*fields: tuple[str, str], end: bool = True) -> bytes:
    block = b"".join(h2._literal(name, value) for name, value in fields)
    flags = h2._END_HEADERS | (h2._END_STREAM if end else 0)
    return h2._frame(h2._HEADERS, flags, 1, block)


def message(status: int) -> bytes:
    body = bytes((0x08, status))
    return h2._frame(h2._DATA, 0, 1, b"\x00" + len(body).to_bytes(4, "big") + body)


SERVING = (
    headers((":status", "200"), ("content-type", "application/grpc"), end=False)
    + message(1)
    + headers(("grpc-status", "0"))
)


class Raw:
    """A TCP server answering each connection with ``answer(connection)``, then closing
    (or holding it open until the client closes, with ``hold``)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer: Callable[[socket.socket], None] = lambda connection: None
        self.hold = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(PATIENCE)
                try:
                    _read_request(connection)
                    self.answer(connection)
                    if self.hold:
                        while connection.recv(65536):
                            pass
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def _read_request(connection: socket.socket) -> bytes:
    """What the probe sends before it waits: preface, SETTINGS, HEADERS, DATA (END_STREAM)."""
    seen = b""
    while True:
        if not h2._PREFACE.startswith(seen[: len(h2._PREFACE)]):
            return seen  # not HTTP/2: the probe's HTTP/1 request, to say what it is
        at = len(h2._PREFACE)
        while at + 9 <= len(seen):
            length = int.from_bytes(seen[at : at + 3], "big")
            if seen[at + 3] == h2._DATA and seen[at + 4] & h2._END_STREAM:
                return seen
            at += 9 + length
        chunk = connection.recv(65536)
        if not chunk:
            return seen
        seen += chunk


@pytest.fixture(scope="module")
def raw() -> Iterator[Raw]:
    server = Raw()
    yield server
    server.close()


def ask(
    raw: Raw, reply: bytes, *, hold: bool = False, timeout: float | None = None
) -> tuple[int, str]:
    """Probe ``raw`` (in this process) while it sends ``reply``: the exit code and line.

    ``timeout`` is the probe's ``--timeout``; by default what an answer needs here."""
    raw.answer = lambda connection: connection.sendall(reply)
    raw.hold = hold
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = probe_in_process(f"grpc://127.0.0.1:{raw.port}", "", timeout or at_most(1))
    return code, out.getvalue()


def test_a_raw_server_speaking_grpc_rightly_is_healthy(raw: Raw) -> None:
    assert ask(raw, SETTINGS + SERVING) == (
        0,
        f"healthy: SERVING from 127.0.0.1:{raw.port} for ''\n",
    )


def test_pings_are_answered_before_the_answer(raw: Raw) -> None:
    """The server waits for the PING's acknowledgement before it answers."""
    ping = h2._frame(h2._PING, 0, 0, b"12345678")

    def answer(connection: socket.socket) -> None:
        connection.sendall(SETTINGS + ping)
        seen = b""
        while h2._frame(h2._PING, h2._ACK, 0, b"12345678") not in seen:
            chunk = connection.recv(65536)
            assert chunk, "the probe closed without answering the PING"
            seen += chunk
        connection.sendall(SERVING)

    raw.answer = answer
    raw.hold = False
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = probe_in_process(f"grpc://127.0.0.1:{raw.port}", "", at_most(1))
    assert (code, out.getvalue()) == (0, f"healthy: SERVING from 127.0.0.1:{raw.port} for ''\n")


BROKEN = "unhealthy: the server at 127.0.0.1:{port} broke the gRPC call: "


def test_a_reset_after_the_server_spoke_http2_is_a_closed_connection(raw: Raw) -> None:
    """A server that closes without reading what the probe acknowledged resets the
    connection (the kernel's answer to the unread acknowledgement). Here the reset is
    made certain: the server waits for the probe's SETTINGS acknowledgement, then
    closes with SO_LINGER 0. It reads as the same broken call as a plain close."""
    acknowledged = h2._frame(h2._SETTINGS, h2._ACK, 0, b"")

    def answer(connection: socket.socket) -> None:
        connection.sendall(SETTINGS)
        seen = b""
        while acknowledged not in seen:
            chunk = connection.recv(65536)
            assert chunk, "the probe closed without acknowledging the SETTINGS"
            seen += chunk
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    raw.answer = answer
    raw.hold = False
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = probe_in_process(f"grpc://127.0.0.1:{raw.port}", "", at_most(1))
    said = BROKEN.format(port=raw.port) + "the connection closed before the answer ended\n"
    assert (code, out.getvalue()) == (1, said)


def test_an_acknowledgement_the_closed_server_refuses_loses_nothing_already_read() -> None:
    """Answering a PING or SETTINGS to a server that has gone fails to send; the frames
    it sent before are still read to the end of the answer."""
    probe_end, server_end = socket.socketpair()
    with probe_end:
        server_end.sendall(SETTINGS + SERVING)
        server_end.close()  # the probe's SETTINGS acknowledgement now has nowhere to go
        reply = h2._Call(probe_end, time.monotonic() + at_most(1)).answer()
    assert (reply.code, reply.serving) == (0, 1)


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (SETTINGS + b"\xff\xff\xff" + bytes(6), "a frame of 16777215 bytes, over the 16384 agreed"),
        (SETTINGS + h2._frame(h2._HEADERS, 5, 1, b"\xff\x80"), "an HPACK integer cut short"),
        (SETTINGS + h2._frame(h2._HEADERS, 5, 1, b"\xbf"), "an HPACK index 63 that is in no"),
        (
            SETTINGS + h2._frame(h2._HEADERS, 5, 1, b"\x00\x81\x00\x00"),
            "an HPACK string whose padding is not the EOS code's first bits",
        ),
        (
            SETTINGS + h2._frame(h2._HEADERS, 5, 1, b"\x00\x84\xff\xff\xff\xff\x00"),
            "an HPACK string holding the EOS code",
        ),
        (SETTINGS + headers((":status", "200")), "the answer ended with grpc-status None"),
        (
            SETTINGS
            + headers((":status", "200"), end=False)
            + h2._frame(h2._DATA, 0, 1, b"\x00\x00\x00\x00\x09\x08")
            + headers(("grpc-status", "0")),
            "a response of 1 bytes whose prefix says 9",
        ),
        (
            SETTINGS
            + headers((":status", "200"), end=False)
            + h2._frame(h2._DATA, 0, 1, b"\x00\x00\x00\x00\x01\x0f")
            + headers(("grpc-status", "0")),
            "a HealthCheckResponse with wire type 7",
        ),
        (SETTINGS + h2._frame(h2._SETTINGS, 0, 0, b"\x00"), "a SETTINGS frame of 1 bytes"),
        (SETTINGS + h2._frame(h2._DATA, 0, 3, b""), "a frame of type 0 on stream 3, not 1"),
        (SETTINGS + h2._frame(h2._PUSH_PROMISE, 4, 1, bytes(4)), "an unexpected frame of type 5"),
        (SETTINGS, "the connection closed before the answer ended"),
        (
            SETTINGS + h2._frame(h2._DATA, 0x8, 1, b"\x09abc"),
            "a frame whose padding is longer than itself",
        ),
    ],
)
def test_broken_answers_are_one_unhealthy_line(raw: Raw, reply: bytes, said: str) -> None:
    code, line = ask(raw, reply)
    assert code == 1
    assert line.startswith(BROKEN.format(port=raw.port) + said), line
    assert line.count("\n") == 1


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (SETTINGS + headers((":status", "200"), ("grpc-status", "12")), "UNIMPLEMENTED"),
        (SETTINGS + headers((":status", "503")), "UNAVAILABLE"),
        (SETTINGS + headers((":status", "200"), ("grpc-status", "99")), "code 99"),
        (SETTINGS + h2._frame(h2._RST_STREAM, 0, 1, b"\x00\x00\x00\x07"), "UNAVAILABLE"),
        (SETTINGS + h2._frame(h2._GOAWAY, 0, 0, bytes(8)), "UNAVAILABLE"),
    ],
)
def test_refusals_say_their_grpc_code(raw: Raw, reply: bytes, said: str) -> None:
    assert ask(raw, reply) == (1, f"unhealthy: {said} from 127.0.0.1:{raw.port} for ''\n")


def test_a_serving_status_no_enum_has_is_unhealthy(raw: Raw) -> None:
    reply = (
        SETTINGS
        + headers((":status", "200"), end=False)
        + message(9)
        + headers(("grpc-status", "0"))
    )
    assert ask(raw, reply) == (1, f"unhealthy: status 9 from 127.0.0.1:{raw.port} for ''\n")


def test_a_stream_that_never_ends_is_bounded_by_the_timeout(raw: Raw) -> None:
    reply = SETTINGS + headers((":status", "200"), end=False)
    with Stopwatch() as watch:
        code, line = ask(raw, reply, hold=True, timeout=0.5)
    assert code == 1 and "TimeoutError" in line, line
    assert watch.seconds < at_most(0.5)


def test_a_ping_flood_is_bounded_by_the_timeout(raw: Raw) -> None:
    """A server that only ever pings is answered, until the probe's time is up."""

    def answer(connection: socket.socket) -> None:
        ping = h2._frame(h2._PING, 0, 0, b"12345678")
        connection.sendall(SETTINGS)
        with contextlib.suppress(OSError):
            while True:
                connection.sendall(ping * 100)

    raw.answer = answer
    raw.hold = False
    out = io.StringIO()
    with Stopwatch() as watch, contextlib.redirect_stdout(out):
        code = probe_in_process(f"grpc://127.0.0.1:{raw.port}", "", 0.5)
    assert code == 1 and "TimeoutError" in out.getvalue(), out.getvalue()
    assert watch.seconds < at_most(0.5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(max_size=200), first=st.booleans())
def test_any_bytes_give_one_unhealthy_line(raw: Raw, garbage: bytes, first: bool) -> None:
    """Whatever follows (or stands for) the SETTINGS frame: one line, exit 1."""
    code, line = ask(raw, (SETTINGS if first else b"") + garbage)
    assert code == 1, line
    assert line.startswith("unhealthy: ") and line.count("\n") == 1, line
    assert "Traceback" not in line


def test_the_di_command_says_the_same_of_broken_bytes(raw: Raw) -> None:
    """The real command, as Docker runs it: one line on stdout, nothing on stderr."""
    raw.answer = lambda connection: connection.sendall(SETTINGS + b"\xff" * 40)
    raw.hold = False
    done = di("probe", f"grpc://127.0.0.1:{raw.port}", "--timeout", str(at_most(1)))
    assert (done.returncode, done.stderr) == (1, ""), done
    assert done.stdout.startswith(BROKEN.format(port=raw.port)), done.stdout
