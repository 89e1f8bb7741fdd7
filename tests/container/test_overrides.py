"""Overrides that restore, and clones: the per-test pattern."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import anyio
import pytest

from di import (
    AsyncRequiredError,
    HealthMonitor,
    Injector,
    ScopeClosedError,
    ServiceNotFoundError,
    ShutdownError,
)

from ..services import Database, key
from ..timing import PATIENCE

pytestmark = pytest.mark.anyio


class Mailer(Protocol):
    def send(self, to: str) -> None: ...


class SmtpMailer:
    def __init__(self) -> None:
        self.closed = 0

    def send(self, to: str) -> None: ...

    def shutdown(self) -> None:
        self.closed += 1


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed = 0

    def send(self, to: str) -> None:
        self.sent.append(to)

    def shutdown(self) -> None:
        self.closed += 1


class Signup:
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer


def mail_injector() -> Injector:
    injector = Injector()
    injector.provide(SmtpMailer, provides=Mailer)
    injector.provide_transient(Signup)
    return injector


def test_the_original_provider_and_its_instance_come_back_untouched() -> None:
    injector = mail_injector()
    original = injector.invoke(Mailer)
    fake = FakeMailer()
    with injector.overridden(Mailer, value=fake):
        assert injector.invoke(Mailer) is fake
        assert injector.invoke(Signup).mailer is fake  # a compiled transient sees it too
        with injector.scope() as child:
            assert child.invoke(Mailer) is fake  # descendants too
    assert injector.invoke(Mailer) is original  # the very instance, not rebuilt
    assert injector.invoke(Signup).mailer is original
    assert isinstance(original, SmtpMailer) and original.closed == 0
    assert fake.closed == 1  # a value counts as built: shut down on leaving
    report = injector.shutdown()
    assert [s.name for s in report] == [f"{__name__}.Mailer"] and original.closed == 1


def test_a_factory_replacement_is_shut_down_only_if_it_was_built() -> None:
    injector = mail_injector()
    made: list[FakeMailer] = []

    def new_fake() -> FakeMailer:
        made.append(FakeMailer())
        return made[-1]

    with injector.overridden(Mailer, new_fake):
        pass
    assert made == []
    with injector.overridden(Mailer, new_fake):
        assert injector.invoke(Mailer) is made[0]
        assert injector.list_invoked() == [f"{__name__}.Mailer"]
    assert made[0].closed == 1
    assert injector.list_invoked() == []  # the original was never built: still not


def test_nested_overrides_unwind_in_order() -> None:
    injector = mail_injector()
    original = injector.invoke(Mailer)
    first, second = FakeMailer(), FakeMailer()
    with injector.overridden(Mailer, value=first):
        with injector.overridden(Mailer, value=second):
            assert injector.invoke(Mailer) is second
        assert injector.invoke(Mailer) is first and first.closed == 0 and second.closed == 1
    assert injector.invoke(Mailer) is original and first.closed == 1


def test_an_override_left_out_of_order_leaves_the_newer_one_in_place() -> None:
    injector = mail_injector()
    original = injector.invoke(Mailer)
    first, second = FakeMailer(), FakeMailer()
    outer = injector.overridden(Mailer, value=first)
    inner = injector.overridden(Mailer, value=second)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # another thread's, say: the newer one stays
    assert injector.invoke(Mailer) is second and first.closed == 1
    inner.__exit__(None, None, None)
    assert injector.invoke(Mailer) is original and second.closed == 1


def test_an_override_in_a_child_scope_shadows_a_named_service_from_that_child_down() -> None:
    injector = Injector()
    injector.provide_value("primary", name="dsn")
    child = injector.scope("child")
    with child.overridden("dsn", value="replica"):
        assert child.invoke("dsn") == "replica"
        assert injector.invoke("dsn") == "primary"  # only from the child down
    assert child.invoke("dsn") == "primary" and child.list_provided() == []


def test_a_scoped_service_stays_scoped_and_a_transient_transient() -> None:
    injector = mail_injector()

    class Session:
        pass

    injector.provide_scoped(Session)
    with injector.overridden(Session, Session), injector.overridden(Signup, Signup):
        with pytest.raises(LookupError, match="scoped"):
            injector.invoke(Session)
        with injector.scope() as one, injector.scope() as two:
            assert one.invoke(Session) is one.invoke(Session) is not two.invoke(Session)
        assert injector.invoke(Signup) is not injector.invoke(Signup)


def test_refusals_name_the_fix() -> None:
    injector = mail_injector()
    with (
        pytest.raises(ServiceNotFoundError) as missing,
        injector.overridden(FakeMailer, FakeMailer),
    ):
        pass
    assert "never adds one" in str(missing.value.__notes__)
    with pytest.raises(TypeError, match=r"pass a factory.*or an instance"):
        injector.overridden(Mailer)
    with pytest.raises(TypeError, match="one of the two"):
        injector.overridden(Mailer, FakeMailer, value=FakeMailer())
    override = injector.overridden(Mailer, value=FakeMailer())
    with override, pytest.raises(RuntimeError, match="entered already"):
        override.__enter__()
    with pytest.raises(RuntimeError, match="not active"):
        override.__exit__(None, None, None)
    child = injector.scope()
    child.shutdown()
    with pytest.raises(ScopeClosedError), child.overridden(Mailer, value=FakeMailer()):
        pass


def test_a_shutdown_during_an_override_shuts_the_set_aside_instance_down_too() -> None:
    injector = mail_injector()
    original = injector.invoke(Mailer)
    fake = FakeMailer()
    with injector.overridden(Mailer, value=fake):
        report = injector.shutdown()
        assert [s.name for s in report] == [f"{__name__}.Mailer"] * 2
        assert fake.closed == 1 and isinstance(original, SmtpMailer) and original.closed == 1
        rebuilt = injector.invoke(Mailer)  # the replacement, anew: it is still in place
    assert rebuilt is fake  # a value: the same object, shut down again on leaving
    assert fake.closed == 2
    fresh = injector.invoke(Mailer)
    assert isinstance(fresh, SmtpMailer) and fresh is not original


def test_failing_replacement_hook_raises_once_the_original_is_back() -> None:
    injector = mail_injector()
    original = injector.invoke(Mailer)

    class Flaky(FakeMailer):
        def shutdown(self) -> None:
            raise OSError("connection reset")

    with pytest.raises(ShutdownError) as raised, injector.overridden(Mailer, value=Flaky()):
        pass
    assert injector.invoke(Mailer) is original
    assert [s.outcome for s in raised.value.report] == ["failed"]


async def test_async_with_awaits_an_async_shutdown_of_the_replacement() -> None:
    injector = mail_injector()
    closed: list[str] = []

    async def open_fake() -> AsyncIterator[FakeMailer]:
        yield FakeMailer()
        await anyio.sleep(0)
        closed.append("fake")

    original = injector.invoke(Mailer)
    async with injector.overridden(Mailer, open_fake):
        fake = await injector.ainvoke(Mailer)
        assert isinstance(fake, FakeMailer)
    assert closed == ["fake"]
    assert await injector.ainvoke(Mailer) is original
    # A sync `with` ending inside the loop cannot await the cleanup: it says so, and
    # still puts the original back, since nothing can leave that block twice.
    with (
        pytest.raises(AsyncRequiredError, match=r"the original is back.*use `async with`"),
        injector.overridden(Mailer, open_fake),
    ):
        assert isinstance(await injector.ainvoke(Mailer), FakeMailer)
    assert closed == ["fake"]  # the replacement's cleanup could not run
    assert await injector.ainvoke(Mailer) is original


def test_a_sync_block_runs_an_async_cleanup_on_a_loop_of_its_own() -> None:
    injector = mail_injector()
    closed: list[str] = []

    async def open_fake() -> AsyncIterator[FakeMailer]:
        yield FakeMailer()
        closed.append("fake")

    with injector.overridden(Mailer, open_fake):
        anyio.run(injector.ainvoke, Mailer)
    assert closed == ["fake"]


async def test_overrides_from_threads_and_tasks_at_once_all_unwind() -> None:
    """Threads and tasks enter and leave overrides of the same key and of their own,
    in any order, while others invoke: each sees a replacement while its own is in,
    and in the end the original and its instance are back, every replacement shut down."""
    injector = mail_injector()
    original = injector.invoke(Mailer)
    for n in range(16):
        injector.provide_value(f"dsn-{n}", name=f"dsn-{n}")
    fakes: list[FakeMailer] = []
    lock = threading.Lock()
    start = threading.Barrier(8, timeout=PATIENCE)

    def fake() -> FakeMailer:
        with lock:
            fakes.append(FakeMailer())
            return fakes[-1]

    def in_thread(n: int) -> None:
        start.wait()
        for round_ in range(25):
            with (
                injector.overridden(Mailer, fake),
                injector.overridden(f"dsn-{n}", value=f"fake-{n}-{round_}"),
            ):
                assert isinstance(injector.invoke(Mailer), FakeMailer)
                assert injector.invoke(f"dsn-{n}") == f"fake-{n}-{round_}"
                assert isinstance(injector.invoke(Signup).mailer, FakeMailer)
            assert injector.invoke(f"dsn-{n}") == f"dsn-{n}"

    async def in_task(n: int) -> None:
        for round_ in range(25):
            async with (
                injector.overridden(Mailer, fake),
                injector.overridden(f"dsn-{n}", value=f"fake-{n}-{round_}"),
            ):
                await anyio.sleep(0)  # the others run meanwhile
                assert isinstance(await injector.ainvoke(Mailer), FakeMailer)
                assert await injector.ainvoke(f"dsn-{n}") == f"fake-{n}-{round_}"
            assert await injector.ainvoke(f"dsn-{n}") == f"dsn-{n}"

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    async with anyio.create_task_group() as tasks:
        for n in range(8, 16):
            tasks.start_soon(in_task, n)
    for thread in threads:
        thread.join(PATIENCE)
        assert not thread.is_alive()
    assert injector.invoke(Mailer) is original and original.closed == 0
    built = [f for f in fakes if f.closed]
    assert len(built) == len(fakes) and all(f.closed == 1 for f in fakes)
    assert injector.invoke("dsn-3") == "dsn-3" and injector.invoke("dsn-12") == "dsn-12"


# -- clone -----------------------------------------------------------------------------


def test_a_clone_has_the_same_providers_settings_and_health_nothing_built_nothing_shared() -> None:
    checked: list[str] = []
    injector = Injector(
        name="app",
        health_check_timeout=2.0,
        health_check_parallelism=3,
        shutdown_timeout=4.0,
        on_health_check=lambda key, result: checked.append(key),
    )
    settings = {"dsn": "sqlite://"}
    injector.provide_value(settings, name="settings")
    injector.provide(SmtpMailer, provides=Mailer, eager=True, critical=False)
    injector.provide_transient(Signup)
    injector.provide_context(str, name="tenant")
    injector.provide_scoped(FakeMailer)
    injector.start()
    original = injector.invoke(Mailer)

    clone = injector.clone()
    assert clone is not injector and clone.name == "app"
    assert clone.list_provided() == injector.list_provided()
    assert clone.list_invoked() == ["settings"]  # a value: the same object, counted as built
    assert clone.invoke("settings") is settings
    clone.start()  # eager services: built by the clone's own start
    assert clone.invoke(Mailer) is not original
    with clone.scope(context={"tenant": "acme"}) as request:
        assert request.invoke("tenant") == "acme"
        assert isinstance(request.invoke(FakeMailer), FakeMailer)
    clone.override_value(FakeMailer(), provides=Mailer)  # changes the clone alone
    assert injector.invoke(Mailer) is original
    assert clone.health_check() == {}  # the values have no check; the fake is not critical
    health = clone._health
    assert (health.timeout, health.parallelism, clone._shutdown_timeout) == (2.0, 3, 4.0)
    report = clone.shutdown()
    assert isinstance(original, SmtpMailer) and original.closed == 0
    assert "settings" in [s.name for s in report]  # released, never shut down: it is not its own
    injector.shutdown()
    assert original.closed == 1


def test_a_clone_per_test_with_overrides_restores_nothing_in_the_original() -> None:
    app = mail_injector()
    app_mailer = app.invoke(Mailer)
    for _ in range(3):  # three "tests"
        with app.clone() as injector, injector.overridden(Mailer, value=FakeMailer()):
            signup = injector.invoke(Signup)
            signup.mailer.send("ada@example.com")
            assert isinstance(signup.mailer, FakeMailer)
            assert signup.mailer.sent == ["ada@example.com"]
    assert app.invoke(Mailer) is app_mailer


def test_a_clone_made_during_an_override_has_the_original_provider() -> None:
    app = mail_injector()
    with app.overridden(Mailer, value=FakeMailer()), app.overridden(Signup, Signup):
        clone = app.clone()
    assert isinstance(clone.invoke(Mailer), SmtpMailer)  # the override stayed with app
    assert clone.invoke(Signup) is not clone.invoke(Signup)  # still a transient
    assert clone.list_provided() == app.list_provided()


async def test_a_clone_s_monitor_checks_its_own_services() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    clone = injector.clone()
    await clone.astart()
    monitor = HealthMonitor(clone, interval=60)
    async with monitor:
        await monitor.wait_ready()
        assert key(Database) in monitor.snapshot.statuses
    assert injector.list_invoked() == []
    await clone.ashutdown()


def test_generator_replacement_of_a_transient_is_refused() -> None:
    injector = mail_injector()

    def signups() -> Iterator[Signup]:
        yield Signup(FakeMailer())

    with pytest.raises(TypeError, match="generator factory's cleanup would never run"):
        injector.overridden(Signup, signups)


class Halt(BaseException):
    """What a hook raises when the program is being stopped: no ``Exception``."""


@pytest.mark.parametrize("event", ["provided", "built"])
def test_an_override_a_hook_stops_while_entering_is_not_left_in_place(event: str) -> None:
    injector = mail_injector()
    original = injector.invoke(Mailer)

    def stop(happened: object) -> None:
        raise Halt

    injector.add_hook(event, stop)  # type: ignore[arg-type]
    with pytest.raises(Halt), injector.overridden(Mailer, value=FakeMailer()):
        pass  # never entered: nothing would leave it
    injector.remove_hook(event, stop)  # type: ignore[arg-type]
    assert injector.invoke(Mailer) is original
    with injector.overridden(Mailer, value=FakeMailer()):  # and the key can be overridden again
        assert isinstance(injector.invoke(Mailer), FakeMailer)
    assert injector.invoke(Mailer) is original
