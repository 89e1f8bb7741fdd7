"""Timing statements side by side: round-robin repeats, best of each, in ns per call."""

from __future__ import annotations

import json
import time
import timeit
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def measure(
    rows: Mapping[str, tuple[str, dict[str, Any]]], repeats: int = 7, budget: float = 0.04
) -> dict[str, float]:
    """Best ns per execution of each row's statement.

    Rows are timed in turns (one repeat of each, then the next round) so that a slow
    moment of the machine hits every row alike, and the minimum is kept, as timeit
    advises: higher values come from other processes, not from the code.
    """
    timers = {name: timeit.Timer(stmt, globals=env) for name, (stmt, env) in rows.items()}
    numbers = {}
    for name, timer in timers.items():
        number, _ = timer.autorange()
        elapsed = timer.timeit(number)
        numbers[name] = max(1, int(number * budget / max(elapsed, 1e-9)))
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(repeats):
        for name, timer in timers.items():
            seconds = timer.timeit(numbers[name]) / numbers[name]
            best[name] = min(best[name], seconds * 1e9)
    return best


def table(
    title: str,
    columns: list[str],
    rows: dict[str, dict[str, float | None]],
    unit: str,
    reference: str,
) -> str:
    """A plain-text table with each cell's ratio to the reference row."""
    lines = [title, ""]
    header = f"{'row':<44}" + "".join(f"{c + ' ' + unit:>14}{'ratio':>8}" for c in columns)
    lines += [header, "-" * len(header)]
    for name, cells in rows.items():
        line = f"{name:<44}"
        for column in columns:
            value = cells.get(column)
            ref = rows[reference].get(column)
            if value is None:
                line += f"{'n/a':>14}{'':>8}"
            else:
                ratio = f"{value / ref:.2f}x" if ref else ""
                line += f"{value:>14.1f}{ratio:>8}"
        lines.append(line)
    return "\n".join(lines)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
