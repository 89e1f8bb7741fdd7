"""The health-check engine: each numbered promise, with real timing where timing matters."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from di import (
    AsyncHealthChecker,
    HealthChecker,
    Healthchecker,
    HealthCheckError,
    HealthcheckerWithContext,
    HealthCheckResult,
    HealthCheckTimeoutError,
    Injector,
    Outcome,
    ServiceNotBuiltError,
    ServiceNotFoundError,
)

from ..services import Config, build, key
from ..timing import PATIENCE, Stopwatch, at_most, until

pytestmark = pytest.mark.anyio

# The running test's release, set when it ends, so that the threads of its hung sync
# checks return. Each test has its own: a thread still running after its test ended
# never waits on the next test's.
_release = [threading.Event()]


@pytest.fixture(autouse=True)
def release_hung_threads() -> Iterator[None]:
    release = _release[0] = threading.Event()
    yield
    release.set()


class Probe:
    """Shared bookkeeping: which checks ran, in what order, how many at once.

    With ``together=n``, each check waits, once started, until ``n`` checks run at once:
    the peak is reached whatever the machine's load, or the checks time out.
    """

    def __init__(self, together: int = 0) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.running = 0
        self.peak = 0
        self.together = together
        self.all_in = threading.Event()

    def enter(self, name: str) -> None:
        with self.lock:
            self.started.append(name)
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.running >= self.together:
                self.all_in.set()

    def leave(self, name: str) -> None:
        with self.lock:
            self.running -= 1
            self.finished.append(name)


def async_service(
    probe: Probe,
    name: str,
    seconds: float = 0.0,
    error: Exception | None = None,
    hangs: bool = False,
) -> type:
    async def health_check(self: object) -> None:
        probe.enter(name)
        try:
            await until(probe.all_in.is_set, f"{probe.together} checks at once")
            if hangs:
                await anyio.sleep_forever()
            await anyio.sleep(seconds)
            if error is not None:
                raise error
        finally:
            probe.leave(name)

    return type(name, (), {"health_check": health_check, "__module__": "checks"})


def sync_service(
    probe: Probe,
    name: str,
    seconds: float = 0.0,
    error: Exception | None = None,
    hangs: bool = False,
) -> type:
    release = _release[0]  # this test's

    def health_check(self: object) -> None:
        probe.enter(name)
        try:
            assert probe.all_in.wait(PATIENCE), f"{probe.together} checks at once"
            if hangs:
                release.wait(PATIENCE)
            time.sleep(seconds)
            if error is not None:
                raise error
        finally:
            probe.leave(name)

    return type(name, (), {"health_check": health_check, "__module__": "checks"})


# -- 1, 2: what is checked -------------------------------------------------------------


async def test_only_built_checkable_services_are_checked() -> None:
    probe = Probe()
    injector = Injector()
    checked = async_service(probe, "Checked")
    never_invoked = async_service(probe, "NeverInvoked")
    transient = async_service(probe, "Transient")
    build(injector, checked)
    injector.provide(never_invoked)
    injector.provide_transient(transient)
    injector.invoke(transient)
    injector.provide(Config)
    injector.invoke(Config)  # built, but has no check
    assert await injector.ahealth_check() == {"checks.Checked": None}
    assert probe.started == ["Checked"]


async def test_child_shadowing_checks_only_the_childs_service() -> None:
    probe = Probe()
    injector = Injector()
    shared = async_service(probe, "Shared")
    injector.provide(shared)
    injector.invoke(shared)
    child = injector.scope("child")
    child.provide(shared, health_check=lambda s: probe.enter("child-check"))
    # The child's own Shared is not built, so it hides the root's from the child's view.
    assert await child.ahealth_check() == {}
    assert probe.started == []
    child.invoke(shared)
    assert list(await child.ahealth_check()) == ["checks.Shared"]
    assert probe.started == ["child-check"]


async def test_root_covers_root_only_child_covers_ancestors_each_once() -> None:
    probe = Probe()
    root = Injector()
    middle = root.scope("middle")
    leaf = middle.scope("leaf")
    build(root, async_service(probe, "InRoot"))
    build(middle, async_service(probe, "InMiddle"))
    build(leaf, async_service(probe, "InLeaf"))
    assert list(await root.ahealth_check()) == ["checks.InRoot"]
    probe.started.clear()
    report = await leaf.ahealth_report()
    assert [c.key for c in report.checks] == ["checks.InLeaf", "checks.InMiddle", "checks.InRoot"]
    assert [c.scope for c in report.checks] == ["leaf", "middle", "root"]
    assert sorted(probe.started) == ["InLeaf", "InMiddle", "InRoot"]  # once each


# -- 3: order --------------------------------------------------------------------------


async def test_parallelism_one_runs_strictly_in_reverse_invocation_order() -> None:
    probe = Probe()
    injector = Injector(health_check_parallelism=1)
    names = [f"S{i}" for i in range(8)]
    for i, name in enumerate(names):  # mix async and sync checks
        maker = async_service if i % 2 else sync_service
        build(injector, maker(probe, name, 0.01))
    report = await injector.ahealth_report()
    assert probe.started == names[::-1]
    assert probe.finished == names[::-1]
    assert probe.peak == 1
    starts = [c.started_at for c in report.checks]
    assert starts == sorted(starts)


# -- 4: parallelism --------------------------------------------------------------------


@pytest.mark.parametrize("maker", [async_service, sync_service])
async def test_never_more_than_n_at_once_and_n_reached(maker: Callable[..., type]) -> None:
    probe = Probe(together=4)
    injector = Injector(health_check_parallelism=4)
    for i in range(12):
        build(injector, maker(probe, f"S{i}", 0.05))
    report = await injector.ahealth_report()
    assert report.healthy and len(report.checks) == 12
    assert probe.peak == 4


async def test_parallelism_zero_runs_all_at_once() -> None:
    probe = Probe(together=20)
    injector = Injector(health_check_parallelism=0)
    for i in range(20):
        build(injector, async_service(probe, f"S{i}", 0.05))
    await injector.ahealth_check()
    assert probe.peak == 20


# -- 5: the per-check timeout starts when the check starts -----------------------------


@pytest.mark.parametrize("maker", [async_service, sync_service])
async def test_a_queued_check_gets_its_whole_budget(maker: Callable[..., type]) -> None:
    probe = Probe()
    budget = at_most(0.1)  # what one check needs; the last one waits longer in the queue
    count = round(budget / 0.1) + 2
    injector = Injector(health_check_parallelism=1, health_check_timeout=budget)
    for i in range(count):
        build(injector, maker(probe, f"S{i}", 0.1))
    report = await injector.ahealth_report()
    assert [c.outcome for c in report.checks] == [Outcome.HEALTHY] * count
    first, last = report.checks[0], report.checks[-1]
    assert last.started_at - first.started_at > budget  # it did wait longer than that


async def test_async_check_reads_the_calls_deadline() -> None:
    # The per-check timeout is enforced by the call's watchdog, not a timer per check:
    # what a check can read is the call's global deadline.
    seen: list[float] = []

    class Reads:
        async def health_check(self) -> None:
            seen.append(anyio.current_effective_deadline() - anyio.current_time())

    injector = Injector(health_check_timeout=0.5, health_check_global_timeout=10)
    build(injector, Reads)
    await injector.ahealth_check()
    assert 10 - at_most(0) < seen[0] <= 10


@pytest.mark.parametrize("maker", [async_service, sync_service])
async def test_per_check_timeout_is_reported_with_its_limit(maker: Callable[..., type]) -> None:
    probe = Probe()
    limit = at_most(0)  # Fast's check needs no more; Slow's never returns
    injector = Injector(health_check_timeout=limit)
    build(injector, maker(probe, "Slow", hangs=True), maker(probe, "Fast"))
    with Stopwatch() as watch:
        report = await injector.ahealth_report()
    assert watch.seconds < at_most(limit)
    slow = report["checks.Slow"]
    assert slow.outcome is Outcome.TIMEOUT
    assert isinstance(slow.error, HealthCheckTimeoutError) and isinstance(slow.error, TimeoutError)
    assert str(slow.error) == (
        f"health check of 'checks.Slow' timed out: the per-check timeout of {limit:g} s fired"
    )
    assert slow.error.limit == "per-check" and slow.error.seconds == limit
    assert report["checks.Fast"].outcome is Outcome.HEALTHY


async def test_a_check_swallowing_its_cancellation_still_times_out() -> None:
    class Stubborn:
        async def health_check(self) -> None:
            try:
                await anyio.sleep(PATIENCE)
            except anyio.get_cancelled_exc_class():
                pass  # wrong, but it happens

    # After's check needs no more than that; Stubborn's returns only once cancelled.
    injector = Injector(health_check_parallelism=1, health_check_timeout=at_most(0))
    probe = Probe()
    build(injector, async_service(probe, "After"), Stubborn)
    report = await injector.ahealth_report()
    assert report[key(Stubborn)].outcome is Outcome.TIMEOUT
    assert report["checks.After"].outcome is Outcome.HEALTHY


# -- 6: the global timeout -------------------------------------------------------------


@pytest.mark.parametrize("maker", [async_service, sync_service])
async def test_global_timeout_bounds_the_call(maker: Callable[..., type]) -> None:
    probe = Probe()
    injector = Injector(health_check_parallelism=2, health_check_global_timeout=0.3)
    for i in range(4):
        build(injector, maker(probe, f"S{i}", hangs=True))
    with Stopwatch() as watch:
        report = await injector.ahealth_report()
    assert watch.seconds < at_most(0.3)  # the checks never return: only the timeout ends it
    assert len(report.checks) == 4
    assert all(c.outcome is Outcome.TIMEOUT for c in report.checks)
    assert all(isinstance(c.error, HealthCheckTimeoutError) for c in report.checks)
    assert {
        c.error.limit for c in report.checks if isinstance(c.error, HealthCheckTimeoutError)
    } == {"global"}
    assert len(probe.started) == 2  # the other two never started


# -- 7: sync checks run in threads; a hung one is abandoned, not multiplied ------------


async def test_sync_checks_never_run_on_the_loop_and_do_not_stall_it() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []
    quick_done = threading.Event()
    released: list[bool] = []

    class Blocking:
        def health_check(self) -> None:
            threads.append(threading.get_ident())
            # Returns when Quick has run: it can only if this call does not hold the loop.
            released.append(quick_done.wait(PATIENCE))

    class Quick:
        async def health_check(self) -> None:
            await anyio.sleep(0.01)
            quick_done.set()

    injector = Injector(health_check_timeout=None)
    build(injector, Quick, Blocking)  # Blocking starts first
    await injector.ahealth_check()
    assert threads and threads[0] != loop_thread
    assert released == [True]  # Quick ran while Blocking blocked


async def test_hung_sync_check_is_abandoned_and_never_piles_up_threads() -> None:
    release = threading.Event()
    calls = 0

    class Hung:
        def health_check(self) -> None:
            nonlocal calls
            calls += 1
            release.wait(3600)  # stands for time.sleep(3600); released when the test ends

    injector = Injector(health_check_timeout=0.1)
    build(injector, Hung)
    try:
        with Stopwatch() as watch:
            first = await injector.ahealth_check()
        assert watch.seconds < at_most(0.1)
        assert isinstance(first[key(Hung)], HealthCheckTimeoutError)
        threads = threading.active_count()
        for _ in range(50):
            again = await injector.ahealth_check()
            assert isinstance(again[key(Hung)], HealthCheckTimeoutError)
        # Other tests' abandoned threads may end meanwhile; none may start.
        assert threading.active_count() <= threads
        assert calls == 1  # later calls reported it at once instead of starting it again
    finally:
        release.set()

    async def healthy_again() -> bool:
        return (await injector.ahealth_check())[key(Hung)] is None

    await until(healthy_again, "the check to run normally once it returned")
    assert calls > 1


def test_hung_check_with_the_sync_form_returns_in_time() -> None:
    release = threading.Event()

    class Hung:
        def health_check(self) -> None:
            release.wait(3600)

    injector = Injector(health_check_timeout=0.1)
    build(injector, Hung)
    try:
        with Stopwatch() as watch:
            status = injector.health_check()
        assert watch.seconds < at_most(0.1)
        assert isinstance(status[key(Hung)], HealthCheckTimeoutError)
    finally:
        release.set()


# -- 8: exceptions ---------------------------------------------------------------------


class Fatal(BaseException):
    pass


@pytest.mark.parametrize("maker", [async_service, sync_service])
async def test_exceptions_are_values_base_exceptions_are_failures(
    maker: Callable[..., type],
) -> None:
    probe = Probe()
    injector = Injector()
    error = ConnectionRefusedError("db down")
    build(injector, maker(probe, "Down", error=error), maker(probe, "Up"))
    status = await injector.ahealth_check()
    assert status == {"checks.Up": None, "checks.Down": error}
    build(injector, maker(probe, "Dies", error=Fatal("stop")))  # type: ignore[arg-type]
    report = await injector.ahealth_report()
    dies = report["checks.Dies"]
    assert dies.outcome is Outcome.UNHEALTHY
    assert isinstance(dies.error, HealthCheckError)
    assert isinstance(dies.error.__cause__, Fatal)
    assert "health check of 'checks.Dies' failed: it raised Fatal" in str(dies.error)
    assert [c.key for c in report.checks] == ["checks.Dies", "checks.Up", "checks.Down"]


# -- 9: single flight ------------------------------------------------------------------


async def test_100_concurrent_callers_cause_one_run_of_each_check() -> None:
    probe = Probe()
    injector = Injector()
    build(injector, async_service(probe, "A", 0.05), sync_service(probe, "B", 0.05))
    reports: list[object] = []

    async def call() -> None:
        reports.append(await injector.ahealth_report())

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(call)
    assert sorted(probe.started) == ["A", "B"]
    assert len(reports) == 100 and all(r is reports[0] for r in reports)
    await injector.ahealth_check()  # a later call runs again
    assert len(probe.started) == 4


def test_concurrent_sync_callers_in_threads_share_one_run() -> None:
    probe = Probe()
    injector = Injector()
    calling = threading.Semaphore(0)

    class A:
        def health_check(self) -> None:
            probe.enter("A")
            # Runs until every caller has called, and long enough for each call to join.
            for _ in range(8):
                assert calling.acquire(timeout=PATIENCE)
            time.sleep(at_most(0))
            probe.leave("A")

    build(injector, A)
    results: list[object] = []

    def call() -> None:
        calling.release()
        results.append(injector.health_report())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    assert len(results) == 8 and probe.started == ["A"]


async def test_a_cancelled_leader_does_not_fail_its_followers() -> None:
    probe = Probe()
    injector = Injector()
    build(injector, async_service(probe, "A", 0.1))
    got: list[object] = []

    async def follower() -> None:
        got.append(await injector.ahealth_check())

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(0.03):
            tg.start_soon(follower)
            await injector.ahealth_check()  # the leader, cancelled mid-run
    assert got == [{"checks.A": None}]


# -- 10: sync forms --------------------------------------------------------------------


def test_sync_forms_work_from_plain_code() -> None:
    probe = Probe()
    injector = Injector()
    build(injector, async_service(probe, "A"), sync_service(probe, "B"))
    assert injector.health_check() == {"checks.B": None, "checks.A": None}
    assert injector.health_report().healthy
    assert injector.health_check_service("checks.A") is None


async def test_sync_forms_inside_a_loop_point_to_the_async_form() -> None:
    injector = Injector()
    with pytest.raises(RuntimeError, match=r"^health_check\(\) .* `await ahealth_check\(\)`"):
        injector.health_check()
    with pytest.raises(RuntimeError, match=r"^health_report\(\) .* `await ahealth_report\(\)`"):
        injector.health_report()
    with pytest.raises(RuntimeError, match=r"await ahealth_check_service\(\)"):
        injector.health_check_service(Config)


# -- 11: one service -------------------------------------------------------------------


async def test_health_check_service_honours_timeouts_and_reports_errors() -> None:
    probe = Probe()
    injector = Injector(health_check_timeout=at_most(0))  # as long as Down's check may need
    build(
        injector,
        sync_service(probe, "Slow", hangs=True),
        async_service(probe, "Down", error=OSError("x")),
    )
    error = await injector.ahealth_check_service("checks.Slow")
    assert isinstance(error, HealthCheckTimeoutError)
    assert isinstance(await injector.ahealth_check_service("checks.Down"), OSError)
    assert probe.started.count("Slow") == 1 and probe.started.count("Down") == 1


async def test_checking_one_service_refuses_an_unknown_unbuilt_or_uncheckable_one() -> None:
    probe = Probe()
    injector = Injector()
    unbuilt = async_service(probe, "Unbuilt")
    injector.provide(unbuilt)
    injector.provide_value(Config())
    with pytest.raises(ServiceNotFoundError):
        await injector.ahealth_check_service("nothing")
    with pytest.raises(ServiceNotBuiltError, match="not built yet"):
        await injector.ahealth_check_service(unbuilt)
    with pytest.raises(ValueError, match="has no health check"):
        await injector.ahealth_check_service(Config)
    assert probe.started == [] and injector.list_invoked() == [key(Config)]


async def test_a_named_services_check_is_reported_under_its_name() -> None:
    probe = Probe()
    injector = Injector()
    replica = async_service(probe, "Replica", error=OSError("lag"))
    injector.provide(replica, name="replica")
    injector.invoke("replica")
    assert isinstance(await injector.ahealth_check_service(replica, name="replica"), OSError)
    assert isinstance((await injector.ahealth_check())["replica"], OSError)


# -- 12: hooks, explicit checks, the report --------------------------------------------


async def test_on_health_check_hook_sees_every_result_and_cannot_break_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, Outcome]] = []

    def hook(key: str, result: HealthCheckResult) -> None:
        seen.append((key, result.outcome))
        raise RuntimeError("metrics backend down")

    probe = Probe()
    injector = Injector(on_health_check=hook)
    build(injector, async_service(probe, "A"), sync_service(probe, "B", error=OSError("x")))
    with caplog.at_level(logging.ERROR, logger="di.health"):
        status = await injector.ahealth_check()
    assert status["checks.A"] is None and isinstance(status["checks.B"], OSError)
    assert sorted(seen) == [("checks.A", Outcome.HEALTHY), ("checks.B", Outcome.UNHEALTHY)]
    assert "on_health_check hook failed" in caplog.text


async def test_explicit_check_wins_and_may_return_a_coroutine() -> None:
    class Client:
        def __init__(self) -> None:
            self.pings = 0

        async def ping(self) -> None:
            self.pings += 1

        def health_check(self) -> None:
            raise AssertionError("the explicit check wins")

    injector = Injector()
    injector.provide(Client, health_check=lambda c: c.ping())  # sync lambda, async result
    client = injector.invoke(Client)
    assert await injector.ahealth_check() == {key(Client): None}
    assert await injector.ahealth_check() == {key(Client): None}
    assert client.pings == 2


async def test_a_report_renders_as_json_with_each_checks_outcome_error_scope_and_time() -> None:
    probe = Probe()
    injector = Injector()
    build(injector, async_service(probe, "A"), async_service(probe, "B", error=OSError("x")))
    report = await injector.ahealth_report()
    assert not report.healthy
    data = json.loads(json.dumps(report.to_dict()))
    assert data["healthy"] is False
    assert [c["key"] for c in data["checks"]] == ["checks.B", "checks.A"]
    b = data["checks"][0]
    assert b["outcome"] == "unhealthy" and b["error"] == "x" and b["error_type"] == "OSError"
    assert b["scope"] == "root" and b["duration_ms"] >= 0 and b["started"].endswith("+00:00")
    assert report.checks[0].started.tzinfo is not None


def test_protocols_are_runtime_checkable() -> None:
    class Sync:
        def health_check(self) -> None: ...

    class Async:
        async def health_check(self) -> None: ...

    assert isinstance(Sync(), HealthChecker) and HealthChecker is Healthchecker
    assert isinstance(Async(), AsyncHealthChecker)
    assert AsyncHealthChecker is HealthcheckerWithContext


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"health_check_parallelism": -1}, "int >= 0"),
        ({"health_check_parallelism": True}, "int >= 0"),
        ({"health_check_parallelism": 1.5}, "int >= 0"),
        ({"health_check_timeout": 0}, "> 0 or None"),
        ({"health_check_global_timeout": "1"}, "> 0 or None"),
    ],
)
def test_invalid_health_settings_are_refused_saying_what_is_allowed(
    kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Injector(**kwargs)
    with pytest.raises(TypeError, match="on_health_check"):
        Injector(on_health_check="log")  # type: ignore[arg-type]
