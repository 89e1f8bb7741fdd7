"""The engine and the container under faults: nothing vanishes, nothing is misreported,
every hook runs. Each test is named after the behaviour it keeps."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from di import (
    HealthCheckError,
    HealthCheckTimeoutError,
    HealthMonitor,
    HealthReport,
    Injector,
    Outcome,
    ScopeClosedError,
    ServiceAlreadyProvidedError,
    ServingStatus,
    ShutdownError,
    ShutdownTimeoutError,
)

from ..services import Config, Database, build, key
from ..timing import PATIENCE, Stopwatch, at_most, until

pytestmark = pytest.mark.anyio
# asyncio's own cancellation (Task.cancel, futures, asyncio.timeout) has no trio form.
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


class Healthy:
    async def health_check(self) -> None:
        await anyio.sleep(0)


class HealthySync:
    def health_check(self) -> None:
        pass


# -- a check raising CancelledError itself ---------------------------------------------


class RaisesCancelled:
    """An async client whose reader task was cancelled re-raises to its awaiters."""

    async def health_check(self) -> None:
        await anyio.sleep(0)
        raise asyncio.CancelledError()


@pytest.mark.parametrize("parallelism", [0, 1, 4])
async def test_a_check_raising_cancelled_error_is_its_failure(parallelism: int) -> None:
    injector = Injector(health_check_parallelism=parallelism)
    build(injector, Healthy, RaisesCancelled, HealthySync)
    report = await injector.ahealth_report()
    assert [c.key for c in report.checks] == [key(HealthySync), key(RaisesCancelled), key(Healthy)]
    failed = report[key(RaisesCancelled)]
    assert failed.outcome is Outcome.UNHEALTHY
    assert isinstance(failed.error, HealthCheckError)
    assert isinstance(failed.error.__cause__, asyncio.CancelledError)
    assert not report.healthy
    assert report[key(Healthy)].healthy and report[key(HealthySync)].healthy


@ASYNCIO_ONLY
async def test_a_cancelled_future_awaited_by_a_check_is_its_failure() -> None:
    class ReadsACancelledTask:
        async def health_check(self) -> None:
            loop = asyncio.get_running_loop()
            reader = loop.create_future()
            reader.cancel()
            await reader

    injector = Injector(health_check_parallelism=1)
    build(injector, ReadsACancelledTask)
    report = await injector.ahealth_report()
    assert report[key(ReadsACancelledTask)].outcome is Outcome.UNHEALTHY


async def test_a_check_raising_cancelled_error_turns_the_monitor_not_serving() -> None:
    injector = Injector(health_check_parallelism=1)
    build(injector, RaisesCancelled)
    monitor = HealthMonitor(injector)
    await monitor.check()
    assert monitor.status("") is ServingStatus.NOT_SERVING
    assert monitor.status(key(RaisesCancelled)) is ServingStatus.NOT_SERVING


@ASYNCIO_ONLY
async def test_a_caller_cancelling_the_call_still_cancels_it() -> None:
    running = asyncio.Event()

    class Slow:
        async def health_check(self) -> None:
            running.set()
            await anyio.sleep(5)

    injector = Injector()
    build(injector, Slow)
    task = asyncio.ensure_future(injector.ahealth_report())
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await injector.ahealth_report()


async def test_a_deadline_around_the_call_still_cancels_it() -> None:
    class Slow:
        async def health_check(self) -> None:
            await anyio.sleep(5)

    injector = Injector()
    build(injector, Slow)
    with Stopwatch() as watch, anyio.move_on_after(0.05) as scope:
        await injector.ahealth_report()
    assert scope.cancelled_caught and watch.seconds < at_most(0.05)


# -- a check converting its cancellation -----------------------------------------------


class Converts:
    async def health_check(self) -> None:
        try:
            await anyio.sleep(PATIENCE)
        except BaseException as error:
            raise ConnectionError("lost") from error


@pytest.mark.parametrize("neighbour", [Healthy, HealthySync])
async def test_a_check_converting_its_cancellation_does_not_poison_the_worker(
    neighbour: type,
) -> None:
    limit = at_most(0)  # as long as the neighbour's check may take
    injector = Injector(health_check_parallelism=1, health_check_timeout=limit)
    build(injector, neighbour, Converts)  # Converts runs first, then its neighbour
    for _ in range(3):  # the first call, and later ones that would meet what it left behind
        report = await injector.ahealth_report()
        assert report[key(Converts)].outcome is Outcome.TIMEOUT
        assert report[key(neighbour)].outcome is Outcome.HEALTHY
        assert report[key(neighbour)].duration < limit  # not charged for Converts' time


# -- overlapping calls share a running sync check --------------------------------------


class SlowSync:
    """Runs until released; counts its runs."""

    runs = 0
    running = threading.Event()
    release = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.runs, cls.running, cls.release = 0, threading.Event(), threading.Event()

    def health_check(self) -> None:
        type(self).runs += 1
        self.running.set()
        self.release.wait(PATIENCE)

    @classmethod
    async def release_after_joining(cls) -> None:
        """Once it runs, give the calls made meanwhile the time to join it; release it."""
        await until(cls.running.is_set, "the sync check to run")
        await anyio.sleep(at_most(0))
        cls.release.set()


async def test_overlapping_calls_share_a_running_sync_check() -> None:
    SlowSync.reset()
    injector = Injector(health_check_timeout=PATIENCE)
    build(injector, SlowSync)
    child = injector.scope("request")
    results: dict[str, Any] = {}

    async def root_round() -> None:
        results["root"] = await injector.ahealth_report()

    async def request_check() -> None:
        await until(SlowSync.running.is_set, "the root's round to run the check")
        results["child"] = await child.ahealth_report()

    async def one_service() -> None:
        await until(SlowSync.running.is_set, "the root's round to run the check")
        results["one"] = await injector.ahealth_check_service(SlowSync)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(root_round)
        tasks.start_soon(request_check)
        tasks.start_soon(one_service)
        tasks.start_soon(SlowSync.release_after_joining)
    assert results["root"][key(SlowSync)].healthy
    assert results["child"][key(SlowSync)].healthy
    assert results["one"] is None
    assert SlowSync.runs == 1


async def test_a_follower_re_running_after_its_leader_was_cancelled_shares_the_running_check() -> (
    None
):
    SlowSync.reset()
    injector = Injector(health_check_timeout=PATIENCE)
    build(injector, SlowSync)
    got: list[HealthReport] = []

    async def follower() -> None:
        got.append(await injector.ahealth_report())

    async def cut_the_leader_off(leader: anyio.CancelScope) -> None:
        await until(SlowSync.running.is_set, "the leader to run the check")
        leader.deadline = anyio.current_time()  # a client's deadline passes
        # The follower runs the checks itself, and joins the running one.
        await SlowSync.release_after_joining()

    async with anyio.create_task_group() as tasks:
        with anyio.CancelScope() as leader:
            tasks.start_soon(follower)
            tasks.start_soon(cut_the_leader_off, leader)
            await injector.ahealth_report()  # the leader, cancelled by a client deadline
    assert got[0][key(SlowSync)].healthy
    assert SlowSync.runs == 1


async def test_a_check_stuck_past_its_own_deadline_is_not_started_again() -> None:
    release = threading.Event()
    runs = 0

    class Stuck:
        def health_check(self) -> None:
            nonlocal runs
            runs += 1
            release.wait(PATIENCE)

    limit = at_most(0) + 0.5  # longer than an answer "at once" may take
    injector = Injector(health_check_timeout=limit)
    build(injector, Stuck)
    try:
        first = await injector.ahealth_report()
        with Stopwatch() as watch:
            second = await injector.ahealth_report()
        assert watch.seconds < at_most(0) < limit  # reported at once, not waited on
        assert first[key(Stuck)].outcome is Outcome.TIMEOUT
        assert second[key(Stuck)].outcome is Outcome.TIMEOUT
        assert "not started again until it returns" in str(second[key(Stuck)].error)
        assert runs == 1
    finally:
        release.set()


# -- a result past the deadline is a timeout -------------------------------------------


@pytest.mark.parametrize("await_first", [False, True])
async def test_an_async_check_blocking_the_loop_past_its_deadline_times_out(
    await_first: bool,
) -> None:
    class Blocks:
        async def health_check(self) -> None:
            if await_first:
                await anyio.sleep(0)
            time.sleep(0.4)  # by mistake

    injector = Injector(health_check_timeout=0.2)
    build(injector, Blocks)
    result = (await injector.ahealth_report())[key(Blocks)]
    assert result.outcome is Outcome.TIMEOUT
    assert result.duration >= 0.4
    assert isinstance(result.error, HealthCheckTimeoutError) and result.error.limit == "per-check"


# -- a finite default ------------------------------------------------------------------


def test_the_default_per_check_timeout_bounds_a_hung_check_at_5_seconds() -> None:
    release = threading.Event()

    class Hung:
        def health_check(self) -> None:
            release.wait(60)

    injector = Injector()
    build(injector, Hung)
    try:
        with Stopwatch() as watch:
            status = injector.health_check()
    finally:
        release.set()
    assert 4.9 < watch.seconds < at_most(5)
    assert "per-check timeout of 5 s fired" in str(status[key(Hung)])


# -- shutdown is exception-safe --------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def thing(self, label: str, raises: BaseException | None = None) -> object:
        ran = self.ran

        class Thing:
            def shutdown(self) -> None:
                ran.append(label)
                if raises is not None:
                    raise raises

        return Thing()


@pytest.mark.parametrize("fatal", [KeyboardInterrupt(), SystemExit(3)])
@pytest.mark.parametrize("timeout", [30.0, None])
def test_every_shutdown_hook_runs_whatever_the_others_raise(
    fatal: BaseException, timeout: float | None
) -> None:
    log = Log()
    injector = Injector(shutdown_timeout=timeout)
    injector.provide_value(log.thing("one"), name="one")
    injector.provide_value(log.thing("two", fatal), name="two")
    injector.provide_value(log.thing("three", RuntimeError("bad")), name="three")
    injector.provide_value(log.thing("four"), name="four")
    with pytest.raises(type(fatal)) as caught:
        injector.shutdown()
    assert log.ran == ["four", "three", "two", "one"]
    assert any("'three'" in note for note in getattr(caught.value, "__notes__", []))
    injector.shutdown()  # nothing left to run
    assert log.ran == ["four", "three", "two", "one"]


async def test_every_async_shutdown_hook_runs_whatever_the_others_raise() -> None:
    ran: list[str] = []

    class Async:
        def __init__(self, label: str, raises: BaseException | None = None) -> None:
            self.label, self.raises = label, raises

        async def shutdown(self) -> None:
            ran.append(self.label)
            if self.raises is not None:
                raise self.raises

    injector = Injector()
    injector.provide_value(Async("one"), name="one")
    injector.provide_value(Async("two", SystemExit(1)), name="two")
    injector.provide_value(Async("three"), name="three")
    with pytest.raises(SystemExit):
        await injector.ashutdown()
    assert ran == ["three", "two", "one"]


async def test_a_cancelled_ashutdown_stops_between_hooks_and_a_later_one_finishes() -> None:
    ran: list[str] = []
    started, cancelled = anyio.Event(), anyio.Event()

    class Slow:
        async def shutdown(self) -> None:
            ran.append("slow started")
            started.set()
            await cancelled.wait()
            ran.append("slow done")  # a hook is never cut in half

    class Quick:
        def __init__(self, label: str) -> None:
            self.label = label

        def shutdown(self) -> None:
            ran.append(self.label)

    injector = Injector()
    injector.provide_value(Quick("first built"), name="a")
    injector.provide_value(Quick("second built"), name="b")
    injector.provide_value(Slow(), name="slow")

    async def cancel_during_the_hook(scope: anyio.CancelScope) -> None:
        await started.wait()
        scope.cancel()
        cancelled.set()

    async with anyio.create_task_group() as tasks:
        with anyio.CancelScope() as scope:
            tasks.start_soon(cancel_during_the_hook, scope)
            await injector.ashutdown()
    assert scope.cancelled_caught
    assert ran == ["slow started", "slow done"]
    with pytest.raises(ScopeClosedError):
        injector.invoke("a")  # still shutting down
    await injector.ashutdown()
    assert ran == ["slow started", "slow done", "second built", "first built"]
    injector.provide_value(Quick("later"), name="later")  # the root is open again


# -- async generator cleanup after its loop ended --------------------------------------


class Client:
    pass


def test_async_generator_cleanup_runs_after_the_building_loop_ended() -> None:
    cleaned: list[str] = []

    async def new_client() -> AsyncIterator[Client]:
        yield Client()
        cleaned.append("after yield")

    injector = Injector()
    injector.provide(new_client)

    async def build_it() -> None:
        await injector.ainvoke(Client)

    asyncio.run(build_it())  # the loop that built it is closed now
    injector.shutdown()
    assert cleaned == ["after yield"]


def test_a_cleanup_that_needs_its_closed_loop_is_reported() -> None:
    async def new_client() -> AsyncIterator[Client]:
        loop = asyncio.get_running_loop()
        yield Client()
        await loop.create_future()  # bound to the loop that built it

    injector = Injector()
    injector.provide(new_client)
    asyncio.run(injector.ainvoke(Client))
    with pytest.raises(ShutdownError) as caught:
        injector.shutdown()
    notes = caught.value.exceptions[0].__notes__
    assert any("built on another event loop, which has closed" in note for note in notes)


# -- a shut-down scope refuses work ----------------------------------------------------


class Resource:
    closed = 0

    def shutdown(self) -> None:
        type(self).closed += 1


def test_a_shut_down_scope_refuses_invoke_provide_and_new_children() -> None:
    injector = Injector()
    request = injector.scope("request")
    request.provide(Resource)
    request.invoke(Resource)
    request.shutdown()
    with pytest.raises(ScopeClosedError, match="scope 'request' is shut down"):
        request.invoke(Resource)
    with pytest.raises(ScopeClosedError):
        request.provide_value(1, name="late")
    with pytest.raises(ScopeClosedError):
        request.scope("child")


def test_a_build_in_flight_when_shutdown_began_is_shut_down_and_refused() -> None:
    Resource.closed = 0
    entered, proceed = threading.Event(), threading.Event()

    def slow_resource() -> Resource:
        entered.set()
        proceed.wait(10)
        return Resource()

    injector = Injector()
    request = injector.scope("request")
    request.provide(slow_resource)
    errors: list[BaseException] = []

    def invoke() -> None:
        try:
            request.invoke(Resource)
        except BaseException as error:
            errors.append(error)

    builder = threading.Thread(target=invoke)
    builder.start()
    entered.wait(5)
    request.shutdown()
    proceed.set()
    builder.join(5)
    assert isinstance(errors[0], ScopeClosedError)
    assert Resource.closed == 1  # what it built was shut down, not orphaned


# -- the tree is safe from any thread --------------------------------------------------


def test_request_scopes_from_threads_meet_no_error_while_the_root_provides_and_checks() -> None:
    injector = Injector()
    injector.provide(HealthySync)
    injector.invoke(HealthySync)
    long_lived = [injector.scope(f"long-{i}") for i in range(50)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve(worker: int) -> None:
        try:
            for i in range(300):
                with injector.scope(f"req-{worker}-{i}") as request:
                    request.provide_value(i, name="n")
                    assert request.invoke("n") == i
                    assert request.invoke(HealthySync) is injector.invoke(HealthySync)
        except BaseException as error:
            errors.append(error)

    def provide() -> None:
        i = 0
        while not stop.is_set():
            injector.provide_value(i, name=f"v{i}")
            i += 1

    def check() -> None:
        try:
            while not stop.is_set():
                injector.health_check()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(6)]
    side = [threading.Thread(target=provide), threading.Thread(target=check)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to meet every race
    try:
        for t in threads + side:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        sys.setswitchinterval(interval)
    for t in side:
        t.join(10)
    assert errors == []
    assert [c.name for c in injector.children()] == [s.name for s in long_lived]


# -- every shutdown failure is kept ----------------------------------------------------


def test_a_child_shadowing_a_root_key_keeps_both_shutdown_failures() -> None:
    class Fails:
        def __init__(self, where: str) -> None:
            self.where = where

        def shutdown(self) -> None:
            raise RuntimeError(self.where)

    injector = Injector()
    child = injector.scope("child")
    injector.provide_value(Fails("root"))
    child.provide_value(Fails("child"))
    with pytest.raises(ShutdownError) as caught:
        injector.shutdown()
    label = key(Fails)
    assert {k: str(e) for k, e in caught.value.errors.items()} == {
        label: "root",
        f"{label} (scope 'child')": "child",
    }
    assert len(caught.value.exceptions) == 2


# -- timeout texts name the limit that fired -------------------------------------------


async def test_with_only_a_global_timeout_the_timeout_text_names_it() -> None:
    release = threading.Event()

    class Hung:
        def health_check(self) -> None:
            release.wait(PATIENCE)

    injector = Injector(health_check_timeout=None, health_check_global_timeout=0.2)
    build(injector, Hung)
    try:
        for _ in range(2):  # the second call finds it still running
            error = (await injector.ahealth_check())[key(Hung)]
            assert isinstance(error, HealthCheckTimeoutError)
            assert "the global timeout of 0.2 s fired" in str(error)
            assert error.limit == "global"
    finally:
        release.set()


# -- BaseException in a worker thread; abandoned checks are logged ---------------------


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
async def test_a_sync_check_raising_exit_is_its_failure(raised: type[BaseException]) -> None:
    class Exits:
        def health_check(self) -> None:
            raise raised()

    injector = Injector()
    build(injector, HealthySync, Exits)
    report = await injector.ahealth_report()
    assert report[key(Exits)].outcome is Outcome.UNHEALTHY
    assert isinstance(report[key(Exits)].error.__cause__, raised)  # type: ignore[union-attr]
    assert report[key(HealthySync)].healthy


async def test_an_abandoned_check_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    class Hung:
        def health_check(self) -> None:
            release.wait(PATIENCE)

    injector = Injector(health_check_timeout=0.1)
    build(injector, Hung)
    caplog.set_level(logging.WARNING, logger="di.health")
    try:
        for _ in range(3):
            await injector.ahealth_check()
    finally:
        release.set()
    warnings = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert key(Hung) in warnings[0].getMessage()
    assert "thread stuck in health checks" in warnings[0].getMessage()


# -- a bound on shutdown ---------------------------------------------------------------


def test_a_hanging_sync_shutdown_hook_is_abandoned_and_the_rest_still_run() -> None:
    release = threading.Event()
    ran: list[str] = []

    class Hangs:
        def shutdown(self) -> None:
            release.wait(PATIENCE)

    class After:
        def shutdown(self) -> None:
            ran.append("after")

    injector = Injector(shutdown_timeout=0.2)
    injector.provide_value(After())
    injector.provide_value(Hangs())
    try:
        with Stopwatch() as watch, pytest.raises(ShutdownError) as caught:
            injector.shutdown()
        assert watch.seconds < at_most(0.2)
    finally:
        release.set()
    error = caught.value.errors[key(Hangs)]
    assert isinstance(error, ShutdownTimeoutError)
    assert f"{key(Hangs)!r} did not finish within the shutdown timeout of 0.2 s" in str(error)
    assert ran == ["after"]


async def test_async_with_is_bounded_by_the_shutdown_timeout() -> None:
    ran: list[str] = []

    class Hangs:
        async def shutdown(self) -> None:
            await anyio.sleep_forever()

    class After:
        async def shutdown(self) -> None:
            ran.append("after")

    with Stopwatch() as watch, pytest.raises(ShutdownError) as caught:
        async with Injector(shutdown_timeout=0.2) as injector:
            injector.provide_value(After())
            injector.provide_value(Hangs())
    assert watch.seconds < at_most(0.2)
    assert isinstance(caught.value.errors[key(Hangs)], ShutdownTimeoutError)
    assert ran == ["after"]


# -- the sync entry, and no task for checks that never wait ----------------------------


def test_the_sync_entry_never_renders_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    renders = 0
    original = HealthReport.__repr__

    def counting(self: HealthReport) -> str:
        nonlocal renders
        renders += 1
        return original(self)

    monkeypatch.setattr(HealthReport, "__repr__", counting)
    injector = Injector()
    build(injector, Healthy)
    injector.health_report()
    injector.health_check()
    assert renders == 0


async def test_checks_that_never_wait_run_in_the_calling_task() -> None:
    tasks: set[int] = set()

    class Quick:
        async def health_check(self) -> None:
            tasks.add(anyio.get_current_task().id)

    injector = Injector(health_check_parallelism=100)
    for i in range(20):
        build(injector, type(f"Quick{i}", (Quick,), {}))
    report = await injector.ahealth_report()
    assert report.healthy and len(report.checks) == 20
    assert tasks == {anyio.get_current_task().id}


# -- more faults: each once made a wrong report or lost shutdown work ------------------


class Versioned:
    events: ClassVar[list[str]] = []

    def __init__(self, tag: str = "old") -> None:
        self.tag = tag

    def shutdown(self) -> None:
        self.events.append(f"shutdown {self.tag}")

    def health_check(self) -> None:
        self.events.append(f"check {self.tag}")


def test_an_override_during_a_build_wins_and_the_old_instance_is_shut_down() -> None:
    Versioned.events = []
    started, overridden = threading.Event(), threading.Event()

    def slow_old() -> Versioned:
        started.set()
        overridden.wait(PATIENCE)
        return Versioned("old")

    injector = Injector()
    injector.provide(slow_old)
    got: list[Versioned] = []
    builder = threading.Thread(target=lambda: got.append(injector.invoke(Versioned)))
    builder.start()
    started.wait(PATIENCE)
    injector.override(lambda: Versioned("new"), provides=Versioned)
    overridden.set()
    builder.join(PATIENCE)
    assert got[0].tag == "new" and injector.invoke(Versioned).tag == "new"
    assert injector.health_check() == {key(Versioned): None}
    injector.shutdown()
    assert Versioned.events == ["shutdown old", "check new", "shutdown new"]


@ASYNCIO_ONLY
async def test_async_with_runs_every_hook_under_a_native_asyncio_deadline() -> None:
    ran: list[str] = []

    class Slow:
        async def shutdown(self) -> None:
            await asyncio.sleep(0.2)
            ran.append("slow")

    class Pool:
        async def shutdown(self) -> None:
            ran.append("pool")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            async with Injector() as injector:
                injector.provide(Pool)
                injector.provide(Slow)
                await injector.ainvoke(Pool)
                await injector.ainvoke(Slow)
                await asyncio.Event().wait()  # until the deadline
    assert ran == ["slow", "pool"]
    injector.provide_value(1, name="open again")


@ASYNCIO_ONLY
async def test_a_check_cancelling_its_own_task_fails_alone() -> None:
    class Rogue:
        async def health_check(self) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(1)

    injector = Injector(health_check_parallelism=4)
    build(injector, HealthySync, Rogue, Healthy)  # Rogue runs in a helper task
    report = await injector.ahealth_report()
    assert report[key(Rogue)].outcome is Outcome.UNHEALTHY
    assert report[key(Healthy)].healthy and report[key(HealthySync)].healthy


async def test_a_shared_run_whose_call_ended_is_never_reported_healthy() -> None:
    pinging = threading.Event()

    class Client:
        def ping(self) -> Any:
            pinging.set()
            time.sleep(0.3)
            return self._ping()

        async def _ping(self) -> None:
            raise ConnectionError("server unreachable")

    injector = Injector(health_check_global_timeout=0.25)
    injector.provide(Client, health_check=lambda c: c.ping())
    await injector.ainvoke(Client)
    results: dict[str, Any] = {}

    async def full() -> None:
        results["full"] = await injector.ahealth_report()

    async def one() -> None:
        await until(pinging.is_set, "the full call to run the check")
        results["one"] = await injector.ahealth_check_service(Client)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(full)
        tasks.start_soon(one)
    assert results["full"][key(Client)].outcome is Outcome.TIMEOUT
    assert results["one"] is not None  # a failure or a timeout, never healthy


async def test_an_overlapping_call_does_not_charge_a_check_for_another_checks_stall() -> None:
    limit = at_most(0.05)  # as long as Fast's check may take; Blocker stalls the loop longer

    class Blocker:
        async def health_check(self) -> None:
            await anyio.sleep(0.01)
            time.sleep(limit + 0.2)

    class Fast:
        async def health_check(self) -> None:
            await anyio.sleep(0.05)

    injector = Injector(health_check_timeout=limit)
    build(injector, Blocker, Fast)
    results: dict[str, Any] = {}

    async def full() -> None:
        results["full"] = await injector.ahealth_report()

    async def one() -> None:
        results["one"] = await injector.ahealth_check_service(Fast)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(full)
        tasks.start_soon(one)
    assert results["full"][key(Blocker)].outcome is Outcome.TIMEOUT
    assert results["full"][key(Fast)].healthy
    assert results["one"] is None


async def test_waiting_for_another_threads_build_is_cancellable() -> None:
    building, release = threading.Event(), threading.Event()

    class SlowToBuild:
        def __init__(self) -> None:
            building.set()
            release.wait(PATIENCE)

    injector = Injector()
    injector.provide(SlowToBuild)
    builder = threading.Thread(target=injector.invoke, args=(SlowToBuild,))
    builder.start()
    try:
        await until(building.is_set, "the other thread's build")
        with Stopwatch() as watch, anyio.move_on_after(0.1):
            await injector.ainvoke(SlowToBuild)
        assert watch.seconds < at_most(0.1)  # the build itself runs until released
    finally:
        release.set()
    builder.join(PATIENCE)
    assert isinstance(await injector.ainvoke(SlowToBuild), SlowToBuild)


def test_a_second_shutdown_waits_for_the_first_and_order_holds() -> None:
    log: list[str] = []

    def new_config() -> Config:
        return Config()

    def new_db(config: Config) -> Database:
        return Database(config)

    begun = threading.Event()

    def close_db(db: Database) -> None:
        log.append("db begins")
        begun.set()
        time.sleep(at_most(0))  # meanwhile the second shutdown is called
        log.append("db ends")

    injector = Injector()
    injector.provide(new_config, shutdown=lambda _: log.append("config"))
    injector.provide(new_db, shutdown=close_db)
    injector.invoke(Database)
    first = threading.Thread(target=injector.shutdown)
    first.start()
    begun.wait(PATIENCE)
    injector.shutdown()
    log.append("second returned")
    first.join(PATIENCE)
    assert log == ["db begins", "db ends", "config", "second returned"]


def test_same_named_scopes_under_different_parents_keep_both_failures() -> None:
    class Conn:
        where = ""

        def shutdown(self) -> None:
            raise RuntimeError(f"close failed in {self.where}")

    injector = Injector()
    for parent in ("tenant-a", "tenant-b"):
        request = injector.scope(parent).scope("request")
        request.provide(Conn)
        request.invoke(Conn).where = parent
    with pytest.raises(ShutdownError) as caught:
        injector.shutdown()
    assert sorted(caught.value.errors) == [
        f"{key(Conn)} (scope 'tenant-a/request')",
        f"{key(Conn)} (scope 'tenant-b/request')",
    ]


def test_a_name_may_not_pass_for_a_types_reported_name() -> None:
    injector = Injector()
    injector.provide(HealthySync)
    with pytest.raises(ServiceAlreadyProvidedError):
        injector.provide(HealthySync, name=key(HealthySync))


def test_an_attribute_lookup_that_raises_is_that_services_failure() -> None:
    class Proxy:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"proxy not bound (asked for {name!r})")

    log: list[str] = []

    class Fine:
        def health_check(self) -> None:
            pass

        def shutdown(self) -> None:
            log.append("fine")

    injector = Injector()
    injector.provide_value(Fine())
    injector.provide_value(Proxy())
    status = injector.health_check()
    assert status[key(Fine)] is None
    assert "proxy not bound" in str(status[key(Proxy)])
    with pytest.raises(ShutdownError):
        injector.shutdown()
    assert log == ["fine"]


@pytest.mark.parametrize("form", ["coroutine", "generator", "async generator"])
async def test_a_check_that_returns_work_never_run_fails(form: str) -> None:
    async def coroutine() -> None:
        raise ConnectionError("never seen")

    class Check:
        def health_check(self) -> Any:
            if form == "coroutine":
                return coroutine()
            if form == "generator":
                return (x for x in [1])
            return (x async for x in _empty())

    async def _empty() -> AsyncIterator[int]:
        if False:
            yield 0

    injector = Injector()
    build(injector, Check)
    result = (await injector.ahealth_report())[key(Check)]
    # A coroutine from a sync callable is awaited, as documented; the others fail.
    assert result.outcome is Outcome.UNHEALTHY


async def test_a_hook_raising_system_exit_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def hook(key: str, result: Any) -> None:
        raise SystemExit(1)

    injector = Injector(on_health_check=hook)
    build(injector, Healthy)
    assert await injector.ahealth_check() == {key(Healthy): None}
    assert "the on_health_check hook failed" in caplog.text


async def test_a_thread_cut_off_by_the_global_timeout_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()

    class Hung:
        def health_check(self) -> None:
            release.wait(PATIENCE)

    injector = Injector(health_check_timeout=None, health_check_global_timeout=0.2)
    build(injector, Hung)
    caplog.set_level(logging.WARNING, logger="di.health")
    try:
        await injector.ahealth_check()
    finally:
        release.set()
    assert "overran the global timeout of 0.2 s; its thread is abandoned" in caplog.text


# -- fork() ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_child_forked_during_a_check_checks_afresh() -> None:
    """The parent's call and its sync check in flight at fork() run in threads the
    child does not have: the child neither joins that call nor waits on that check."""
    parent = os.getpid()
    entered, release = threading.Event(), threading.Event()

    class HeldInTheParent:
        def health_check(self) -> None:
            if os.getpid() == parent:
                entered.set()
                release.wait(PATIENCE)

    injector = Injector(health_check_timeout=PATIENCE)
    build(injector, HeldInTheParent)
    checking = threading.Thread(target=injector.health_check)
    checking.start()
    try:
        assert entered.wait(PATIENCE)
        reading, writing = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                with Stopwatch() as watch:
                    report = injector.health_report()
                os.write(writing, f"{report.status} {watch.seconds}".encode())
            finally:
                os._exit(0)
        os.close(writing)
        ready, _, _ = select.select([reading], [], [], PATIENCE)
        answer = os.read(reading, 200).decode() if ready else "no answer"
        os.close(reading)
        if not ready:
            os.kill(child, signal.SIGKILL)  # hung: joined a call no thread of it runs
        os.waitpid(child, 0)
    finally:
        release.set()
        checking.join(PATIENCE)
    status, _, seconds = answer.partition(" ")
    assert status == "pass", answer
    assert float(seconds) < at_most(0)
