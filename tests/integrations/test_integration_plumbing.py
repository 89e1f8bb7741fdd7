"""What every integration shares: the injection marker, parser and wrapper, the start/stop
sequence, and the thread that hosts an event loop for sync frameworks."""

from __future__ import annotations

import gc
import inspect
import subprocess
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import pytest

from di import HealthMonitor, Injector, Named, ServingStatus
from di._container.runner import LoopThread, in_thread
from di.integrations._inject import INJECT, injected_params, wrap
from di.integrations._lifecycle import AppLifetime, Running, monitor_for

from ..services import Database
from ..timing import PATIENCE, at_most

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[2]


class Store:
    pass


def make() -> Injector:
    injector = Injector()
    injector.provide(Store)
    injector.provide_value("the replica", name="replica")
    return injector


# -- one marker, one parser, one wrapper --------------------------------------------------


def test_every_integrations_inject_carries_the_one_marker() -> None:
    from di.integrations import fastapi, flask, grpc

    def view(a: Any, b: Any, c: Any, plain: Any, other: Any) -> None: ...

    view.__annotations__ = {  # as the annotations read, once evaluated
        "a": flask.Inject[Store],
        "b": grpc.Inject[Annotated[str, Named("replica")]],
        "c": fastapi.Inject[Store],
        "plain": Store,
        "other": Annotated[Store, "something else"],
    }
    assert injected_params(view) == {"a": (Store, None), "b": (str, "replica"), "c": (Store, None)}
    assert repr(INJECT) == "Inject"


