"""HealthSnapshot: one immutable value per publish, which every reader renders."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import ClassVar

import anyio
import pytest

from di import HealthMonitor, Injector, ServingStatus
from di.monitor import HealthSnapshot

from ..services import Cache, Database, LaggingReplica, key
from ..timing import PATIENCE, at_most, until

pytestmark = pytest.mark.anyio

SERVING, NOT_SERVING = ServingStatus.SERVING, ServingStatus.NOT_SERVING
DB, CACHE = key(Database), key(Cache)


LAGGING = key(LaggingReplica)


def make() -> tuple[Injector, Database]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    injector.provide(LaggingReplica)
    injector.invoke(Cache)
    injector.invoke(LaggingReplica)
    return injector, injector.invoke(Database)


async def test_a_round_publishes_one_snapshot_holding_everything_an_answer_needs() -> None:
    injector, _ = make()
    injector.provide_value("not checked", name="replica")
    monitor = HealthMonitor(injector, groups={"db": [Database, "replica"]})
    before = monitor.snapshot
    assert isinstance(before, HealthSnapshot) and before.report is None
    assert before.reasons == (("startup", "not started"),) and not before.ready
    report = await monitor.check()
    snapshot = monitor.snapshot
    assert snapshot is not before and snapshot.version > before.version
    assert snapshot.report is report and snapshot.ready and not snapshot.overdue
    assert dict(snapshot.statuses) == monitor.statuses()
    assert snapshot.statuses[""] is SERVING and snapshot.reasons == ()
    # A degraded check keeps its names SERVING and reads "warn".
    assert snapshot.health[LAGGING] == "warn" and snapshot.health[""] == "warn"
    assert snapshot.health[DB] == "pass" and snapshot.health["liveness"] == "pass"
    assert [r.key for r in snapshot.results[DB]] == [DB]
    assert {r.key for r in snapshot.results[""]} == {DB, CACHE, LAGGING}
    assert snapshot.results["liveness"] == ()
    assert snapshot.missing == {"db": ("replica",)}  # listed, never checked
    assert snapshot.statuses["db"] is NOT_SERVING and snapshot.health["db"] == "fail"
    # Reading it again publishes nothing new.
    assert monitor.snapshot is snapshot


async def test_the_monitors_methods_read_the_snapshot() -> None:
    injector, db = make()
    monitor = HealthMonitor(injector)
    db.fail()
    await monitor.check()
    snapshot = monitor.snapshot
    assert monitor.version == snapshot.version
    assert monitor.names() == list(snapshot.statuses)
    assert monitor.status(DB) is snapshot.statuses[DB] is NOT_SERVING
    assert monitor.health_status(DB) == snapshot.health[DB] == "fail"
    assert monitor.results(DB) == list(snapshot.results[DB])
    assert monitor.results("nothing") is None and monitor.health_status("nothing") is None
    assert monitor.reasons() == list(snapshot.reasons) == []
    assert monitor.missing("readiness") == [] and monitor.missing("nothing") == []
    assert monitor.evaluate("readiness") is NOT_SERVING
    assert monitor.evaluate("readiness", [DB]) is SERVING  # as if its check had not run
    assert snapshot.evaluate("readiness", [DB]) is SERVING
    assert snapshot.statuses["readiness"] is NOT_SERVING  # computing it changed nothing


async def test_a_snapshot_cannot_be_changed() -> None:
    injector, _ = make()
    monitor = HealthMonitor(injector)
    await monitor.check()
    snapshot = monitor.snapshot
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.version = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.statuses[""] = NOT_SERVING  # type: ignore[index]
    with pytest.raises(TypeError):
        snapshot.health[""] = "fail"  # type: ignore[index]
    results = monitor.results("")
    assert results is not None
    results.clear()  # a copy: the snapshot keeps its own
    assert len(snapshot.results[""]) == 3


async def test_every_recompute_publishes_a_new_snapshot() -> None:
    injector, _ = make()
    # Rounds that healthy checks meet, and results that stay fresh while the test reads.
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0), stale_after=at_most(0))
    seen = [monitor.snapshot]

    def published() -> HealthSnapshot:
        snapshot = monitor.snapshot
        assert snapshot is not seen[-1] and snapshot.version > seen[-1].version
        seen.append(snapshot)
        return snapshot

    await monitor.check()  # a round
    assert published().statuses[""] is SERVING
    monitor.set_status("maintenance", NOT_SERVING)
    assert published().statuses["maintenance"] is NOT_SERVING
    monitor.clear_status("maintenance")
    assert "maintenance" not in published().statuses
    # No round for stale_after: reading the snapshot then publishes "overdue".
    with anyio.fail_after(PATIENCE):
        while not monitor.snapshot.overdue:
            await anyio.sleep(0.05)
    overdue = published()
    assert overdue.overdue and overdue.statuses[""] is NOT_SERVING
    assert ("checks", "health checks overdue") in overdue.reasons
    await monitor.enter_graceful_shutdown()
    stopping = published()
    # Draining: every name NOT_SERVING but liveness, which has no reason to fail.
    assert stopping.shutting_down and stopping.statuses["liveness"] is SERVING
    # Started stays started: the startup probe has no reason to fail either.
    serving = {name for name, status in stopping.statuses.items() if status is SERVING}
    assert serving == {"liveness", "startup"}
    assert ("shutdown", "shutting down") in stopping.reasons
    passing = {name for name, health in stopping.health.items() if health != "fail"}
    assert passing == {"liveness", "startup"}


# -- publishing from other threads --------------------------------------------------------


async def test_a_reader_thread_finding_the_checks_overdue_publishes_and_wakes_watchers() -> None:
    # A Flask request or a metrics exporter reads the snapshot in a thread of its own;
    # when no round has completed for stale_after, that read publishes "overdue".
    injector, _ = make()
    stale_after = at_most(0)
    monitor = HealthMonitor(injector, interval=PATIENCE, stale_after=stale_after)
    async with monitor:
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()
        ready_at = time.monotonic()
        monitor.stop()  # no more rounds, nor a task publishing overdue on the loop
        await until(lambda: not monitor.running, "the rounds to stop")
        statuses: list[ServingStatus] = []
        woken = anyio.Event()

        async def watch() -> None:
            async for status in monitor.watch(""):
                statuses.append(status)
                if len(statuses) == 2:
                    woken.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            await until(lambda: statuses, "the watch's first status")
            await until(lambda: time.monotonic() > ready_at + stale_after, "the checks overdue")
            seen: list[object] = []
            reader = threading.Thread(target=lambda: seen.append(_read(monitor)))
            reader.start()
            await until(lambda: not reader.is_alive(), "the reader thread")
            with anyio.fail_after(PATIENCE):
                await woken.wait()
            tasks.cancel_scope.cancel()
    snapshot = seen[0]
    assert isinstance(snapshot, HealthSnapshot), snapshot
    assert snapshot.overdue and snapshot.statuses[""] is NOT_SERVING
    assert statuses == [SERVING, NOT_SERVING]


def _read(monitor: HealthMonitor) -> object:
    try:
        return monitor.snapshot
    except Exception as error:  # what the reader's thread would have served
        return error


class Recording(HealthMonitor):
    """Keeps every snapshot it takes."""

    taken: ClassVar[list[HealthSnapshot]] = []

    def _compose(self) -> HealthSnapshot:
        snapshot = super()._compose()
        self.taken.append(snapshot)
        return snapshot


def test_snapshots_published_from_many_threads_each_have_their_own_version() -> None:
    injector, _ = make()
    Recording.taken = []
    monitor = Recording(injector)
    go = threading.Barrier(4)

    def publish(name: str) -> None:
        go.wait(PATIENCE)
        for _ in range(300):
            monitor.set_status(name, NOT_SERVING)
            monitor.clear_status(name)

    publishers = [threading.Thread(target=publish, args=(f"n{i}",)) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns often, in the middle of a publish too
    try:
        for thread in publishers:
            thread.start()
        for thread in publishers:
            thread.join(PATIENCE)
    finally:
        sys.setswitchinterval(interval)
    versions = [snapshot.version for snapshot in Recording.taken]
    assert len(versions) == 1 + 4 * 300 * 2  # the first, then one per publish
    assert sorted(versions) == list(range(len(versions)))  # each its own
    assert monitor.version == versions[-1] == max(versions)  # the last one published


async def test_a_status_set_with_a_ttl_from_another_thread_reverts_on_time() -> None:
    # A Flask view (or any thread) taking a name out for a while: the monitor's loop
    # learns of the new deadline from that thread.
    injector, _ = make()
    monitor = HealthMonitor(injector, interval=PATIENCE, timeout=at_most(0))
    async with monitor:
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()
        statuses: list[ServingStatus] = []

        async def watch() -> None:
            async for status in monitor.watch("readiness"):
                statuses.append(status)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            await until(lambda: statuses == [SERVING], "the watch's first status")
            await anyio.to_thread.run_sync(
                lambda: monitor.set_status("readiness", NOT_SERVING, ttl=0.5)
            )
            await until(lambda: statuses == [SERVING, NOT_SERVING, SERVING], "the revert")
            tasks.cancel_scope.cancel()
