"""Shutting a scope down: take what it built out, then attempt every hook, in order.

The path of ``scope.shutdown()`` (``ashutdown()`` is its twin, awaiting async hooks):

- :func:`close_plainly` ends a request scope that built nothing needing a hook, at once
  (see :mod:`di._container.request`);
- :func:`shutdown` claims the scope's shutdown (:func:`_claim`: one at a time, others
  wait), :func:`close` marks the subtree closed and takes every built instance out of
  it (:func:`take_out`), children deepest first, each scope's services in reverse
  build order;
- :func:`_attempt_sync` / :func:`_attempt_async` attempt each :class:`PendingHook` whatever
  the others raised, each within the injector's ``shutdown_timeout`` (sync hooks then
  run in a worker thread of the injector's pool, and one that overruns is left behind),
  telling the hooks listening (``shutting_down``, ``shut_down``) in the thread or task
  shutting down, and keeping each outcome in a :class:`Tally`;
- :func:`raise_failures` returns the :class:`~di.ShutdownReport`, or raises the failures
  together (:class:`~di.ShutdownError`, carrying the report), after any
  ``BaseException`` or cancellation that stopped the run.

A service an active ``overridden()`` set aside (its instance held, not in the scope's
instances) is shut down with the others, in its place in the order.

A cancelled ``ashutdown()`` stops between hooks, never inside one: the hooks not
attempted yet stay with their scopes for a later call.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ..errors import AsyncRequiredError, DIError, ShutdownError, ShutdownTimeoutError
from ..lifecycle import Outcome, ServiceShutdown, ShutdownReport
from . import hooks, registry
from .runner import (
    LeftBehind,
    call_in_thread,
    cancel_requests,
    cancelled_from_outside,
    in_event_loop,
    in_thread,
    is_cancellation,
    loop_notifier,
    run_blocking,
    to_completion,
)
from .service import COMPILED, MISSING, Service, Teardown

if TYPE_CHECKING:
    from ..scope import Scope

logger = logging.getLogger("di")


class PendingHook:
    """One built service taken out of its scope, waiting for its shutdown hook."""

    __slots__ = ("failure", "instance", "key", "service", "teardown")

    def __init__(
        self, service: Service, instance: Any, key: str, failure: BaseException | None
    ) -> None:
        self.service = service
        self.instance = instance
        self.teardown = service.teardown
        self.key = key  # how ShutdownError names it
        self.failure = failure  # what the scope's block raised, for generator factories

    def hook(self) -> Callable[[], Any] | None:
        return hook_of(self.service, self.instance, self.teardown, self.failure)


class Tally:
    """What attempting hooks found: each service's outcome, in order, the failures by
    key, and the first ``BaseException`` that is no ``Exception``."""

    __slots__ = ("began", "entries", "failures", "fatal", "scope")

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.began = time.perf_counter()
        self.entries: list[ServiceShutdown] = []
        self.failures: dict[str, Exception] = {}
        self.fatal: BaseException | None = None

    def record(self, step: PendingHook, began: float, error: BaseException | None) -> None:
        """Keep how ``step``'s hook went, and tell the hooks listening to ``shut_down``."""
        seconds = time.perf_counter() - began
        if isinstance(error, Exception):
            self.failures[step.key] = error
        elif error is not None:
            self.fatal = self.fatal or error
        outcome: Outcome = "ok"
        if isinstance(error, ShutdownTimeoutError):
            outcome = "timed_out"
        elif error is not None:
            outcome = "failed"
        owner = step.service.owner
        self.entries.append(
            ServiceShutdown(step.service.label, owner.name, outcome, seconds, error)
        )
        if owner._listeners:
            try:
                hooks.emit(owner, "shut_down", step.service, step.instance, error, seconds)
            except BaseException as stop:  # stopping the program: once every hook ran
                self.fatal = self.fatal or stop

    def report(self) -> ShutdownReport:
        return ShutdownReport(self.scope, tuple(self.entries), time.perf_counter() - self.began)