def test_the_core_inject_imports_no_framework_and_joins_fastapi_once_it_is_loaded() -> None:
    """``di.Inject`` is the FastAPI integration's ``Inject``: made in a script, it carries
    the marker alone and loads no framework; once FastAPI is loaded, it also carries
    the dependency FastAPI solves, so a FastAPI app of any shape reads it."""
    code = (
        "import sys\n"
        "from di import Inject, Injector\n"
        "class Store: ...\n"
        "plain = Inject[Store]\n"
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules\n"
        "assert [repr(m) for m in plain.__metadata__] == ['Inject']\n"
        "import fastapi\n"
        "from fastapi.params import Depends\n"
        "joined = Inject[Store]\n"
        "assert joined is not plain and repr(joined.__metadata__[-1]) == 'Inject'\n"
        "assert isinstance(joined.__metadata__[0], Depends)\n"
        "import di.integrations.fastapi as integration\n"
        "assert integration.Inject is Inject\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_an_inject_made_before_fastapi_was_loaded_says_so_where_fastapi_cannot_read_it() -> None:
    """An ``Inject[T]`` evaluated before FastAPI was imported carries no dependency:
    an async endpoint still gets it (the app's route class fills it), but where FastAPI
    itself must solve it (a sync endpoint, a dependency) adding the route fails with an
    error that says why and what to do, not as a field FastAPI cannot validate."""
    code = (
        "from di import Inject, Injector\n"
        "class Store: ...\n"
        "StoreDep = Inject[Store]\n"
        "def name_of(store: StoreDep) -> str:\n"
        "    return type(store).__name__\n"
        "def synchronous(store: StoreDep) -> str:\n"
        "    return type(store).__name__\n"
        "from fastapi import Depends, FastAPI\n"
        "from fastapi.testclient import TestClient\n"
        "from di.integrations.fastapi import install\n"
        "injector = Injector()\n"
        "injector.provide(Store)\n"
        "app = FastAPI()\n"
        "install(app, injector)\n"
        "@app.get('/async')\n"
        "async def asynchronous(store: StoreDep) -> str:\n"
        "    return type(store).__name__\n"
        "async def depending(name: str = Depends(name_of)) -> str:\n"
        "    return name\n"
        "for path, endpoint in (('/sync', synchronous), ('/dependency', depending)):\n"
        "    try:\n"
        "        app.get(path)(endpoint)\n"
        "    except TypeError as error:\n"
        "        print(path, error)\n"
        "with TestClient(app) as client:\n"
        "    print(client.get('/async').json())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["/sync", "/dependency", "Store"]
    for line in lines[:2]:
        assert "Inject[__main__.Store] was evaluated before fastapi was imported" in line
        assert "from __future__ import annotations" in line


def test_the_parser_refuses_what_cannot_be_passed_by_keyword_and_waits_for_late_names() -> None:
    def positional(store: Annotated[Store, INJECT], /) -> None: ...

    with pytest.raises(TypeError, match="'store' is injected, so it is passed by keyword"):
        injected_params(positional)

    def late(thing: Annotated[NotYet, INJECT]) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(NameError):
        injected_params(late)


def scope_of(injector: Injector) -> Any:
    def get_scope(kwargs: dict[str, Any]) -> Any:
        assert kwargs.pop("request") == "the request"  # an extra parameter: taken out
        return injector

    return get_scope


REQUEST = inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY)


async def test_one_wrapper_for_functions_coroutines_and_both_kinds_of_generators() -> None:
    injector = make()
    store = injector.invoke(Store)

    def call(n: int, s: Annotated[Store, INJECT], r: Annotated[str, INJECT, Named("replica")]):  # type: ignore[no-untyped-def]
        return n, s, r

    async def acall(n: int, s: Annotated[Store, INJECT]) -> Any:
        return n, s

    def gen(n: int, s: Annotated[Store, INJECT]) -> Iterator[Any]:
        yield n
        yield s

    async def agen(n: int, s: Annotated[Store, INJECT]) -> AsyncIterator[Any]:
        yield n
        yield s

    get_scope = scope_of(injector)
    wrapped = [wrap(f, get_scope, extra=(REQUEST,)) for f in (call, acall, gen, agen)]
    for function, original in zip(wrapped, (call, acall, gen, agen), strict=True):
        assert list(inspect.signature(function).parameters) == ["n", "request"]
        assert function.__name__ == original.__name__
    assert wrapped[0](1, request="the request") == (1, store, "the replica")
    assert await wrapped[1](2, request="the request") == (2, store)
    assert inspect.isgeneratorfunction(wrapped[2])
    assert list(wrapped[2](3, request="the request")) == [3, store]
    assert inspect.isasyncgenfunction(wrapped[3])
    assert [item async for item in wrapped[3](4, request="the request")] == [4, store]


def test_the_wrapper_reads_late_annotations_at_the_first_call_and_can_require_one() -> None:
    injector = make()

    def view(thing: Annotated[Later, INJECT]) -> Any:  # type: ignore[name-defined]
        return thing

    wrapped = wrap(view, lambda kwargs: injector)
    assert list(inspect.signature(wrapped).parameters) == ["thing"]  # not read yet

    class Later:
        pass

    globals()["Later"] = Later
    try:
        injector.provide(Later)
        assert isinstance(wrapped(), Later)
    finally:
        del globals()["Later"]

    def bare(n: int) -> int:
        return n

    with pytest.raises(TypeError, match=r"@inject: .*bare has no Inject"):
        wrap(bare, lambda kwargs: injector, required="@inject")
    assert wrap(bare, lambda kwargs: injector)(5) == 5


# -- one start/stop sequence --------------------------------------------------------------


class Recorder:
    """A checked service whose shutdown records the statuses it saw."""

    events: list[str]
    monitor: HealthMonitor

    def health_check(self) -> None:
        pass

    def shutdown(self) -> None:
        status = self.monitor.status("")
        self.events.append(f"shut down, monitor running: {self.monitor.running}, {status!r}")


async def test_the_sequence_starts_then_goes_not_serving_drains_stops_then_shuts_down() -> None:
    injector = Injector()
    injector.provide(Recorder, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    events: list[str] = []

    async def stopping() -> None:
        events.append(f"stopping, status {monitor.status('')!r}")

    running = Running(injector, monitor, drain=0.1, stopping=stopping)
    async with running:
        recorder = injector.invoke(Recorder)
        recorder.events, recorder.monitor = events, monitor
        assert monitor.started
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()
        assert monitor.status("") is ServingStatus.SERVING
    assert events == [
        f"stopping, status {ServingStatus.NOT_SERVING!r}",
        f"shut down, monitor running: False, {ServingStatus.NOT_SERVING!r}",
    ]
    with pytest.raises(RuntimeError, match="enter it once"):
        await running.__aenter__()


async def test_a_sequence_cancelled_while_it_stops_still_stops_and_shuts_down() -> None:
    # A server stopping by force while the app drains: the monitor's task group is
    # still left, and the hooks still run, before the cancellation goes on.
    injector = Injector()
    injector.provide(Recorder, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    events: list[str] = []
    with anyio.CancelScope() as outer:
        async with Running(injector, monitor, drain=PATIENCE):
            recorder = injector.invoke(Recorder)
            recorder.events, recorder.monitor = events, monitor
            outer.cancel()
    assert outer.cancelled_caught
    assert events == [f"shut down, monitor running: False, {ServingStatus.NOT_SERVING!r}"]
    with anyio.move_on_after(0.01) as later:  # the caller's cancel scopes still work
        await anyio.sleep_forever()
    assert later.cancelled_caught


class First:
    built: list[str]

    def __init__(self) -> None:
        self.built.append("first")

    def shutdown(self) -> None:
        self.built.append("first shut down")


class Broken:
    def __init__(self, first: First) -> None:
        raise ConnectionError("no broker")


async def test_a_failed_start_shuts_down_what_it_built_and_raises() -> None:
    built = First.built = []
    injector = Injector()
    injector.provide(First, eager=True)
    injector.provide(Broken, eager=True)
    monitor = HealthMonitor(injector)
    with pytest.raises(ConnectionError, match="no broker"):
        async with Running(injector, monitor):
            raise AssertionError("never entered")
    assert built == ["first", "first shut down"] and not monitor.running


async def test_a_monitor_already_running_is_left_to_whoever_runs_it() -> None:
    injector = Injector()
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    async with monitor:
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()  # its rounds run
        async with Running(injector, monitor):
            assert monitor.running
        assert monitor.running  # not ours to stop
        assert monitor.status("") is ServingStatus.NOT_SERVING  # but NOT_SERVING for good


def test_install_takes_a_monitor_of_the_injector_it_is_given() -> None:
    injector = Injector()
    assert monitor_for(injector, None).injector is injector
    mine = HealthMonitor(injector)
    assert monitor_for(injector, mine) is mine
    with pytest.raises(ValueError, match="checks another injector"):
        monitor_for(Injector(), mine)
    with pytest.raises(TypeError, match="needs an Injector or Scope"):
        monitor_for("injector", None)  # type: ignore[arg-type]


# -- one thread runner ------------------------------------------------------------------


def test_a_loop_thread_holds_a_context_until_stopped_and_reports_its_failures() -> None:
    events: list[str] = []
    thread_names: list[str] = []

    @asynccontextmanager
    async def context(fail_exit: bool = False) -> AsyncIterator[None]:
        thread_names.append(threading.current_thread().name)
        events.append("entered")
        yield
        events.append("left")
        if fail_exit:
            raise ConnectionError("hook failed")

    loop = LoopThread("test-loop")
    loop.start(context)
    assert loop.alive and events == ["entered"] and thread_names == ["test-loop"]
    assert loop.stop(timeout=5) and events == ["entered", "left"] and not loop.alive
    assert loop.stop(timeout=5)  # once stopped, stopped
    with pytest.raises(RuntimeError, match="started once"):
        loop.start(context)

    failing = LoopThread("test-loop")
    failing.start(lambda: context(fail_exit=True))
    with pytest.raises(ConnectionError, match="hook failed"):
        failing.stop()
    assert failing.stop(timeout=5)  # raised once

    @asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        raise ConnectionError("no database")
        yield

    with pytest.raises(ConnectionError, match="no database"):
        LoopThread("test-loop").start(broken)


def test_stopping_a_loop_thread_is_bounded_and_can_wait_again() -> None:
    release = threading.Event()

    @asynccontextmanager
    async def slow_to_leave() -> AsyncIterator[None]:
        yield
        await anyio.to_thread.run_sync(release.wait)

    loop = LoopThread("test-loop", backend="trio")
    loop.start(slow_to_leave)
    assert not loop.stop(timeout=0.5)  # still leaving
    release.set()
    assert loop.stop(timeout=10) and not loop.alive


def test_an_apps_lifetime_on_its_thread_starts_after_a_first_round_and_closes_once() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    closings: list[AppLifetime] = []
    lifetime = AppLifetime(injector, monitor, closing=closings.append)
    lifetime.start()
    assert lifetime.started and not lifetime.done
    assert lifetime.loop is not None and lifetime.loop.name == "healthdi-monitor"
    assert monitor.status("") is ServingStatus.SERVING  # the first round is done
    database = injector.invoke(Database)
    lifetime.close()
    lifetime.close()  # only the first call does anything
    assert closings == [lifetime] and lifetime.done and database.closed
    assert not monitor.running and not lifetime.loop.alive


async def test_an_apps_lifetime_on_the_running_loop_starts_and_closes_once() -> None:
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    closings: list[AppLifetime] = []
    lifetime = AppLifetime(injector, monitor, closing=closings.append)
    await lifetime.astart()
    assert lifetime.started and lifetime.loop is None and monitor.running  # no thread
    with anyio.fail_after(PATIENCE):
        await monitor.wait_ready()
    database = injector.invoke(Database)
    await lifetime.aclose()
    await lifetime.aclose()
    assert closings == [lifetime] and lifetime.done and database.closed
    assert not monitor.running


def test_an_apps_lifetime_that_fails_to_start_raises_and_builds_nothing_more() -> None:
    built = First.built = []
    injector = Injector()
    injector.provide(First, eager=True)
    injector.provide(Broken, eager=True)
    lifetime = AppLifetime(injector, HealthMonitor(injector))
    with pytest.raises(ConnectionError, match="no broker"):
        lifetime.start()
    assert not lifetime.started and built == ["first", "first shut down"]


async def test_in_thread_without_a_pool_uses_asyncios_default_executor(
    anyio_backend: str,
) -> None:
    here = threading.current_thread()
    if anyio_backend == "asyncio":
        assert await in_thread(None, threading.current_thread) is not here
    else:
        with pytest.raises(RuntimeError, match="needs a running asyncio loop"):
            await in_thread(None, threading.current_thread)


async def test_services_survive_a_database_check_under_the_sequence() -> None:
    """The sequence's rounds check what the start built, until it is left."""
    injector = Injector()
    injector.provide(Database, eager=True)
    monitor = HealthMonitor(injector, interval=0.05, timeout=at_most(0))
    async with Running(injector, monitor):
        with anyio.fail_after(PATIENCE):
            await monitor.wait_ready()
        assert injector.invoke(Database).checks >= 1
    assert injector.list_invoked() == []  # shut down


# -- LazyScope: a unit of work's scope, opened on first use --------------------------------


def lazy_slot() -> tuple[Any, Any]:
    from di.integrations._lifecycle import LazyScope

    from .units import Ledger, unit_of_work

    ledger = Ledger()
    injector = Injector()
    injector.provide_value(ledger)
    injector.provide_scoped(unit_of_work)
    injector.provide_context(Store)
    return LazyScope(injector, Store, Store(), unit="task"), ledger


def test_a_slot_opened_by_two_threads_at_once_opens_one_scope_and_closes_it() -> None:
    from .units import Work

    slot, ledger = lazy_slot()
    both = threading.Barrier(2, timeout=PATIENCE)
    slot.guard = both.wait  # both threads are inside open() before either opens
    opened: list[Any] = []

    def open_and_build() -> None:
        scope = slot.open()
        opened.append(scope)
        scope.invoke(Work)

    threads = [threading.Thread(target=open_and_build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(opened) == 2
    assert opened[0] is opened[1]
    slot.close()
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (1, 1, 0)


def test_a_slot_asked_for_its_scope_after_its_work_ended_names_the_work() -> None:
    from di.errors import ScopeClosedError

    slot, _ = lazy_slot()
    slot.close()
    with pytest.raises(ScopeClosedError) as raised:
        slot.open()
    message = str(raised.value)
    assert "after the task ended" in message
    assert "while the task runs" in message
    assert "injector's shutdown" not in message  # no injector is shutting down


def test_a_failure_that_is_false_still_rolls_back() -> None:
    from .units import Work

    class Empty(Exception):
        def __len__(self) -> int:
            return 0  # an exception that is also an empty container

    slot, ledger = lazy_slot()
    slot.open().invoke(Work)
    slot.close(Empty())
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (1, 0, 1)


def test_a_streamed_body_that_fails_to_start_ends_with_its_failure() -> None:
    from di.integrations._wsgi import Streamed

    class Unreadable:
        def __iter__(self) -> Iterator[bytes]:
            raise OSError("the file is gone")

    ends: list[BaseException | None] = []
    body = Streamed(Unreadable(), ends.append)
    with pytest.raises(OSError, match="the file is gone"):
        next(body)
    body.close()  # as the server does next
    assert len(ends) == 1
    assert isinstance(ends[0], OSError)


async def test_an_answered_request_leaves_nothing_for_the_garbage_collector() -> None:
    """A server's request cycle holds the ASGI scope and gives the app its own send
    (uvicorn's does): once answered, the request is freed at once, not left in a cycle
    through the request's slot for the garbage collector to find."""
    from di.integrations._asgi import SLOT, RequestScopes, scope_of

    class Cycle:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def send(self, message: Any) -> None:
            pass

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope_of(scope, scope, "test").invoke(Database) is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    injector = Injector()
    injector.provide(Database)
    middleware = RequestScopes(app, injector, lambda connection: {})
    gc.disable()
    try:
        scope: dict[str, Any] = {"type": "http"}
        cycle = Cycle(scope)
        await middleware(scope, receive, cycle.send)
        assert SLOT in scope
        gone = weakref.ref(cycle)
        del cycle, scope
        assert gone() is None, "the request's objects wait for the garbage collector"
    finally:
        gc.enable()
