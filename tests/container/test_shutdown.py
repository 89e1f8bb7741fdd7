"""Shutdown: order, hooks, failures, scopes, and override."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from di import AsyncShutdowner, Injector, Shutdowner, ShutdownError

from ..services import Cache, Config, Database, Repo, key
from ..timing import PATIENCE, Stopwatch, at_most

pytestmark = pytest.mark.anyio


class Pool:
    order: list[str]

    async def shutdown(self) -> None:
        await anyio.sleep(0.01)
        self.order.append("pool")


class Recorder:
    """Builds services that record their shutdown in one shared list."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def service(self, label: str, fail: bool = False) -> object:
        log = self.log

        class Thing:
            def shutdown(self) -> None:
                log.append(label)
                if fail:
                    raise RuntimeError(f"{label} failed")

        return Thing()


def test_reverse_invocation_order_dependents_first() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide(Repo)
    repo = injector.invoke(Repo)
    order: list[str] = []
    repo.shutdown = lambda: order.append("repo")  # type: ignore[attr-defined]
    repo.db.shutdown = lambda: order.append("db")  # type: ignore[method-assign]
    injector.shutdown()
    assert order == ["repo", "db"]


def test_children_first_deepest_first_then_own() -> None:
    rec = Recorder()
    injector = Injector()
    a = injector.scope("a")
    a1 = a.scope("a1")
    b = injector.scope("b")
    injector.provide_value(rec.service("root"), name="root")
    a.provide_value(rec.service("a"), name="a")
    a1.provide_value(rec.service("a1"), name="a1")
    b.provide_value(rec.service("b"), name="b")
    injector.shutdown()
    # Children in reverse creation order, each after its own children.
    assert rec.log == ["b", "a1", "a", "root"]
    assert injector.children() == []


def test_every_hook_runs_once_and_failures_are_gathered() -> None:
    rec = Recorder()
    injector = Injector()
    for label, fail in [("one", False), ("two", True), ("three", False), ("four", True)]:
        injector.provide_value(rec.service(label, fail), name=label)
    with pytest.raises(ShutdownError) as caught:
        injector.shutdown()
    assert rec.log == ["four", "three", "two", "one"]
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert set(group.errors) == {"two", "four"}
    assert "'four'" in str(group) and "'two'" in str(group)
    assert group.exceptions[0].__notes__ == ["while shutting down service 'four'"]
    # Instances were dropped even though some hooks failed; no hook runs twice.
    injector.shutdown()
    assert rec.log == ["four", "three", "two", "one"]


def test_shutdown_error_splits_like_an_exception_group() -> None:
    injector = Injector()
    rec = Recorder()
    injector.provide_value(rec.service("x", fail=True), name="x")
    try:
        injector.shutdown()
    except* RuntimeError as group:
        assert len(group.exceptions) == 1


def test_after_shutdown_a_later_invoke_builds_anew() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    first = injector.invoke(Database)
    injector.shutdown()
    assert first.closed
    assert injector.list_invoked() == []
    second = injector.invoke(Database)
    assert second is not first and not second.closed


def test_child_scope_is_removed_from_parent_and_its_name_freed() -> None:
    injector = Injector()
    request = injector.scope("request")
    request.provide(Database)
    injector.provide(Config)
    request.invoke(Database)
    request.shutdown()
    assert injector.children() == []
    assert injector.list_invoked() == [key(Config)]  # the parent is untouched
    injector.scope("request")


def test_explicit_shutdown_hook_wins_over_method() -> None:
    closed: list[object] = []
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database, shutdown=closed.append)
    db = injector.invoke(Database)
    injector.shutdown()
    assert closed == [db] and not db.closed


def test_context_manager_shuts_down() -> None:
    with Injector() as injector:
        injector.provide(Config)
        injector.provide(Database)
        db = injector.invoke(Database)
    assert db.closed


def test_override_shuts_down_the_replaced_instance() -> None:
    def fake_database(config: Config) -> Database:
        return Database(config)

    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    old = injector.invoke(Database)
    injector.override(fake_database)
    assert old.closed
    new = injector.invoke(Database)
    assert new is not old
    injector.provide(lambda: Cache(), name="never-built")
    injector.override(lambda: Cache(), name="never-built")
    assert injector.invoke("never-built") is not None


def test_override_of_unbuilt_service_shuts_nothing_down() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.override(Config)
    assert injector.list_invoked() == []


def test_protocols_are_runtime_checkable() -> None:
    assert isinstance(Database(Config()), Shutdowner)

    class Async:
        async def shutdown(self) -> None:
            pass

    assert isinstance(Async(), AsyncShutdowner)


def test_sync_shutdown_runs_async_hooks_on_its_own_loop() -> None:
    closed: list[str] = []

    class Client:
        async def shutdown(self) -> None:
            await anyio.sleep(0)
            closed.append("client")

    injector = Injector()
    injector.provide_value(Client())
    injector.shutdown()
    assert closed == ["client"]


async def test_ashutdown_awaits_async_hooks_in_order() -> None:
    order = Pool.order = []

    async def new_client(pool: Pool) -> AsyncIterator[Cache]:
        yield Cache()
        order.append("client")

    injector = Injector()
    injector.provide(Pool)
    injector.provide(new_client)
    await injector.ainvoke(Cache)
    await injector.ashutdown()
    assert order == ["client", "pool"]


