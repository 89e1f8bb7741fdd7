"""Real processes for the end-to-end tests: redis-server, the di command, servers.

Tests run in parallel (pytest-xdist), beside other work on the machine: a server a test
starts listens on a port the kernel picks when it binds (``di serve`` is given port 0
and says which port it got), never on a port chosen beforehand, which another process
may take meanwhile. Only redis-server, which cannot say, gets a free port; a server that
must come back on the same port after a restart gets one outside the kernel's range for
port-0 binds (:func:`steady_port`), or a Unix socket.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .timing import PATIENCE, at_most, wait_until

ROOT = Path(__file__).parent.parent

STARTUP = 1.0
"""Seconds a `di` command promises to start in: the interpreter and its imports."""

STOP = 2.0
"""Seconds `di serve` promises from a stop that waits for nothing to its exit: the round
in progress gets 1 s, a check that ignores its cancellation 1 s more, then the hooks."""


def free_port() -> int:
    """A port free now, for a server that must be told its port (redis-server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steady_port() -> int:
    """A port free now, outside the kernel's range for port-0 binds, for a server that
    stops and starts again on the same port (behind HAProxy): no server another test
    starts on port 0 can take it meanwhile."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    chooser = random.Random()
    for _ in range(100):
        port = chooser.randrange(10000, max(low, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


@contextmanager
def closed_port() -> Iterator[int]:
    """A port nothing listens on while the block runs: it is bound, and not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


# A listening socket's state in Linux's table of TCP sockets.
LISTENING = 0x0A


def _tcp_sockets() -> list[tuple[int, int, int, int, int]]:
    """Linux's table of this machine's TCP sockets, each as (local port, remote port,
    state, bytes sent and not yet acknowledged, bytes received and not yet read); for a
    listening socket (state 0x0A) the last is the number of connections not yet accepted."""
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                local, remote, state, queues = line.split()[1:5]
                sent, received = (int(n, 16) for n in queues.split(":"))
                sockets.append(
                    (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                     int(state, 16), sent, received)
                )  # fmt: skip
    return sockets


def read_by_peer(connection: socket.socket) -> bool:
    """Whether the process at the other end of a local connection has read every byte sent
    on it: what a server has read cannot be seen from outside, but the kernel's queues can.

    The bytes have reached the peer's kernel once this side has no unacknowledged bytes,
    and the peer has read them once its side has no unread bytes, in one look."""
    mine, theirs = connection.getsockname()[1], connection.getpeername()[1]
    table = _tcp_sockets()
    delivered = any(s[:2] == (mine, theirs) and s[3] == 0 for s in table)
    read = any(s[:2] == (theirs, mine) and s[4] == 0 for s in table)
    return delivered and read


def accepted_all(port: int) -> bool:
    """Whether the server listening on ``port`` has accepted every connection made to it."""
    return any(s[0] == port and s[2] == LISTENING and s[4] == 0 for s in _tcp_sockets())


def wait_for(predicate: object, what: str, timeout: float = PATIENCE) -> float:
    """Poll until ``predicate()`` is true; the seconds it took."""
    return wait_until(predicate, what, timeout)  # type: ignore[arg-type]


class PortTakenError(Exception):
    """A server could not listen on the port it was given."""


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
        wait_for(
            lambda: self.answers() or self.process.poll() is not None,  # type: ignore[union-attr]
            "redis-server to answer PING",
        )
        if self.process.poll() is not None:
            self.process = None
            raise PortTakenError(f"redis-server could not listen on port {self.port}")

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


def probe(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`di probe` with the time a probe needs here, for tests of what it answers.

    Its default ``--timeout`` of 1 s covers starting gRPC and asking; on a loaded
    machine that is not always enough, and the answer would be a timeout instead.
    """
    return di("probe", url, "--timeout", str(at_most(1)), *options)


# What servers started on port 0 say once they listen; each captures the port.
HTTP_SAYS = r"HTTP health on http://127\.0\.0\.1:(\d+)"  # di serve
GRPC_SAYS = r"gRPC health on 127\.0\.0\.1:(\d+)"  # di serve
UVICORN_SAYS = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"  # at --log-level info


def port_said(output: Callable[[], str], says: str, process: subprocess.Popen[Any]) -> int:
    """Wait until a server's ``output()`` says which port it listens on (``says``)."""

    def said() -> re.Match[str] | None:
        found = re.search(says, output())
        if found is None and process.poll() is not None:
            raise AssertionError(f"the server exited first:\n{output()}")
        return found

    wait_for(said, f"the server to say which port it listens on ({says})")
    found = said()
    assert found is not None
    return int(found.group(1))


class Serving:
    """`di serve` as a child process, its output in a file the test can read any time.

    Its servers listen on ports the kernel picks; :attr:`http_port` and
    :attr:`grpc_port` wait until it says which.
    """

    def __init__(self, target: str, *options: str, log: Path, **env: str) -> None:
        self.log = log
        self._output = log.open("w")
        self._ports: dict[str, int] = {}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "di",
                "serve",
                target,
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                *options,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def _port(self, says: str) -> int:
        if says not in self._ports:
            self._ports[says] = port_said(self.output, says, self.process)
        return self._ports[says]

    @property
    def http_port(self) -> int:
        return self._port(HTTP_SAYS)

    @property
    def grpc_port(self) -> int:
        return self._port(GRPC_SAYS)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        return self.log.read_text()

    def wait_output(self, text: str, timeout: float = PATIENCE) -> None:
        wait_for(lambda: text in self.output(), f"{text!r} in the output", timeout)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._output.close()


class Child:
    """A command as a child process, its output in a file the test can read any time."""

    def __init__(self, command: list[str], *, log: Path, **env: str) -> None:
        self.log = log
        self._output = log.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def port(self, says: str) -> int:
        """The port the process says it listens on (``says`` captures it)."""
        return port_said(self.output, says, self.process)

    def wait_output(self, text: str, timeout: float = PATIENCE) -> None:
        def said() -> bool:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"exited before saying {text!r}:\n{self.output()}")
            return False

        wait_for(said, f"{text!r} in the output", timeout)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = PATIENCE) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._output.close()


def di_run(target: str, *options: str, log: Path, **env: str) -> Child:
    """``di run --factory target`` as a child process (port 0 unless ``options`` say)."""
    command = [sys.executable, "-m", "di", "run", "--factory", target]
    if "--port" not in options and "--uds" not in options:
        command += ["--port", "0"]
    return Child([*command, *options], log=log, **env)
