"""`make demo`: its instructions to stop and restart redis-server work as printed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from examples.shop import demo

from ..processes import ROOT, Child, Redis, free_port, probe, wait_for
from ..timing import wait_until


def test_demo_gives_the_exact_commands_to_stop_and_restart_redis() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    answers = Redis(port).answers
    first = subprocess.Popen(demo.redis_command(binary, port), stdout=subprocess.DEVNULL)
    again: subprocess.Popen[bytes] | None = None
    try:
        wait_for(answers, "the demo's redis-server")
        lines = [line.strip() for line in demo.instructions(first).splitlines()]
        stop = lines[lines.index("To watch readiness fail, stop redis-server:") + 1]
        restart = lines[lines.index("(Ctrl-C there stops it again):") + 1]
        assert stop == f"kill {first.pid}"
        assert restart == (f"{binary} --port {port} --bind 127.0.0.1 --save '' --appendonly no")

        subprocess.run(stop, shell=True, check=True, timeout=10)  # as typed in a shell
        first.wait(10)
        assert not answers()
        again = subprocess.Popen(
            restart, shell=True, stdout=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(answers, "redis-server started again with the printed command")
        os.killpg(again.pid, signal.SIGINT)  # Ctrl-C in its terminal
        again.wait(10)
        assert not answers()
    finally:
        for process in (first, again):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


def test_demo_without_its_own_redis_gives_no_redis_steps() -> None:
    assert "redis-server" not in demo.instructions(None)


def test_demo_serves_http_and_grpc_health_on_the_ports_it_is_given(tmp_path: Path) -> None:
    """`make demo PORT=... GRPC_PORT=...`: both listen where the README says, until a
    SIGTERM (Ctrl-C's twin) stops them cleanly."""
    http, grpc = free_port(), free_port()
    dry = subprocess.run(
        ["make", "-n", "demo", f"PORT={http}", f"GRPC_PORT={grpc}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert f"-m examples.shop.demo --port {http} --grpc-port {grpc}\n" in dry.stdout
    shop = Child(
        [sys.executable, "-m", "examples.shop.demo", "--port", str(http), "--grpc-port", str(grpc)],
        log=tmp_path / "demo.log",
    )
    try:
        shop.wait_output(f"The shop: http://127.0.0.1:{http} (its health over gRPC: ")
        assert f".venv/bin/di probe grpc://127.0.0.1:{grpc}" in shop.output()

        def both_serving() -> bool:
            answers = [probe(f"http://127.0.0.1:{http}/readyz"), probe(f"grpc://127.0.0.1:{grpc}")]
            return all(answer.returncode == 0 for answer in answers)

        wait_until(both_serving, "the shop's HTTP and gRPC health answering")
        shop.signal(signal.SIGTERM)
        assert shop.wait() == 0, shop.output()
    finally:
        shop.close()


def test_demo_on_a_taken_port_says_which_and_how_to_choose_another() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "examples.shop.demo", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"127.0.0.1:{port} is taken (another server listens there): choose another port, "
        f"such as make demo PORT={port + 1}"
    )
