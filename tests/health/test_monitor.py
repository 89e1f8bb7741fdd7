"""HealthMonitor: statuses by name, groups, TTLs, watch, overrides, graceful shutdown."""

from __future__ import annotations

import logging

import anyio
import pytest

from di import HealthMonitor, Injector, ServiceNotFoundError, ServingStatus

from ..services import Cache, Database, Queue, key
from ..timing import PATIENCE, at_most, until

pytestmark = pytest.mark.anyio

SERVING, NOT_SERVING = ServingStatus.SERVING, ServingStatus.NOT_SERVING
DB, CACHE = key(Database), key(Cache)


def make() -> tuple[Injector, Database, Cache]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    injector.provide(Queue, name="queue")
    return injector, injector.invoke(Database), injector.invoke(Cache)


async def test_statuses_of_names_and_groups_follow_their_checks_but_liveness_stays_up() -> None:
    injector, db, _cache = make()
    monitor = HealthMonitor(injector, groups={"db": [Database], "everything": ["*"]})
    assert monitor.status("") is NOT_SERVING  # not started: nothing proves it healthy
    assert monitor.reasons() == [("startup", "not started")]
    assert monitor.status("liveness") is SERVING  # alive before any check
    await monitor.check()
    assert monitor.statuses() == {
        "": SERVING,
        "liveness": SERVING,
        "readiness": SERVING,
        "startup": SERVING,
        "db": SERVING,
        "everything": SERVING,
        CACHE: SERVING,
        DB: SERVING,
    }
    db.fail()
    await monitor.check()
    assert monitor.status("") is NOT_SERVING
    assert monitor.status("db") is NOT_SERVING and monitor.status(DB) is NOT_SERVING
    assert monitor.status(CACHE) is SERVING
    assert monitor.status("liveness") is SERVING  # liveness does not depend on externals
    assert monitor.status("nope") is None


async def test_group_member_never_checked_is_not_serving() -> None:
    injector, _, _ = make()
    monitor = HealthMonitor(injector, groups={"queue": ["queue"]})
    await monitor.check()
    assert monitor.status("queue") is NOT_SERVING  # provided, never built: nothing proves it
    assert monitor.missing("queue") == ["queue"]
    injector.invoke("queue")
    await monitor.check()
    assert monitor.status("queue") is SERVING


def test_unknown_group_member_is_an_error_at_construction() -> None:
    injector, _, _ = make()
    with pytest.raises(ServiceNotFoundError):
        HealthMonitor(injector, groups={"db": ["postgres"]})
    with pytest.raises(TypeError, match="must list its members"):
        HealthMonitor(injector, groups={"db": "postgres"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="interval"):
        HealthMonitor(injector, interval=-1)


@pytest.mark.parametrize("groups", ["db", ["db", "cache"]])
def test_groups_that_are_not_a_mapping_say_what_groups_is(groups: object) -> None:
    injector, _, _ = make()
    with pytest.raises(TypeError) as raised:
        HealthMonitor(injector, groups=groups)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "HealthMonitor(groups=...) must be a mapping of group name to members, "
        f"such as groups={{'db': [Database, 'replica']}}; got {groups!r}"
    )


async def test_refresh_honours_separate_ttls() -> None:
    injector, db, _ = make()
    failure_ttl = at_most(0)  # longer than the next step takes
    monitor = HealthMonitor(injector, success_ttl=60, failure_ttl=failure_ttl)
    first = await monitor.refresh()
    assert await monitor.refresh() is first  # fresh: no new run
    assert db.checks == 1
    db.fail()
    await monitor.check()
    failed = monitor.report
    assert await monitor.refresh() is failed
    await anyio.sleep(failure_ttl)
    assert await monitor.refresh() is not failed  # the failure TTL expired
    assert db.checks == 3


async def test_concurrent_refreshes_share_one_run() -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector, success_ttl=0)
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(monitor.refresh)
    assert db.checks == 1


async def test_watch_yields_now_then_changes_and_unknown_names_wait() -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector, interval=0.02, timeout=at_most(0))
    seen: list[ServingStatus] = []
    unknown: list[ServingStatus] = []

    async def watch(name: str, into: list[ServingStatus], count: int) -> None:
        async for status in monitor.watch(name):
            into.append(status)
            if len(into) == count:
                return

    async with monitor:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, DB, seen, 4)
                tg.start_soon(watch, "late", unknown, 2)
                await until(lambda: len(seen) == 2, "the first round's status")
                db.fail()
                await until(lambda: len(seen) == 3, "the failure's status")
                db.recover()
                await until(lambda: len(seen) == 4, "the recovery's status")
                monitor.set_status("late", NOT_SERVING)
    assert seen == [ServingStatus.SERVICE_UNKNOWN, SERVING, NOT_SERVING, SERVING]
    assert unknown == [ServingStatus.SERVICE_UNKNOWN, NOT_SERVING]


