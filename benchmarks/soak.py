"""Soak: 100,000 health-check calls over 50 mixed checks, then 100,000 request scopes.

Prints resident memory and thread count at the start, the middle and the end of each
run. A leak shows as growth in the second half, after caches and pools have warmed up:
the goal is less than 1 MiB and no thread.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from di import Injector

CALLS = 100_000
SCOPES = 100_000


def rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _mixed_injector() -> Injector:
    injector = Injector(health_check_timeout=5.0, health_check_global_timeout=30.0)
    # Grouped by kind in build order, as services of a kind tend to be: consecutive sync
    # checks run on one worker thread without a hop back to the loop each.
    for i in range(50):
        kind = i * 4 // 50
        if kind == 0:

            async def check(self: object) -> None:
                pass
        elif kind == 1:

            async def check(self: object) -> None:
                await anyio.sleep(0)
        elif kind == 2:

            def check(self: object) -> None:  # type: ignore[misc]
                pass
        else:

            def check(self: object) -> None:  # type: ignore[misc]
                raise ConnectionError("down")

        cls = type(f"Soak{i}", (), {"health_check": check})
        injector.provide(cls)
        injector.invoke(cls)
    return injector


def _sample(samples: dict[str, dict[str, float]], when: str) -> None:
    gc.collect()
    samples[when] = {"rss_mib": rss_mib(), "threads": threading.active_count()}


async def _checks(samples: dict[str, dict[str, float]]) -> None:
    injector = _mixed_injector()
    _sample(samples, "start")
    for i in range(CALLS):
        report = await injector.ahealth_report()
        assert len(report.checks) == 50
        if i == CALLS // 2:
            _sample(samples, "middle")
    _sample(samples, "end")


class Request:
    pass


class Handler:
    def __init__(self, request: Request) -> None:
        self.request = request


async def _scopes(samples: dict[str, dict[str, float]]) -> None:
    injector = Injector()
    _sample(samples, "start")
    for i in range(SCOPES):
        async with injector.scope("request") as request:
            request.provide_value(Request())
            request.provide(Handler)
            await request.ainvoke(Handler)
        if i == SCOPES // 2:
            _sample(samples, "middle")
    _sample(samples, "end")


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    runs: dict[str, Callable[[dict[str, dict[str, float]]], Any]] = {
        f"{CALLS:,} calls over 50 mixed checks": _checks,
        f"{SCOPES:,} request scopes": _scopes,
    }
    for name, run in runs.items():
        samples: dict[str, dict[str, float]] = {}
        started = time.perf_counter()
        anyio.run(run, samples)
        samples["seconds"] = {"total": time.perf_counter() - started}
        results[name] = samples
    return results


def report(results: dict[str, Any]) -> str:
    lines = ["Soak: RSS (MiB) and threads at start, middle, end", ""]
    header = f"{'run':<36}{'start':>16}{'middle':>16}{'end':>16}{'2nd half':>12}"
    lines += [header, "-" * len(header)]
    for name, samples in results.items():
        cells = "".join(
            f"{samples[w]['rss_mib']:>9.1f} / {int(samples[w]['threads']):<4}"
            for w in ("start", "middle", "end")
        )
        growth = samples["end"]["rss_mib"] - samples["middle"]["rss_mib"]
        threads = samples["end"]["threads"] - samples["middle"]["threads"]
        verdict = "ok" if growth < 1.0 and threads <= 0 else "LEAK?"
        lines.append(f"{name:<36}{cells}{growth:>+8.2f} MiB {verdict}")
        lines.append(f"{'':<36}{int(threads):+d} threads, {samples['seconds']['total']:.1f} s")
    return "\n".join(lines)
