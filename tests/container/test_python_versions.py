"""What differs between the Python versions the package supports, 3.11 to 3.13.

`make test` runs the whole suite on each of them; these tests pin the differences:

- Type aliases: 3.12's ``type DB = Database`` makes an alias object where 3.11's
  ``DB: TypeAlias = Database`` is the class itself (``typing_extensions.TypeAliasType``
  makes one on 3.11 too). Keys read through aliases, as type checkers do.
- asyncio task factories: 3.12's eager tasks run a task's first step inside
  ``create_task``, before the caller gets the task back; the container's async paths
  run under them.
- Threads at exit: 3.12.0 and 3.12.1 start no thread in an ``atexit`` callback (3.12.2
  and 3.13 do again); a shutdown made there runs its hooks all the same.
- The GIL: a free-threaded 3.13 build may run without it, and scopes then take the
  locked path to open.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import threading
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

import di.scope
from di import HealthMonitor, Injector, ServiceNotFoundError
from di._container.runner import Threads

from ..processes import ROOT
from ..timing import PATIENCE

NEW_IN_312 = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="new in Python 3.12; this runs Python 3.11"
)

# -- type aliases -------------------------------------------------------------------------

# One program, its aliases written either way, run as a module: `program()`.
ALIAS_SYNTAX = {
    "type statement": "type {name} = {value}",
    "TypeAliasType": "{name} = TypeAliasType('{name}', {value})",
}

ALIASES = {
    "DB": "Database",
    "Primary": 'Annotated[Database, Named("primary")]',
    "Connection": "Iterator[DB]",
    "Later": "'Undefined'",  # a forward reference: TypeAliasType() evaluates its value
}

PROGRAM = """
from collections.abc import Iterator
from typing import Annotated, TypeVar

from typing_extensions import TypeAliasType

from di import Named

T = TypeVar("T")


class Database:
    def __init__(self, url: str = "sqlite://") -> None:
        self.url = url


{aliases}


class Orders:
    def __init__(self, db: DB, primary: Primary, maybe: DB | None = None) -> None:
        self.db, self.primary, self.maybe = db, primary, maybe


def open_database() -> Connection:
    yield Database("opened")
    closed.append("database")


def made() -> DB:
    return Database("made")


class Report:
    def __init__(self, source: Later) -> None:
        self.source = source


closed = []
"""


@pytest.fixture
def program(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """Runs the program as module ``aliased``, its aliases written in ``syntax``, with
    annotations evaluated as functions are defined unless ``postponed``."""

    def run(syntax: str, postponed: bool = False) -> dict[str, Any]:
        aliases = [ALIAS_SYNTAX[syntax].format(name=k, value=v) for k, v in ALIASES.items()]
        if syntax == "TypeAliasType":  # no type parameter syntax before 3.12: spelled out
            aliases.append("Pool = TypeAliasType('Pool', list[T], type_params=(T,))")
        else:
            aliases.append("type Pool[T] = list[T]")
        source = PROGRAM.format(aliases="\n".join(aliases))
        if postponed:
            source = "from __future__ import annotations\n" + source
        module = types.ModuleType("aliased")
        monkeypatch.setitem(sys.modules, "aliased", module)
        exec(compile(source, "aliased.py", "exec", dont_inherit=True), vars(module))
        return vars(module)

    return run


SYNTAXES = [
    pytest.param("type statement", marks=NEW_IN_312, id="type-statement"),
    pytest.param("TypeAliasType", id="TypeAliasType"),
]
POSTPONED = pytest.mark.parametrize("postponed", [False, True], ids=["now", "postponed"])


@pytest.mark.parametrize("syntax", SYNTAXES)
@POSTPONED
def test_a_parameter_annotated_with_an_alias_gets_what_the_alias_stands_for(
    program: Callable[..., dict[str, Any]], syntax: str, postponed: bool
) -> None:
    code = program(syntax, postponed)
    with Injector() as injector:
        injector.provide(code["Database"])
        injector.provide_value(code["Database"]("primary"), name="primary")
        injector.provide(code["Orders"])
        orders = injector.invoke(code["Orders"])
        assert orders.db is injector.invoke(code["Database"])
        assert orders.primary.url == "primary"  # Annotated[..., Named()] inside the alias
        assert orders.maybe is orders.db  # DB | None asks for the Database


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_a_factory_returning_an_alias_provides_what_the_alias_stands_for(
    program: Callable[..., dict[str, Any]], syntax: str
) -> None:
    code = program(syntax)
    Database = code["Database"]
    with Injector() as injector:
        injector.provide(code["open_database"])  # -> Connection, an alias of Iterator[DB]
        assert injector.list_provided() == ["aliased.Database"]
        assert injector.invoke(Database).url == "opened"
    assert code["closed"] == ["database"]  # the code after its yield ran
    with Injector() as injector:
        injector.provide(code["made"])  # -> DB
        assert injector.invoke(Database).url == "made"


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_invoke_and_provides_take_an_alias_for_what_it_stands_for(
    program: Callable[..., dict[str, Any]], syntax: str
) -> None:
    code = program(syntax)
    Database, DB = code["Database"], code["DB"]
    with Injector() as injector:
        database = Database()
        injector.provide_value(database, provides=DB)
        injector.provide_value(Database("replica"), name="replica")
        assert injector.invoke(Database) is database
        assert injector.invoke(DB) is database
        assert injector.invoke(DB, name="replica").url == "replica"


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_a_generic_alias_is_a_key_of_its_own(
    program: Callable[..., dict[str, Any]], syntax: str
) -> None:
    Pool = program(syntax)["Pool"]
    with Injector() as injector:
        injector.provide_value([1, 2], provides=Pool)
        assert injector.invoke(Pool) == [1, 2]
        with pytest.raises(ServiceNotFoundError):
            injector.invoke(list)


@pytest.mark.parametrize("syntax", SYNTAXES)
@POSTPONED
def test_an_alias_of_what_is_not_defined_yet_waits_like_a_quoted_annotation(
    program: Callable[..., dict[str, Any]], syntax: str, postponed: bool
) -> None:
    code = program(syntax, postponed)
    with Injector() as injector:
        injector.provide(code["Report"])  # its parameter's alias names Undefined
        with pytest.raises(TypeError) as caught:
            injector.invoke(code["Report"])
        message = str(caught.value)
        assert message.startswith("factory Report: ") and "parameter 'source'" in message
        assert "type alias Later: name 'Undefined' is not defined; define what it names" in message

    class Undefined:
        pass

    code["Undefined"] = Undefined
    with Injector() as injector:
        injector.provide(code["Report"])
        injector.provide(Undefined)
        assert isinstance(injector.invoke(code["Report"]).source, Undefined)


# -- asyncio task factories ---------------------------------------------------------------


def eager_loop() -> Any:
    import asyncio

    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    return loop


@pytest.fixture(
    params=[
        pytest.param("asyncio"),
        pytest.param(("asyncio", {"loop_factory": eager_loop}), marks=NEW_IN_312, id="eager"),
        pytest.param("trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio, asyncio with eager tasks (3.12 and later), and trio."""
    return request.param