async def test_slow_watcher_sees_the_latest_status_not_a_backlog() -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector)
    await monitor.check()
    stream = monitor.watch(DB)
    assert await stream.__anext__() is SERVING
    for _ in range(5):  # flaps while the watcher is not reading
        db.fail()
        await monitor.check()
        db.recover()
        await monitor.check()
    db.fail()
    await monitor.check()
    assert await stream.__anext__() is NOT_SERVING
    await stream.aclose()


async def test_a_manual_status_holds_until_cleared_and_graceful_shutdown_holds_for_good() -> None:
    injector, _, _ = make()
    monitor = HealthMonitor(injector)
    await monitor.check()
    monitor.set_status("readiness", NOT_SERVING)  # draining
    assert monitor.status("readiness") is NOT_SERVING
    monitor.clear_status("readiness")
    assert monitor.status("readiness") is SERVING
    await monitor.enter_graceful_shutdown()
    serving = {name for name, status in monitor.statuses().items() if status is SERVING}
    # Draining: nothing takes traffic, the process lives, and it did start.
    assert serving == {"liveness", "startup"}
    monitor.set_status("readiness", SERVING)
    await monitor.check()
    serving = {name for name, status in monitor.statuses().items() if status is SERVING}
    assert serving == {"liveness", "startup"}  # later changes ignored


async def test_evaluate_ignores_the_excluded_names() -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector)
    db.fail()
    await monitor.check()
    assert monitor.evaluate("readiness") is NOT_SERVING
    assert monitor.evaluate("readiness", [DB]) is SERVING


async def test_run_stops_cleanly_on_cancellation_and_logs_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector, interval=0.01, timeout=at_most(0))
    with caplog.at_level(logging.INFO, logger="di.health"):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(monitor.run)
            await until(lambda: db.checks >= 3, "three rounds")
            tasks.cancel_scope.cancel()
        assert not monitor.running
        db.fail()
        await monitor.check()
    assert f"health status of {DB!r}: SERVING -> NOT_SERVING" in caplog.text


class HungAsync:
    async def health_check(self) -> None:
        await anyio.sleep_forever()


class HungSync:
    def __init__(self) -> None:
        self.release = __import__("threading").Event()
        self.calls = 0

    def health_check(self) -> None:
        self.calls += 1
        self.release.wait(10)


class Broken:
    def __init__(self) -> None:
        self.error: Exception | None = ConnectionRefusedError("db.internal:5432 refused")

    def health_check(self) -> None:
        if self.error is not None:
            raise self.error


async def test_rounds_are_bounded_whatever_the_injector_timeouts() -> None:
    injector = Injector()  # no timeouts of its own
    injector.provide(HungAsync)
    injector.provide(HungSync)
    injector.invoke(HungAsync)
    stuck = injector.invoke(HungSync)
    monitor = HealthMonitor(injector, interval=0.2)  # rounds time out after 0.2 s
    try:
        with anyio.fail_after(at_most(0.2)):
            report = await monitor.check()
        assert {check.key: check.outcome.value for check in report.checks} == {
            "tests.health.test_monitor.HungAsync": "timeout",
            "tests.health.test_monitor.HungSync": "timeout",
        }
        assert monitor.status("readiness") is NOT_SERVING
        with anyio.fail_after(at_most(0.2)):
            await monitor.check()
        assert stuck.calls == 1  # a stuck sync check is not started again while stuck
    finally:
        stuck.release.set()


async def test_results_go_stale_when_no_round_completes() -> None:
    injector, _, _ = make()
    stale_after = at_most(0)  # longer than the next step takes
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0), stale_after=stale_after)
    await monitor.check()
    assert monitor.status("readiness") is SERVING and monitor.reasons() == []
    await anyio.sleep(stale_after + 0.1)  # nothing runs the monitor: no round completes
    assert monitor.status("") is NOT_SERVING
    assert monitor.status("readiness") is NOT_SERVING
    assert monitor.status(DB) is NOT_SERVING
    assert monitor.status("liveness") is SERVING
    assert monitor.reasons() == [("checks", "health checks overdue")]
    await monitor.check()
    assert monitor.status("readiness") is SERVING


async def test_watchers_see_results_go_overdue_while_the_monitor_runs() -> None:
    # Rounds that complete never go stale; the stuck one goes stale long before it ends.
    stale_after = at_most(0)
    stuck = stale_after + at_most(0)

    class Stubborn:
        """Ignores the round's deadline for a while: no round completes meanwhile."""

        calls = 0

        async def health_check(self) -> None:
            Stubborn.calls += 1
            if Stubborn.calls == 2:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(stuck)

    injector = Injector()
    injector.provide(Stubborn, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0), stale_after=stale_after)
    seen: list[ServingStatus] = []
    with anyio.fail_after(PATIENCE):
        async with monitor:
            async for status in monitor.watch("readiness"):
                seen.append(status)
                if len(seen) == 4:
                    break
    # Not started, then healthy, then overdue while the second round hangs, then back.
    assert seen == [NOT_SERVING, SERVING, NOT_SERVING, SERVING]


