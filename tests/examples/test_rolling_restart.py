"""A rolling restart behind a real HAProxy drops no request.

Two replicas behind Debian's HAProxy, which checks each with ``option httpchk GET
/readyz`` every 500 ms (``fall 2 rise 2``) and never retries a request elsewhere
(``retries 0``). Client threads send requests through HAProxy while each replica in
turn gets SIGTERM, stops, starts again and is seen up by HAProxy again: not one
request may fail. Two set-ups:

- a FastAPI app served by ``di run``, which drains on SIGTERM: readiness fails at once
  and the app keeps serving until HAProxy has taken it out;
- the shop (``examples.shop``) served by plain uvicorn, fronted by ``di serve`` as its
  health sidecar: HAProxy checks the sidecar; a replica stops its sidecar first (which
  drains), then the app.

Replicas listen on Unix sockets (a restarted one comes back on the same path), and so
does HAProxy's frontend; the shop's sidecar listens on a port outside the kernel's
range for port-0 binds (:func:`~tests.processes.steady_port`).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ..processes import Child, di_run, steady_port
from ..timing import PATIENCE, wait_until

# HAProxy takes a replica out after two failed checks 500 ms apart: the drain lasts
# several times that, so that it has on a loaded machine.
DRAIN = 3.0
CLIENTS = 4
PACE = 0.01  # seconds between two requests of a client


def haproxy_config(folder: Path, servers: dict[str, str]) -> str:
    lines = "\n".join(f"    server {name} {address} check" for name, address in servers.items())
    return f"""\
global
    stats socket {folder}/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 0
frontend front
    bind unix@{folder}/front.sock
    default_backend replicas
backend replicas
    option httpchk GET /readyz
    default-server inter 500 fall 2 rise 2
{lines}
"""


class HAProxy:
    """A real haproxy in the foreground, its frontend and its admin socket in ``folder``."""

    def __init__(self, folder: Path, servers: dict[str, str]) -> None:
        binary = shutil.which("haproxy")
        if binary is None:
            pytest.skip("haproxy is not installed (apt-get install haproxy)")
        config = folder / "haproxy.cfg"
        config.write_text(haproxy_config(folder, servers))
        self.folder = folder
        self.front = folder / "front.sock"
        self.child = Child([binary, "-db", "-f", str(config)], log=folder / "haproxy.log")

    def states(self) -> dict[str, str]:
        """Each replica's state as HAProxy sees it: UP, DOWN, or on its way (UP 1/2)."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(PATIENCE)
            admin.connect(str(self.folder / "admin.sock"))
            admin.sendall(b"show stat\n")
            received = b""
            while data := admin.recv(65536):
                received += data
        header, *rows = received.decode().splitlines()
        columns = header.lstrip("# ").split(",")
        found = {}
        for row in rows:
            values = dict(zip(columns, row.split(","), strict=False))
            if values.get("pxname") == "replicas" and values.get("svname") not in (None, "BACKEND"):
                found[values["svname"]] = values["status"]
        return found

    def wait_up(self, name: str) -> None:
        def up() -> bool:
            if self.child.process.poll() is not None:
                raise AssertionError(f"haproxy exited:\n{self.child.output()}")
            return self.front.exists() and self.states().get(name) == "UP"

        wait_until(up, f"HAProxy to see {name} up")

    def close(self) -> None:
        self.child.close()


@dataclass
class Load:
    """Client threads sending requests through HAProxy until stopped."""

    front: Path
    method: str
    path: str
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.front))) as client:
            # Paced as traffic is, not as fast as the machine goes.
            while not self.stop.wait(PACE):
                try:
                    answer = client.request(
                        self.method, f"http://replicas{self.path}", timeout=PATIENCE
                    )
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                    continue
                if answer.status_code in (200, 201):
                    self.answers.append(answer.text)
                else:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")

    @contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self.run) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(PATIENCE)


def roll(
    proxy: HAProxy,
    load: Load,
    names: list[str],
    stop: Callable[[str], None],
    start: Callable[[str], None],
) -> None:
    """Under load, restart each replica in turn: stop it, start it, wait until it is up."""
    with load.running():
        wait_until(lambda: len(load.answers) >= 20, "requests to flow through HAProxy")
        for name in names:
            stop(name)
            start(name)
            proxy.wait_up(name)
            served = len(load.answers)
            wait_until(lambda served=served: len(load.answers) >= served + 20, "more requests")
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder with a short path: a Unix socket's path has room for about 100 bytes."""
    with tempfile.TemporaryDirectory(prefix="di-roll-") as name:
        yield Path(name)


