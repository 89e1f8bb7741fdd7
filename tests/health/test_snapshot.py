"""HealthSnapshot: one immutable value per publish, which every reader renders."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from di import Degraded, HealthMonitor, Injector, ServingStatus
from di.monitor import HealthSnapshot

from ..health_services import Cache, Database
from ..timing import PATIENCE, at_most

pytestmark = pytest.mark.anyio

SERVING, NOT_SERVING = ServingStatus.SERVING, ServingStatus.NOT_SERVING
DB, CACHE = "tests.health_services.Database", "tests.health_services.Cache"


class Lagging:
    def health_check(self) -> None:
        raise Degraded("replication lag over 30 s")


LAGGING = f"{__name__}.Lagging"


def make() -> tuple[Injector, Database]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    injector.provide(Lagging)
    injector.invoke(Cache)
    injector.invoke(Lagging)
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
    assert {name for name, status in stopping.statuses.items() if status is SERVING} == {"liveness"}
    assert ("shutdown", "shutting down") in stopping.reasons
    assert {name for name, health in stopping.health.items() if health != "fail"} == {"liveness"}
