"""A worker the signal tests run in a process of its own: ``python -m tests.signal_targets``.

``python -m tests.signal_targets sync|asyncio|trio SIGNAL|default`` builds a container (a
database that closes cleanly, a queue whose shutdown fails), then waits with
``shutdown_on_signals(SIGNAL)`` (or ``ashutdown_on_signals`` on the loop named, while
a task keeps ticking) and prints, once shut down, one JSON line per service of the
report and a last line with the ticks. SIGINT is ignored until the container takes
it, so that the test can tell when it does (Python's own handler would already show):
a first line says when it is.
"""

from __future__ import annotations

import json
import signal
import sys

import anyio

from di import Injector, ShutdownReport

from .services import Database, UnclosableQueue


class ReportingDatabase(Database):
    """The shared Database, whose shutdown hook says in a JSON line that it ran."""

    def shutdown(self) -> None:
        super().shutdown()
        print(json.dumps({"closed": "database"}), flush=True)


def built() -> Injector:
    injector = Injector()
    injector.provide(ReportingDatabase)
    injector.provide(UnclosableQueue)
    injector.invoke(ReportingDatabase)
    injector.invoke(UnclosableQueue)
    return injector


def show(report: ShutdownReport, ticks: int) -> None:
    for service in report:
        error = None if service.error is None else type(service.error).__name__
        line = {"name": service.name.rsplit(".", 1)[1], "outcome": service.outcome}
        print(json.dumps(line | {"error": error}), flush=True)
    print(json.dumps({"ok": report.ok, "ticks": ticks}), flush=True)


def main(mode: str, name: str) -> None:
    """``name`` is a signal's name, or ``default`` for the default signals."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(json.dumps({"started": True}), flush=True)  # from now on, no handler till ours
    chosen = () if name == "default" else (signal.Signals[name],)
    injector = built()
    if mode == "sync":
        show(injector.shutdown_on_signals(*chosen), 0)
        return
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def run() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            await anyio.sleep(0.05)  # the loop runs other tasks while it waits
            report = await injector.ashutdown_on_signals(*chosen)
            tasks.cancel_scope.cancel()
        show(report, ticks)

    anyio.run(run, backend=mode)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
