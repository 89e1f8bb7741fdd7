"""HealthMonitor: statuses by name, groups, TTLs, watch, overrides, graceful shutdown."""

from __future__ import annotations

import logging

import anyio
import pytest

from di import HealthMonitor, Injector, ServiceNotFoundError, ServingStatus

from .health_services import Cache, Database, Queue

pytestmark = pytest.mark.anyio

SERVING, NOT_SERVING = ServingStatus.SERVING, ServingStatus.NOT_SERVING
DB, CACHE = "tests.health_services.Database", "tests.health_services.Cache"


def make() -> tuple[Injector, Database, Cache]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    injector.provide(Queue, name="queue")
    return injector, injector.invoke(Database), injector.invoke(Cache)


async def test_statuses_by_name_and_groups() -> None:
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
    with pytest.raises(TypeError, match="must list members"):
        HealthMonitor(injector, groups={"db": "postgres"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="interval"):
        HealthMonitor(injector, interval=-1)


async def test_refresh_honours_separate_ttls() -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector, success_ttl=60, failure_ttl=0.05)
    first = await monitor.refresh()
    assert await monitor.refresh() is first  # fresh: no new run
    assert db.checks == 1
    db.fail()
    await monitor.check()
    failed = monitor.report
    assert await monitor.refresh() is failed
    await anyio.sleep(0.06)
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
    monitor = HealthMonitor(injector, interval=0.02)
    seen: list[ServingStatus] = []
    unknown: list[ServingStatus] = []

    async def watch(name: str, into: list[ServingStatus], count: int) -> None:
        async for status in monitor.watch(name):
            into.append(status)
            if len(into) == count:
                return

    async with monitor:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch, DB, seen, 4)
                tg.start_soon(watch, "late", unknown, 2)
                await anyio.sleep(0.1)
                db.fail()
                await anyio.sleep(0.1)
                db.recover()
                await anyio.sleep(0.1)
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


async def test_manual_status_and_graceful_shutdown() -> None:
    injector, _, _ = make()
    monitor = HealthMonitor(injector)
    await monitor.check()
    monitor.set_status("readiness", NOT_SERVING)  # draining
    assert monitor.status("readiness") is NOT_SERVING
    monitor.clear_status("readiness")
    assert monitor.status("readiness") is SERVING
    await monitor.enter_graceful_shutdown()
    assert set(monitor.statuses().values()) == {NOT_SERVING}
    monitor.set_status("readiness", SERVING)
    await monitor.check()
    assert set(monitor.statuses().values()) == {NOT_SERVING}  # later changes ignored


async def test_evaluate_with_exclusions() -> None:
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
    monitor = HealthMonitor(injector, interval=0.01)
    with caplog.at_level(logging.INFO, logger="di.health"):
        with anyio.move_on_after(0.1):
            await monitor.run()
        assert db.checks >= 3
        db.fail()
        await monitor.check()
    assert f"health status of {DB!r}: SERVING -> NOT_SERVING" in caplog.text
