"""`di serve` on the shop example, with a real redis-server going away and coming back."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..processes import (
    GRPC_SAYS,
    HTTP_SAYS,
    ROOT,
    UVICORN_SAYS,
    PortTakenError,
    Redis,
    closed_port,
    di,
    free_port,
    port_said,
    probe,
    wait_for,
)
from ..timing import PATIENCE, at_most

INTERVAL = at_most(0)  # each round is bounded by it: as long as healthy checks may take
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def serve_shop(
    data_dir: Path, options: list[str], output: IO[str] | int, **env: str
) -> subprocess.Popen[bytes]:
    """`di serve` on the shop example, as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "di", "serve", "examples.shop.app:create_app", *options],
        cwd=ROOT,
        env={**os.environ, "SHOP_DATA_DIR": str(data_dir), **env},
        stdout=output,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis(free_port())
    for _ in range(3):  # the free port may be taken before redis-server listens on it
        try:
            server.start()
            break
        except PortTakenError:
            server = Redis(free_port())
    else:
        raise AssertionError("redis-server found no free port three times")
    yield server
    server.kill()


def test_serve_follows_redis_down_and_up_then_stops_cleanly(
    redis: Redis, tmp_path: Path, record_property: object
) -> None:
    path = tmp_path / "serve.log"
    log = path.open("w+")
    serve = serve_shop(
        tmp_path,
        ["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--interval", str(INTERVAL)],
        log,
        SHOP_REDIS_URL=redis.url,
    )
    timings: dict[str, float] = {}
    try:
        http_port = port_said(path.read_text, HTTP_SAYS, serve)
        grpc_port = port_said(path.read_text, GRPC_SAYS, serve)
        base = f"http://127.0.0.1:{http_port}"
        grpc_url = f"grpc://127.0.0.1:{grpc_port}"
        wait_for(lambda: probe(grpc_url).returncode == 0, "di serve to be SERVING")
        assert httpx.get(base + "/health", timeout=5).status_code == 200

        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        seen: queue.Queue[tuple[float, int]] = queue.Queue()

        def read() -> None:
            try:
                for response in stream:
                    seen.put((time.monotonic(), int(response.status)))
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
        assert seen.get(timeout=PATIENCE)[1] == SERVING

        killed = time.monotonic()
        redis.kill()
        when, status = seen.get(timeout=PATIENCE)
        assert status == NOT_SERVING
        timings["down_seconds"] = when - killed
        assert timings["down_seconds"] < at_most(2 * INTERVAL), timings
        assert httpx.get(base + "/health", timeout=5).status_code == 503
        probed = probe(base + "/health")
        assert (probed.returncode, probed.stdout.startswith("unhealthy: HTTP 503")) == (1, True)

        restarted = time.monotonic()
        redis.start()
        when, status = seen.get(timeout=PATIENCE)
        assert status == SERVING
        timings["up_seconds"] = when - restarted
        assert timings["up_seconds"] < at_most(2 * INTERVAL), timings
        assert probe(base + "/health").returncode == 0
        assert probe(grpc_url, "--service", "readiness").returncode == 0

        stopping = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        _, status = seen.get(timeout=PATIENCE)
        assert status == NOT_SERVING  # goes NOT_SERVING before the servers stop
        assert serve.wait(timeout=PATIENCE) == 0
        timings["stop_seconds"] = time.monotonic() - stopping
        channel.close()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    log.seek(0)
    output = log.read()
    assert "received SIGTERM: NOT_SERVING, draining for 5 s" in output
    assert "cache closed" in output and "order store closed" in output  # shutdown hooks ran
    assert "Traceback" not in output
    for name, seconds in timings.items():
        record_property(name, round(seconds, 3))  # type: ignore[operator]
    print(f"\ntransitions (interval {INTERVAL} s): {timings}")


def test_demo_without_redis_runs_on_sqlite_alone(tmp_path: Path) -> None:
    done = di("check", "examples.shop.app:create_app", SHOP_DATA_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "running on SQLite alone" in done.stderr
    assert "examples.shop.app.OrderStore" in done.stdout


def test_check_reports_redis_down(tmp_path: Path) -> None:
    with closed_port() as port:
        done = di(
            "check",
            "examples.shop.app:create_app",
            "--json",
            SHOP_REDIS_URL=f"redis://127.0.0.1:{port}",
            SHOP_DATA_DIR=str(tmp_path),
        )
    assert done.returncode == 1
    import json

    report = json.loads(done.stdout)
    outcomes = {c["key"]: c["outcome"] for c in report["checks"]}
    assert outcomes == {
        "examples.shop.app.Shop": "unhealthy",
        "examples.shop.app.Cache": "unhealthy",
        "examples.shop.app.OrderStore": "healthy",
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_without_redis_stops_on_either_signal(signum: int, tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    with path.open("w") as log:
        serve = serve_shop(
            tmp_path, ["--http", "127.0.0.1:0", "--interval", "0.2", "--drain", "0"], log
        )
    try:
        readyz = f"http://127.0.0.1:{port_said(path.read_text, HTTP_SAYS, serve)}/readyz"
        wait_for(lambda: probe(readyz).returncode == 0, "readiness")
        serve.send_signal(signum)
        assert serve.wait(timeout=PATIENCE) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert "order store closed" in path.read_text()


# -- the shop as a FastAPI app under uvicorn, with di.integrations.fastapi --------------


def serve_api(data_dir: Path, output: IO[str], **env: str) -> subprocess.Popen[bytes]:
    """uvicorn serving the shop's FastAPI app, as a child process, on a port it picks."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "examples.shop.api:create_api",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "SHOP_DATA_DIR": str(data_dir),
            "SHOP_HEALTH_INTERVAL": str(INTERVAL),
            **env,
        },
        stdout=output,
        stderr=subprocess.STDOUT,
    )


def test_shop_api_takes_orders_follows_redis_and_stops_cleanly(
    redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "api.log"
    log = path.open("w+")
    api = serve_api(tmp_path, log, SHOP_REDIS_URL=redis.url)

    def status(path: str) -> int:
        try:
            return httpx.get(base + path, timeout=5).status_code
        except httpx.TransportError:
            return 0

    try:
        base = f"http://127.0.0.1:{port_said(path.read_text, UVICORN_SAYS, api)}"
        wait_for(lambda: status("/readyz") == 200, "the shop to be ready")
        placed = httpx.post(base + "/orders/tea", timeout=5)
        assert placed.status_code == 201 and placed.json()["item"] == "tea"
        httpx.post(base + "/orders/coffee", timeout=5)
        wait_for(
            lambda: (
                httpx.get(base + "/orders/count", timeout=5).json() == {"orders": 2, "cached": 2}
            ),
            "the count to reach redis",
        )

        redis.kill()
        wait_for(lambda: status("/readyz") == 503, "readiness to fail", at_most(2 * INTERVAL))
        verbose = httpx.get(base + "/readyz?verbose", timeout=5).text
        assert "[-]examples.shop.app.Cache failed: reason withheld" in verbose
        assert status("/livez") == 200  # a dependency down is not a reason to restart
        assert httpx.post(base + "/orders/cake", timeout=5).status_code == 201  # SQLite only

        redis.start()
        wait_for(lambda: status("/readyz") == 200, "readiness to recover", at_most(2 * INTERVAL))

        api.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert api.wait(timeout=PATIENCE) in (0, -signal.SIGTERM)
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    log.seek(0)
    output = log.read()
    assert "cache closed" in output and "order store closed" in output  # shutdown hooks ran
    assert "Application shutdown complete." in output
    assert "Traceback" not in output
