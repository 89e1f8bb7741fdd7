"""Real servers for the checks' tests, each in its own process group, on a free port.

Every server here can be hung (SIGSTOP to its whole process group: the kernel still
accepts connections for it, nothing answers) and resumed, and killed. PostgreSQL,
RabbitMQ, redis-server (:class:`tests.processes.Redis`) and dnsmasq come from Debian
(``.ci/run`` installs them); the HTTP(S) server is the standard library's, serving
certificates made by trustme; the Celery worker is a real worker on a Redis broker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from ..processes import ROOT, PortTakenError, free_port, wait_for
from ..timing import PATIENCE

POSTGRES_BIN = Path("/usr/lib/postgresql")


class Daemon:
    """A server process the test owns, in a process group of its own."""

    name = "server"
    process: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], **options: Any) -> None:
        options.setdefault("stdout", subprocess.DEVNULL)
        options.setdefault("stderr", subprocess.DEVNULL)
        self.process = subprocess.Popen(argv, start_new_session=True, **options)

    def _signal(self, signum: int) -> None:
        """Signal the process group, then every descendant: PostgreSQL's backends, each
        in a session of its own, answer the connections the postmaster accepted."""
        if self.process is None or self.process.poll() is not None:
            return
        below = _descendants(self.process.pid)  # found first: once killed, they move to init
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)  # started by another helper, in our group
        if signum == signal.SIGSTOP:  # the parent stopped forks no more: catch the last ones
            below += _descendants(self.process.pid)
        for pid in below:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)
        if signum == signal.SIGSTOP:
            # A thread running on another core stops at its next entry to the kernel:
            # the server is hung once every thread of every process reads stopped.
            pids = [self.process.pid, *below]
            wait_for(lambda: all(_stopped(pid) for pid in pids), f"{self.name} to stop")

    @contextmanager
    def hung(self) -> Iterator[None]:
        """Stopped (SIGSTOP) for the block: connections are accepted, never answered."""
        self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def _wait_ready(self, ready: Any, timeout: float = PATIENCE) -> None:
        process = self.process
        assert process is not None
        wait_for(lambda: process.poll() is not None or ready(), f"{self.name} to answer", timeout)
        if process.poll() is not None:
            self.process = None
            raise PortTakenError(f"{self.name} exited at start (code {process.returncode})")


def _descendants(root: int) -> list[int]:
    """The processes below ``root``, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or the process is gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return True
    for task in tasks:
        try:
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state not in ("T", "t", "Z", "X"):
            return False
    return True


def _binary(name: str, package: str, where: Path | None = None) -> str:
    found = shutil.which(name)
    if found is None and where is not None:
        candidates = sorted(where.glob(f"*/bin/{name}"))
        found = str(candidates[-1]) if candidates else None
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return found


def _as_postgres() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: as root, its processes run as ``postgres``."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.getuid() == 0 else {}


class Postgres(Daemon):
    """A PostgreSQL server of its own: a new cluster, trust authentication, no fsync."""

    name = "postgres"

    def __init__(self) -> None:
        self.initdb = _binary("initdb", "postgresql", POSTGRES_BIN)
        self.binary = str(Path(self.initdb).with_name("postgres"))
        self.home = Path(tempfile.mkdtemp(prefix="healthdi-pg-"))
        if os.getuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        self.data = self.home / "data"
        subprocess.run(
            [self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"],
            check=True,
            capture_output=True,
            **_as_postgres(),
        )
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        for _ in range(5):  # a port free when picked may be taken before it is bound
            self.port = free_port()
            self._spawn(
                [
                    self.binary,
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.home),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                ],
                **_as_postgres(),
            )
            try:
                self._wait_ready(self.answers)
                return
            except PortTakenError:
                continue
        raise PortTakenError("postgres could not listen on a free port")

    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=1) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.home, ignore_errors=True)


