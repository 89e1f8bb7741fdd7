"""Real processes for the end-to-end tests: redis-server and the di command."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: object, timeout: float, what: str) -> float:
    """Poll until ``predicate()`` is true; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Redis:
    """A real redis-server on a loopback port, stoppable and restartable."""

    def __init__(self, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, 10, "redis-server to answer PING")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


def di(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the di command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "di", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **env},
    )


class Serving:
    """`di serve` as a child process, its output in a file the test can read any time."""

    def __init__(self, target: str, *options: str, log: Path, **env: str) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = log
        self._output = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "di",
                "serve",
                target,
                "--http",
                f"127.0.0.1:{self.http_port}",
                "--grpc",
                f"127.0.0.1:{self.grpc_port}",
                *options,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        return self.log.read_text()

    def wait_output(self, text: str, timeout: float = 20) -> None:
        wait_for(lambda: text in self.output(), timeout, f"{text!r} in the output")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._output.close()
