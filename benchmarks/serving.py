"""Serving health: HTTP and gRPC throughput, Watch fan-out, beside their baselines.

- HTTP: ``/readyz`` under ``di serve`` with 50 concurrent keep-alive clients, beside a
  constant-200 ASGI app under plain uvicorn (goal: at least 0.9x its requests/s).
- gRPC: Check with 20 concurrent clients under ``di serve``, beside
  grpcio-health-checking's stock asyncio servicer (goal: at least 1.0x).
- Watch: a status change reaching 500 open Watch streams, beside the stock servicer.
- The status page (``di serve --ui``): its three resources fetched over one keep-alive
  connection, beside ``/health`` alone; and, when Debian's Chromium and Playwright are
  installed, the page's load in headless Chromium, navigation start to the load event
  (goal: under 200 ms).

Servers and load generators are child processes; rows are measured in turns, in one
run, and each figure is the best of its turns (noise only ever slows a run down).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).parent.parent
SECONDS = 3.0
TURNS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def _process(command: list[str], port: int, **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    try:
        _wait_port(port)
        time.sleep(1.0)  # the first round of checks, the start of the loop
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _di_serve(option: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "di", "serve", "benchmarks.servers:app",
        option, f"127.0.0.1:{port}", "--drain", "0", "--interval", "1",
    ]  # fmt: skip


def _load(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    best = max(runs, key=lambda run: run["rps"])
    return {"rps": best["rps"], "p50_ms": min(run["p50_ms"] for run in runs)}


def http_rows() -> dict[str, dict[str, float]]:
    ours, theirs = _free_port(), _free_port()
    runs: dict[str, list[dict[str, float]]] = {"di serve /readyz": [], "uvicorn constant 200": []}
    with (
        _process(_di_serve("--http", ours), ours),
        _process([sys.executable, "-m", "benchmarks.servers", "constant", str(theirs)], theirs),
    ):
        for _ in range(TURNS):
            runs["di serve /readyz"].append(_load("http", str(ours), "/readyz", "50", f"{SECONDS}"))
            runs["uvicorn constant 200"].append(_load("http", str(theirs), "/", "50", f"{SECONDS}"))
    return {name: _best(turns) for name, turns in runs.items()}


def grpc_rows() -> dict[str, dict[str, float]]:
    ours, theirs = _free_port(), _free_port()
    stock = [sys.executable, "-m", "benchmarks.servers", "watch", "stock", str(theirs)]
    runs: dict[str, list[dict[str, float]]] = {"di serve Check": [], "stock aio servicer": []}
    with (
        _process(_di_serve("--grpc", ours), ours),
        _process(stock, theirs, stdin=subprocess.PIPE),
    ):
        for _ in range(TURNS):
            runs["di serve Check"].append(_load("grpc", str(ours), "20", f"{SECONDS}"))
            runs["stock aio servicer"].append(_load("grpc", str(theirs), "20", f"{SECONDS}"))
    return {name: _best(turns) for name, turns in runs.items()}


async def _fan_out(port: int, process: subprocess.Popen[str], streams: int, rounds: int) -> float:
    """Median ms from a status change to its arrival on every one of ``streams`` streams."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(5)
    ]
    seen = [0] * streams
    changed = asyncio.Event()
    target = 0

    async def watch(index: int) -> None:
        stub = health_pb2_grpc.HealthStub(channels[index % len(channels)])
        call = stub.Watch(health_pb2.HealthCheckRequest(service="svc"))
        async for _ in call:
            seen[index] += 1
            if min(seen) >= target:
                changed.set()

    tasks = [asyncio.create_task(watch(i)) for i in range(streams)]
    timings = []
    try:
        target = 1
        await asyncio.wait_for(changed.wait(), 30)
        assert process.stdin is not None
        for _ in range(rounds):
            changed.clear()
            target += 1
            began = time.perf_counter()
            process.stdin.write("flip\n")
            process.stdin.flush()
            await asyncio.wait_for(changed.wait(), 30)
            timings.append(time.perf_counter() - began)
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    return statistics.median(timings) * 1000


def watch_rows(streams: int = 500, rounds: int = 7) -> dict[str, float]:
    rows: dict[str, list[float]] = {"healthdi servicer": [], "stock aio servicer": []}
    for _ in range(TURNS):
        for name, kind in (("healthdi servicer", "healthdi"), ("stock aio servicer", "stock")):
            port = _free_port()
            command = [sys.executable, "-m", "benchmarks.servers", "watch", kind, str(port)]
            with _process(command, port, stdin=subprocess.PIPE) as process:
                rows[name].append(asyncio.run(_fan_out(port, process, streams, rounds)))
    return {name: min(values) for name, values in rows.items()}


PAGE = ("/health/ui", "/health/ui/page.js", "/health/ui/page.css")
CHROMIUM = Path("/usr/bin/chromium")


def _fetch_ms(port: int, paths: tuple[str, ...], times: int) -> list[float]:
    """Milliseconds to GET ``paths`` one after another on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    found = []
    try:
        for _ in range(times):
            start = time.perf_counter()
            for path in paths:
                connection.request("GET", path)
                connection.getresponse().read()
            found.append((time.perf_counter() - start) * 1000)
    finally:
        connection.close()
    return found


def _browser_ms(url: str, times: int) -> list[float] | None:
    """Navigation start to the load event of ``url`` in headless Chromium, fresh each
    time (no cache); None when Chromium or Playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.exists():
        return None
    found = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            for _ in range(times):
                context = browser.new_context()
                page = context.new_page()
                page.goto(url, wait_until="load")
                found.append(
                    float(
                        page.evaluate(
                            "() => { const [n] = performance.getEntriesByType('navigation');"
                            " return n.loadEventEnd - n.startTime; }"
                        )
                    )
                )
                context.close()
        finally:
            browser.close()
    return found


def page_rows(times: int = 20) -> dict[str, float | None]:
    port = _free_port()
    with _process([*_di_serve("--http", port), "--ui"], port):
        _fetch_ms(port, PAGE, 3)  # warm
        page = _fetch_ms(port, PAGE, times)
        health = _fetch_ms(port, ("/health",), times)
        browser = _browser_ms(f"http://127.0.0.1:{port}/health/ui", times)
        weight = 0
        for path in PAGE:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path)
            weight += len(connection.getresponse().read())
            connection.close()
    return {
        "page fetch ms (median)": statistics.median(page),
        "/health fetch ms (median)": statistics.median(health),
        "browser load ms (median)": None if browser is None else statistics.median(browser),
        "page weight bytes": float(weight),
    }


def measure() -> dict[str, object]:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return {
        "http": http_rows(),
        "grpc": grpc_rows(),
        "watch": watch_rows(),
        "page": page_rows(),
    }
