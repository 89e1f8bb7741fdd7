"""`di serve` under the conditions production meets: hung checks, SIGTERM, slow clients.

Every test runs the real command as a child process and talks to it with real clients:
httpx and http.client over HTTP, grpcio over gRPC, raw sockets where a client misbehaves.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..processes import (
    GRPC_SAYS,
    HTTP_SAYS,
    ROOT,
    STARTUP,
    STOP,
    UVICORN_SAYS,
    Serving,
    accepted_all,
    di,
    port_said,
    probe,
    read_by_peer,
    wait_for,
)
from ..serve_targets import AnnouncingDatabase, Failing, Hung
from ..services import key
from ..timing import PATIENCE, Stopwatch, at_most

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# `di serve` bounds each round by its interval: where healthy checks must pass, the
# interval is as long as they may take here.
INTERVAL = str(at_most(0))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    started: list[Serving] = []

    def start(target: str, *options: str, **env: str) -> Serving:
        serving = Serving(
            f"tests.serve_targets:{target}",
            *options,
            log=tmp_path / f"serve-{len(started)}.log",
            **env,
        )
        started.append(serving)
        return serving

    yield start
    for serving in started:
        serving.close()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def up(serving: Serving) -> None:
    wait_for(lambda: answers(serving.url + "/livez"), "di serve to answer /livez")


def grpc_check(serving: Serving, name: str, timeout: float = 5) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{serving.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=name)
        return int(stub.Check(request, timeout=timeout).status)


def status(serving: Serving, path: str) -> int:
    return httpx.get(serving.url + path, timeout=5).status_code


def test_a_hung_check_never_holds_an_answer_nor_the_exit(start: object) -> None:
    # Rounds time out after one interval: longer than an answer may take, so that an
    # answer waiting for the round would show.
    interval = at_most(0) + 0.5
    serving = start("hung", "--interval", str(interval), "--drain", "1")  # type: ignore[operator]
    up(serving)
    with httpx.Client(base_url=serving.url, timeout=5) as client:
        for _ in range(10):
            with Stopwatch() as watch:
                assert client.get("/livez").status_code == 200
            assert watch.seconds < at_most(0) < interval
    for name in ("liveness", ""):
        grpc_check(serving, name)  # connect once; time the call on a warm channel
    with grpc.insecure_channel(f"127.0.0.1:{serving.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
        for name, expected in (("liveness", SERVING), ("", None)):
            with Stopwatch() as watch:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert watch.seconds < at_most(0) < interval
            if expected is not None:
                assert answer.status == expected
    # The hung check times out with its round: readiness fails, and keeps answering.
    serving.wait_output(f"health check of '{key(Hung)}' failed (timeout)")
    for _ in range(3):
        assert status(serving, "/readyz") == 503
        time.sleep(0.5)
    verbose = httpx.get(serving.url + "/readyz?verbose", timeout=5).text
    assert f"[-]{key(Hung)} failed: reason withheld" in verbose
    assert f"[+]{key(AnnouncingDatabase)} ok" in verbose
    assert grpc_check(serving, "") == NOT_SERVING

    with Stopwatch() as watch:
        serving.process.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=PATIENCE) == 0
    assert watch.seconds < at_most(1 + STOP)  # the drain, then the stop
    assert "database closed" in serving.output()


def test_an_eager_service_nobody_invoked_is_checked(start: object) -> None:
    serving = start("eager_failing", "--interval", INTERVAL)  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 503, "/readyz to be 503")
    verbose = httpx.get(serving.url + "/readyz?verbose", timeout=5).text
    assert f"[-]{key(Failing)} failed: reason withheld" in verbose
    # Operators find the reason in the log.
    serving.wait_output("ConnectionRefusedError: payments.internal:443 refused")
    done = di("check", "tests.serve_targets:eager_failing")
    assert done.returncode == 1
    assert key(Failing) in done.stdout and "unhealthy" in done.stdout


def test_readiness_waits_for_the_start_and_a_first_round(start: object) -> None:
    serving = start("healthy", "--interval", INTERVAL)  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 200, "/readyz to be 200")
    output = serving.output()
    # Liveness is served before the first round publishes readiness.
    assert output.index("HTTP health on") < output.index("'readiness': NOT_SERVING -> SERVING")


def test_sigterm_drains_then_exits_0_with_hooks_run(start: object) -> None:
    drain = at_most(2)  # longer than the eight steps taken while it drains, loaded
    serving = start("healthy", "--interval", INTERVAL, "--drain", str(drain))  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 200, "readiness")
    with grpc.insecure_channel(f"127.0.0.1:{serving.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        assert stub.Check(request, timeout=5).status == SERVING
        signalled = time.monotonic()
        serving.process.send_signal(signal.SIGTERM)
        serving.wait_output(f"draining for {drain:g} s")
        # While draining, both servers answer, and answer NOT_SERVING, but for liveness:
        # a drain is no reason for the kubelet to restart the process.
        assert status(serving, "/readyz") == 503
        assert stub.Check(request, timeout=5).status == NOT_SERVING
        liveness = health_pb2.HealthCheckRequest(service="liveness")
        assert stub.Check(liveness, timeout=5).status == SERVING
        time.sleep(0.5)
        livez = httpx.get(serving.url + "/livez?verbose", timeout=5)
        assert livez.status_code == 200 and livez.text.endswith("livez check passed\n")
        assert stub.Check(liveness, timeout=5).status == SERVING
        assert stub.Check(request, timeout=5).status == NOT_SERVING
        assert status(serving, "/readyz") == 503
    assert serving.wait(timeout=PATIENCE) == 0
    assert time.monotonic() - signalled >= drain
    assert "database closed" in serving.output()


def test_a_second_sigterm_cuts_the_drain_short_but_not_the_hooks(start: object) -> None:
    serving = start("healthy", "--interval", INTERVAL, "--drain", "30")  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 200, "readiness")
    serving.process.send_signal(signal.SIGTERM)
    serving.wait_output("draining for 30 s")
    with Stopwatch() as watch:
        serving.process.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=PATIENCE) == 0
    assert watch.seconds < at_most(STOP)  # not what is left of the 30 s
    assert "database closed" in serving.output()


def test_sigint_skips_the_drain(start: object) -> None:
    serving = start("healthy", "--interval", INTERVAL, "--drain", "30")  # type: ignore[operator]
    up(serving)
    with Stopwatch() as watch:
        serving.process.send_signal(signal.SIGINT)
        assert serving.wait(timeout=PATIENCE) == 0
    assert watch.seconds < at_most(STOP)  # not the 30 s drain
    assert "received SIGINT: going NOT_SERVING and stopping" in serving.output()
    assert "database closed" in serving.output()


def test_sigterm_while_the_factory_builds_shuts_down_what_it_built(start: object) -> None:
    serving = start("slow_factory")  # type: ignore[operator]
    serving.wait_output("factory waiting")
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    output = serving.output()
    assert "received SIGTERM while the application was being built" in output
    assert "database closed" in output
    assert "HTTP health on" not in output  # it never started serving


def test_a_second_signal_never_cuts_the_shutdown_hooks_off(start: object) -> None:
    serving = start("slow_shutdown", "--drain", "0")  # type: ignore[operator]
    up(serving)
    serving.process.send_signal(signal.SIGTERM)
    serving.wait_output("slow hook started")
    serving.process.send_signal(signal.SIGTERM)
    serving.process.send_signal(signal.SIGINT)
    assert serving.wait(timeout=PATIENCE) == 0
    assert "slow hook finished" in serving.output()


def test_a_check_raising_system_exit_is_its_failure_not_the_end(start: object) -> None:
    serving = start("exiting", "--interval", "0.2", "--drain", "0")  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 503, "/readyz to answer 503")
    time.sleep(1)  # several rounds later, still serving
    assert serving.process.poll() is None
    assert status(serving, "/livez") == 200
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    output = serving.output()
    assert "it raised SystemExit" in output  # the failure's text, in the WARNING log
    assert "database closed" in output


def test_a_check_that_ignores_cancellation_never_holds_the_exit(start: object) -> None:
    serving = start("stubborn", "--interval", "0.5", "--drain", "1")  # type: ignore[operator]
    up(serving)
    # Started, but no round ever completes: readiness says which.
    wait_for(
        lambda: (
            "[-]startup: first round of checks not completed"
            in httpx.get(serving.url + "/readyz?verbose", timeout=5).text
        ),
        "readiness to name the pending first round",
    )
    with Stopwatch() as watch:
        serving.process.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=PATIENCE) == 0
    assert watch.seconds < at_most(1 + STOP)  # the drain, then the stop
    output = serving.output()
    assert "a health check ignores cancellation: leaving it behind" in output
    assert "database closed" in output


@pytest.mark.parametrize(
    ("target", "marker"),
    [("hung_without_timeouts", "hung check started"), ("slow_async_start", "slow start begins")],
)
def test_sigterm_never_waits_for_a_long_round_or_start(
    start: object, target: str, marker: str
) -> None:
    """The round (or start) in progress gets a short fixed time, not the interval."""
    serving = start(target, "--interval", "30", "--drain", "0")  # type: ignore[operator]
    serving.wait_output(marker)  # the round, or the start, is under way
    up(serving)
    with Stopwatch() as watch:
        serving.process.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=PATIENCE) == 0
    assert watch.seconds < at_most(STOP)  # not the 30 s round or start
    assert "database closed" in serving.output()


def test_a_signal_cancels_an_async_factory_that_never_returns(start: object) -> None:
    serving = start("async_factory_hangs")  # type: ignore[operator]
    serving.wait_output("factory waiting")
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    assert "received SIGTERM while the application factory was running: cancelling it" in (
        serving.output()
    )


def test_a_second_signal_leaves_a_factory_that_ignores_cancellation_behind(
    start: object,
) -> None:
    serving = start("stubborn_factory")  # type: ignore[operator]
    serving.wait_output("factory waiting")
    serving.process.send_signal(signal.SIGINT)
    serving.wait_output("cancelling it")
    time.sleep(at_most(0))  # the cancellation reaches the factory, which swallows it
    serving.process.send_signal(signal.SIGINT)
    assert serving.wait(timeout=PATIENCE) == 1
    assert "leaving the application factory behind" in serving.output()


def test_an_error_that_cannot_be_rendered_is_its_checks_failure(start: object) -> None:
    serving = start("badly_failing", "--interval", "0.2", "--drain", "0")  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 503, "/readyz to answer 503")
    time.sleep(1)  # several rounds later, still serving
    assert serving.process.poll() is None
    verbose = httpx.get(serving.url + "/health", timeout=5)
    assert verbose.status_code == 503
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    output = serving.output()
    assert "BadText: <str() of the BadText raised RuntimeError>" in output
    assert "Traceback" not in output
    done = di("check", "tests.serve_targets:badly_failing")
    assert done.returncode == 1
    assert "<str() of the BadText raised RuntimeError>" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("target", "error"),
    [("start_cancelled", "CancelledError"), ("start_exits", "SystemExit: 3")],
)
def test_an_eager_factory_raising_a_base_exception_is_a_failed_start(
    start: object, target: str, error: str
) -> None:
    serving = start(target)  # type: ignore[operator]
    assert serving.wait(timeout=PATIENCE) == 1
    output = serving.output()
    assert f"starting the application failed: {error}" in output
    assert f"di serve: start failed: {error}" in output
    assert "database closed" in output
    done = di("check", f"tests.serve_targets:{target}")
    assert done.returncode == 1
    assert done.stderr.startswith(f"start failed: {error}"), done.stderr
    assert "()" not in done.stderr


def test_a_blocked_event_loop_is_logged_with_its_likely_cause(start: object) -> None:
    """Nothing can answer while the loop is blocked; the log says what to look for."""
    serving = start("blocking", "--interval", "0.5", "--drain", "0")  # type: ignore[operator]
    serving.wait_output("while the application started (a sync factory")
    serving.wait_output("(a blocking call in an async health check?)")
    assert "#blocking-the-event-loop" in serving.output()
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0


def test_a_failed_start_exits_1_after_shutdown(start: object) -> None:
    serving = start("broken_start")  # type: ignore[operator]
    assert serving.wait(timeout=PATIENCE) == 1
    output = serving.output()
    assert "starting the application failed: ConnectionRefusedError: cannot reach payments" in (
        output
    )
    assert "while starting eager service" in output
    assert "database closed" in output  # built as a dependency, then shut down


def test_keep_alive_answers_are_not_held_by_nagle(start: object) -> None:
    """An answer held back by Nagle's algorithm waits for the client's delayed ACK, 40 ms
    on Linux: 200 answers on one connection would take 8 s. Without, a few ms each."""
    serving = start("healthy", "--interval", "0.5")  # type: ignore[operator]
    up(serving)
    connection = http.client.HTTPConnection("127.0.0.1", serving.http_port, timeout=5)
    with Stopwatch() as watch:
        for _ in range(200):
            connection.request("GET", "/livez")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
    connection.close()
    assert watch.seconds < at_most(200 * 0.005) < 200 * 0.040


def test_a_second_server_on_a_taken_grpc_port_exits_non_zero(start: object) -> None:
    first = start("healthy")  # type: ignore[operator]
    up(first)
    done = di(
        "serve",
        "tests.serve_targets:healthy",
        "--grpc",
        f"127.0.0.1:{first.grpc_port}",
        timeout=30,
    )
    assert done.returncode == 1
    assert f"cannot listen for gRPC on 127.0.0.1:{first.grpc_port}" in done.stderr
    assert "address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_deep_json_is_a_400_and_the_server_keeps_serving(start: object) -> None:
    serving = start("healthy")  # type: ignore[operator]
    up(serving)
    deep = b"[" * 5000 + b"]" * 5000
    answer = httpx.post(serving.url + "/grpc.health.v1.Health/Check", content=deep, timeout=5)
    assert 400 <= answer.status_code < 500
    deeper = b'{"service": ' + b"[" * 20000
    answer = httpx.post(serving.url + "/grpc.health.v1.Health/Check", content=deeper, timeout=5)
    assert 400 <= answer.status_code < 500
    assert status(serving, "/livez") == 200


def test_silent_connections_are_closed(start: object) -> None:
    serving = start("healthy")  # type: ignore[operator]
    up(serving)
    silent = []
    try:
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", serving.http_port), timeout=5)
            silent.append(connection)
        half = socket.create_connection(("127.0.0.1", serving.http_port), timeout=5)
        half.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        silent.append(half)
        deadline = time.monotonic() + PATIENCE
        for connection in silent:
            connection.settimeout(max(deadline - time.monotonic(), 0.01))
            # Closed by the server; a reset means it was closed at once (over the limit).
            with contextlib.suppress(ConnectionResetError):
                assert connection.recv(1024) == b""
    finally:
        for connection in silent:
            connection.close()
    assert status(serving, "/livez") == 200


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def read_answers(connection: socket.socket, count: int, timeout: float = 10) -> bytes:
    """Read until ``count`` whole answers with empty or short bodies have arrived."""
    connection.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"HTTP/1.1 ") < count or not data.endswith((b"ok", b"}")):
        assert time.monotonic() < deadline, data[-300:]
        chunk = connection.recv(65536)
        assert chunk, data[-300:]
        data += chunk
    return data


def test_pipelined_requests_are_answered_in_order(start: object) -> None:
    serving = start("healthy")  # type: ignore[operator]
    up(serving)
    body = b'{"service": "liveness"}'
    check = (
        b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    requests = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 100 + check
    with socket.create_connection(("127.0.0.1", serving.http_port), timeout=5) as connection:
        connection.sendall(requests)  # all at once: one read holds many requests
        answers = read_answers(connection, 101)
        assert answers.count(b"HTTP/1.1 200 OK") == 101
        assert answers.endswith(b'{"status": "SERVING"}')
        for byte in requests[:300]:  # and a byte at a time, across request boundaries
            connection.sendall(bytes([byte]))
        assert read_answers(connection, 9).count(b"HTTP/1.1 200 OK") == 9


def test_pipelining_without_reading_holds_no_memory_and_starves_nothing(start: object) -> None:
    """A client that pipelines requests and never reads an answer: the server parses one
    request at a time, so what it holds is bounded; the stalled connection is dropped."""
    serving = start("healthy", "--interval", "1")  # type: ignore[operator]
    up(serving)
    before = rss_mb(serving.process.pid)
    flood = socket.socket()
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood.connect(("127.0.0.1", serving.http_port))
    flood.settimeout(0.2)
    requests = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    sent = 0
    began = time.monotonic()
    try:
        while time.monotonic() - began < 2.5:
            with contextlib.suppress(TimeoutError):
                sent += flood.send(requests)
            with Stopwatch() as answer:
                assert status(serving, "/livez") == 200
            assert answer.seconds < at_most(1)  # not starved: a new connection, loaded
        assert rss_mb(serving.process.pid) - before < 40, (before, sent)
        # Its answers are not read: the connection is dropped, as an idle one would be.
        flood.settimeout(15)
        with contextlib.suppress(TimeoutError):
            while flood.send(requests):
                pass
        raise AssertionError("the stalled connection was never dropped")
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        flood.close()
    assert status(serving, "/livez") == 200


def test_a_request_head_is_bounded_in_size(start: object) -> None:
    serving = start("healthy")  # type: ignore[operator]
    up(serving)
    before = rss_mb(serving.process.pid)
    with socket.create_connection(("127.0.0.1", serving.http_port), timeout=5) as connection:
        connection.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while sent < 64 * 2**20:  # one endless header line
                connection.sendall(b"a" * 65536)
                sent += 65536
        # Refused after 16 KiB; what the kernel's buffers took in meanwhile is all.
        assert sent < 16 * 2**20, "the server kept taking an endless header line in"
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                answer += chunk
    if answer:  # the answer may be lost to a reset if unread bytes remained
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"x-content-type-options: nosniff" in answer
    assert rss_mb(serving.process.pid) - before < 20
    assert status(serving, "/livez") == 200


def test_at_the_connection_limit_silent_connections_make_room(start: object) -> None:
    serving = start("healthy", "--limit-concurrency", "20")  # type: ignore[operator]
    up(serving)
    silent = [
        socket.create_connection(("127.0.0.1", serving.http_port), timeout=5) for _ in range(30)
    ]
    try:
        wait_for(lambda: accepted_all(serving.http_port), "the server to accept them")
        with httpx.Client(base_url=serving.url, timeout=5) as client:
            for _ in range(10):  # each a new connection, as kubelet probes
                answer = client.get("/livez", headers={"Connection": "close"})
                assert answer.status_code == 200
    finally:
        for connection in silent:
            connection.close()


def test_the_servers_own_answers_carry_nosniff(start: object) -> None:
    serving = start("healthy")  # type: ignore[operator]
    up(serving)
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
        b"FOO /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", serving.http_port), timeout=5) as connection:
            connection.sendall(garbage)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 400 "), answer
        assert b"x-content-type-options: nosniff" in head, answer


def test_the_health_app_as_uvicorns_top_app_shuts_the_container_down(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "tests.serve_targets:top_app",
        "--port", "0", "--log-level", "info",
    ]  # fmt: skip
    log = tmp_path / "uvicorn.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        port = port_said(log.read_text, UVICORN_SAYS, server)
        url = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: answers(url) and httpx.get(url).status_code == 200, "readiness")
        server.send_signal(signal.SIGTERM)
        server.wait(PATIENCE)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert "database closed" in log.read_text()


def test_a_request_cut_off_by_a_forced_stop_gets_a_quiet_500(start: object) -> None:
    serving = start("healthy", "--drain", "0", "--grace", "30")  # type: ignore[operator]
    up(serving)
    with socket.create_connection(("127.0.0.1", serving.http_port), timeout=10) as slow:
        slow.sendall(
            b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 20\r\n\r\n{"  # the rest of the body never comes
        )
        wait_for(lambda: read_by_peer(slow), "the server to read the request head")
        serving.process.send_signal(signal.SIGTERM)
        serving.wait_output("stopping the servers (grace 30 s")
        serving.process.send_signal(signal.SIGTERM)
        code = serving.wait(timeout=PATIENCE)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := slow.recv(65536):
                answer += chunk
    output = serving.output()
    assert code == 0, output
    assert answer.startswith(b"HTTP/1.1 500 "), (answer, output)
    assert b"x-content-type-options: nosniff" in answer
    assert "database closed" in output
    assert "Traceback" not in output and "Exception in ASGI application" not in output, output


def test_serving_needs_only_the_extra_it_uses(tmp_path: Path) -> None:
    """A missing extra is simulated by making its imports fail (all are installed here).

    The HTTP listener needs httptools, the http extra's parser, and not uvicorn."""

    def serve(blocked: list[str], *options: str) -> tuple[subprocess.Popen[bytes], Path]:
        code = (
            "import sys\n"
            f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
            "from di._cli import main\n"
            f"main(['serve', 'tests.serve_targets:healthy', *{list(options)!r}])\n"
        )
        log = tmp_path / f"without-{'-'.join(blocked)}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "-c", code], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
            )
        return process, log

    http_only, http_log = serve(["grpc", "uvicorn"], "--http", "127.0.0.1:0", "--drain", "0")
    grpc_only, grpc_log = serve(["httptools", "uvicorn"], "--grpc", "127.0.0.1:0", "--drain", "0")
    try:
        http_port = port_said(http_log.read_text, HTTP_SAYS, http_only)
        grpc_port = port_said(grpc_log.read_text, GRPC_SAYS, grpc_only)
        wait_for(lambda: answers(f"http://127.0.0.1:{http_port}/livez"), "HTTP only")
        wait_for(lambda: probe(f"grpc://127.0.0.1:{grpc_port}", "--service", "liveness")
                 .returncode == 0, "gRPC only")  # fmt: skip
        for process in (http_only, grpc_only):
            process.send_signal(signal.SIGTERM)
            assert process.wait(PATIENCE) == 0
    finally:
        for process in (http_only, grpc_only):
            if process.poll() is None:
                process.kill()
                process.wait()
    missing, missing_log = serve(["httptools"], "--http", "127.0.0.1:0")
    assert missing.wait(PATIENCE) == 1
    output = missing_log.read_text()
    assert output.strip() == (
        "di serve: serving HTTP needs the http extra (httptools is not installed): "
        "pip install 'healthdi[http]'"
    )


