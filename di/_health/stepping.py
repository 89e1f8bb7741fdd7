"""Driving an async check by hand: its first step inline, the rest timed step by step.

Why: most async checks finish without ever suspending (a cached answer, a flag), and
most that suspend do so once. Awaiting each in a task of its own costs a task, a cancel
scope and a loop turn per check, ten times the check itself. Instead the worker sends
the coroutine its first step directly (:func:`first_step`): a check that ends there is
reported at once, in the caller's task, with no task, thread or timer; one that
suspends is handed back to be awaited (:func:`resume`) under the worker's cancel scope.

The contract, which both functions keep:

- a check's coroutine is started and resumed in the same task, under the same cancel
  scope, as any coroutine must be: the worker awaits :func:`resume` itself, and a
  cancellation delivered to it is thrown into the check at its suspension point;
- whatever the first step raises, ``BaseException`` included, is that check's failure
  (nothing outside can have caused it: nothing was awaited yet), recorded through the
  call's ``judge``;
- every step is timed on the thread's loop clock (:class:`di._health.settings.Stall`):
  the time a check's own code held the loop is added to its ``own_stall`` and to the
  loop's total, so that an async check is charged only for its own time, not for the
  time its neighbours held the loop while it waited (see ``Item.credit``).
"""

from __future__ import annotations

import inspect
import time
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Call, Item

# A step of a check that suspended: the item, and (its steps, what it yielded).
Pending = tuple["Item", Any]


def first_step(call: Call, item: Item, awaitable: Any = None) -> Pending | None:
    """Start an async check; report it if it ended at once, else return it suspended.

    ``awaitable`` is what a sync callable returned (``lambda c: c.ping()``), when the
    check was started in a thread; else the check is called here.
    """
    began = time.monotonic()
    try:
        if awaitable is None:
            awaitable = item.call()
        steps = awaitable if inspect.iscoroutine(awaitable) else awaitable.__await__()
        yielded = steps.send(None)
    except StopIteration as stop:
        ended = time.monotonic()
        call.judge(item, None, ended, stop.value)
        call.stall.total += ended - began
        return None
    except BaseException as error:  # it never suspended: nothing outside caused this
        ended = time.monotonic()
        call.judge(item, error, ended)
        call.stall.total += ended - began
        return None
    took = time.monotonic() - began
    call.stall.total += took
    item.own_stall += took
    return item, (steps, yielded)


@types.coroutine
def resume(call: Call, item: Item, steps: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Await the rest of a check already started by :func:`first_step`.

    Each step is timed: the loop time it takes is charged to this check alone.
    """
    while True:
        step: Callable[[Any], Any]
        try:
            step, argument = steps.send, (yield yielded)
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as thrown:  # a cancellation delivered to the waiting check
            step, argument = steps.throw, thrown
        began = time.monotonic()
        try:
            yielded = step(argument)
        except StopIteration as stop:
            return stop.value
        finally:
            took = time.monotonic() - began
            call.stall.total += took
            item.own_stall += took