async def test_sync_shutdown_inside_a_loop_with_async_hooks_changes_nothing() -> None:
    class Client:
        async def shutdown(self) -> None:
            pass

    injector = Injector()
    injector.provide(Client)
    client = injector.invoke(Client)
    with pytest.raises(RuntimeError, match=r"await ashutdown\(\)"):
        injector.shutdown()
    assert injector.invoke(Client) is client
    await injector.ashutdown()


async def test_sync_shutdown_inside_a_loop_with_sync_hooks_works() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    db = injector.invoke(Database)
    injector.shutdown()
    assert db.closed


async def test_async_with_shuts_down_even_when_cancelled() -> None:
    closed: list[str] = []

    class Client:
        async def shutdown(self) -> None:
            await anyio.sleep(0.01)
            closed.append("client")

    with anyio.move_on_after(0.05):
        async with Injector() as injector:
            injector.provide(Client)
            injector.invoke(Client)
            await anyio.sleep_forever()
    assert closed == ["client"]


async def test_aoverride_awaits_the_replaced_async_hook() -> None:
    closed: list[str] = []

    async def new_cache() -> AsyncIterator[Cache]:
        yield Cache()
        closed.append("old")

    injector = Injector()
    injector.provide(new_cache)
    old = await injector.ainvoke(Cache)
    injector.provide(lambda: Cache(), name="unrelated")
    await injector.aoverride(lambda: Cache(), name="unrelated")
    assert closed == []
    await injector.aoverride(Cache)
    assert closed == ["old"]
    assert injector.invoke(Cache) is not old


def test_generator_that_yields_twice_is_reported() -> None:
    def twice(config: Config) -> Iterator[Database]:
        yield Database(config)
        yield Database(config)

    injector = Injector()
    injector.provide(Config)
    injector.provide(twice)
    injector.invoke(Database)
    with pytest.raises(ShutdownError) as caught:
        injector.shutdown()
    assert "yielded more than once" in str(caught.value.exceptions[0])


def test_hook_returning_awaitable_from_sync_shutdown_is_reported() -> None:
    async def close(_: object) -> None:
        pass

    injector = Injector()
    injector.provide(Config, shutdown=lambda c: close(c))
    injector.invoke(Config)
    with pytest.raises(ShutdownError, match=re.escape(key(Config))) as caught:
        injector.shutdown()
    assert "returned an awaitable" in str(caught.value.exceptions[0])


# -- two callers at once ----------------------------------------------------------------------


def _held_shutdowns(log: list[str], release: anyio.Event) -> Injector:
    """An injector whose Repo's async hook waits for ``release``; Database's is sync."""

    async def close_repo(_: Repo) -> None:
        log.append("repo begins")
        await release.wait()
        log.append("repo ends")

    injector = Injector()
    injector.provide(Config)
    injector.provide(Database, shutdown=lambda _: log.append("database"))
    injector.provide(Repo, shutdown=close_repo)
    return injector


async def test_two_tasks_shutting_down_at_once_keep_the_order_and_both_wait() -> None:
    log: list[str] = []
    release = anyio.Event()
    injector = _held_shutdowns(log, release)
    await injector.ainvoke(Repo)

    async def caller(name: str) -> None:
        await injector.ashutdown()
        log.append(f"{name} returned")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller, "first")
        await anyio.wait_all_tasks_blocked()  # the first is inside Repo's hook
        tasks.start_soon(caller, "second")
        await anyio.wait_all_tasks_blocked()  # the second waits for the first
        assert log == ["repo begins"]
        release.set()
    assert log[:3] == ["repo begins", "repo ends", "database"]
    assert sorted(log[3:]) == ["first returned", "second returned"]


async def test_sync_shutdown_in_a_loop_whose_other_task_shuts_down_is_refused() -> None:
    log: list[str] = []
    release = anyio.Event()
    injector = _held_shutdowns(log, release)
    await injector.ainvoke(Repo)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(injector.ashutdown)
        await anyio.wait_all_tasks_blocked()  # inside Repo's hook
        # Waiting here would block the loop that task runs on, for ever.
        with pytest.raises(RuntimeError, match=r"another task shuts this scope down"):
            injector.shutdown()
        assert log == ["repo begins"]
        release.set()
    assert log == ["repo begins", "repo ends", "database"]


def test_a_hook_shutting_its_own_injector_down_again_goes_on() -> None:
    # The hook runs in a worker thread (shutdown_timeout): it is still the same caller.
    log: list[str] = []
    injector = Injector(shutdown_timeout=PATIENCE)

    def close_repo(_: Repo) -> None:
        log.append("repo")
        injector.shutdown()
        log.append("repo's nested shutdown returned")

    injector.provide(Config)
    injector.provide(Database, shutdown=lambda _: log.append("database"))
    injector.provide(Repo, shutdown=close_repo)
    injector.invoke(Repo)
    with Stopwatch() as watch:
        injector.shutdown()
    assert watch.seconds < at_most(0)  # not waiting for itself until the hook times out
    assert log == ["repo", "database", "repo's nested shutdown returned"]
    assert isinstance(injector.invoke(Repo), Repo)  # the root reopened
