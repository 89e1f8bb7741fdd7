"""Per-service health policies, root causes from the build graph, tags and the startup
name, through the public API: ``provide(..., health_policy=..., tags=...)``,
``injector.ahealth_report()`` and :class:`~di.HealthMonitor`."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

import di
from di import HealthMonitor, HealthPolicy, Injector, Outcome, ServingStatus

from ..services import Database, key
from ..timing import at_most

pytestmark = pytest.mark.anyio

SERVING, NOT_SERVING = ServingStatus.SERVING, ServingStatus.NOT_SERVING


class Db:
    """A database whose check fails while ``down``; each check is counted."""

    def __init__(self) -> None:
        self.down = False
        self.checks = 0

    def health_check(self) -> None:
        self.checks += 1
        if self.down:
            raise ConnectionError("db unreachable")


class Repo:
    """Built on the Db: its check fails whenever the Db is down, as a real one would."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.checks = 0

    def health_check(self) -> None:
        self.checks += 1
        if self.db.down:
            raise ConnectionError("repo cannot query")


class Api:
    """Built on the Repo, through a Cache with no check of its own."""

    def __init__(self, cache: Cache) -> None:
        self.repo = cache.repo
        self.checks = 0

    def health_check(self) -> None:
        self.checks += 1
        if self.repo.db.down:
            raise ConnectionError("api cannot serve")


