"""Running async work from plain, synchronous code."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .errors import AsyncRequiredError

T = TypeVar("T")


def in_event_loop() -> bool:
    """Whether this thread is running an asyncio or trio event loop right now."""
    # Neither library is imported here: a loop can only run if its library is loaded,
    # and `di probe` should not pay for importing asyncio.
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return True
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())


def run(function: Callable[[], Awaitable[T]], sync_name: str, async_name: str) -> T:
    """Run ``function`` on a fresh event loop, refusing to nest inside a running one.

    Blocking a running loop to wait for work scheduled on that same loop would hang it,
    so the sync form points to the async one instead.
    """
    if in_event_loop():
        raise AsyncRequiredError(
            f"{sync_name}() was called inside a running event loop; "
            f"use `await {async_name}()` there"
        )
    # The result goes out of band: asyncio's runner would otherwise compute its repr()
    # at shutdown (CPython issue 112559), which costs as much as a large health check.
    box: list[T] = []

    async def main() -> None:
        box.append(await function())

    anyio.run(main)
    return box[0]


def is_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is the running backend's cancellation exception."""
    return isinstance(error, anyio.get_cancelled_exc_class())


def cancel_requests() -> int:
    """How many native cancellations are pending on the current asyncio task (else 0)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        return 0
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def cancelled_from_outside(baseline: int) -> bool:
    """Whether a cancel scope or a caller is cancelling the current task.

    ``baseline`` is :func:`cancel_requests` taken when the work began. A cancellation
    exception raised while this is False was raised by the code called, not delivered
    to it (an async client re-raising its reader task's cancellation, say).
    """
    return anyio.current_effective_deadline() == -math.inf or cancel_requests() > baseline
