"""The workers of one health-check call: tasks, threads for sync checks, a watchdog.

The path of a call through here (the engine's ``drive`` starts it):

- :func:`work` is the calling task's worker. It takes checks from the call's ordered
  queue (``Call.take``) and runs them: an async check's first step inline
  (:mod:`di._health.stepping`), a sync check in a worker thread (:class:`Lane`);
- the first check that has to wait opens a task group: from then on, each time every
  worker is waiting, as many helpers again are started (1, 2, 4, ...; ``Call.grow``)
  up to the parallelism, each holding a slot of the injector's pool (:func:`helper`);
- :func:`watch`, one task per call, times out checks that overrun the per-check
  timeout: an async check's worker scope is cancelled, a sync check's thread is left
  behind and its worker goes on with a new one;
- a sync check another call is running is not started again: the worker waits for that
  run's outcome (:func:`_share`).
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._container.runner import cancel_requests, cancelled_from_outside, is_cancellation
from .settings import PER_CHECK, Unfinished
from .stepping import Pending, first_step, resume
from .verdicts import as_exception, close_awaitable, inspectable, verdict

if TYPE_CHECKING:
    from .engine import Call, Item


class WorkerState:
    """What one worker is waiting on now, for the watchdog."""

    __slots__ = ("item", "scope")

    def __init__(self) -> None:
        self.item: Item | None = None  # the suspended async check
        self.scope: anyio.CancelScope | None = None


async def work(call: Call) -> None:
    """The calling task's worker, which starts helpers only once a check waits.

    Checks that finish without suspending run here one after another, with no task,
    thread or timer of their own; a check is started and resumed under the same cancel
    scope, as any coroutine must be.
    """
    await call.slots.acquire()
    call.started = call.active = 1
    try:
        async with anyio.create_task_group() as tasks:
            call.tasks = tasks
            try:
                await _worker_loop(call)
            finally:
                _worker_done(call)
    finally:
        call.slots.release()


async def helper(call: Call) -> None:
    """A worker started when another one waits: holds a slot while it takes checks."""
    try:
        await call.slots.acquire()
        try:
            await _worker_loop(call, helper=True)
        finally:
            call.slots.release()
    finally:
        _worker_done(call)


def _worker_done(call: Call) -> None:
    call.active -= 1
    if call.active == 0 and call.watch_scope is not None:
        call.watch_scope.cancel()


async def _worker_loop(call: Call, helper: bool = False) -> None:
    """A worker's loop, under cancel scopes that only the watchdog cancels.

    Nothing outside cancels a helper's task natively (its task group cancels through
    a cancel scope): a native cancellation there comes from a check cancelling its own
    task, and is that check's failure.
    """
    worker = WorkerState()
    call.workers.append(worker)
    lane: Lane | None = None
    baseline = -1 if helper else cancel_requests()
    try:
        while True:
            with anyio.CancelScope() as scope:
                worker.scope = scope
                lane = await _take_checks(call, worker, scope, lane, baseline)
            if not scope.cancel_called:
                return
            # The scope is spent (a check overran): carry on in a new one.
    finally:
        worker.item = None
        call.workers.remove(worker)


async def _take_checks(
    call: Call,
    worker: WorkerState,
    scope: anyio.CancelScope,
    lane: Lane | None,
    baseline: int,
) -> Lane | None:
    """Take and run checks until the queue is empty or the watchdog cancels the scope."""
    pending: Pending | None = None
    while True:
        if pending is None:
            item = call.take()
            if item is None:
                return lane
            if item.is_async:
                pending = first_step(call, item)
                if pending is None:
                    continue
            else:
                pending = item, None
        item, rest = pending
        pending = None
        if item.shared:
            call.grow()
            try:
                again = await _share(call, item)
            finally:
                call.resume()
            if again and call.retake(item):
                pending = item, None  # its own run now, or another call's to share
            continue
        if rest is None and not item.is_async:
            if lane is None or lane.abandoned:
                lane = Lane(call)
            call.grow()
            try:
                handed_back = await lane.start(item)
            finally:
                call.resume()
            if handed_back is None:
                continue
            item, awaitable = handed_back
            if item.shared:
                pending = handed_back
                continue
            pending = first_step(call, item, awaitable)
            if pending is None:
                _end_if_sync(item, call)
                continue
            item, rest = pending
            pending = None
        assert rest is not None  # a started async check: (its steps, what it yielded)
        call.grow()
        worker.item = item
        error: BaseException | None = None
        value: Any = None
        try:
            value = await resume(call, item, rest[0], rest[1])
        except BaseException as caught:
            error = caught
        finally:
            worker.item = None
            call.resume()
        if error is not None or value is not None:
            error, value = inspectable(item.service.label, error, value)
        if scope.cancel_called:
            call.time_out(item, PER_CHECK)  # the watchdog fired, whatever the check did
            _end_if_sync(item, call)
            return lane
        if error is not None and is_cancellation(error) and _from_outside(baseline):
            _end_if_sync(item, call, error)
            raise error
        call.judge(item, error, value=value)
        _end_if_sync(item, call)


def _from_outside(baseline: int) -> bool:
    """Whether a cancellation reaching a worker was caused outside the checks."""
    if baseline < 0:  # a helper: only its cancel scopes count
        return anyio.current_effective_deadline() == -math.inf
    return cancelled_from_outside(baseline)


def _end_if_sync(item: Item, call: Call, error: BaseException | None = None) -> None:
    """A sync callable's awaitable was awaited: its run is over, for sharing calls too."""
    if item.attempt is not None and not item.shared:
        result = call.results.get(item.position)
        if result is not None:
            call.attempts.end(item.service, item.attempt, result.error, result.details)
        else:  # the call that started it was cancelled: nothing to share
            call.attempts.end(item.service, item.attempt, _unfinished(item))