class Cache:
    """No health check: a failure below it shows through it."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo


DB, REPO, API = key(Db), key(Repo), key(Api)


def chain(policy: HealthPolicy | None = None) -> tuple[Injector, Db, Repo, Api]:
    """Db <- Repo <- (Cache, no check) <- Api, each built."""
    injector = Injector()
    injector.provide(Db, tags=("db", "internal"))
    injector.provide(Repo, health_policy=policy)
    injector.provide(Cache)
    injector.provide(Api, health_policy=policy)
    api = injector.invoke(Api)
    return injector, injector.invoke(Db), injector.invoke(Repo), api


# -- HealthPolicy itself ------------------------------------------------------------------


def test_a_policy_is_frozen_and_refuses_what_it_cannot_be() -> None:
    policy = HealthPolicy(timeout=2, failure_threshold=3)
    assert (policy.timeout, policy.failure_threshold, policy.success_threshold) == (2, 3, 1)
    with pytest.raises(AttributeError):
        policy.timeout = 5  # type: ignore[misc]
    for field, value in (
        ("timeout", 0),
        ("timeout", -1.0),
        ("interval", float("nan")),
        ("initial_delay", -0.5),
        ("failure_threshold", 0),
        ("success_threshold", 1.5),
        ("failure_threshold", True),
    ):
        with pytest.raises(ValueError, match=rf"HealthPolicy\({field}=\.\.\.\)"):
            HealthPolicy(**{field: value})


def test_provide_refuses_a_policy_that_is_not_one_and_tags_given_as_one_string() -> None:
    injector = Injector()
    with pytest.raises(TypeError, match=r"health_policy=di\.HealthPolicy\("):
        injector.provide(Db, health_policy={"timeout": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tags=\('db', 'external'\)"):
        injector.provide(Db, tags="db")
    with pytest.raises(ValueError, match="without commas"):
        injector.provide(Db, tags=("db,cache",))
    with pytest.raises(TypeError, match=r"HealthMonitor\(policy=\.\.\.\)"):
        HealthMonitor(injector, policy=3)  # type: ignore[arg-type]


# -- root cause -----------------------------------------------------------------------------


async def test_one_root_cause_two_blocked_results_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector, db, _repo, _api = chain()
    monitor = HealthMonitor(injector)
    await monitor.check()
    db.down = True
    with caplog.at_level(logging.INFO, logger="di.health"):
        report = await monitor.check()
    assert report.root_causes == (DB,)
    assert report[DB].blocked_by == ()
    assert report[REPO].blocked_by == (DB,)
    assert report[API].blocked_by == (REPO,)  # through the Cache, which has no check
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    checks = [line for line in warnings if line.startswith("health check of")]
    assert checks == [f"health check of {DB!r} failed (unhealthy): ConnectionError: db unreachable"]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(f"{REPO!r} failed, blocked by {DB}" in line for line in infos)
    assert any(f"{API!r} failed, blocked by {REPO}" in line for line in infos)
    assert report.to_dict()["root_causes"] == [DB]


async def test_skip_when_blocked_leaves_the_dependents_unrun() -> None:
    injector, db, repo, api = chain(HealthPolicy(skip_when_blocked=True))
    db.down = True
    report = await injector.ahealth_report()
    assert (db.checks, repo.checks, api.checks) == (1, 0, 0)
    assert report.root_causes == (DB,)
    assert report[REPO].outcome is Outcome.UNHEALTHY
    assert report[REPO].blocked_by == (DB,)
    assert report[API].blocked_by == (REPO,)
    assert "blocked by" in str(report[API].error)
    db.down = False
    report = await injector.ahealth_report()
    assert report.healthy and (db.checks, repo.checks, api.checks) == (2, 1, 1)


async def test_a_healthy_dependency_blocks_nothing() -> None:
    injector, _db, repo, _api = chain()

    def broken() -> None:
        raise RuntimeError("repo's own bug")

    repo.health_check = broken  # type: ignore[method-assign]
    report = await injector.ahealth_report()
    assert report.root_causes == (REPO,)
    assert report[API].healthy and report[REPO].blocked_by == ()


# -- per-service timeout ----------------------------------------------------------------


class Slow:
    async def health_check(self) -> None:
        await anyio.sleep(at_most(0) * 4)


async def test_a_policy_timeout_replaces_the_injectors_for_its_service() -> None:
    injector = Injector(health_check_timeout=at_most(0) * 10)
    injector.provide(Slow, health_policy=HealthPolicy(timeout=at_most(0)))
    injector.provide(Database)
    injector.invoke(Slow)
    injector.invoke(Database)
    report = await injector.ahealth_report()
    assert report[key(Slow)].outcome is Outcome.TIMEOUT
    assert f"{at_most(0):g} s" in str(report[key(Slow)].error)
    assert report[key(Database)].healthy


# -- thresholds, interval, initial delay ------------------------------------------------------


async def test_thresholds_damp_a_flapping_check_and_every_raw_result_stays() -> None:
    injector = Injector()
    injector.provide(Db, health_policy=HealthPolicy(failure_threshold=3, success_threshold=2))
    db = injector.invoke(Db)
    monitor = HealthMonitor(injector)
    await monitor.check()
    assert monitor.status(DB) is SERVING
    db.down = True
    for failures in (1, 2):
        report = await monitor.check()
        assert not report[DB].healthy  # the raw result, as it was
        assert monitor.status(DB) is SERVING and monitor.status("readiness") is SERVING
        assert monitor.health_status(DB) == "warn"
        assert monitor.snapshot.streaks[DB] == (failures, 0)
    await monitor.check()
    assert monitor.status(DB) is NOT_SERVING and monitor.status("readiness") is NOT_SERVING
    db.down = False
    await monitor.check()
    assert monitor.status(DB) is NOT_SERVING  # one pass of the two it takes
    assert monitor.snapshot.streaks[DB] == (0, 1)
    await monitor.check()
    assert monitor.status(DB) is SERVING


async def test_the_monitors_policy_is_the_default_and_a_services_own_wins() -> None:
    injector = Injector()
    injector.provide(Db)
    injector.provide(Database, health_policy=HealthPolicy())
    db, database = injector.invoke(Db), injector.invoke(Database)
    monitor = HealthMonitor(injector, policy=HealthPolicy(failure_threshold=2))
    await monitor.check()
    db.down = True
    database.fail()
    await monitor.check()
    assert monitor.status(DB) is SERVING  # the default: two failures it takes
    assert monitor.status(key(Database)) is NOT_SERVING  # its own policy: one


async def test_an_interval_carries_the_last_result_over_and_shows_its_age() -> None:
    injector = Injector()
    injector.provide(Db, health_policy=HealthPolicy(interval=3600))
    injector.provide(Database)
    db, database = injector.invoke(Db), injector.invoke(Database)
    monitor = HealthMonitor(injector)
    await monitor.check()
    first = monitor.report
    assert first is not None
    await monitor.check()
    await monitor.check()
    assert db.checks == 1 and database.checks == 3
    report = monitor.report
    assert report is not None and report[DB] is first[DB]  # republished, not run again
    assert monitor.snapshot.ages[DB] >= 0 and key(Database) not in monitor.snapshot.ages


async def test_an_initial_delay_reads_waiting_until_it_passes() -> None:
    delay = at_most(0)
    injector = Injector()
    injector.provide(Db, health_policy=HealthPolicy(initial_delay=delay))
    db = injector.invoke(Db)
    monitor = HealthMonitor(injector)
    began = time.monotonic()
    await monitor.check()
    assert db.checks == 0
    snapshot = monitor.snapshot
    assert snapshot.waiting == (DB,)
    assert monitor.status("readiness") is NOT_SERVING
    assert ("waiting", "1 service is waiting for the initial delay") in snapshot.reasons
    with anyio.fail_after(delay * 10):
        while db.checks == 0:
            await anyio.sleep(0.05)
            await monitor.check()
    assert time.monotonic() - began >= delay
    assert monitor.snapshot.waiting == () and monitor.status("readiness") is SERVING


# -- tags and startup ------------------------------------------------------------------------


async def test_a_group_selects_services_by_tag() -> None:
    injector, db, _repo, _api = chain()
    monitor = HealthMonitor(injector, groups={"storage": ["tag:db"]})
    await monitor.check()
    assert monitor.status("storage") is SERVING
    assert monitor.snapshot.tags[DB] == frozenset({"db", "internal"})
    db.down = True
    await monitor.check()
    assert monitor.status("storage") is NOT_SERVING
    assert [r.key for r in monitor.snapshot.tagged("db")] == [DB]
    with pytest.raises(ValueError, match="no service in reach has the tag 'nosuch'"):
        HealthMonitor(injector, groups={"x": ["tag:nosuch"]})


async def test_startup_reads_serving_once_started_and_through_the_drain() -> None:
    injector, _db, _repo, _api = chain()
    monitor = HealthMonitor(injector)
    assert monitor.status("startup") is NOT_SERVING
    await monitor.start()
    assert monitor.status("startup") is SERVING
    assert monitor.status("readiness") is NOT_SERVING  # no round yet
    await monitor.enter_graceful_shutdown()
    assert monitor.status("startup") is SERVING
    with pytest.raises(ValueError, match="startup probe's name"):
        HealthMonitor(injector, groups={"startup": []})


async def test_add_group_answers_for_a_new_name_at_once() -> None:
    injector, db, _repo, _api = chain()
    monitor = HealthMonitor(injector)
    await monitor.check()
    monitor.add_group("shop.Orders", [Repo, "tag:db"])
    assert monitor.status("shop.Orders") is SERVING
    db.down = True
    await monitor.check()
    assert monitor.status("shop.Orders") is NOT_SERVING
    with pytest.raises(ValueError, match=r"answers for 'shop\.Orders' already"):
        monitor.add_group("shop.Orders", ["*"])


def test_info_takes_the_health_json_fields_only() -> None:
    injector = Injector()
    monitor = HealthMonitor(injector, info={"version": "1.4.2", "serviceId": "orders"})
    assert dict(monitor.snapshot.info) == {"version": "1.4.2", "serviceId": "orders"}
    with pytest.raises(ValueError, match="'owner' is not a field"):
        HealthMonitor(injector, info={"owner": "me"})
    with pytest.raises(TypeError, match="'version' must be text"):
        HealthMonitor(injector, info={"version": 1})  # type: ignore[dict-item]


def test_the_policy_is_public() -> None:
    assert di.HealthPolicy is HealthPolicy


async def test_a_dependency_carried_over_at_its_interval_stays_the_one_root_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Db is checked at most hourly; its failure, carried over into the next round,
    still explains Repo's fresh failure there: one root cause, one WARNING, every round."""
    from ..semantics_targets import Api, Db, Repo

    def failing(_: object) -> None:
        raise ConnectionError("down")

    injector = Injector()
    injector.provide(Db, health_check=failing, health_policy=HealthPolicy(interval=3600))
    injector.provide(Repo, health_check=failing)
    injector.provide(Api, health_check=failing)
    injector.invoke(Api)
    monitor = HealthMonitor(injector, interval=3600, timeout=at_most(0))
    for _ in range(3):
        with caplog.at_level(logging.INFO, logger="di.health"):
            caplog.clear()
            report = await monitor.check()
        assert report.root_causes == (key(Db),)
        blocked = {check.key: check.blocked_by for check in report.checks}
        assert blocked[key(Repo)] == (key(Db),)
        assert blocked[key(Api)] == (key(Repo),)
        warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert all(key(Repo) not in r.getMessage() for r in warned)
