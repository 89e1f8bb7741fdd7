"""What the monitor says about what it cannot see, about a drain, about statuses set by
hand, and in its log.

- ``unbuilt``: services with a health check that nothing built are named, listed and
  (with ``"fail"``) hold readiness;
- ``enter_graceful_shutdown()`` leaves liveness as its members say;
- ``set_status()`` on a service stands for its check in ``""`` and its groups, and
  with ``ttl`` reverts by itself, published;
- a recovery is logged at once, and the last status line logged matches the status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import anyio
import pytest

from di import HealthMonitor, Injector, ServiceNotFoundError, ServingStatus
from di._answers import render_health, render_probe

from ..services import Cache, Database, Queue, key
from ..timing import PATIENCE, at_most, until

pytestmark = pytest.mark.anyio

SERVING, NOT_SERVING = ServingStatus.SERVING, ServingStatus.NOT_SERVING
DB, CACHE, QUEUE = key(Database), key(Cache), key(Queue)
T = TypeVar("T")


class Plain:
    """No health check."""


class Pool(Generic[T]):
    def health_check(self) -> None:
        pass


def new_pool() -> Pool[int]:
    return Pool()


def new_plain() -> Plain:
    return Plain()


def opened() -> Iterator[Cache]:
    yield Cache()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- unbuilt services with a check ---------------------------------------------------------


def lazy_injector() -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(Cache)  # a method, never built
    injector.provide(new_pool)  # the declared return type's method, never built
    injector.provide(new_plain, health_check=lambda plain: None)  # health_check=, never built
    injector.provide(Plain, name="plain")  # no check: nothing to say
    injector.provide(opened, name="opened")  # a generator of a checked type, never built
    injector.provide_transient(Queue)  # transients are never checked: nothing to say
    injector.provide_value(Queue(), name="queue")  # built by providing it
    return injector


UNBUILT = (CACHE, f"{__name__}.Pool[int]", f"{__name__}.Plain", "opened")


async def test_warn_names_every_unbuilt_service_with_a_check_once_and_lists_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = lazy_injector()
    monitor = HealthMonitor(injector)  # unbuilt="warn", the default
    assert monitor.unbuilt == "warn"
    with caplog.at_level(logging.INFO, logger="di.health"):
        await monitor.start()
        await monitor.check()
        await monitor.check()
    assert sorted(monitor.snapshot.unbuilt) == sorted(UNBUILT)
    [warning] = warnings_of(caplog)
    assert warning.startswith("4 services with a health check were neither eager nor built")
    assert all(repr(label) in warning for label in UNBUILT)
    assert "provide them with eager=True, or pass unbuilt='ignore'" in warning
    # Serving, but not quietly: "" and readiness read warn, and list what never ran.
    assert monitor.status("") is SERVING and monitor.status("readiness") is SERVING
    assert monitor.health_status("") == "warn" and monitor.health_status(DB) == "pass"
    snapshot = monitor.snapshot
    health = render_health(snapshot, "", False)
    assert health.status == 200
    verbose = render_probe(snapshot, "readyz", None, {"verbose": [""]}, False).body.decode()
    for label in UNBUILT:
        assert f"[+]{label} not built: never checked" in verbose.splitlines()
    assert verbose.endswith("readyz check passed\n")
    # Built later (a request invoked it), it is checked like the others, and not listed.
    injector.invoke(Cache)
    await monitor.check()
    assert CACHE not in monitor.snapshot.unbuilt and monitor.status(CACHE) is SERVING
    await injector.ashutdown()


async def test_fail_holds_readiness_until_the_services_are_built() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(Cache)
    monitor = HealthMonitor(injector, unbuilt="fail", groups={"db": [Database]})
    await monitor.check()
    assert monitor.status("") is NOT_SERVING and monitor.status("readiness") is NOT_SERVING
    assert monitor.status("db") is SERVING and monitor.status(DB) is SERVING
    assert monitor.status("liveness") is SERVING
    assert ("unbuilt", "1 service with a health check is not built") in monitor.reasons()
    verbose = render_probe(monitor.snapshot, "readyz", None, {"verbose": [""]}, False)
    assert verbose.status == 503
    assert f"[-]{CACHE} failed: not built: never checked" in verbose.body.decode().splitlines()
    single = render_probe(monitor.snapshot, "readyz", CACHE, {}, False)
    assert single.status == 503 and single.body.decode().startswith(f"[-]{CACHE} failed")
    # ?exclude= leaves it out, as it leaves out a failing check.
    assert monitor.evaluate("readiness", [CACHE]) is SERVING
    injector.invoke(Cache)
    await monitor.check()
    assert monitor.status("") is SERVING and monitor.status("readiness") is SERVING
    assert monitor.reasons() == []
    await injector.ashutdown()


async def test_unbuilt_ignore_logs_nothing_and_reports_nothing_unbuilt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = lazy_injector()
    monitor = HealthMonitor(injector, unbuilt="ignore")
    with caplog.at_level(logging.INFO, logger="di.health"):
        await monitor.check()
    assert warnings_of(caplog) == [] and monitor.snapshot.unbuilt == ()
    assert monitor.health_status("") == "pass"
    body = render_health(monitor.snapshot, "", False).body.decode()
    assert "not built" not in body


async def test_a_scope_monitor_sees_its_ancestors_unbuilt_services() -> None:
    injector = Injector()
    injector.provide(Cache)
    async with injector.scope() as child:
        child.provide(Database)
        monitor = HealthMonitor(child)
        await monitor.check()
        assert sorted(monitor.snapshot.unbuilt) == [CACHE, DB]


def test_unbuilt_takes_three_words() -> None:
    with pytest.raises(ValueError, match="takes 'warn', 'fail' or 'ignore', got 'loud'"):
        HealthMonitor(Injector(), unbuilt="loud")  # type: ignore[arg-type]


# -- the drain -------------------------------------------------------------------------------


async def test_draining_leaves_liveness_serving_and_everything_else_not() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector, groups={"db": [Database]})
    await monitor.check()
    await monitor.enter_graceful_shutdown()
    statuses = monitor.statuses()
    assert statuses.pop("liveness") is SERVING
    assert statuses.pop("startup") is SERVING  # started once, started for good
    assert set(statuses) == {"", "readiness", "db", DB}
    assert set(statuses.values()) == {NOT_SERVING}
    livez = render_probe(monitor.snapshot, "livez", None, {"verbose": [""]}, False)
    assert livez.status == 200 and livez.body == b"livez check passed\n"
    assert render_probe(monitor.snapshot, "readyz", None, {}, False).status == 503


async def test_a_liveness_group_with_members_keeps_following_them_while_draining() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector, groups={"liveness": [Database]})
    await monitor.check()
    await monitor.enter_graceful_shutdown()
    assert monitor.status("liveness") is SERVING
    injector.invoke(Database).fail()
    await monitor.check()
    assert monitor.status("liveness") is NOT_SERVING  # its member failed: as ever


# -- statuses set by hand ------------------------------------------------------------------


def checked() -> tuple[Injector, HealthMonitor]:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(Cache, eager=True)
    injector.provide(Queue, name="queue", eager=True)
    monitor = HealthMonitor(
        injector, groups={"db": [Database], "cache": [Cache], "everything": ["*"]}
    )
    return injector, monitor


async def test_a_service_status_set_by_hand_stands_for_its_check_everywhere() -> None:
    injector, monitor = checked()
    await monitor.check()
    monitor.set_status(DB, NOT_SERVING)  # the database, out for maintenance
    assert monitor.status(DB) is NOT_SERVING
    for name in ("", "readiness", "db", "everything"):
        assert monitor.status(name) is NOT_SERVING, name
    for name in ("cache", CACHE, "liveness", "queue"):
        assert monitor.status(name) is SERVING, name
    verbose = render_probe(monitor.snapshot, "readyz", None, {"verbose": [""]}, False)
    assert f"[-]{DB} failed: status set to NOT_SERVING" in verbose.body.decode().splitlines()
    entry = render_health(monitor.snapshot, "", False)
    assert entry.status == 503 and b'"output": "status set to NOT_SERVING"' in entry.body
    monitor.clear_status(Database)  # by its type, as groups name it
    assert monitor.status("") is SERVING and monitor.status("db") is SERVING
    # The other way: a failing service set SERVING by hand counts as serving.
    injector.invoke(Cache).fail()
    await monitor.check()
    assert monitor.status("") is NOT_SERVING
    monitor.set_status(Cache, SERVING)
    assert monitor.status("") is SERVING and monitor.status("cache") is SERVING
    # A name that is no service changes only itself, as before.
    monitor.set_status("maintenance", NOT_SERVING)
    assert monitor.status("maintenance") is NOT_SERVING and monitor.status("") is SERVING
    with pytest.raises(ServiceNotFoundError):
        monitor.set_status(Plain, NOT_SERVING)
    await injector.ashutdown()


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "5"])
async def test_a_ttl_is_a_finite_number_of_seconds(ttl: Any) -> None:
    _, monitor = checked()
    with pytest.raises(ValueError, match=r"set_status\(ttl=...\) must be a finite number"):
        monitor.set_status("", NOT_SERVING, ttl=ttl)
    assert monitor.snapshot.manual == {}


@pytest.mark.parametrize("status", ["NOT_SERVING", 7, None])
async def test_a_status_is_a_serving_status_and_the_refusal_says_which(status: Any) -> None:
    _, monitor = checked()
    with pytest.raises(ValueError) as refused:
        monitor.set_status("", status)
    assert str(refused.value) == (
        "set_status(status=...) takes a ServingStatus, such as ServingStatus.NOT_SERVING "
        f"or ServingStatus.SERVING; got {status!r}"
    )
    assert monitor.snapshot.manual == {}


async def test_a_status_set_with_a_ttl_reverts_by_itself_and_watchers_see_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector, monitor = checked()
    ttl = 0.5
    seen: list[tuple[str, ServingStatus]] = []

    async def watch(name: str) -> None:
        async for status in monitor.watch(name):
            seen.append((name, status))

    with caplog.at_level(logging.INFO, logger="di.health"), anyio.fail_after(PATIENCE):
        async with monitor, anyio.create_task_group() as tasks:
            await monitor.wait_ready()
            tasks.start_soon(watch, "")
            tasks.start_soon(watch, DB)
            await until(lambda: len(seen) == 2, "the watchers' first statuses")
            monitor.set_status(Database, NOT_SERVING, ttl=ttl)
            assert monitor.status("") is NOT_SERVING
            await until(lambda: len(seen) == 6, "the status set, then its revert")
            monitor.close_watches()
    assert sorted(seen[:2]) == [("", SERVING), (DB, SERVING)]
    assert sorted(seen[2:4]) == [("", NOT_SERVING), (DB, NOT_SERVING)]
    assert sorted(seen[4:]) == [("", SERVING), (DB, SERVING)]
    assert monitor.snapshot.manual == {}
    assert f"the status set for {DB!r} ended with its ttl: back to what the checks say" in [
        r.getMessage() for r in caplog.records
    ]
    await injector.ashutdown()


async def test_a_ttl_ends_for_readers_and_watchers_of_a_monitor_that_is_not_running() -> None:
    _, monitor = checked()
    await monitor.check()
    stream = monitor.watch("readiness")
    assert await stream.__anext__() is SERVING
    monitor.set_status("readiness", NOT_SERVING, ttl=0.5)
    with anyio.fail_after(PATIENCE):
        assert await stream.__anext__() is NOT_SERVING
        assert await stream.__anext__() is SERVING  # nobody published: the watch saw the end
    await stream.aclose()
    assert monitor.status("readiness") is SERVING


async def test_setting_again_restarts_the_ttl_and_clearing_drops_it() -> None:
    _, monitor = checked()
    await monitor.check()
    monitor.set_status("", NOT_SERVING, ttl=3600)
    monitor.set_status("", NOT_SERVING)  # no ttl now: until cleared
    monitor.set_status("db", NOT_SERVING, ttl=0.5)
    monitor.clear_status("db")
    with anyio.fail_after(PATIENCE):
        await anyio.sleep(at_most(0.5))  # past the ttl cleared: nothing reverts
    assert monitor.snapshot.manual == {"": NOT_SERVING}
    assert monitor.status("") is NOT_SERVING and monitor.status("db") is SERVING


# -- logs: a recovery at once, the last line matching ------------------------------------------


async def test_down_up_down_up_within_one_interval_logs_down_then_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector, log_interval=3600)
    await monitor.check()
    database = injector.invoke(Database)
    with caplog.at_level(logging.INFO, logger="di.health"):
        for _ in range(2):
            database.fail()
            await monitor.check()
            database.recover()
            await monitor.check()
    lines = [r.getMessage() for r in caplog.records]
    overall = [line for line in lines if line.startswith("health status of '(overall)'")]
    # The first fall and the first recovery at once; the flap after them is counted.
    assert overall == [
        "health status of '(overall)': SERVING -> NOT_SERVING",
        "health status of '(overall)': NOT_SERVING -> SERVING",
    ]
    checks = [line for line in lines if line.startswith("health check of")]
    assert checks == [
        f"health check of {DB!r} failed (unhealthy): ConnectionError: Database is down "
        "(secret-host:5432)",
        f"health check of {DB!r} recovered (was failing)",
    ]
    # The last line logged for each name says what it reads now.
    for name in ("(overall)", "readiness", DB):
        last = [line for line in lines if line.startswith(f"health status of {name!r}:")][-1]
        assert last.endswith("-> SERVING")
    await injector.ashutdown()


async def test_a_flap_that_ends_down_is_summed_up_when_the_interval_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    log_interval = at_most(0.5)  # longer than the rounds below take
    monitor = HealthMonitor(injector, log_interval=log_interval)
    await monitor.check()
    database = injector.invoke(Database)
    with caplog.at_level(logging.INFO, logger="di.health"):
        database.fail()
        await monitor.check()  # logged
        database.recover()
        await monitor.check()  # logged at once
        database.fail()
        await monitor.check()  # counted
        await anyio.sleep(log_interval)
        await monitor.check()  # the interval ended: summed up, stating the status now
    lines = [r.getMessage() for r in caplog.records]
    overall = [line for line in lines if line.startswith("health status of '(overall)'")]
    assert overall[-1] == (
        f"health status of '(overall)' changed 1 more time in the last {log_interval:g} s "
        "(not logged); now NOT_SERVING"
    )
    await injector.ashutdown()
