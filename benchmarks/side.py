"""``python -m benchmarks.side``: one tree's in-process rows for ``make bench-compare``.

compare.py runs this module in a child process whose ``PYTHONPATH`` puts one tree's
``di`` first, once per side and round. It measures healthdi alone, with the same
statements and services as the main tables and through public API only, so that the
same code runs against both trees:

- S1, S2: ``injector.invoke`` of a built singleton, of a transient (resolve.py);
- R1: one request scope, alone and beside 5,000 live scopes (request_scopes.py);
- H1-H4: ``await injector.ahealth_report()`` on asyncio (health.py), H1 and H2 on trio
  too, and H1 and H3 through the sync ``injector.health_check()``.

It prints one JSON line: the file ``di`` was imported from (so the parent can check
which tree ran) and each row's figure, the best of its repeats.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio

import di

from . import request_scopes, resolve
from ._timing import measure
from .health import (
    _best,
    _best_sync,
    _classes,
    _injector,
    _noop_async,
    _noop_sync,
    _sleep_async,
    _sleep_sync,
)

CHECKS = 10_000  # H1, H2: no-op checks, in us per check
WALL_CHECKS = 1_000  # H3, H4: 10 ms checks at parallelism 100, in ms per call


def resolution(repeats: int) -> dict[str, float]:
    """S1 and S2 in ns per call; R1 in us per request scope."""
    statements: dict[str, tuple[str, dict[str, Any]]] = {}
    for scenario, row in resolve.healthdi().items():
        assert row is not None
        statements[scenario] = row
    statements["R1"] = request_scopes.healthdi()
    statements["R1, 5,000 live scopes"] = request_scopes.healthdi_5000_live()
    best = measure(statements, repeats=repeats, budget=0.02)
    return {name: ns if name.startswith("S") else ns / 1000 for name, ns in best.items()}


def health(repeats: int) -> dict[str, float]:
    """H1, H2 in us per check; H3, H4 in ms per call; on asyncio, then trio, then sync."""
    per_check = 1e6 / CHECKS
    h1 = _injector(_classes(CHECKS, _noop_async))
    h2 = _injector(_classes(CHECKS, _noop_sync))
    h3 = _injector(_classes(WALL_CHECKS, _sleep_async))
    h4 = _injector(_classes(WALL_CHECKS, _sleep_sync))

    async def on_loop(rows: dict[str, Callable[[], Any]]) -> dict[str, float]:
        return {name: await _best(call, repeats) for name, call in rows.items()}

    seconds = anyio.run(
        on_loop,
        {
            "H1": h1.ahealth_report,
            "H2": h2.ahealth_report,
            "H3": h3.ahealth_report,
            "H4": h4.ahealth_report,
        },
        backend="asyncio",
    )
    seconds |= anyio.run(
        on_loop,
        {"H1 on trio": h1.ahealth_report, "H2 on trio": h2.ahealth_report},
        backend="trio",
    )
    seconds["H1 via health_check()"] = _best_sync(h1.health_check, repeats)
    seconds["H3 via health_check()"] = _best_sync(h3.health_check, repeats)
    return {
        name: value * 1000 if name.startswith(("H3", "H4")) else value * per_check
        for name, value in seconds.items()
    }


def main() -> None:
    rows = resolution(repeats=5) | health(repeats=3)
    print(json.dumps({"di": di.__file__, "rows": rows}))


if __name__ == "__main__":
    main()