async def _share(call: Call, item: Item) -> bool:
    """Wait for the run of a sync check that another call started, up to its deadline.

    True when that run ended with no outcome (its call was cancelled): check it anew.
    """
    attempt = item.attempt
    assert attempt is not None and call.notify is not None
    done = anyio.Event()
    with call.attempts.lock:
        running = not attempt.ended
        if running:
            attempt.waiters.append(functools.partial(call.notify, done.set))
    if running:
        wait = attempt.deadline - time.monotonic()
        with anyio.move_on_after(None if math.isinf(wait) else max(wait, 0.0)):
            await done.wait()
    if attempt.ended and isinstance(attempt.error, Unfinished):
        return True
    if attempt.ended and attempt.ended <= attempt.deadline:
        call.judge(item, attempt.error, attempt.ended, attempt.value)
    else:
        call.time_out(item, PER_CHECK)
    return False


class Lane:
    """A worker's thread: it runs sync checks in queue order until an async one is next.

    What the thread cannot run on its own comes back to the worker: an async check it
    took from the queue, a sync check another call is running (to share), or the
    awaitable a sync callable returned.
    """

    __slots__ = ("abandoned", "call", "event", "fatal", "item", "pending")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.item: Item | None = None  # the sync check running now
        self.abandoned = False
        self.event = anyio.Event()
        self.fatal: BaseException | None = None
        self.pending: tuple[Item, Awaitable[Any] | None] | None = None
        call.lanes.append(self)

    async def start(self, item: Item) -> tuple[Item, Awaitable[Any] | None] | None:
        """Run ``item`` and the sync checks after it; return what the worker must await."""
        self.event = anyio.Event()
        self.item = item
        done, notify = self.event, self.call.notify
        assert notify is not None
        self.call.threads.submit(lambda: self._drain(item, lambda: notify(done.set)))
        await done.wait()
        if self.fatal is not None:
            raise self.fatal
        pending, self.pending = self.pending, None
        return pending

    def _drain(self, item: Item | None, wake: Callable[[], None]) -> None:
        call = self.call
        try:
            while item is not None:
                if item.is_async or item.shared:
                    self.pending = (item, None)
                    return
                self.item = item
                attempt = item.attempt
                assert attempt is not None
                error: BaseException | None = None
                result: Any = None
                try:
                    result = item.call()
                except BaseException as caught:  # in a worker thread, even SystemExit
                    error = caught  # is this check's failure
                ended = time.monotonic()
                if error is not None or result is not None:
                    error, result = inspectable(item.service.label, error, result)
                if error is None and inspect.isawaitable(result):
                    # A sync callable that returned a coroutine (``lambda c: c.ping()``):
                    # the worker awaits it on the loop, within the same deadline.
                    item.service.probe = (item.call, True)
                    if self.abandoned or call.closed:
                        close_awaitable(result)
                        call.attempts.end(item.service, attempt, _unfinished(item))
                        return
                    self.pending = (item, result)
                    return
                if error is None and result is not None and result is not True:
                    error = verdict(item.service.label, result)
                failure = None if error is None else as_exception(item.service.label, error)
                call.attempts.end(item.service, attempt, failure, result)
                if self.abandoned or call.closed:
                    return
                call.judge(item, error, ended, result)
                item = call.take()
        except BaseException as fatal:
            self.fatal = fatal
        finally:
            self.item = None
            wake()


def _unfinished(item: Item) -> Unfinished:
    return Unfinished(
        item.service.label,
        "the call that started it ended before it finished; the next call checks it again",
    )


async def watch(call: Call) -> None:
    """The call's watchdog: time out checks that overrun the per-check timeout.

    An async check's worker scope is cancelled; a sync check's thread is abandoned and
    its worker carries on with a fresh one. Wakes only when the oldest running check is
    due, so a call whose checks finish in time costs one sleep.
    """
    tick = call.timeout  # the shortest per-check timeout: no check is due sooner
    assert tick is not None
    with anyio.CancelScope() as call.watch_scope:
        while call.active:
            now = time.monotonic()
            next_due = now + tick
            for worker in call.workers:
                item = worker.item
                if item is None or item.timeout is None or item.position in call.results:
                    continue
                due = item.started + item.timeout + item.credit(call)
                if due <= now:
                    call.time_out(item, PER_CHECK)
                    assert worker.scope is not None
                    worker.scope.cancel()
                else:
                    next_due = min(next_due, due)
            for lane in call.lanes:
                item = lane.item
                if (
                    item is None
                    or item.timeout is None
                    or lane.abandoned
                    or item.position in call.results
                ):
                    continue
                due = item.started + item.timeout
                if due <= now:
                    lane.abandoned = True
                    call.time_out(item, PER_CHECK)
                    call.attempts.abandon(
                        item.service,
                        item.attempt,
                        f"its per-check timeout of {item.timeout:g} s",
                    )
                    lane.event.set()
                else:
                    next_due = min(next_due, due)
            await anyio.sleep(max(next_due - time.monotonic(), 0.0005))
