"""Time in the tests: one bound for how long a step may take, and waits for what happens.

The suite runs on a 2-core machine with six pytest-xdist workers, and must pass
beside a busy loop on each core, and beside whatever else the machine runs. There a
thread or task that is ready to run can wait for a core, and for the GIL after it: a
step that takes 10 ms alone takes 0.4 s now and then. So:

- A test that waits for something to happen waits for it: an event, or a condition
  polled by :func:`wait_until` (threads, processes) or :func:`until` (async code), with
  :data:`PATIENCE` as its deadline, which only a failing test reaches. It never sleeps
  for a while and hopes the thing has happened meanwhile; only where the thing cannot
  be seen from outside (a call joining another in flight, a server reading a request)
  does it give that step ``at_most(0)``, the bound of any quick step.
- A test that bounds elapsed time (the step must not wait for a timeout, nor hang)
  bounds it with :func:`at_most`, from above only. A lower bound needs no slack: sleeps
  and timeouts do not end early.
- A timeout given to the code under test that must *not* fire for healthy work (a
  per-check timeout shared by a healthy check, a monitor's round timeout) is
  ``at_most(the work)`` too: that is how long the healthy work may take here. A timeout
  that must fire is then longer than ``at_most`` of whatever a test tells it apart from.

``FUDGE = 3.0`` is the one fudge factor, and its value is measured. On the 2-core
machine, beside two busy loops, the suite's workers and other work (a load average of
10 to 20), a probe saw a task or a thread that was ready to run wait up to 0.28 s for
a core (one wait in a thousand over 0.17 s), and failing runs showed quick checks (a
10 ms sleep, a sync check doing nothing) charged 0.37 to 0.47 s; with the busy loops
and the suite alone, the longest wait seen was 12 ms. The bounds that failed were a
few tenths of a second over the time promised (0.3 + 0.25 s; 0.1 s for "at once").
Three times the time promised, never computed from less than :data:`FLOOR` (0.5 s, the
shortest bound the project allows), gives a quick step 1.5 s, three times the worst
wait seen; a step that takes seconds, which crosses more such waits and does more work
on a shared core, keeps a bound in proportion. To tell "at once" from "after a
timeout", make the timeout longer than ``at_most(0)``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio

FUDGE = 3.0
"""How many times longer than promised a step may take on the loaded machine."""

FLOOR = 0.5
"""The shortest time a bound is ever computed from: nothing is bounded tighter."""

PATIENCE = 30.0
"""How long a test waits for something that must happen before it fails."""

POLL = 0.01
"""How often :func:`wait_until` and :func:`until` look at their condition."""


def at_most(promised: float) -> float:
    """The wall-clock bound for a step promised to take ``promised`` seconds."""
    return FUDGE * max(promised, FLOOR)


class Stopwatch:
    """Wall-clock seconds since it started (``with Stopwatch() as watch:``), frozen at exit.

    >>> with Stopwatch() as watch:
    ...     injector.shutdown()
    >>> assert watch.seconds < at_most(0.2)
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._stopped: float | None = None

    def __enter__(self) -> Stopwatch:
        self.started, self._stopped = time.monotonic(), None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped = time.monotonic()

    @property
    def seconds(self) -> float:
        end = time.monotonic() if self._stopped is None else self._stopped
        return end - self.started


def wait_until(predicate: Callable[[], object], what: str, timeout: float = PATIENCE) -> float:
    """Block until ``predicate()`` is true; the seconds it took. For threads and processes."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - started


async def until(
    predicate: Callable[[], object | Awaitable[object]], what: str, timeout: float = PATIENCE
) -> None:
    """Wait until ``predicate()`` (or what it returns, awaited) is true; the loop runs meanwhile."""
    started = time.monotonic()
    while not await _value(predicate()):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(POLL)


async def _value(result: object) -> object:
    return await result if inspect.isawaitable(result) else result
