"""Lifecycle hooks: what each event says, who sees it, where it runs, what it costs nothing."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from di import HookEvent, Injector, ShutdownError

from ..services import Config, Database, Repo, key
from ..timing import PATIENCE

pytestmark = pytest.mark.anyio


class Handler:
    def __init__(self, repo: Repo, config: Config) -> None:
        self.repo = repo


class Broken:
    def __init__(self) -> None:
        raise ConnectionError("no route to host")


class Recorder:
    """A hook recording every event, with the thread it ran in."""

    def __init__(self) -> None:
        self.events: list[HookEvent] = []
        self.threads: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, event: HookEvent) -> None:
        with self.lock:
            self.events.append(event)
            self.threads.append(threading.get_ident())

    def names(self, key: str | None = None) -> list[str]:
        return [e.name for e in self.events if key is None or e.key.endswith(key)]


def hooked(*events: str) -> tuple[Injector, Recorder]:
    injector = Injector()
    recorder = Recorder()
    for event in events or ("provided", "building", "built", "build_failed"):
        injector.add_hook(event, recorder)  # type: ignore[arg-type]
    return injector, recorder


def test_each_event_says_what_happened_to_which_service() -> None:
    injector, seen = hooked(
        "provided", "building", "built", "build_failed", "shutting_down", "shut_down"
    )
    config = Config()
    injector.provide_value(config)
    injector.provide(Database)
    injector.provide(Broken)
    db = injector.invoke(Database)
    with pytest.raises(ConnectionError):
        injector.invoke(Broken)
    injector.shutdown()

    by_name = {(e.name, e.key.rsplit(".", 1)[1]): e for e in seen.events}
    provided = by_name[("provided", "Config")]
    assert provided == HookEvent("provided", "root", key(Config), config, None, None)
    assert by_name[("provided", "Database")].instance is None  # not built yet
    built = by_name[("built", "Database")]
    assert built.instance is db and built.scope == "root" and built.error is None
    assert built.duration is not None and built.duration >= 0
    failed = by_name[("build_failed", "Broken")]
    assert isinstance(failed.error, ConnectionError) and failed.instance is None
    assert failed.duration is not None
    assert by_name[("shutting_down", "Database")].instance is db
    shut = by_name[("shut_down", "Database")]
    assert shut.instance is db and shut.error is None and shut.duration is not None
    assert db.closed
    # In order, each service's life: provided, building, built, shutting_down, shut_down;
    # a dependency is built (and told) inside the build of what needs it.
    assert seen.names("Database") == [
        "provided",
        "building",
        "built",
        "shutting_down",
        "shut_down",
    ]
    assert [(e.name, e.key.rsplit(".", 1)[1]) for e in seen.events if e.name == "built"] == [
        ("built", "Config"),  # the value counts as built when provided
        ("built", "Database"),
    ]


def test_a_hook_sees_its_descendants_events_and_not_its_ancestors() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide_scoped(Repo)
    injector.provide(Database)
    on_root, on_child = Recorder(), Recorder()
    injector.add_hook("built", on_root)
    child = injector.scope("child")
    child.add_hook("built", on_child)
    grandchild = child.scope("grandchild")
    repo = grandchild.invoke(Repo)  # Database and Config: the root's; Repo: the grandchild's
    assert [(e.key.rsplit(".", 1)[1], e.scope) for e in on_root.events] == [
        ("Config", "root"),
        ("Database", "root"),
        ("Repo", "grandchild"),
    ]
    assert [(e.key.rsplit(".", 1)[1], e.scope) for e in on_child.events] == [("Repo", "grandchild")]
    assert on_child.events[0].instance is repo


def test_a_hook_that_raises_is_logged_and_breaks_neither_a_build_nor_a_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    after = Recorder()

    def broken(event: HookEvent) -> None:
        raise RuntimeError(f"hook failed on {event.name}")

    for event in ("building", "built", "shutting_down", "shut_down"):
        injector.add_hook(event, broken)  # type: ignore[arg-type]
        injector.add_hook(event, after)  # type: ignore[arg-type]
    injector.provide(Config)
    injector.provide(Database)
    with caplog.at_level(logging.ERROR, logger="di"):
        db = injector.invoke(Database)
        report = injector.shutdown()
    assert db.closed and report.ok
    assert after.names("Database") == ["building", "built", "shutting_down", "shut_down"]
    failures = [r for r in caplog.records if "hook" in r.getMessage()]
    assert len(failures) == 8  # 2 services x 4 events, each logged with its traceback
    assert all(r.exc_info for r in failures)
    messages = [r.getMessage() for r in failures]
    assert any("'built' hook" in m and "Database' of scope 'root'" in m for m in messages)


def test_shutdown_events_carry_the_hooks_failure_and_the_report_agrees() -> None:
    injector, seen = hooked("shut_down")

    class Leaky:
        def shutdown(self) -> None:
            raise OSError("socket already closed")

    injector.provide(Leaky)
    injector.invoke(Leaky)
    with pytest.raises(ShutdownError) as raised:
        injector.shutdown()
    (event,) = seen.events
    assert isinstance(event.error, OSError)
    assert raised.value.report.failed[0].error is event.error


def test_remove_hook_and_refusals_name_the_fix() -> None:
    injector, seen = hooked("built")
    injector.remove_hook("built", seen)
    injector.provide(Config)
    injector.invoke(Config)
    assert seen.events == []
    with pytest.raises(ValueError, match="that hook was not added"):
        injector.remove_hook("built", seen)
    with pytest.raises(ValueError, match="no such event; the events are 'provided'"):
        injector.add_hook("invoked", seen)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        injector.add_hook("built", "log")  # type: ignore[arg-type]

    async def asynchronous(event: HookEvent) -> None: ...

    with pytest.raises(TypeError, match="never awaited; pass a plain function"):
        injector.add_hook("built", asynchronous)


def test_compiled_transient_builders_tell_build_hooks_added_later_and_stop_once_removed() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(Repo)
    injector.provide_transient(Handler)
    injector.invoke(Handler)  # compiled now, without hooks
    seen = Recorder()
    for event in ("building", "built"):
        injector.add_hook(event, seen)  # type: ignore[arg-type]
    handler = injector.invoke(Handler)
    assert [(e.name, e.key.rsplit(".", 1)[1]) for e in seen.events] == [
        ("building", "Handler"),  # before its dependencies, as the general path
        ("building", "Repo"),
        ("built", "Repo"),
        ("built", "Handler"),
    ]
    assert seen.events[-1].instance is handler and seen.events[2].instance is handler.repo
    outer, inner = seen.events[-1].duration, seen.events[2].duration
    assert outer is not None and inner is not None and outer >= inner  # dependencies included
    for event in ("building", "built"):
        injector.remove_hook(event, seen)  # type: ignore[arg-type]
    injector.invoke(Handler)
    assert len(seen.events) == 4


def test_a_failing_transient_is_told_and_so_is_what_needed_it() -> None:
    injector, seen = hooked("build_failed")
    injector.provide_transient(Broken)

    class NeedsBroken:
        def __init__(self, broken: Broken) -> None: ...

    injector.provide_transient(NeedsBroken)
    for _ in range(2):  # the general path, then the compiled builder
        with pytest.raises(ConnectionError):
            injector.invoke(NeedsBroken)
    assert [e.key.rsplit(".", 1)[1] for e in seen.events] == [
        "Broken",
        "NeedsBroken",
        "Broken",
        "NeedsBroken",
    ]
    assert all(isinstance(e.error, ConnectionError) for e in seen.events)


async def test_request_scopes_tell_scoped_builds_and_their_shutdowns() -> None:
    closed: list[str] = []

    def open_session(config: Config) -> Iterator[Repo]:
        yield Repo(Database(config))
        closed.append("session")

    injector, seen = hooked("built", "shut_down")
    injector.provide(Config)
    injector.provide_scoped(open_session)
    for _ in range(3):
        async with injector.scope() as request:
            session = await request.ainvoke(Repo)
    assert closed == ["session"] * 3
    scoped = [e for e in seen.events if e.key.endswith("Repo")]
    assert [e.name for e in scoped] == ["built", "shut_down"] * 3
    assert scoped[-1].instance is session and scoped[-1].scope == request.name


def test_a_plain_request_scope_tells_shutdown_hooks_of_what_it_dropped() -> None:
    injector, seen = hooked("shut_down")
    injector.provide(Config)
    injector.provide_scoped(Repo, provides=Repo)
    injector.provide(Database)
    with injector.scope() as request:
        repo = request.invoke(Repo)  # a compiled builder, nothing with a shutdown hook
    assert [(e.key.rsplit(".", 1)[1], e.instance) for e in seen.events] == [("Repo", repo)]


async def test_hooks_run_in_the_thread_or_task_doing_the_work_threads_and_tasks_at_once() -> None:
    doer: contextvars.ContextVar[str] = contextvars.ContextVar("doer")  # per thread, per task
    injector = Injector()
    seen: list[tuple[str, str, str | None]] = []
    lock = threading.Lock()

    def hook(event: HookEvent) -> None:
        with lock:
            seen.append((event.name, event.key.rsplit(".", 1)[-1], doer.get(None)))

    injector.add_hook("building", hook)
    injector.add_hook("built", hook)
    injector.provide(Config)
    injector.provide_transient(Repo)
    injector.provide(Database)
    for n in range(8):

        async def build_async(n: int = n) -> Database:
            await anyio.sleep(0)  # the other tasks run meanwhile
            return Database(Config())

        injector.provide(build_async, name=f"async-{n}")
    started = threading.Barrier(9, timeout=PATIENCE)

    def in_thread(n: int) -> None:
        doer.set(f"thread-{n}")
        started.wait()
        for _ in range(20):
            injector.invoke(Repo)

    async def in_task(n: int) -> None:
        doer.set(f"task-{n}")
        await injector.ainvoke(Database, name=f"async-{n}")

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    async with anyio.create_task_group() as tasks:
        for n in range(8):
            tasks.start_soon(in_task, n)
        await anyio.to_thread.run_sync(started.wait)
    for thread in threads:
        thread.join(PATIENCE)
    # Each thread's 20 transients, told in that thread; Config and Database, built once,
    # in whichever thread built them first; each task's build, in that task.
    for n in range(8):
        mine = [(name, key) for name, key, who in seen if who == f"thread-{n}"]
        assert mine.count(("building", "Repo")) == mine.count(("built", "Repo")) == 20
        told = [(name, key) for name, key, who in seen if who == f"task-{n}"]
        assert told == [("building", f"async-{n}"), ("built", f"async-{n}")]
    singletons = [(name, key) for name, key, _ in seen if key in ("Config", "Database")]
    assert sorted(singletons) == sorted(
        [
            ("building", "Config"),
            ("built", "Config"),
            ("building", "Database"),
            ("built", "Database"),
        ]
    )
    assert all(who is not None for _, _, who in seen)


def test_a_clone_keeps_the_hooks_and_a_child_added_meanwhile_gets_them() -> None:
    injector, seen = hooked("built")
    injector.provide(Config)
    clone = injector.clone()
    clone.invoke(Config)
    assert seen.names() == ["built"]
    child = injector.scope()
    other = Recorder()
    injector.add_hook("built", other)  # after the child was opened
    child.provide(Repo)
    injector.provide(Database)
    child.invoke(Repo)
    assert [e.key.rsplit(".", 1)[1] for e in other.events] == ["Config", "Database", "Repo"]


async def test_async_generator_factories_tell_their_build_and_shutdown() -> None:
    async def open_database(config: Config) -> AsyncIterator[Database]:
        db = Database(config)
        yield db
        db.closed = True

    injector, seen = hooked("built", "shutting_down", "shut_down")
    injector.provide(Config)
    injector.provide(open_database)
    db = await injector.ainvoke(Database)
    await injector.ashutdown()
    assert db.closed
    assert seen.names("Database") == ["built", "shutting_down", "shut_down"]


class Halt(BaseException):
    """What a hook raises when the program is being stopped: no ``Exception``."""


def _invoke_in_thread(injector: Injector, key: type) -> list[object]:
    """``injector.invoke(key)`` in another thread, which must return within PATIENCE."""
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(injector.invoke(key)), daemon=True)
    worker.start()
    worker.join(PATIENCE)
    assert not worker.is_alive(), "the build was left claimed: invoke hangs"
    return got


def test_a_building_hook_that_stops_the_program_leaves_no_build_claimed() -> None:
    injector = Injector()
    injector.provide(Config)

    def stop(event: HookEvent) -> None:
        raise Halt

    injector.add_hook("building", stop)
    with pytest.raises(Halt):
        injector.invoke(Config)
    injector.remove_hook("building", stop)
    (config,) = _invoke_in_thread(injector, Config)  # built anew, nothing left in flight
    assert isinstance(config, Config) and injector.invoke(Config) is config


async def test_an_async_building_hook_that_stops_the_program_leaves_no_build_claimed() -> None:
    injector = Injector()
    injector.provide(Config)

    def stop(event: HookEvent) -> None:
        raise Halt

    injector.add_hook("building", stop)
    with pytest.raises(Halt):
        await injector.ainvoke(Config)
    injector.remove_hook("building", stop)
    with anyio.fail_after(PATIENCE):
        config = await injector.ainvoke(Config)
    assert injector.invoke(Config) is config


@pytest.mark.parametrize("event", ["shutting_down", "shut_down"])
def test_a_shutdown_hook_that_stops_the_program_still_lets_every_service_shut_down(
    event: str,
) -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    db = injector.invoke(Database)
    told: list[str] = []

    def stop(happened: HookEvent) -> None:
        told.append(happened.key)
        raise Halt

    injector.add_hook(event, stop)  # type: ignore[arg-type]
    with pytest.raises(Halt):  # re-raised once every service was shut down
        injector.shutdown()
    assert db.closed and len(told) == 2  # Database's hook ran, and Config was told too
    injector.remove_hook(event, stop)  # type: ignore[arg-type]
    assert injector.shutdown().services == ()  # nothing left behind for a later call
    assert injector.invoke(Database) is not db  # the injector reopened: it builds anew


async def test_an_async_shutdown_hook_that_stops_the_program_lets_every_service_shut_down() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    db = injector.invoke(Database)

    def stop(happened: HookEvent) -> None:
        raise Halt

    injector.add_hook("shutting_down", stop)
    with pytest.raises(Halt):
        await injector.ashutdown()
    injector.remove_hook("shutting_down", stop)
    assert db.closed and (await injector.ashutdown()).services == ()
    assert injector.invoke(Database) is not db


def test_a_scope_opened_while_a_hook_is_added_gets_it() -> None:
    """A request scope opens without the lock while another thread adds a hook: the
    scope is published after the hook's scope listed its children, and checks whether
    a provider or a hook changed before the adding thread says so. It must still get
    the hook: whichever way they interleave, one of the two sees the other."""
    injector = Injector()
    injector.provide(Config)
    injector.provide_transient(Repo)
    injector.provide(Database)
    injector.scope().shutdown()  # the plan request scopes share, made
    seen = Recorder()
    listed, checked = threading.Event(), threading.Event()
    adding = threading.Thread(target=lambda: injector.add_hook("built", seen))
    version = injector._version

    class Children(dict[object, object]):
        """The root's children, pausing at the steps the race is between."""

        armed = True

        def __setitem__(self, key: object, child: object) -> None:
            if self.armed:  # the opening thread, about to publish its child
                adding.start()
                assert listed.wait(PATIENCE)
            super().__setitem__(key, child)

        def values(self) -> Any:
            found = list(super().values())
            if self.armed:  # the adding thread, listing the children to tell
                self.armed = False
                listed.set()
                if injector._version == version:  # nothing says a hook changed yet
                    assert checked.wait(PATIENCE)
            return found

    injector._children = Children()
    child = injector.scope()
    checked.set()
    adding.join(PATIENCE)
    child.invoke(Repo)
    assert (child.name, "built") in [(e.scope, e.name) for e in seen.events]
