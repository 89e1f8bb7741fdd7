"""Running async work from plain, synchronous code."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

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
        raise RuntimeError(
            f"{sync_name}() was called inside a running event loop; "
            f"use `await {async_name}()` there"
        )
    return anyio.run(function)
