"""Request scopes at their edges: shadowed context keys, bad context=, two threads on one
scope, a scope closed mid-build, bound keys beside nearer providers."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import anyio
import pytest

from di import Injector

from ..services import Request, key
from ..timing import PATIENCE, at_most, until, wait_until

# -- a scope's own provider for a context key it received wins -------------------------


def test_override_value_of_a_context_key_in_the_scope_is_used() -> None:
    injector = Injector()
    injector.provide_context(Request)
    with injector.scope(context={Request: Request("/real")}) as scope:
        fake = Request("/fake")
        scope.override_value(fake, provides=Request)
        assert scope.invoke(Request) is fake


def test_override_of_a_context_key_in_the_scope_is_used() -> None:
    injector = Injector()
    injector.provide_context(Request)
    with injector.scope(context={Request: Request("/real")}) as scope:
        scope.override(lambda: Request("/fake"), provides=Request)
        assert scope.invoke(Request).path == "/fake"


def test_provide_value_shadowing_a_context_key_in_the_scope_is_used() -> None:
    injector = Injector()
    injector.provide_context(Request)
    with injector.scope(context={Request: Request("/real")}) as scope:
        fake = Request("/fake")
        scope.provide_value(fake)
        assert scope.invoke(Request) is fake
        assert scope.list_invoked() == [key(Request)]


# -- context= that is not a mapping is refused ------------------------------------------


def test_context_list_of_pairs_is_refused_as_not_a_mapping() -> None:
    injector = Injector()
    injector.provide_context(Request)
    with pytest.raises(TypeError, match="mapping"):
        injector.scope(context=[[Request, Request("/")]])  # type: ignore[arg-type]


def test_context_empty_list_is_refused_as_not_a_mapping() -> None:
    injector = Injector()
    injector.provide_context(Request)
    with pytest.raises(TypeError, match="mapping"):
        injector.scope(context=[])  # type: ignore[arg-type]


# -- two threads asking one request scope build once -------------------------------------


def test_scoped_factory_runs_once_when_two_threads_invoke_one_request_scope() -> None:
    calls: list[int] = []

    class Slow:
        def __init__(self) -> None:
            calls.append(threading.get_ident())
            time.sleep(at_most(0))  # meanwhile the other thread asks for it too

    injector = Injector()
    injector.provide_scoped(Slow)
    with injector.scope() as warm:  # compiles the scoped builder
        warm.invoke(Slow)
    calls.clear()
    scope = injector.scope()
    seen: dict[str, Slow] = {}

    def other_thread() -> None:
        seen["other"] = scope.invoke(Slow)

    thread = threading.Thread(target=other_thread)
    thread.start()
    wait_until(lambda: calls, "the other thread's build to be under way")
    seen["own"] = scope.invoke(Slow)
    thread.join(PATIENCE)
    scope.shutdown()
    assert seen["own"] is seen["other"]
    assert len(calls) == 1, "built at most once per scope"


class Connection:
    """Built slowly in a worker thread: it waits for the loop to release it."""

    release = threading.Event()
    released: ClassVar[list[bool]] = []
    building = threading.Event()

    def __init__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.building.set()
            self.released.append(self.release.wait(at_most(0)))


class UsesConnection:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection


@pytest.mark.anyio
async def test_ainvoke_awaits_a_build_running_in_another_thread_without_blocking_the_loop() -> None:
    Connection.release, Connection.released = threading.Event(), []
    Connection.building = threading.Event()
    injector = Injector()
    injector.provide_scoped(Connection)
    injector.provide_scoped(UsesConnection)
    with injector.scope() as warm:  # compiles the scoped builders
        warm.invoke(UsesConnection)
    scope = injector.scope()
    worker = threading.Thread(target=scope.invoke, args=(Connection,))  # a to_thread endpoint
    worker.start()
    try:
        await until(Connection.building.is_set, "the worker thread's build")
        found: list[UsesConnection] = []

        async def handler() -> None:
            found.append(await scope.ainvoke(UsesConnection))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(handler)
            await anyio.wait_all_tasks_blocked()  # the handler waits for that build
            Connection.release.set()  # only if the loop still runs other tasks
    finally:
        Connection.release.set()
        worker.join(PATIENCE)
    assert Connection.released == [True]
    assert found[0].connection is scope.invoke(Connection)
    scope.shutdown()


# -- a scope closed from another thread mid-build says it is closed -----------------------

_closing: dict[str, object] = {}


class Closer:  # a transient whose build sees its scope shut down by another thread
    def __init__(self) -> None:
        thread = threading.Thread(target=_closing["scope"].shutdown)  # type: ignore[attr-defined]
        thread.start()
        thread.join()


class NeedsRequest:
    def __init__(self, closer: Closer, request: Request) -> None:
        self.request = request


def test_scope_closed_by_another_thread_mid_build_raises_scope_closed_not_context_missing() -> None:
    from di import ContextNotProvidedError, ScopeClosedError

    injector = Injector()
    injector.provide_context(Request)
    injector.provide_transient(Closer)
    injector.provide_scoped(NeedsRequest)
    scope = injector.scope(context={Request: Request("/")})
    _closing["scope"] = scope
    with pytest.raises(ScopeClosedError):
        try:
            scope.invoke(NeedsRequest)
        except ContextNotProvidedError as error:
            raise AssertionError(f"the context was given; got {error!r}") from error


# -- a nearer provider of a bound scoped service's second key wins ------------------------


class Port:
    pass


class Adapter(Port):
    pass


def test_scoped_service_bound_to_two_keys_does_not_hide_a_nearer_context_key() -> None:
    injector = Injector()
    injector.provide_scoped(Adapter, provides=(Adapter, Port))
    mid = injector.scope("mid")
    mid.provide_context(Port)  # from mid down, Port comes from the context
    given = Port()
    with mid.scope(context={Port: given}) as request:
        request.invoke(Adapter)
        assert request.invoke(Port) is given


def test_scoped_service_bound_to_two_keys_does_not_hide_a_nearer_provider() -> None:
    injector = Injector()
    injector.provide_scoped(Adapter, provides=(Adapter, Port))
    mid = injector.scope("mid")
    nearer = Port()
    mid.provide_value(nearer, provides=Port)  # shadows Port from mid down
    with mid.scope() as first:
        first.invoke(Adapter)  # compiles Adapter's builder into mid's plan
    with mid.scope() as request:
        assert request.invoke(Port) is nearer
        request.invoke(Adapter)
        assert request.invoke(Port) is nearer