class Slow:
    """Built once however many tasks ask for it at the same time."""

    builds = 0


class Pool:
    """Its async shutdown hook waits to be let go: a cancellation arrives meanwhile."""

    def __init__(self) -> None:
        self.hook_running, self.may_end = anyio.Event(), anyio.Event()
        self.closed = False

    async def health_check(self) -> None:
        await anyio.sleep(0)

    async def shutdown(self) -> None:
        self.hook_running.set()
        await self.may_end.wait()
        self.closed = True


class Connection:
    pass


@pytest.mark.anyio
async def test_the_async_paths_run_under_every_task_factory() -> None:
    started, release = anyio.Event(), anyio.Event()
    events: list[str] = []

    async def build_slow() -> Slow:
        Slow.builds += 1
        started.set()
        await release.wait()
        return Slow()

    async def connect(pool: Pool) -> AsyncIterator[Connection]:
        try:
            yield Connection()
        except BaseException:
            events.append("rolled back")  # the block's cancellation, thrown at the yield
            raise
        events.append("committed")

    Slow.builds = 0
    injector = Injector()
    injector.provide(build_slow)
    injector.provide(Pool, eager=True)
    injector.provide(connect)
    got: list[Slow] = []

    async def invoke_slow() -> None:
        got.append(await injector.ainvoke(Slow))

    with anyio.fail_after(PATIENCE):
        await injector.astart()
        pool = await injector.ainvoke(Pool)
        async with anyio.create_task_group() as tasks:
            for _ in range(5):  # eager tasks take their first step here, in start_soon
                tasks.start_soon(invoke_slow)
            await started.wait()
            release.set()
        assert Slow.builds == 1 and len(got) == 5 and len({id(slow) for slow in got}) == 1
        await injector.ainvoke(Connection)

        assert await injector.ahealth_check() == {f"{__name__}.Pool": None}
        async with HealthMonitor(injector) as monitor:
            await monitor.wait_ready()
            assert monitor.ready

        # The block is cancelled: its shutdown hooks finish before the cancellation goes on.
        block, entered = anyio.CancelScope(), anyio.Event()

        async def hold() -> None:
            with block:
                async with injector:
                    entered.set()
                    await anyio.sleep_forever()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold)
            await entered.wait()
            block.cancel()
            await pool.hook_running.wait()
            assert not pool.closed
            pool.may_end.set()
    assert block.cancelled_caught
    assert events == ["rolled back"] and pool.closed


# -- threads at interpreter exit ------------------------------------------------------------

AT_EXIT = """
import atexit, threading
from collections.abc import Iterator
from di import Injector

class Database:
    pass

def open_database() -> Iterator[Database]:
    yield Database()
    print("closed in", "the main thread" if threading.current_thread() is
          threading.main_thread() else "a worker thread", flush=True)

injector = Injector()
injector.provide(open_database)
injector.invoke(Database)
atexit.register(injector.shutdown)
"""


def test_a_shutdown_at_interpreter_exit_runs_its_hooks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", AT_EXIT], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # Where 3.12.0 and 3.12.1 refuse a new thread, the hook runs in the caller's.
    refused = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 2)
    where = "the main thread" if refused else "a worker thread"
    assert done.stdout == f"closed in {where}\n"


def test_a_worker_thread_that_cannot_start_otherwise_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only at exit does a job run in the caller: elsewhere a refused thread is raised."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ran: list[str] = []
    with pytest.raises(RuntimeError, match="can't start new thread"):
        Threads("test").submit(lambda: ran.append("the job"))
    assert ran == []


# -- the GIL -------------------------------------------------------------------------------


def test_scopes_open_lock_free_where_the_gil_is_on() -> None:
    """The standard builds have the GIL (``sys._is_gil_enabled`` is new in 3.13); a
    free-threaded build may run without it, and then scopes open under the lock."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert di.scope._GIL is sys._is_gil_enabled()  # type: ignore[attr-defined,unused-ignore]
    else:
        assert di.scope._GIL is True