class RabbitMQ(Daemon):
    """A RabbitMQ node of its own: its own epmd, node name, ports and files; no plugins."""

    name = "rabbitmq-server"

    def __init__(self) -> None:
        # The node itself: /usr/sbin/rabbitmq-server would switch to the rabbitmq user.
        found = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        self.binary = (
            str(found) if found.exists() else _binary("rabbitmq-server", "rabbitmq-server")
        )
        self.epmd_binary = _binary("epmd", "erlang-base")
        self.home = Path(tempfile.mkdtemp(prefix="healthdi-rabbitmq-"))
        self.port = 0
        self.epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        home = self.home
        (home / "plugins").write_text("[].\n")
        (home / "env.conf").write_text("")
        epmd_port = free_port()
        self.epmd = subprocess.Popen(
            [self.epmd_binary, "-port", str(epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = free_port()
        (home / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        environment = {
            **os.environ,
            "HOME": str(home),
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_NODENAME": f"healthdi-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONF_ENV_FILE": str(home / "env.conf"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "plugins"),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
            # One scheduler that sleeps when idle: Erlang's schedulers spin by default,
            # which would take a core from the rest of the suite.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none",
        }
        self._spawn([self.binary], env=environment)
        self._wait_ready(self.answers, 2 * PATIENCE)  # an Erlang VM and a broker: slow to boot

    def answers(self) -> bool:
        """Whether the broker answers an AMQP 0-9-1 protocol header with Connection.Start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"
        except OSError:
            return False

    def close(self) -> None:
        self.kill()
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(10)
        shutil.rmtree(self.home, ignore_errors=True)


class HttpServer(Daemon):
    """The standard library's HTTP server (HTTPS with a certificate), for http checks.

    ``/`` answers 200, ``/unavailable`` 503 (tests/checks/http_server.py).
    """

    name = "the HTTP server"

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.port = 0
        self.tls = cert is not None
        descriptor, name = tempfile.mkstemp(prefix="healthdi-http-")
        os.close(descriptor)
        self.output = Path(name)
        argv = [sys.executable, str(Path(__file__).with_name("http_server.py"))]
        if cert is not None and key is not None:
            argv += [str(cert), str(key)]
        self.argv = argv

    def start(self) -> None:
        with self.output.open("wb") as output:
            self._spawn(self.argv, stdout=output, cwd=ROOT)
        self._wait_ready(lambda: re.search(r"listening on (\d+)", self.output.read_text()))
        found = re.search(r"listening on (\d+)", self.output.read_text())
        assert found is not None
        self.port = int(found.group(1))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.kill()
        self.output.unlink(missing_ok=True)


class Dnsmasq(Daemon):
    """dnsmasq answering ``A`` for the names given, NXDOMAIN for the rest; no upstream."""

    name = "dnsmasq"

    def __init__(self, records: dict[str, str]) -> None:
        self.binary = _binary("dnsmasq", "dnsmasq-base")
        self.records = records
        self.port = 0

    def start(self) -> None:
        for _ in range(5):
            self.port = free_port()
            self._spawn(
                [
                    self.binary,
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    f"--port={self.port}",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    *(f"--host-record={name},{ip}" for name, ip in self.records.items()),
                ]
            )
            try:
                self._wait_ready(self.answers)
                return
            except PortTakenError:
                continue
        raise PortTakenError("dnsmasq could not listen on a free port")

    def answers(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\4ping\0\0\1\0\1"
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                return s.recv(512)[:2] == b"\0\7"
            except OSError:
                return False

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.kill()


class CeleryWorker(Daemon):
    """A Celery worker of tests/checks/celery_app.py on a Redis broker."""

    name = "the Celery worker"

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.node = f"healthdi-{os.getpid()}-{free_port()}@localhost"

    def start(self) -> None:
        self._spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.checks.celery_app",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=WARNING",
                "-n",
                self.node,
            ],
            cwd=ROOT,
            env={**os.environ, "CELERY_BROKER_URL": self.broker},
        )
        from .celery_app import make_app

        app = make_app(self.broker)
        self._wait_ready(lambda: any(self.node in reply for reply in app.control.ping(timeout=0.5)))
        app.close()

    def close(self) -> None:
        self.kill()
