"""HealthMonitor(history=N): the last N rounds of each name, as the monitor published them."""

from __future__ import annotations

import time

import anyio
import pytest

from di import HealthMonitor, Injector

from ..services import Cache, Database, key
from ..timing import PATIENCE, until

pytestmark = pytest.mark.anyio

DB, CACHE = key(Database), key(Cache)


def make() -> tuple[Injector, Database, Cache]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    return injector, injector.invoke(Database), injector.invoke(Cache)


async def test_each_round_adds_an_entry_per_name_newest_last_with_the_reason() -> None:
    injector, db, _ = make()
    monitor = HealthMonitor(injector, history=3, groups={"db": [Database]})
    assert monitor.history(DB) == []  # nothing before a round
    before = time.time()
    await monitor.check()
    db.fail("db down")
    await monitor.check()
    first, second = monitor.history(DB)
    assert (first.outcome, first.reason) == ("pass", None)
    assert second.outcome == "fail"
    assert second.reason == f"{DB}: ConnectionError: db down"
    assert before <= first.time <= second.time <= time.time()
    assert second.duration >= 0.0
    assert [entry.outcome for entry in monitor.history("")] == ["pass", "fail"]
    assert [entry.outcome for entry in monitor.history("db")] == ["pass", "fail"]
    assert [entry.outcome for entry in monitor.history(CACHE)] == ["pass", "pass"]
    assert monitor.history("liveness")[-1].duration == 0.0  # checks nothing
    assert "startup" not in monitor.histories()  # not a round's outcome
    assert monitor.history("unknown") == []
    db.recover()
    await monitor.check()
    await monitor.check()
    # Bounded: the oldest round is dropped.
    assert [entry.outcome for entry in monitor.history(DB)] == ["fail", "pass", "pass"]


async def test_a_round_is_in_the_history_when_its_snapshot_is_published() -> None:
    injector, _, _ = make()
    monitor = HealthMonitor(injector, interval=0.01)
    async with monitor:
        await until(lambda: len(monitor.history(DB)) >= 3, "three rounds", PATIENCE)
        # Whatever the moment a reader looks, the snapshot's round is in the history.
        for _ in range(20):
            report = monitor.snapshot.report
            assert report is not None
            rounds = monitor.history(DB)
            assert rounds and rounds[-1].time >= max(check.started_at for check in report.checks)
            await anyio.sleep(0)


async def test_a_status_set_by_hand_is_not_a_round() -> None:
    from di import ServingStatus

    injector, _, _ = make()
    monitor = HealthMonitor(injector)
    await monitor.check()
    monitor.set_status(Database, ServingStatus.NOT_SERVING)
    assert len(monitor.history(DB)) == 1
    await monitor.check()
    last = monitor.history(DB)[-1]
    assert (last.outcome, last.reason) == ("fail", "set by hand")


async def test_history_off_keeps_nothing() -> None:
    injector, _, _ = make()
    for off in (0, None):
        monitor = HealthMonitor(injector, history=off)
        await monitor.check()
        assert monitor.history(DB) == [] and monitor.histories() == {}
    on = HealthMonitor(injector)  # on by default: 100 rounds
    for _ in range(101):
        await on.check()
    assert len(on.history(DB)) == 100


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_a_bad_history_size_is_refused_naming_the_argument(bad: object) -> None:
    injector, _, _ = make()
    with pytest.raises(ValueError, match=r"HealthMonitor\(history=\.\.\.\) takes the number"):
        HealthMonitor(injector, history=bad)  # type: ignore[arg-type]
