"""A request scope's finalizers run inline at the end of its block, keeping every guarantee.

Generator factories (sync, and async under ``async with``) and ``shutdown()`` methods
run in the closing thread or on its loop; the block's failure is thrown in; every
finalizer is attempted, latest build first; a cancelled close finishes them first.
``Injector(request_shutdown="bounded")`` and an explicit ``shutdown()`` keep the worker
thread and the timeout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from di import Injector, ShutdownError

from ..timing import PATIENCE

pytestmark = pytest.mark.anyio


class Request:
    pass


class Log(list[str]):
    """What the finalizers did, in order."""


class Session:
    def __init__(self, log: Log, name: str) -> None:
        self.log = log
        self.name = name


class Ledger(Session):
    pass


class Audit(Session):
    pass


def app(log: Log, **settings: object) -> Injector:
    injector = Injector(**settings)  # type: ignore[arg-type]
    injector.provide_context(Request)
    injector.provide_value(log)

    def ledger(log: Log) -> Iterator[Ledger]:
        session = Ledger(log, "ledger")
        log.append(f"ledger opened in {threading.get_ident()}")
        try:
            yield session
        except BaseException as error:
            log.append(f"ledger rolled back: {type(error).__name__}")
            raise
        log.append(f"ledger committed in {threading.get_ident()}")

    async def audit(ledger: Ledger, log: Log) -> AsyncIterator[Audit]:
        try:
            yield Audit(log, "audit")
        except BaseException as error:
            log.append(f"audit rolled back: {type(error).__name__}")
            raise
        await anyio.sleep(0)  # it waits on the loop, once
        log.append("audit committed")

    injector.provide_scoped(ledger)
    injector.provide_scoped(audit)
    return injector


def test_a_sync_block_commits_inline_in_the_closing_thread() -> None:
    log = Log()
    injector = app(log)
    with injector.scope(context={Request: Request()}) as scope:
        scope.invoke(Ledger)
    me = threading.get_ident()
    assert log == [f"ledger opened in {me}", f"ledger committed in {me}"]


def test_bounded_request_shutdown_runs_finalizers_in_a_worker_thread() -> None:
    log = Log()
    injector = app(log, request_shutdown="bounded")
    with injector.scope(context={Request: Request()}) as scope:
        scope.invoke(Ledger)
    me = threading.get_ident()
    assert log[0] == f"ledger opened in {me}"
    assert log[1].startswith("ledger committed in ") and log[1] != f"ledger committed in {me}"


def test_an_explicit_shutdown_is_bounded_and_reports() -> None:
    log = Log()
    injector = app(log)
    scope = injector.scope(context={Request: Request()})
    scope.invoke(Ledger)
    report = scope.shutdown()
    assert [entry.outcome for entry in report] == ["ok"]
    assert log[1] != f"ledger committed in {threading.get_ident()}"


def test_request_shutdown_must_be_inline_or_bounded() -> None:
    with pytest.raises(ValueError, match=r"request_shutdown=\.\.\.\) must be 'inline'"):
        Injector(request_shutdown="threads")  # type: ignore[arg-type]
    assert Injector(request_shutdown="bounded").clone()._request_shutdown == "bounded"


def test_an_async_finalizer_in_a_sync_block_says_to_use_async_with() -> None:
    injector = app(Log())

    async def build() -> None:
        scope = injector.scope(context={Request: Request()})
        await scope.ainvoke(Audit)
        with pytest.raises(RuntimeError, match=r"use `async with` there"):
            scope.__exit__(None, None, None)
        await scope.ashutdown()

    anyio.run(build)


async def test_async_blocks_commit_each_shape_on_the_loop() -> None:
    log = Log()
    injector = app(log)
    async with injector.scope(context={Request: Request()}) as scope:
        await scope.ainvoke(Ledger)  # a sync generator under async with
    async with injector.scope(context={Request: Request()}) as scope:
        await scope.ainvoke(Audit)  # an async generator, needing the sync one
    me = threading.get_ident()
    assert log == [
        f"ledger opened in {me}",
        f"ledger committed in {me}",
        f"ledger opened in {me}",
        "audit committed",  # the latest build first
        f"ledger committed in {me}",
    ]


async def test_a_failed_async_block_rolls_every_generator_back() -> None:
    log = Log()
    injector = app(log)
    with pytest.raises(LookupError):
        async with injector.scope(context={Request: Request()}) as scope:
            await scope.ainvoke(Audit)
            raise LookupError("order not found")
    assert log[1:] == ["audit rolled back: LookupError", "ledger rolled back: LookupError"]


def test_keyboard_interrupt_is_thrown_in_and_re_raised() -> None:
    log = Log()
    injector = app(log)
    with pytest.raises(KeyboardInterrupt), injector.scope(context={Request: Request()}) as scope:
        scope.invoke(Ledger)
        raise KeyboardInterrupt
    assert log[1:] == ["ledger rolled back: KeyboardInterrupt"]


async def test_every_finalizer_runs_whatever_the_others_raise() -> None:
    log = Log()
    injector = app(log)

    class Broken:
        def shutdown(self) -> None:
            log.append("broken")
            raise OSError("disk gone")

    def stops(ledger: Ledger) -> Iterator[int]:
        yield 1
        log.append("stops")
        raise KeyboardInterrupt

    injector.provide_scoped(Broken)
    injector.provide_scoped(stops, provides=int)
    with pytest.raises(KeyboardInterrupt) as caught:
        async with injector.scope(context={Request: Request()}) as scope:
            await scope.ainvoke(Audit)
            scope.invoke(Broken)
            scope.invoke(int)
    assert log[1:] == ["stops", "broken", "audit committed", log[-1]]
    assert log[-1].startswith("ledger committed")
    notes = "\n".join(getattr(caught.value, "__notes__", ()))
    assert "Broken" in notes  # the failures, noted on it

    log.clear()
    request = injector.scope(context={Request: Request()})
    with pytest.raises(ShutdownError) as failed, request as scope:
        scope.invoke(Broken)
        scope.invoke(Ledger)
    assert log[1:] == [log[1], "broken"] and log[1].startswith("ledger committed")
    report = failed.value.report
    assert [entry.outcome for entry in report] == ["ok", "failed"]
    assert isinstance(failed.value.errors[report.failed[0].name], OSError)


async def test_a_cancelled_block_rolls_back_and_its_close_finishes_first() -> None:
    log = Log()
    injector = app(log)
    release = anyio.Event()

    async def slow(log: Log) -> AsyncIterator[float]:
        try:
            yield 1.0
        finally:
            log.append("slow closing")
            await release.wait()  # the cancellation must not cut this short
            log.append("slow closed")

    injector.provide_scoped(slow, provides=float)

    cancel = anyio.CancelScope()

    async def request() -> None:
        with cancel:
            async with injector.scope(context={Request: Request()}) as scope:
                await scope.ainvoke(Audit)
                await scope.ainvoke(float)
                await anyio.sleep_forever()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(request)
        await anyio.wait_all_tasks_blocked()
        cancel.cancel()
        with anyio.fail_after(PATIENCE):
            while "slow closing" not in log:
                await anyio.sleep(0.01)
        release.set()
    assert log[1:4] == ["slow closing", "slow closed", "audit rolled back: " + log[3][19:]]
    assert log[3].startswith("audit rolled back: ") and log[4].startswith("ledger rolled back")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_task_cancelled_while_its_scope_closes_finishes_the_close_first() -> None:
    import asyncio

    log = Log()
    injector = app(log)
    closing, release = asyncio.Event(), asyncio.Event()

    async def slow(log: Log) -> AsyncIterator[float]:
        yield 1.0
        closing.set()
        await release.wait()
        log.append("slow committed")

    injector.provide_scoped(slow, provides=float)

    async def request() -> None:
        async with injector.scope(context={Request: Request()}) as scope:
            await scope.ainvoke(Audit)
            await scope.ainvoke(float)

    task = asyncio.ensure_future(request())
    await asyncio.wait_for(closing.wait(), PATIENCE)
    task.cancel()  # native: no cancel scope shields from it
    await asyncio.sleep(0.01)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, PATIENCE)
    assert log[1:] == ["slow committed", "audit committed", log[-1]]
    assert log[-1].startswith("ledger committed")


async def test_a_generator_that_yields_twice_fails_its_close_and_is_closed() -> None:
    log = Log()
    injector = app(log)

    async def twice(log: Log) -> AsyncIterator[float]:
        try:
            yield 1.0
            yield 2.0
        finally:
            log.append("twice closed")

    def twice_sync(log: Log) -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            log.append("twice_sync closed")

    injector.provide_scoped(twice, provides=float)
    injector.provide_scoped(twice_sync, provides=int)
    with pytest.raises(ShutdownError) as caught:
        async with injector.scope(context={Request: Request()}) as scope:
            await scope.ainvoke(float)
            await scope.ainvoke(int)
    errors = list(caught.value.errors.values())
    assert len(errors) == 2 and all("yielded more than once" in str(e) for e in errors)
    assert log == ["twice_sync closed", "twice closed"]


@pytest.mark.parametrize("failed", [False, True])
async def test_a_finalizers_own_timeout_fires_inline(anyio_backend: str, failed: bool) -> None:
    """A generator factory whose code after ``yield`` bounds its own wait (a commit
    with a timeout) gets that timeout, as on the bounded path: the close's deafness
    to the caller's cancellation is not deafness to the finalizer's own."""
    log = Log()
    injector = Injector()
    injector.provide_context(Request)
    injector.provide_value(log)

    async def bounded_commit(log: Log) -> AsyncIterator[Audit]:
        try:
            yield Audit(log, "audit")
        finally:
            with anyio.move_on_after(0.01) as waited:
                await anyio.sleep_forever()
            log.append(f"gave up: {waited.cancelled_caught}")

    injector.provide_scoped(bounded_commit)
    with anyio.fail_after(PATIENCE):
        with contextlib.suppress(ValueError):
            async with injector.scope(context={Request: Request()}) as scope:
                await scope.ainvoke(Audit)
                if failed:
                    raise ValueError("the request failed")
    assert log == ["gave up: True"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("failed", [False, True])
async def test_a_finalizers_asyncio_timeout_fires_and_the_callers_cancellation_waits(
    anyio_backend: str, failed: bool
) -> None:
    """asyncio's own ``asyncio.timeout`` in the code after ``yield`` fires too, and a
    caller cancelled while that code waits gets its cancellation once it has ended."""
    import asyncio

    log = Log()
    injector = Injector()
    injector.provide_context(Request)
    injector.provide_value(log)
    waiting = anyio.Event()

    async def bounded_commit(log: Log) -> AsyncIterator[Audit]:
        try:
            yield Audit(log, "audit")
        finally:
            waiting.set()
            try:
                async with asyncio.timeout(0.05):
                    await asyncio.sleep(PATIENCE * 10)
            except TimeoutError:
                log.append("gave up")

    injector.provide_scoped(bounded_commit)

    async def request() -> None:
        with contextlib.suppress(ValueError):
            async with injector.scope(context={Request: Request()}) as scope:
                await scope.ainvoke(Audit)
                if failed:
                    raise ValueError("the request failed")

    task = asyncio.ensure_future(request())
    with anyio.fail_after(PATIENCE):
        await waiting.wait()
        task.cancel()  # the client went away while the commit waits
        with pytest.raises(asyncio.CancelledError):
            await task
    assert log == ["gave up"]
