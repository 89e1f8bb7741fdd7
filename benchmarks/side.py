"""``python -m benchmarks.side``: one tree's in-process rows, for ``make bench-compare``.

compare.py starts this module twice, in child processes whose ``PYTHONPATH`` puts one
tree's ``di`` first, keeps both alive for the whole run and asks each in turn for a few
repeats of one row: the two trees' repeats of a row are never more than a second or
so apart. The rows measure healthdi alone, with the statements and services of the main
tables and through public API only, so that the same code runs against both trees:

- S1, S2: ``injector.invoke`` of a built singleton, of a transient (resolve.py), in ns
  per call;
- R1: one request scope, alone and beside 5,000 live scopes (request_scopes.py), in us;
- H1-H4: ``await injector.ahealth_report()`` on asyncio (health.py), H1 and H2 on trio
  too, H1 and H3 through the sync ``injector.health_check()``; H1 and H2 in us per
  check, H3 and H4 in ms per call.

The conversation, one JSON line per answer: on start, once every row's services are
built, ``{"di": FILE, "rows": [NAME, ...]}``. Then for each line read, ``NAME REPEATS``:
one untimed call, then REPEATS timed ones, and ``{"wall": BEST, "cpu": BEST}``, the best
wall-clock time and the best CPU time of this process (all its threads, so a busy
machine's other processes do not count) over the repeats. An empty line or the end of input ends it.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import di

from . import request_scopes, resolve
from .health import _classes, _injector, _noop_async, _noop_sync, _sleep_async, _sleep_sync

CHECKS = 10_000  # H1, H2: no-op checks, in us per check
WALL_CHECKS = 1_000  # H3, H4: 10 ms checks at parallelism 100, in ms per call
BUDGET = 0.01  # seconds of one repeat of a timeit row, about

Clocks = list[tuple[float, float]]  # (wall, cpu) seconds of each repeat
Row = Callable[[int], Clocks]


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _statement(stmt: str, env: dict[str, Any], scale: float) -> Row:
    """A timeit row: one repeat runs the statement about BUDGET seconds' worth of times."""
    timer = timeit.Timer(stmt, globals=env)
    number, elapsed = timer.autorange()
    number = max(1, int(number * BUDGET / max(elapsed, 1e-9)))

    def run(repeats: int) -> Clocks:
        timer.timeit(number)
        clocks = []
        for _ in range(repeats):
            wall, cpu = _clocks()
            timer.timeit(number)
            now_wall, now_cpu = _clocks()
            clocks.append(((now_wall - wall) * scale / number, (now_cpu - cpu) * scale / number))
        return clocks

    return run


def _on_loop(call: Callable[[], Awaitable[object]], backend: str, scale: float) -> Row:
    """A health row: ``await call()`` in an event loop of the backend, made per request."""

    async def timed(repeats: int) -> Clocks:
        await call()  # warm up: threads, caches
        clocks = []
        for _ in range(repeats):
            gc.collect()  # start each repeat without the garbage of the last
            wall, cpu = _clocks()
            await call()
            now_wall, now_cpu = _clocks()
            clocks.append(((now_wall - wall) * scale, (now_cpu - cpu) * scale))
        return clocks

    def run(repeats: int) -> Clocks:
        return anyio.run(timed, repeats, backend=backend)

    return run


def _sync(call: Callable[[], object], scale: float) -> Row:
    """A health row through the sync entry point, called outside any event loop."""

    def run(repeats: int) -> Clocks:
        call()
        clocks = []
        for _ in range(repeats):
            gc.collect()
            wall, cpu = _clocks()
            call()
            now_wall, now_cpu = _clocks()
            clocks.append(((now_wall - wall) * scale, (now_cpu - cpu) * scale))
        return clocks

    return run


def rows() -> dict[str, Row]:
    """Every row, its services built and checked once."""
    table: dict[str, Row] = {}
    for scenario, row in resolve.healthdi().items():
        assert row is not None
        table[scenario] = _statement(*row, scale=1e9)
    table["R1"] = _statement(*request_scopes.healthdi(), scale=1e6)
    table["R1, 5,000 live scopes"] = _statement(*request_scopes.healthdi_5000_live(), scale=1e6)
    per_check = 1e6 / CHECKS
    h1 = _injector(_classes(CHECKS, _noop_async))
    h2 = _injector(_classes(CHECKS, _noop_sync))
    h3 = _injector(_classes(WALL_CHECKS, _sleep_async))
    h4 = _injector(_classes(WALL_CHECKS, _sleep_sync))
    table["H1"] = _on_loop(h1.ahealth_report, "asyncio", per_check)
    table["H2"] = _on_loop(h2.ahealth_report, "asyncio", per_check)
    table["H3"] = _on_loop(h3.ahealth_report, "asyncio", 1000)
    table["H4"] = _on_loop(h4.ahealth_report, "asyncio", 1000)
    table["H1 on trio"] = _on_loop(h1.ahealth_report, "trio", per_check)
    table["H2 on trio"] = _on_loop(h2.ahealth_report, "trio", per_check)
    table["H1 via health_check()"] = _sync(h1.health_check, per_check)
    table["H3 via health_check()"] = _sync(h3.health_check, 1000)
    return table


def main() -> None:
    table = rows()
    print(json.dumps({"di": di.__file__, "rows": list(table)}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        name, _, repeats = line.strip().rpartition(" ")
        clocks = table[name](int(repeats))
        best = {"wall": min(w for w, _ in clocks), "cpu": min(c for _, c in clocks)}
        print(json.dumps(best), flush=True)


if __name__ == "__main__":
    main()