# -- di probe ---------------------------------------------------------------------------


def test_probe_timeout_bounds_the_whole_probe_against_a_drip_server() -> None:
    """The server sends a byte every 0.3 s: its answer would take 11 s."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        import threading

        stop = threading.Event()

        def drip() -> None:
            connection, _ = server.accept()
            with connection:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                    if stop.wait(0.3):
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        return

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        with Stopwatch() as watch:
            done = di("probe", f"http://127.0.0.1:{port}/readyz", "--timeout", "1")
        stop.set()
    assert done.returncode == 1, done.stdout
    assert watch.seconds < at_most(STARTUP + 1)
    assert done.stdout.startswith("unhealthy:") and "TimeoutError" in done.stdout


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e300", "86401"])
def test_probe_refuses_a_timeout_that_is_not_finite_and_positive(value: str) -> None:
    done = di("probe", "http://127.0.0.1:1/", f"--timeout={value}")
    assert done.returncode == 1
    assert "--timeout must be a finite number of seconds > 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_probe_with_a_tiny_timeout_times_out_in_one_line() -> None:
    done = di("probe", "http://127.0.0.1:1/", "--timeout=1e-320")
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: TimeoutError"), done.stdout
    assert done.stderr == ""


def test_probe_passes_2xx_and_3xx_as_kubelet_does(start: object) -> None:
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302 if self.path == "/moved" else 404)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert probe(f"http://127.0.0.1:{port}/moved").returncode == 0
        missing = probe(f"http://127.0.0.1:{port}/missing")
        assert missing.returncode == 1 and "HTTP 404" in missing.stdout
    finally:
        server.shutdown()


def test_di_serve_answers_the_json_check_over_http(start: object) -> None:
    serving = start("healthy", "--interval", INTERVAL)  # type: ignore[operator]
    up(serving)
    wait_for(lambda: status(serving, "/readyz") == 200, "readiness")
    path = serving.url + "/grpc.health.v1.Health/Check"
    answer = httpx.post(path, content=json.dumps({"service": None}), timeout=5)
    assert answer.json() == {"status": "SERVING"}
    assert answer.headers["x-content-type-options"] == "nosniff"