def test_timeout_and_stale_after_default_from_the_interval_and_refuse_bad_values() -> None:
    injector, _, _ = make()
    monitor = HealthMonitor(injector, interval=0.05, timeout=0.05, stale_after=0.5)
    assert monitor.timeout == 0.05 and monitor.stale_after == 0.5
    default = HealthMonitor(injector, interval=2.0)
    assert (default.timeout, default.stale_after) == (2.0, 8.0)
    with pytest.raises(ValueError, match="timeout"):
        HealthMonitor(injector, timeout=0)
    with pytest.raises(ValueError, match="stale_after"):
        HealthMonitor(injector, stale_after=float("nan"))


async def test_a_failing_check_logs_its_exception_once_and_its_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    injector.provide(Broken)
    broken = injector.invoke(Broken)
    monitor = HealthMonitor(injector, log_interval=0)  # every change logged
    with caplog.at_level(logging.INFO, logger="di.health"):
        await monitor.check()
        await monitor.check()  # the same failure: nothing more
        broken.error = TimeoutError("db.internal:5432 timed out")
        await monitor.check()  # a different failure
        broken.error = None
        await monitor.check()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "health check of 'tests.health.test_monitor.Broken' failed (unhealthy): "
        "ConnectionRefusedError: db.internal:5432 refused",
        "health check of 'tests.health.test_monitor.Broken' failed (unhealthy): "
        "TimeoutError: db.internal:5432 timed out",
    ]
    assert "health check of 'tests.health.test_monitor.Broken' recovered (was failing)" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    ]


async def test_start_builds_eager_services_before_the_first_round() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(Cache)
    monitor = HealthMonitor(injector)
    assert monitor.reasons() == [("startup", "not started")]
    async with monitor:
        assert monitor.started
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()
        assert monitor.statuses() == {
            "": SERVING,
            "liveness": SERVING,
            "readiness": SERVING,
            "startup": SERVING,  # the start completed
            DB: SERVING,  # built by the start, so checked
        }


async def test_a_failed_start_is_logged_raised_and_reads_not_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse() -> Broken:
        raise ConnectionRefusedError("cannot reach the database")

    injector = Injector()
    injector.provide(refuse, eager=True)
    monitor = HealthMonitor(injector)
    with (
        caplog.at_level(logging.ERROR, logger="di.health"),
        pytest.raises(ConnectionRefusedError),
    ):
        await monitor.start()
    assert "starting the application failed: ConnectionRefusedError" in caplog.text
    assert "while starting eager service 'tests.health.test_monitor.Broken'" in caplog.text
    assert monitor.reasons() == [("startup", "failed")]
    assert monitor.status("readiness") is NOT_SERVING


async def test_an_eager_factory_raising_cancellation_is_a_failed_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The application raised it; nothing cancelled the start (asyncio's or trio's)."""
    import asyncio

    def refuse() -> Broken:
        raise asyncio.CancelledError()

    injector = Injector()
    injector.provide(refuse, eager=True)
    monitor = HealthMonitor(injector)
    with (
        caplog.at_level(logging.ERROR, logger="di.health"),
        pytest.raises(asyncio.CancelledError),
    ):
        await monitor.start()
    assert "starting the application failed: CancelledError" in caplog.text
    assert monitor.reasons() == [("startup", "failed")]


async def test_readiness_names_the_first_round_once_started() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector)
    await monitor.start()
    assert monitor.reasons() == [("startup", "first round of checks not completed")]
    await monitor.check()
    assert monitor.reasons() == []


async def test_an_error_whose_text_fails_is_logged_with_a_stand_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    class Odd:
        def health_check(self) -> None:
            raise Unprintable()

    injector = Injector()
    injector.provide(Odd, eager=True)
    monitor = HealthMonitor(injector)
    with caplog.at_level(logging.WARNING, logger="di.health"):
        report = await monitor.check()
    assert not report.healthy
    assert "Unprintable: <str() of the Unprintable raised RuntimeError>" in caplog.text
    assert report.to_dict()["checks"][0]["error"] == (
        "<str() of the Unprintable raised RuntimeError>"
    )


async def test_stop_lets_the_round_in_progress_finish() -> None:
    in_progress = anyio.Event()

    class Slow:
        finished = 0

        async def health_check(self) -> None:
            in_progress.set()
            await anyio.sleep(0.2)
            Slow.finished += 1

    injector = Injector()
    injector.provide(Slow, eager=True)
    monitor = HealthMonitor(injector, interval=10)
    with anyio.fail_after(PATIENCE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(monitor.run)
            await in_progress.wait()
            monitor.stop()
    assert Slow.finished == 1
    assert not monitor.running


async def test_a_monitor_entered_reads_running_at_once_and_refuses_a_second_run() -> None:
    monitor = HealthMonitor(Injector(), interval=60.0)
    async with monitor:
        # Running from the moment it was entered, before its rounds' task got a turn:
        # an integration that finds it running does not start it again.
        assert monitor.running
        with pytest.raises(RuntimeError, match="already running"):
            await monitor.run()
    assert not monitor.running