def test_a_rolling_restart_of_apps_run_by_di_run_drops_nothing(folder: Path) -> None:
    names = ["a", "b"]
    sockets = {name: folder / f"{name}.sock" for name in names}
    replicas: dict[str, Child] = {}

    def start(name: str) -> None:
        run = sum(log.name.startswith(f"{name}-") for log in folder.iterdir()) + 1
        replicas[name] = di_run(
            "tests.run_targets:create_fastapi_app",
            "--uds",
            str(sockets[name]),
            "--drain",
            str(DRAIN),
            log=folder / f"{name}-{run}.log",
            REPLICA=name,
        )

    def stop(name: str) -> None:
        replica = replicas[name]
        replica.signal(signal.SIGTERM)
        assert replica.wait() == 0, replica.output()
        replica.close()

    try:
        for name in names:
            start(name)
        for name in names:
            replicas[name].wait_output("Uvicorn running on unix socket")
        proxy = HAProxy(folder, {name: f"unix@{sockets[name]}" for name in names})
        try:
            for name in names:
                proxy.wait_up(name)
            load = Load(proxy.front, "POST", "/orders")
            roll(proxy, load, names, stop, start)
        finally:
            proxy.close()
    finally:
        for replica in replicas.values():
            replica.close()
    assert {json.loads(answer)["replica"] for answer in load.answers} == {"a", "b"}
    for name in names:  # the first run of each drained
        assert "received SIGTERM: NOT_SERVING" in (folder / f"{name}-1.log").read_text()


@dataclass
class ShopReplica:
    """The shop under plain uvicorn on a Unix socket, with `di serve` beside it."""

    name: str
    folder: Path
    health_port: int
    app: Child | None = None
    sidecar: Child | None = None
    runs: int = 0

    @property
    def socket(self) -> Path:
        return self.folder / f"{self.name}.sock"

    def start(self) -> None:
        self.runs += 1
        env = {"SHOP_DATA_DIR": str(self.folder / self.name), "SHOP_REDIS_URL": ""}
        (self.folder / self.name).mkdir(exist_ok=True)
        self.app = Child(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "examples.shop.api:create_api",
                "--uds",
                str(self.socket),
            ],
            log=self.folder / f"{self.name}-app-{self.runs}.log",
            **env,
        )
        self.app.wait_output("Uvicorn running on unix socket")
        self.sidecar = Child(
            [
                sys.executable,
                "-m",
                "di",
                "serve",
                "examples.shop.app:create_app",
                "--http",
                f"127.0.0.1:{self.health_port}",
                "--interval",
                "1",
                "--drain",
                str(DRAIN),
                "--grace",
                "1",
            ],
            log=self.folder / f"{self.name}-health-{self.runs}.log",
            **env,
        )
        self.sidecar.wait_output("HTTP health on")

    def stop(self) -> None:
        """The sidecar first (it drains: HAProxy moves away), then the app."""
        for child in (self.sidecar, self.app):
            assert child is not None
            child.signal(signal.SIGTERM)
            # uvicorn re-raises the SIGTERM it handled, once it has stopped.
            assert child.wait() in (0, -signal.SIGTERM), child.output()
            child.close()

    def close(self) -> None:
        for child in (self.sidecar, self.app):
            if child is not None:
                child.close()


def test_a_rolling_restart_of_apps_fronted_by_di_serve_drops_nothing(folder: Path) -> None:
    names = ["a", "b"]
    replicas = {name: ShopReplica(name, folder, steady_port()) for name in names}
    try:
        starting = [threading.Thread(target=replica.start) for replica in replicas.values()]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join(4 * PATIENCE)
        servers = {
            name: f"unix@{replica.socket} addr 127.0.0.1 port {replica.health_port}"
            for name, replica in replicas.items()
        }
        proxy = HAProxy(folder, servers)
        try:
            for name in names:
                proxy.wait_up(name)
            # Reads: the shop keeps its orders in SQLite, where a stream of commits holds
            # the file locked, now and then past the sidecar's check timeout.
            load = Load(proxy.front, "GET", "/orders/count")
            roll(
                proxy,
                load,
                names,
                lambda name: replicas[name].stop(),
                lambda name: replicas[name].start(),
            )
        finally:
            proxy.close()
    finally:
        for replica in replicas.values():
            replica.close()
    assert len(load.answers) > 0
    for name in names:
        health = (folder / f"{name}-health-1.log").read_text()
        assert "received SIGTERM: NOT_SERVING, draining" in health
