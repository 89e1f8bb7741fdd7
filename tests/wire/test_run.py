"""`di run`: an ASGI application under a real uvicorn, drained on SIGTERM.

Each test runs ``python -m di run`` as a child process (an app of
:mod:`tests.run_targets`) and talks to it over real sockets: on SIGTERM readiness
fails at once while liveness stays up and every route is still served for the
drain; then uvicorn finishes the requests in flight and the app's lifespan (its own,
then the container's hooks) runs. A second signal, or SIGINT, skips the drain.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..processes import UVICORN_SAYS, Child, di, di_run
from ..timing import PATIENCE, Stopwatch, at_most, wait_until

FASTAPI = "tests.run_targets:create_fastapi_app"


def ready(child: Child) -> str:
    url = f"http://127.0.0.1:{child.port(UVICORN_SAYS)}"
    wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, "readiness")
    return url


def in_order(output: str, *lines: str) -> None:
    at = [output.index(line) for line in lines]
    assert at == sorted(at), f"not in the order {lines}:\n{output}"


def test_sigterm_fails_readiness_at_once_and_serves_through_the_drain(tmp_path: Path) -> None:
    drain = at_most(2)  # longer than the steps taken while it drains, on a loaded machine
    child = di_run(FASTAPI, "--drain", f"{drain:g}", log=tmp_path / "run.log")
    try:
        url = ready(child)
        # A request still running when the drain ends is finished: it began before the
        # signal, and lasts a second past the drain.
        slow: list[Any] = []
        lasts = drain + 1
        worker = threading.Thread(
            target=lambda: slow.append(httpx.get(f"{url}/slow?seconds={lasts:g}", timeout=PATIENCE))
        )
        worker.start()
        child.wait_output("slow request started")
        with Stopwatch() as stopping:
            child.signal(signal.SIGTERM)
            with Stopwatch() as failing:
                wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 503, "readiness 503")
            assert failing.seconds < at_most(0)
            assert httpx.get(f"{url}/livez").status_code == 200  # alive: not restarted
            for _ in range(5):  # app routes are still served
                assert httpx.post(f"{url}/orders").status_code == 200
            assert child.wait() == 0
        worker.join(PATIENCE)
        assert stopping.seconds >= drain
        assert slow[0].status_code == 200 and slow[0].json()["slept"] == lasts
        output = child.output()
        in_order(
            output,
            "slow request started",
            f"received SIGTERM: NOT_SERVING, serving for {drain:g} s more before stopping",
            "Shutting down",
            "app lifespan ended",
            "database closed after 5 orders",
            "Finished server process",
        )
    finally:
        child.close()


def test_a_stream_still_open_after_the_grace_is_cut_and_the_lifespan_runs(
    tmp_path: Path,
) -> None:
    grace = at_most(0)
    child = di_run(FASTAPI, "--drain", "0.5", "--grace", str(grace), log=tmp_path / "run.log")
    streamed: list[str] = []

    def listen(url: str) -> None:
        try:
            with httpx.stream("GET", f"{url}/events", timeout=PATIENCE) as events:
                for line in events.iter_lines():
                    streamed.append(line)
        except httpx.HTTPError as error:
            streamed.append(type(error).__name__)

    try:
        url = ready(child)
        listener = threading.Thread(target=listen, args=(url,))
        listener.start()
        child.wait_output("events stream started")
        with Stopwatch() as stopping:
            child.signal(signal.SIGTERM)
            assert child.wait() == 0
        listener.join(PATIENCE)
        # The drain, then the grace, then the stream is cut: not a wait without end.
        assert 0.5 + grace <= stopping.seconds < at_most(0.5 + grace + 1)
        assert "data: tick" in streamed
        in_order(
            child.output(),
            "received SIGTERM: NOT_SERVING",
            "timeout graceful shutdown exceeded",
            "app lifespan ended",
            "database closed",
        )
    finally:
        child.close()


def test_a_second_signal_skips_the_drain(tmp_path: Path) -> None:
    child = di_run(FASTAPI, "--drain", "60", log=tmp_path / "run.log")
    try:
        url = ready(child)
        child.signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 503, "readiness 503")
        with Stopwatch() as stopping:
            child.signal(signal.SIGTERM)
            assert child.wait() == 0
        assert stopping.seconds < at_most(1)
        in_order(
            child.output(),
            "received SIGTERM during the drain: stopping now",
            "app lifespan ended",
            "database closed after 0 orders",
        )
    finally:
        child.close()


def test_sigint_skips_the_drain(tmp_path: Path) -> None:
    child = di_run(FASTAPI, "--drain", "60", log=tmp_path / "run.log")
    try:
        ready(child)
        with Stopwatch() as stopping:
            child.signal(signal.SIGINT)
            assert child.wait() == 0
        # The stop itself (uvicorn, the lifespan, the hooks, the exit) on a loaded
        # machine: far from the 60 s drain it skipped.
        assert stopping.seconds < at_most(5)
        in_order(
            child.output(),
            "received SIGINT: NOT_SERVING, stopping",
            "app lifespan ended",
            "database closed",
        )
    finally:
        child.close()


@pytest.mark.parametrize("framework", ["litestar", "starlette"])
def test_a_litestar_or_starlette_app_drains_too(tmp_path: Path, framework: str) -> None:
    target = f"tests.run_targets:create_{framework}_app"
    drain = at_most(1)  # longer than the steps taken while it drains, on a loaded machine
    child = di_run(target, "--drain", f"{drain:g}", log=tmp_path / "l.log")
    try:
        url = ready(child)
        child.signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 503, "readiness 503")
        assert httpx.post(f"{url}/orders").json() == {"order": 1}
        assert child.wait() == 0
        assert "database closed after 1 orders" in child.output()
    finally:
        child.close()


def test_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    drain = f"{at_most(0):g}"  # readiness is read 503 before the listener closes
    child = di_run(FASTAPI, "--uds", str(path), "--drain", drain, log=tmp_path / "run.log")
    try:
        child.wait_output(f"Uvicorn running on unix socket {path}")
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            wait_until(lambda: client.get("http://app/readyz").status_code == 200, "readiness")
            assert client.post("http://app/orders").json()["order"] == 1
            child.signal(signal.SIGTERM)
            wait_until(lambda: client.get("http://app/readyz").status_code == 503, "draining")
            assert child.wait() == 0
    finally:
        child.close()


def test_an_app_with_no_monitor_is_served_only_without_a_drain(tmp_path: Path) -> None:
    refused = di("run", "--factory", "tests.run_targets:create_plain_app", "--port", "0")
    assert refused.returncode == 1
    assert "has no HealthMonitor to drain" in refused.stderr
    assert "--drain 0 serves without draining" in refused.stderr

    target = "tests.run_targets:create_plain_app"
    child = di_run(target, "--drain", "0", log=tmp_path / "run.log")
    try:
        url = f"http://127.0.0.1:{child.port(UVICORN_SAYS)}"
        assert httpx.get(url).text == "plain"
        started = time.monotonic()
        child.signal(signal.SIGTERM)
        assert child.wait() == 0
        assert time.monotonic() - started < at_most(1)
    finally:
        child.close()


def test_bad_options_and_targets_are_one_line_each() -> None:
    for arguments, says in (
        (["--drain", "-1"], "--drain must be a finite number of seconds >= 0, got -1"),
        (["--drain", "nan"], "--drain must be a finite number of seconds >= 0, got nan"),
        (["--port", "70000"], "--port must be a port number (0 to 65535), got 70000"),
        (["--grace", "-1"], "--grace must be a finite number of seconds >= 0, got -1"),
        (
            ["--uds", "/nonexistent/app.sock"],
            "--uds /nonexistent/app.sock: its folder /nonexistent does not exist",
        ),
        (
            ["--uds", "/tmp/" + "s" * 120],
            f"--uds /tmp/{'s' * 120}: a Unix socket's path is at most 107 bytes, this "
            "one is 125: use a shorter path",
        ),
    ):
        done = di("run", FASTAPI, *arguments)
        assert done.returncode == 1 and done.stderr.strip() == f"di run: {says}", done.stderr
    done = di("run", "tests.run_targets:nothing")
    assert done.stderr.strip() == "di run: module 'tests.run_targets' has no attribute 'nothing'"
    done = di("run", "tests.run_targets:say")
    assert done.returncode == 1 and "has no HealthMonitor to drain" in done.stderr
    done = di("run", "--factory", "tests.run_targets:FASTAPI")
    assert done.stderr.strip() == ("di run: module 'tests.run_targets' has no attribute 'FASTAPI'")


def test_a_failed_startup_exits_with_uvicorns_status(tmp_path: Path) -> None:
    child = di_run(FASTAPI, log=tmp_path / "run.log", DATABASE_DOWN="1")
    try:
        assert child.wait() == 3  # uvicorn's STARTUP_FAILURE
        output = child.output()
        assert "ConnectionError: the database is down" in output
        assert "Application startup failed" in output
    finally:
        child.close()
