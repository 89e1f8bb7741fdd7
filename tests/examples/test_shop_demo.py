"""`make demo`: its instructions to stop and restart redis-server work as printed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from examples.shop import demo

from ..processes import Redis, free_port, wait_for


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