def _starting(step: PendingHook, tally: Tally) -> float:
    """Tell the hooks listening that ``step``'s service is shutting down; the time.

    A hook that raises a ``BaseException`` (stopping the program) has it re-raised once
    every hook ran, as a shutdown hook's own is: the service still shuts down.
    """
    owner = step.service.owner
    if owner._listeners:
        try:
            hooks.emit(owner, "shutting_down", step.service, step.instance)
        except BaseException as stop:
            tally.fatal = tally.fatal or stop
    return time.perf_counter()


class Shutting:
    """A shutdown in progress, which other callers wait for (from any thread or loop)."""

    __slots__ = ("_callbacks", "_done", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def end(self) -> None:
        self._done.set()
        for wake in self._callbacks:
            wake()

    def wait(self) -> None:
        self._done.wait()

    async def await_end(self) -> None:
        ended = anyio.Event()
        notify = loop_notifier()
        self._callbacks.append(lambda: notify(ended.set))
        if not self._done.is_set():
            await ended.wait()


# -- the two entry points: twins, change both ---------------------------------------------


def shutdown(
    scope: Scope, failure: BaseException | None, called: str = "shutdown"
) -> ShutdownReport:
    """Shut ``scope``'s subtree down from sync code; ``failure`` reaches generator factories."""
    if has_async_hooks(scope):
        if in_event_loop():
            raise AsyncRequiredError(
                "a `with` block of the scope ended inside a running event loop and some "
                "services have async shutdown hooks; use `async with` there"
                if called == "with"
                else "shutdown() was called inside a running event loop and some "
                "services have async shutdown hooks; use `await ashutdown()` there"
            )
        return run_blocking(lambda: ashutdown(scope, failure), "shutdown", "ashutdown")
    while (running := (claim := _claim(scope))[1]) is not None:
        if running.thread == threading.get_ident() and in_event_loop():
            # Another task of this loop is shutting it down: blocking the loop to wait
            # for that task would wait for ever.
            raise AsyncRequiredError(
                "shutdown() was called inside a running event loop while another task "
                "shuts this scope down; use `await ashutdown()` there, which waits for it"
            )
        running.wait()  # another caller is shutting it down: wait for the end
    token = _INSIDE.set((*_INSIDE.get(), claim[0]))
    tally = Tally(scope.name)
    try:
        scopes = close(scope, failure)
        for closing in scopes:
            _attempt_sync(functools.partial(_take_next, closing), scope, "ashutdown", tally)
            _closed_out(closing)
    finally:
        _INSIDE.reset(token)
        _release(scope, claim[0])
    return raise_failures(scope, tally, None)


async def ashutdown(scope: Scope, failure: BaseException | None) -> ShutdownReport:
    """:func:`shutdown` from async code, awaiting async hooks; stops between hooks if
    cancelled."""
    while (running := (claim := _claim(scope))[1]) is not None:
        await running.await_end()  # another caller is shutting it down
    token = _INSIDE.set((*_INSIDE.get(), claim[0]))
    cancelled: BaseException | None = None
    tally = Tally(scope.name)
    try:
        scopes = close(scope, failure)
        for closing in scopes:
            cancelled = await _attempt_async(functools.partial(_take_next, closing), scope, tally)
            if cancelled is not None:
                break
            _closed_out(closing)
    finally:
        _INSIDE.reset(token)
        _release(scope, claim[0])
    return raise_failures(scope, tally, cancelled)


# The shutdowns whose hooks the current task or thread runs (a hook's worker thread and
# task see its caller's): a hook that shuts its own scope down again is one of them.
_INSIDE: contextvars.ContextVar[tuple[Shutting | None, ...]] = contextvars.ContextVar(
    "di_shutting", default=()
)


def _claim(scope: Scope) -> tuple[Shutting | None, Shutting | None]:
    """Claim this scope's shutdown: ``(ours, None)``; ``(None, running)`` when another
    caller runs it (wait for its end, then claim again); ``(None, None)`` inside a hook
    of the one running (a hook shutting its own scope down goes on, owning nothing).

    Two shutdowns at once would run hooks side by side, out of order, and the first
    to finish would reopen the root while the other still runs hooks. Callers are told
    apart by context, not by thread: two tasks of one loop are two callers.
    """
    with scope._root._mutex:
        running = scope._shutting
        if running is None:
            running = scope._shutting = Shutting()
            return running, None
        if running in _INSIDE.get():
            return None, None
        return None, running


def _release(scope: Scope, claimed: Shutting | None) -> None:
    if claimed is None:
        return  # a hook's nested call: the caller that claimed it releases it
    with scope._root._mutex:
        if scope._shutting is claimed:
            scope._shutting = None
    claimed.end()


# -- taking the built services out ---------------------------------------------------------


def has_async_hooks(scope: Scope) -> bool:
    """Whether shutting ``scope``'s subtree down would await an async hook."""
    from .overrides import held

    with scope._root._mutex:
        scopes = subtree(scope)
        pending = [step for each in scopes for step in each._closing]
        aside = [entry for each in scopes for entry in held(each)]
    if any(inspect.iscoroutinefunction(step.hook()) for step in pending):
        return True
    if any(
        inspect.iscoroutinefunction(hook_of(service, instance, service.teardown, None))
        for service, instance in aside
    ):
        return True
    return any(has_async_hook(each, registry.built_services(each)) for each in scopes)


def subtree(scope: Scope, close: bool = False) -> list[Scope]:
    """``scope``'s subtree in shutdown order: children deepest first, then itself.

    ``close=True`` marks each scope closed before listing its children, as a child
    opened without the lock relies on (see ``Scope.scope``).
    """
    if close:
        scope._closed = True
    order: list[Scope] = []
    for child in reversed(list(scope._children.values())):
        order += subtree(child, close)
    order.append(scope)
    return order


def close(scope: Scope, failure: BaseException | None) -> list[Scope]:
    """Close the subtree and take its built services out, ready to shut down.

    Builds still in flight see the scope closed when they land: they shut their
    instance down and raise :class:`~di.ScopeClosedError`.
    """
    from .overrides import release_held
    from .request import forget_builders, materialize

    with scope._root._mutex:
        scopes = subtree(scope, close=True)
        for closing in scopes:
            materialize(closing)
            closing._generation += 1
            aside = release_held(closing)
            built = sorted(
                {
                    s
                    for s in (*closing._services.values(), *closing._scoped.values(), *aside)
                    if s.index
                },
                key=lambda s: s.index,
                reverse=True,
            )
            steps = take_out(closing, built, scope, failure, aside)
            closing._closing = [*closing._closing, *steps]
            if closing._parent is not None:
                closing._instances.clear()  # its context's values (a child never reopens)
            forget_builders(closing)
        return scopes


def take_out(
    scope: Scope,
    services: Iterable[Service],
    shutting: Scope | None = None,
    failure: BaseException | None = None,
    aside: dict[Service, Any] | None = None,
) -> list[PendingHook]:
    """Drop built instances from ``scope`` (the caller holds the mutex).

    ``shutting`` is the scope whose shutdown this is: a descendant's services are named
    by their path below it. ``aside`` holds the instances of services an override set
    aside: not in the scope's instances, where another service now has their key.
    """
    steps = []
    where = ""
    if shutting is not None and shutting is not scope:
        names = [scope.name]
        for ancestor in scope.ancestors():
            if ancestor is shutting:
                break
            names.append(ancestor.name)
        where = "/".join(reversed(names))
    for service in services:
        key = f"{service.label} (scope {where!r})" if where else service.label
        instance = aside[service] if aside and service in aside else _instance_in(scope, service)
        for other in service.keys:
            if scope._instances.get(other, MISSING) is instance:
                del scope._instances[other]
        steps.append(PendingHook(service, instance, key, failure))
        service.index = 0
        service.teardown = None
        service.probe = None
    return steps


def _instance_in(scope: Scope, service: Service) -> Any:
    """The built instance of ``service`` in ``scope``'s instances, by one of its keys
    that still reaches it: an override may hold another (the caller holds the mutex)."""
    if service.template is None and scope._services.get(service.key) is not service:
        for key in service.keys[1:]:
            if scope._services.get(key) is service and key in scope._instances:
                return scope._instances[key]
    return scope._instances[service.key]


def _take_next(scope: Scope) -> PendingHook | None:
    """The next service of ``scope`` to shut down, taken so that no one else does."""
    with scope._root._mutex:
        return scope._closing.pop(0) if scope._closing else None


def _closed_out(scope: Scope) -> None:
    """Every hook of ``scope`` was attempted: a child leaves its parent, the root reopens."""
    with scope._root._mutex:
        if scope._closing:
            return  # another shutdown call is still running hooks here
        if scope._parent is None:
            scope._closed = False
        else:
            leave(scope)


def leave(scope: Scope) -> None:
    """Leave the parent's children, if still there (the caller holds the mutex)."""
    parent = scope._parent
    if parent is not None:
        key = scope._number or scope.name
        if parent._children.get(key) is scope:
            del parent._children[key]


def raise_failures(scope: Scope, tally: Tally, cancelled: BaseException | None) -> ShutdownReport:
    """The report, once every hook that could run has run; or what the hooks raised."""
    report = tally.report()
    failures = tally.failures
    first = cancelled or tally.fatal
    if first is not None:
        if failures:
            group = ShutdownError(scope.name, failures, report)
            logger.error("%s", group, exc_info=group)
            first.add_note(str(group))
        raise first
    if failures:
        raise ShutdownError(scope.name, failures, report)
    return report


# -- hooks ----------------------------------------------------------------------------------


def hook_of(
    service: Service,
    instance: Any,
    teardown: Teardown | None,
    failure: BaseException | None,
) -> Callable[[], Any] | None:
    """The zero-argument shutdown hook of a built instance, if it has one."""
    if teardown is not None:
        return functools.partial(teardown, failure)
    if service.shutdown_hook is not None:
        hook = service.shutdown_hook
        if inspect.iscoroutinefunction(hook):

            async def call_async() -> Any:
                return await hook(instance)

            return call_async
        return lambda: hook(instance)
    try:
        method = getattr(instance, "shutdown", None)
    except Exception as error:  # a proxy whose attribute lookup fails: its hook fails
        failure_of_lookup = error

        def broken() -> None:
            raise failure_of_lookup

        return broken
    return method if callable(method) else None


def has_async_hook(scope: Scope, services: list[Service]) -> bool:
    """Whether one of ``services``, built in ``scope``, has an async shutdown hook."""
    for service in services:
        instance = scope._instances.get(service.key, MISSING)
        if instance is not MISSING and instance is not COMPILED:
            hook = hook_of(service, instance, service.teardown, None)
            if inspect.iscoroutinefunction(hook):
                return True
    return False


def drain(steps: list[PendingHook]) -> Callable[[], PendingHook | None]:
    """Take ``steps`` one by one (an override's replaced instances)."""
    return lambda: steps.pop(0) if steps else None


# -- attempting every hook: twins, change both ----------------------------------------------


def _attempt_sync(
    take: Callable[[], PendingHook | None], scope: Scope, async_name: str, tally: Tally
) -> None:
    """Attempt every step's hook from sync code, keeping each outcome in ``tally``."""
    timeout = scope._root._shutdown_timeout
    while (step := take()) is not None:
        began = _starting(step, tally)
        try:
            _call_sync(step, timeout, scope, async_name)
        except BaseException as error:  # a BaseException is re-raised once every hook ran
            tally.record(step, began, error)
        else:
            tally.record(step, began, None)


def attempt_hooks_sync(steps: list[PendingHook], scope: Scope, async_name: str) -> ShutdownReport:
    """Attempt the hooks of ``steps`` from sync code (an override's replaced instances);
    the report, or the failures raised."""
    tally = Tally(scope.name)
    _attempt_sync(drain(steps), scope, async_name, tally)
    return raise_failures(scope, tally, None)


def _call_sync(step: PendingHook, timeout: float | None, scope: Scope, async_name: str) -> None:
    hook = step.hook()
    if hook is None:
        return
    if timeout is None:
        result = hook()
    else:
        # In a worker thread, so that a hook that hangs can be abandoned.
        try:
            result = call_in_thread(scope._root._threads, hook, timeout)
        except LeftBehind:
            raise ShutdownTimeoutError(step.key, timeout) from None
    if inspect.isawaitable(result):
        if isinstance(result, Coroutine):
            result.close()
        raise TypeError(
            f"the shutdown hook of {step.key!r} returned an awaitable; "
            f"declare it `async def` or call `await {async_name}()`"
        )


async def _attempt_async(
    take: Callable[[], PendingHook | None], scope: Scope, tally: Tally
) -> BaseException | None:
    """Attempt every step's hook from async code, stopping only if cancelled from outside.

    Each outcome goes to ``tally``; returns the cancellation that stopped it, if any.
    """
    timeout = scope._root._shutdown_timeout
    baseline = cancel_requests()
    while (step := take()) is not None:
        began = _starting(step, tally)
        try:
            await _call_async(step, timeout, scope)
        except BaseException as error:
            if not is_cancellation(error):
                tally.record(step, began, error)
                continue
            if cancelled_from_outside(baseline):
                tally.record(step, began, None)  # the hook ran to its end first
                return error
            wrapped = DIError(
                f"the shutdown hook of {step.key!r} raised {type(error).__name__} "
                "while nothing was cancelling the shutdown"
            )
            wrapped.__cause__ = error
            tally.record(step, began, wrapped)
            continue
        tally.record(step, began, None)
        if cancelled_from_outside(baseline):
            try:
                await anyio.lowlevel.checkpoint()  # stop between hooks: raises it
            except BaseException as error:
                if is_cancellation(error):
                    return error
                raise
    return None


async def attempt_hooks_async(steps: list[PendingHook], scope: Scope) -> ShutdownReport:
    """Attempt the hooks of ``steps`` from async code (an override's replaced instances);
    the report, or the failures raised."""
    tally = Tally(scope.name)
    cancelled = await _attempt_async(drain(steps), scope, tally)
    return raise_failures(scope, tally, cancelled)


async def _call_async(step: PendingHook, seconds: float | None, scope: Scope) -> None:
    """Run one hook to its end (or its timeout): a cancellation waits until it is done."""
    await to_completion(lambda: _call_bounded(step, seconds, scope))


async def _call_bounded(step: PendingHook, seconds: float | None, scope: Scope) -> None:
    hook = step.hook()
    if hook is None:
        return
    with anyio.move_on_after(seconds) as bounded:
        if inspect.iscoroutinefunction(hook) or seconds is None:
            result = hook()
        else:
            # A worker thread, left behind if the timeout fires first.
            result = await in_thread(scope._root._threads, hook)
        if inspect.isawaitable(result):
            await result
    if bounded.cancelled_caught:
        raise ShutdownTimeoutError(step.key, seconds or 0.0)


def discard_unused(service: Service, instance: Any) -> None:
    """Shut down an instance built but never handed out (a lost race, a closed scope)."""
    hook = hook_of(service, instance, None, None)
    if hook is None:
        return
    result = hook()
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()  # an async hook cannot be awaited here; it never ran
