"""Running async work from plain, synchronous code."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .errors import AsyncRequiredError

T = TypeVar("T")


def in_event_loop() -> bool:
    """Whether this thread is running an asyncio or trio event loop right now."""
    # Neither library is imported here: a loop can only run if its library is loaded,
    # and `di probe` should not pay for importing asyncio.
    if running_asyncio_loop() is not None:
        return True
    trio = sys.modules.get("trio")
    lowlevel = getattr(trio, "lowlevel", None)  # None while trio is still importing
    return lowlevel is not None and bool(lowlevel.in_trio_run())


def running_asyncio_loop() -> Any:
    """This thread's running asyncio loop, or None, without importing asyncio.

    Another thread may be importing asyncio right now: a module only partly initialized
    has no running loop here.
    """
    asyncio = sys.modules.get("asyncio")
    get_loop = getattr(asyncio, "_get_running_loop", None)
    return get_loop() if get_loop is not None else None


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


def any_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is asyncio's or trio's cancellation, whichever loop raised it."""
    asyncio = sys.modules.get("asyncio")
    cancelled = getattr(asyncio, "CancelledError", None)
    if cancelled is not None and isinstance(error, cancelled):
        return True
    trio = sys.modules.get("trio")
    cancelled = getattr(trio, "Cancelled", None)
    return cancelled is not None and isinstance(error, cancelled)


def cancel_requests() -> int:
    """How many native cancellations are pending on the current asyncio task (else 0)."""
    if running_asyncio_loop() is None:
        return 0
    import asyncio

    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def cancelled_from_outside(baseline: int) -> bool:
    """Whether a cancel scope or a caller is cancelling the current task.

    ``baseline`` is :func:`cancel_requests` taken when the work began. A cancellation
    exception raised while this is False was raised by the code called, not delivered
    to it (an async client re-raising its reader task's cancellation, say).
    """
    return anyio.current_effective_deadline() == -math.inf or cancel_requests() > baseline


async def to_completion(function: Callable[[], Awaitable[T]]) -> T:
    """Await ``function()`` to its end even if the caller is cancelled meanwhile.

    A caller's cancellation (a cancel scope, or asyncio's ``task.cancel()``, which a
    shielded cancel scope does not stop) is re-raised once the work is done. For work
    that must not be cut in half: a shutdown hook.
    """
    loop = running_asyncio_loop()
    if loop is None:
        with anyio.CancelScope(shield=True):
            return await function()
    import asyncio

    async def call() -> tuple[bool, Any]:
        # asyncio lets SystemExit and KeyboardInterrupt out of a task into the loop:
        # carry them back to the caller instead.
        try:
            return True, await function()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            return False, error

    task = loop.create_task(call())
    cancelled: BaseException | None = None
    with anyio.CancelScope(shield=True):
        while True:
            try:
                ok, outcome = await asyncio.shield(task)
                break
            except asyncio.CancelledError as error:
                if task.done():
                    raise  # the work itself ended cancelled
                cancelled = error  # the caller's: finish first
    if not ok:
        if cancelled is not None:
            outcome.add_note("the caller was cancelled meanwhile")
        raise outcome
    if cancelled is not None:
        raise cancelled
    result: T = outcome
    return result
