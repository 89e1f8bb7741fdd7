"""Unbuilt services and statuses set by hand, over the wire: di serve, di check, gRPC.

- ``di serve --unbuilt {warn,fail,ignore}`` reaches the monitor: a forgotten
  ``eager=True`` is logged and listed, or holds readiness;
- ``di check`` names what it could not check, and exits 1 when no check ran;
- ``set_status(..., ttl=...)`` reverts by itself, and a gRPC ``Watch`` sees it.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from di import Injector, ServingStatus

from ..hostile_targets import DOWN_CACHE
from ..processes import Serving, di, wait_for
from ..servers import serve
from ..services import Database, key
from ..timing import PATIENCE

DB = key(Database)
NOT_BUILT = "not built: never checked"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    running: list[Serving] = []

    def start(target: str, *options: str) -> Serving:
        serving = Serving(
            f"tests.hostile_targets:{target}",
            "--interval",
            "0.2",
            *options,
            log=tmp_path / f"{target}-{len(running)}.log",
        )
        running.append(serving)
        return serving

    yield start
    for serving in running:
        serving.close()


def first_round(serving: Serving) -> None:
    """Wait until the start and a first round have completed."""
    wait_for(
        lambda: "[-]startup" not in httpx.get(serving.url + "/readyz?verbose", timeout=10).text,
        "the first round",
    )


@pytest.mark.parametrize("unbuilt", ["warn", "fail", "ignore"])
def test_di_serve_passes_unbuilt_to_its_monitor(start: Any, unbuilt: str) -> None:
    serving = start("forgotten_eager", "--unbuilt", unbuilt)
    first_round(serving)
    readyz = httpx.get(serving.url + "/readyz?verbose", timeout=10)
    health = httpx.get(serving.url + "/health", timeout=10).json()
    with grpc.insecure_channel(f"127.0.0.1:{serving.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        readiness = stub.Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=10)
    output = serving.output()
    warned = (
        "1 service with a health check was neither eager nor built, so no check sees it: "
        f"{DOWN_CACHE!r}"
    )
    if unbuilt == "ignore":
        assert readyz.status_code == 200 and "DownCache" not in readyz.text
        assert health["status"] == "pass" and warned not in output
        assert readiness.status == ServingStatus.SERVING
    elif unbuilt == "fail":
        assert readyz.status_code == 503
        assert f"[-]{DOWN_CACHE} failed: {NOT_BUILT}" in readyz.text.splitlines()
        assert health["status"] == "fail"
        assert readiness.status == ServingStatus.NOT_SERVING
        assert warned in output and "readiness reads NOT_SERVING until then" in output
    else:
        assert readyz.status_code == 200
        assert f"[+]{DOWN_CACHE} {NOT_BUILT}" in readyz.text.splitlines()
        assert health["status"] == "warn"
        assert health["checks"][DOWN_CACHE] == [{"status": "warn", "output": NOT_BUILT}]
        assert readiness.status == ServingStatus.SERVING
        assert output.count(warned) == 1  # once, at the start
    serving.process.terminate()
    assert serving.wait(timeout=PATIENCE) == 0


def test_di_serve_refuses_an_unknown_unbuilt() -> None:
    done = di("serve", "tests.hostile_targets:forgotten_eager", "--unbuilt", "loud")
    assert done.returncode == 2
    assert "argument --unbuilt: invalid choice: 'loud'" in done.stderr


def test_di_check_names_what_it_did_not_check() -> None:
    done = di("check", "tests.hostile_targets:forgotten_eager")
    assert done.returncode == 0, done.stderr  # what it checked is healthy
    assert done.stdout.splitlines()[-1] == "healthy: 1 check, 0 failed"
    assert done.stderr.strip() == (
        f"not checked: {DOWN_CACHE!r} has a health check but was not built; provide it "
        "with eager=True, or build it in the factory"
    )
    report = json.loads(di("check", "tests.hostile_targets:forgotten_eager", "--json").stdout)
    assert report["unbuilt"] == [DOWN_CACHE]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (
            "nothing_eager",
            "di check: no check ran: every service with a health check is lazy and was not built",
        ),
        (
            "no_checks",
            "di check: no check ran: no service visible from the injector has a health check "
            "(a health_check() method, or provide(..., health_check=...))",
        ),
    ],
)
def test_di_check_exits_1_when_no_check_ran_saying_why(target: str, why: str) -> None:
    for options in ((), ("--json",)):
        done = di("check", f"tests.hostile_targets:{target}", *options)
        assert done.returncode == 1
        assert done.stderr.splitlines()[-1] == why
    assert done.stdout and json.loads(done.stdout)["checks"] == []
    table = di("check", f"tests.hostile_targets:{target}")
    assert table.stdout.splitlines()[-1] == "unhealthy: no checks ran"


def test_a_grpc_watch_sees_a_status_set_with_a_ttl_revert() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    with (
        serve(injector, interval=3600) as served,
        grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        stream = stub.Watch(health_pb2.HealthCheckRequest(service="readiness"), timeout=PATIENCE)
        seen: queue.Queue[int] = queue.Queue()

        def read() -> None:
            try:
                for response in stream:
                    seen.put(int(response.status))
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
        assert seen.get(timeout=PATIENCE) == ServingStatus.SERVING

        async def maintenance() -> None:
            served.monitor.set_status(Database, ServingStatus.NOT_SERVING, ttl=0.5)

        served.loop.run(maintenance())
        assert seen.get(timeout=PATIENCE) == ServingStatus.NOT_SERVING
        assert seen.get(timeout=PATIENCE) == ServingStatus.SERVING  # the ttl ended
        stream.cancel()
