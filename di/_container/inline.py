"""Closing a request scope inline: its finalizers run in the closing thread, or on its loop.

The end of a request scope's ``with`` / ``async with`` block (``Scope.__exit__`` and
``__aexit__``):

- :func:`take` closes the scope under the lock and takes out what it built, latest
  first: compiled builds (``Scope._fast``, a generator factory's generator with its
  instance) and the scoped copies the general path built; when none has a finalizer
  that is the whole close;
- :func:`run_inline` runs each finalizer in the calling thread, whatever the others
  raise: a generator factory gets the block's failure thrown in at its ``yield`` (or is
  resumed), a ``shutdown()`` method or a generator's teardown is called.
  :func:`arun_inline` is its twin for async code: sync finalizers run on the loop,
  async ones are awaited there to their end even if the caller is cancelled meanwhile
  (:class:`_Deaf` on asyncio, a shielded cancel scope on trio), the cancellation
  re-raised once every finalizer ran;
- :func:`_settle` raises the failures together as :class:`~di.ShutdownError` with the
  report, or a ``BaseException`` (or the cancellation) once every finalizer ran.

No worker thread, no timeout: a request's finalizers cost what their code costs. A
scope takes :mod:`di._container.shutdown`'s general path instead (each hook within
``shutdown_timeout``, sync ones in a worker thread) when it is the root, provides
services itself, has children or hooks listening to shutdowns, is being shut down
already, or its injector was made with ``request_shutdown="bounded"``; and whenever
``shutdown()`` / ``ashutdown()`` is called, which return the report.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import time
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from ..lifecycle import Outcome, ServiceShutdown
from .request import materialize
from .resolve import FINISHED, afinish_generator, finish_generator
from .runner import running_asyncio_loop
from .service import Service
from .shutdown import Tally, hook_of, raise_failures
from .signature import Kind

if TYPE_CHECKING:
    from ..scope import Scope

# One finalizer to run: the service, its instance, then a compiled build's index and
# generator (or None), or None and the teardown the general path recorded (or None).
_Step = tuple[Service, Any, Any, Any]
_ASYNC_KINDS = (Kind.ASYNC_GENERATOR,)


def take(scope: Scope, asynchronous: bool) -> list[_Step] | None:
    """Close request scope ``scope`` and take its finalizers out, latest build first:
    an empty list when nothing it built has one (it is closed, nothing is left to run);
    None when the general path must close it (then it may be marked closed already, as
    :func:`~di._container.request.close_plainly` leaves it)."""
    parent = scope._parent
    root = scope._root
    if parent is None or scope._services or root._request_shutdown != "inline":
        return None
    listeners = scope._listeners
    if listeners and ("shut_down" in listeners or "shutting_down" in listeners):
        return None
    fast = scope._fast
    built = len(fast)
    plain = True
    for service, instance, _, generator in fast:  # compiled builds: no shutdown= hooks
        if generator is not None:
            plain = False
            if not asynchronous and service.kind in _ASYNC_KINDS:
                return None  # the general path says to use `async with`
            continue
        try:
            method = getattr(instance, "shutdown", None)
        except Exception:  # its hook fails, which the report tells (see hook_of)
            plain = False
            continue
        if callable(method):
            plain = False
            if not asynchronous and inspect.iscoroutinefunction(method):
                return None
    if scope._scoped and not asynchronous and _has_async(scope):
        return None
    steps: list[_Step]
    mutex = root._mutex
    mutex.acquire()
    try:
        if scope._closed:
            return None
        # Closed before looking at the children: a child being opened without the
        # lock then either sees it or is seen here (see Scope.scope).
        scope._closed = True
        if scope._children or scope._closing or scope._shutting or len(fast) != built:
            return None  # the general path takes it from here, closed already
        scope._generation += 1
        if scope._scoped:
            materialize(scope)
            copies = sorted(
                (c for c in scope._scoped.values() if c.index), key=lambda c: c.index, reverse=True
            )
            steps = [(c, scope._instances.get(c.key), None, c.teardown) for c in copies]
            for copy in copies:
                copy.index, copy.teardown, copy.probe = 0, None, None
        elif plain:
            steps = []
            fast.clear()
        else:
            # The compiled builds as they are: (service, instance, index, generator).
            steps = fast[::-1]
            fast.clear()
        scope._instances.clear()  # a scope kept by its caller keeps nothing alive
        children = parent._children  # shutdown.leave(), inlined
        key = scope._number or scope.name
        if children.get(key) is scope:
            del children[key]
    finally:
        mutex.release()
    return steps


def _has_async(scope: Scope) -> bool:
    """Whether a scoped copy of ``scope`` has an async finalizer (read by the scope's
    closer, outside the mutex: a ``shutdown`` attribute is the instance's own code)."""
    for copy in list(scope._scoped.values()):
        if copy.index:
            instance = scope._instances.get(copy.key)
            if inspect.iscoroutinefunction(hook_of(copy, instance, copy.teardown, None)):
                return True
    return False


# -- the two entry points: twins, change both ---------------------------------------------


def run_inline(scope: Scope, steps: list[_Step], failure: BaseException | None) -> None:
    """Run the finalizers :func:`take` took from request scope ``scope`` in the calling
    thread, whatever the others raise.

    ``failure`` (the block's exception) is thrown into generator factories.
    """
    outcomes: list[tuple[Service, float, BaseException | None]] | None = None
    for index, (service, instance, number, finisher) in enumerate(steps):
        began = time.perf_counter()
        try:
            if number is not None and finisher is not None:
                # The common end inline (a generator that returns once resumed); any
                # other, finish_generator's.
                if failure is not None or next(finisher, FINISHED) is not FINISHED:
                    finish_generator(service, finisher, failure, resumed=failure is None)
            else:
                hook = hook_of(service, instance, None if number is not None else finisher, failure)
                if hook is not None:
                    _sync_result(hook(), service)
        except BaseException as error:  # every finalizer runs; then the failures
            outcomes = _failed(outcomes, steps, index, began, error)
        else:
            if outcomes is not None:
                outcomes.append((service, time.perf_counter() - began, None))
    if outcomes is not None:
        _settle(scope, outcomes, None)


async def arun_inline(scope: Scope, steps: list[_Step], failure: BaseException | None) -> None:
    """:func:`run_inline` from async code: async
    finalizers are awaited on the loop, to their end even if the caller is cancelled
    meanwhile; the cancellation follows."""
    outcomes: list[tuple[Service, float, BaseException | None]] | None = None
    cancelled: BaseException | None = None
    for index, (service, instance, number, finisher) in enumerate(steps):
        began = time.perf_counter()
        try:
            if number is not None and finisher is not None:
                if service.kind is Kind.GENERATOR:
                    if failure is not None or next(finisher, FINISHED) is not FINISHED:
                        finish_generator(service, finisher, failure, resumed=failure is None)
                elif failure is None:
                    # The common end: resume it (in a task of its own on asyncio, see
                    # _Deaf), and finish it the general way if it yields again.
                    deaf = _Deaf(anext(finisher, FINISHED))
                    resumed = await deaf
                    cancelled = cancelled or deaf.cancelled
                    if resumed is not FINISHED:
                        await afinish_generator(service, finisher, failure, yielded=True)
                else:
                    deaf = _Deaf(afinish_generator(service, finisher, failure))
                    await deaf
                    cancelled = cancelled or deaf.cancelled
            else:
                teardown = None if number is not None else finisher
                hook = hook_of(service, instance, teardown, failure)
                if hook is not None:
                    result = hook()
                    if inspect.isawaitable(result):
                        deaf = _Deaf(result)
                        await deaf
                        cancelled = cancelled or deaf.cancelled
        except BaseException as error:  # every finalizer runs; then the failures
            outcomes = _failed(outcomes, steps, index, began, error)
        else:
            if outcomes is not None:
                outcomes.append((service, time.perf_counter() - began, None))
    if outcomes is not None or cancelled is not None:
        _settle(scope, outcomes or [], cancelled)


def _sync_result(result: Any, service: Service) -> None:
    """Refuse a sync path's hook that returned an awaitable (it never ran)."""
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()
        raise TypeError(
            f"the shutdown hook of {service.label!r} returned an awaitable; "
            "declare it `async def` or close the scope with `async with`"
        )


def _failed(
    outcomes: list[tuple[Service, float, BaseException | None]] | None,
    steps: list[_Step],
    index: int,
    began: float,
    error: BaseException,
) -> list[tuple[Service, float, BaseException | None]]:
    """The outcomes so far once one failed: those before it were fine (their times
    are not kept: only a failure needs the report)."""
    if outcomes is None:
        outcomes = [(step[0], 0.0, None) for step in steps[:index]]
    outcomes.append((steps[index][0], time.perf_counter() - began, error))
    return outcomes


def _settle(
    scope: Scope,
    outcomes: list[tuple[Service, float, BaseException | None]],
    cancelled: BaseException | None,
) -> None:
    """Raise what the finalizers raised, as the general path does, with its report."""
    tally = Tally(scope.name)
    for service, seconds, error in outcomes:
        if isinstance(error, Exception):
            tally.failures[service.label] = error
        elif error is not None:
            tally.fatal = tally.fatal or error
        outcome: Outcome = "ok" if error is None else "failed"
        tally.entries.append(ServiceShutdown(service.label, scope.name, outcome, seconds, error))
    raise_failures(scope, tally, cancelled)


# -- awaiting a finalizer to its end ------------------------------------------------------------


class _Deaf:
    """Await a finalizer to its end, deaf to the current task's cancellation.

    On asyncio the finalizer runs as a task of its own, started eagerly where the loop
    can (Python 3.12 and later: a finalizer that never waits ends there, in one call;
    on 3.11 it starts at the loop's next turn). A cancel scope or ``asyncio.timeout``
    it opens is then its own and fires, while the caller's task waits on a stand-in
    for it: cancelling the caller (``task.cancel()``, or an anyio cancel scope
    delivering) cancels the stand-in, never the finalizer, which goes on; the first
    cancellation is kept in ``cancelled`` for the caller to re-raise. In the caller's
    own task no timeout of the finalizer could be told from the caller's cancellation,
    and it would hang. On trio the finalizer runs under a shielded cancel scope
    (:func:`_shielded`) from its first step, so that a cancel scope it opens nests
    inside the shield and its own deadline reaches it.
    """

    __slots__ = ("awaitable", "cancelled")

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable
        self.cancelled: BaseException | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        loop = running_asyncio_loop()
        if loop is None:
            return (yield from _shielded(self.awaitable).__await__())
        task = _start(loop, self.awaitable)
        while not task.done():
            stand_in = loop.create_future()
            task.add_done_callback(functools.partial(_wake, stand_in))
            stand_in._asyncio_future_blocking = True
            try:
                yield stand_in
            except asyncio.CancelledError as error:  # the caller's, not the finalizer's
                self.cancelled = self.cancelled or error
        return task.result()


def _wake(stand_in: asyncio.Future[None], _: object) -> None:
    if not stand_in.done():
        stand_in.set_result(None)


def _start(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    """``awaitable`` as a task of its own on ``loop``, started at once where it can be."""
    coroutine = awaitable if inspect.iscoroutine(awaitable) else _awaited(awaitable)
    if _EAGER:
        return asyncio.Task(coroutine, loop=loop, eager_start=True)  # type: ignore[call-arg, unused-ignore]
    return loop.create_task(coroutine)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


# Tasks that run their first step at once, where they exist (Python 3.12 and later).
_EAGER = sys.version_info >= (3, 12)


async def _shielded(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` on trio under a shielded cancel scope."""
    import trio

    with trio.CancelScope(shield=True):
        return await awaitable
