"""Request scopes: anonymous scopes with context, scoped services, binding, validation."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol

import anyio
import pytest

from di import (
    AsyncRequiredError,
    ContextNotProvidedError,
    DIError,
    GraphError,
    Injector,
    NoHealthCheckError,
    Scope,
    ScopeClosedError,
    ScopeRequiredError,
    ServiceNotFoundError,
)

from ..services import Cache, Config, Database, Journal, Request, key
from ..timing import PATIENCE

pytestmark = pytest.mark.anyio


class RequestCtx:
    def __init__(self, request: Request, db: Database) -> None:
        self.request = request
        self.db = db


class Handler:
    def __init__(self, ctx: RequestCtx) -> None:
        self.ctx = ctx


def app() -> Injector:
    injector = Injector()
    injector.provide(Database)
    injector.provide_context(Request)
    injector.provide_scoped(RequestCtx)
    injector.provide_scoped(Handler)
    return injector


# -- anonymous scopes and context ------------------------------------------------------


async def test_concurrent_requests_each_get_their_own_scope_and_share_the_singleton() -> None:
    injector = app()
    db = injector.invoke(Database)
    seen: dict[int, Handler] = {}

    async def request(i: int) -> None:
        async with injector.scope(context={Request: Request(f"/{i}")}) as scope:
            handler = await scope.ainvoke(Handler)
            await anyio.sleep(0.01)  # every request is open at once
            assert handler is await scope.ainvoke(Handler)
            assert handler.ctx.request.path == f"/{i}"
            assert handler.ctx.db is db
            seen[i] = handler

    async with anyio.create_task_group() as tasks:
        for i in range(200):
            tasks.start_soon(request, i)
    assert len({id(h) for h in seen.values()}) == 200
    assert injector.children() == []
    assert not db.closed


def test_requests_from_threads_keep_their_own_context_while_the_root_provides() -> None:
    injector = app()
    db = injector.invoke(Database)
    long_lived = [injector.scope() for _ in range(200)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        try:
            for i in range(300):
                with injector.scope(context={Request: Request(str(i))}) as scope:
                    handler = scope.invoke(Handler)
                    assert handler.ctx.request.path == str(i) and handler.ctx.db is db
        except BaseException as error:
            errors.append(error)

    def provide() -> None:
        i = 0
        while not stop.is_set():
            injector.provide_value(i, name=f"setting-{i}")
            i += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    servers = [threading.Thread(target=serve) for _ in range(6)]
    provider = threading.Thread(target=provide)
    try:
        for thread in [*servers, provider]:
            thread.start()
        for thread in servers:
            thread.join(60)
    finally:
        stop.set()
        sys.setswitchinterval(interval)
    provider.join(PATIENCE)
    assert errors == []
    assert injector.children() == long_lived


def test_anonymous_scopes_get_unique_names() -> None:
    injector = app()
    first, second = injector.scope(), injector.scope()
    assert first.name != second.name
    assert injector.children() == [first, second]
    first.shutdown()
    assert injector.children() == [second]


def test_context_values_are_what_the_scope_provides() -> None:
    injector = Injector()
    injector.provide_context(Request)
    injector.provide_context(str, name="tenant")
    request = Request("/x")
    with injector.scope(context={Request: request, "tenant": "acme"}) as scope:
        assert scope.invoke(Request) is request
        assert scope.invoke("tenant") == "acme"
        with scope.scope() as inner:  # a nested scope sees its ancestors' context
            assert inner.invoke(Request) is request


def test_a_context_key_without_a_value_says_to_pass_context() -> None:
    injector = app()
    scope = injector.scope()
    with pytest.raises(ContextNotProvidedError, match=r"open the scope with context=") as caught:
        scope.invoke(Handler)
    scope.shutdown()
    assert caught.value.key == key(Request)
    assert isinstance(caught.value, LookupError)


def test_a_context_key_must_be_declared() -> None:
    injector = Injector()
    with pytest.raises(DIError, match=r"declare it with provide_context\(.*Request\)"):
        injector.scope(context={Request: Request("/")})
    assert injector.children() == []


# -- scoped services ---------------------------------------------------------------------


class UnitOfWork:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.log: list[str] = []


def open_unit_of_work(db: Database) -> Iterator[UnitOfWork]:
    unit = UnitOfWork(db)
    try:
        yield unit
        unit.log.append("commit")
    except Exception as error:
        unit.log.append(f"rollback: {error}")
        raise


async def open_async_unit_of_work(db: Database) -> AsyncIterator[UnitOfWork]:
    unit = UnitOfWork(db)
    try:
        yield unit
        await anyio.sleep(0)
        unit.log.append("commit")
    except Exception as error:
        unit.log.append(f"rollback: {error}")
        raise


def test_a_scoped_service_is_cached_per_scope_and_shut_down_with_it() -> None:
    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(open_unit_of_work)
    with injector.scope() as first:
        unit = first.invoke(UnitOfWork)
        assert first.invoke(UnitOfWork) is unit
        with injector.scope() as second:
            assert second.invoke(UnitOfWork) is not unit
    assert unit.log == ["commit"]
    assert not injector.invoke(Database).closed  # the singleton outlives the scopes


def test_a_scoped_service_is_refused_at_the_root() -> None:
    injector = app()
    with pytest.raises(DIError, match=r"is scoped: .* open a scope"):
        injector.invoke(Handler)


def test_a_scoped_service_with_a_shutdown_method_is_shut_down_with_its_scope() -> None:
    class Session:
        closed = 0

        def shutdown(self) -> None:
            type(self).closed += 1

    injector = Injector()
    injector.provide_scoped(Session)
    for _ in range(3):
        with injector.scope() as scope:
            scope.invoke(Session)
    assert Session.closed == 3


def test_a_failed_block_rolls_back_and_a_good_one_commits() -> None:
    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(open_unit_of_work)
    with pytest.raises(ValueError, match="boom"), injector.scope() as scope:
        unit = scope.invoke(UnitOfWork)
        raise ValueError("boom")
    assert unit.log == ["rollback: boom"]
    with injector.scope() as scope:
        unit = scope.invoke(UnitOfWork)
    assert unit.log == ["commit"]


async def test_a_failed_async_block_rolls_back() -> None:
    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(open_async_unit_of_work)
    with pytest.raises(ValueError, match="boom"):
        async with injector.scope() as scope:
            unit = await scope.ainvoke(UnitOfWork)
            raise ValueError("boom")
    assert unit.log == ["rollback: boom"]


def test_a_scoped_service_in_a_long_lived_scope_with_its_own_services() -> None:
    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(open_unit_of_work)
    tenant = injector.scope("tenant")
    tenant.provide_value("acme", name="tenant-name")
    with tenant.scope() as request:
        unit = request.invoke(UnitOfWork)
        assert unit is request.invoke(UnitOfWork)
    assert unit.log == ["commit"]
    unit = tenant.invoke(UnitOfWork)  # the tenant scope invokes it: one of its own
    tenant.shutdown()
    assert unit.log == ["commit"]


def test_a_shut_down_request_scope_refuses_work() -> None:
    injector = app()
    scope = injector.scope(context={Request: Request("/")})
    scope.invoke(Handler)
    scope.shutdown()
    with pytest.raises(ScopeClosedError):
        scope.invoke(Handler)


# -- interface binding -------------------------------------------------------------------


class Mailer(Protocol):
    def send(self, to: str) -> None: ...


class Notifier(Protocol):
    def notify(self) -> None: ...


class SmtpMailer:
    checks = 0
    shutdowns = 0

    def send(self, to: str) -> None:
        pass

    def notify(self) -> None:
        pass

    def health_check(self) -> None:
        type(self).checks += 1

    def shutdown(self) -> None:
        type(self).shutdowns += 1


class FakeMailer:
    def send(self, to: str) -> None:
        pass


def test_provides_binds_one_instance_checked_and_shut_down_once() -> None:
    SmtpMailer.checks = SmtpMailer.shutdowns = 0
    injector = Injector()
    injector.provide(SmtpMailer, provides=(Mailer, Notifier))
    mailer = injector.invoke(Mailer)
    assert injector.invoke(Notifier) is mailer
    assert isinstance(mailer, SmtpMailer)
    status = injector.health_check()
    assert list(status) == [f"{__name__}.Mailer"]
    assert SmtpMailer.checks == 1
    injector.shutdown()
    assert SmtpMailer.shutdowns == 1


def test_provides_refuses_a_class_that_is_not_the_interface() -> None:
    class Base:
        pass

    injector = Injector()
    with pytest.raises(TypeError, match=r"provides=.*Base.*is not a .*Base"):
        injector.provide(Database, provides=Base)


def test_override_replaces_and_never_adds() -> None:
    injector = Injector()
    injector.provide(SmtpMailer, provides=Mailer)
    with pytest.raises(ServiceNotFoundError) as caught:
        injector.override(FakeMailer)
    assert any("provides=" in note for note in caught.value.__notes__)
    injector.override(FakeMailer, provides=Mailer)
    assert isinstance(injector.invoke(Mailer), FakeMailer)
    fake = FakeMailer()
    injector.override_value(fake, provides=Mailer)
    assert injector.invoke(Mailer) is fake


def test_override_in_a_child_shadows_the_parents_service() -> None:
    injector = Injector()
    injector.provide(SmtpMailer, provides=Mailer)
    child = injector.scope("test")
    child.override(FakeMailer, provides=Mailer)
    assert isinstance(child.invoke(Mailer), FakeMailer)
    assert isinstance(injector.invoke(Mailer), SmtpMailer)


def test_provide_value_refuses_a_class() -> None:
    injector = Injector()
    with pytest.raises(TypeError, match=r"that is a class, not an instance; .*provide\(Database\)"):
        injector.provide_value(Database)


# -- validation and explanation -------------------------------------------------------


class Audit:
    def __init__(self, request: Request) -> None:  # a singleton needing a request value
        self.request = request


class Reports:
    def __init__(self, db: Database, cache: Cache) -> None:
        self.db = db


class Ping:
    def __init__(self, pong: Pong) -> None:
        self.pong = pong


class Pong:
    def __init__(self, ping: Ping) -> None:
        self.ping = ping


def test_validate_lists_every_problem_at_once() -> None:
    injector = app()
    injector.provide(Audit)
    injector.provide(Reports)
    injector.provide(Ping)
    injector.provide(Pong)
    with pytest.raises(GraphError) as caught:
        injector.validate()
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert any(
        p.startswith(f"{__name__}.Reports needs {key(Cache)} (parameter 'cache')") for p in problems
    )
    assert any(
        p.startswith(f"captive dependency: singleton {__name__}.Audit (scope 'root') needs context")
        for p in problems
    )
    assert any(p.startswith("circular dependency: ") for p in problems)
    assert injector.list_invoked() == []  # nothing was built


def test_start_validates_first() -> None:
    injector = app()
    injector.provide(Audit, eager=True)
    with pytest.raises(GraphError):
        injector.start()
    assert injector.list_invoked() == []


def test_a_valid_graph_passes() -> None:
    app().validate()


def test_explain_and_graph_show_what_each_service_needs_and_how_it_is_provided() -> None:
    injector = app()
    injector.invoke(Database)
    with injector.scope(context={Request: Request("/")}) as scope:
        scope.invoke(Handler)
        text = scope.explain(Handler)
    assert text.splitlines() == [
        f"{__name__}.Handler (scoped, provided by 'root', built in this scope)",
        f"└── {__name__}.RequestCtx (scoped, provided by 'root', built in this scope)",
        f"    ├── {key(Request)} (context, provided by 'root', from scope(context=...))",
        f"    └── {key(Database)} (lazy, provided by 'root', built)",
        f"        ├── {key(Config)} (default used)",
        f"        └── {key(Journal)} (default used)",
        f"needed by: nothing in reach of scope {scope.name!r}",
    ]
    chart = injector.graph().splitlines()
    assert chart[0] == "flowchart TD"
    ids = {line.split("[")[0].strip(): line for line in chart[1:] if "[" in line}
    by_label = {
        label: node for node, line in ids.items() for label in [line.split('"')[1].split("<")[0]]
    }
    handler, ctx = by_label[f"{__name__}.Handler"], by_label[f"{__name__}.RequestCtx"]
    assert f"    {handler} --> {ctx}" in chart
    assert f"    {ctx} --> {by_label[key(Database)]}" in chart


# -- one exception class per condition --------------------------------------------------


def test_exceptions_keep_the_builtins_they_replaced() -> None:
    assert issubclass(AsyncRequiredError, RuntimeError)
    assert issubclass(NoHealthCheckError, ValueError)
    assert issubclass(ScopeClosedError, RuntimeError)
    assert issubclass(GraphError, DIError)

    async def new_cache() -> Cache:
        return Cache()

    injector = Injector()
    injector.provide(new_cache)
    with pytest.raises(AsyncRequiredError, match="ainvoke"):
        injector.invoke(Cache)
    injector.provide(Config)
    injector.invoke(Config)
    with pytest.raises(NoHealthCheckError):
        injector.health_check_service(Config)


def test_an_override_of_a_scoped_service_stays_scoped_and_reaches_new_requests() -> None:
    injector = app()
    with injector.scope(context={Request: Request("/")}) as scope:
        assert type(scope.invoke(Handler)) is Handler  # compiles the request builders
    injector.override(FakeHandler, provides=Handler)
    with injector.scope(context={Request: Request("/")}) as first:
        fake = first.invoke(Handler)
        assert isinstance(fake, FakeHandler) and first.invoke(Handler) is fake
    with injector.scope(context={Request: Request("/")}) as second:
        assert second.invoke(Handler) is not fake  # still one per scope


class FakeHandler(Handler):
    pass


# -- faults found under attack: each once made the two build paths disagree ----------


class Sender(Protocol):
    def send(self, to: str) -> None: ...


def test_overriding_one_key_of_a_bound_service_holds_and_leaves_the_other_key() -> None:
    injector = Injector()
    injector.provide(SmtpMailer, provides=(Mailer, Sender))
    fake = FakeMailer()
    injector.override_value(fake, provides=Sender)
    injector.invoke(Mailer)  # rebuilds the real one for Mailer alone
    assert injector.invoke(Sender) is fake
    assert isinstance(injector.invoke(Mailer), SmtpMailer)
    other = Injector()
    other.provide(SmtpMailer, provides=(Mailer, Sender))
    other.override_value(FakeMailer(), provides=Mailer)
    assert isinstance(other.invoke(Sender), SmtpMailer)


def open_tracked(db: Database) -> Iterator[UnitOfWork]:
    unit = UnitOfWork(db)
    try:
        yield unit
    except BaseException as error:
        unit.log.append(f"rollback: {type(error).__name__}")
        raise
    else:
        unit.log.append("commit")


async def test_a_cancelled_request_rolls_back_and_never_commits() -> None:
    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(open_tracked)
    with anyio.move_on_after(0.05):
        async with injector.scope() as scope:
            unit = await scope.ainvoke(UnitOfWork)
            await anyio.sleep(10)
    assert len(unit.log) == 1 and unit.log[0].startswith("rollback")


def test_keyboard_interrupt_in_a_block_rolls_back() -> None:
    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(open_tracked)
    with pytest.raises(KeyboardInterrupt), injector.scope() as scope:
        unit = scope.invoke(UnitOfWork)
        raise KeyboardInterrupt
    assert unit.log == ["rollback: KeyboardInterrupt"]


def test_a_singleton_in_a_scope_that_received_its_context_is_not_captive() -> None:
    injector = Injector()
    injector.provide_context(Request)
    with injector.scope(context={Request: Request("/")}) as scope:
        scope.provide(Audit)
        scope.validate()
        scope.start()
        assert scope.invoke(Audit).request.path == "/"


def test_request_builders_survive_changes_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from di._container import request

    compiled: list[object] = []
    original = request.compile_scoped

    def counting(
        parent: object, service: object, callbacks: object, asynchronous: bool = False
    ) -> object:
        compiled.append(service)
        return original(parent, service, callbacks, asynchronous)  # type: ignore[arg-type]

    monkeypatch.setattr(request, "compile_scoped", counting)
    injector = app()
    injector.provide_scoped(open_unit_of_work)  # a generator: finished when its scope closes
    sibling = injector.scope("sibling")
    for i in range(50):
        with injector.scope(context={Request: Request("/")}) as scope:
            scope.invoke(Handler)
            scope.invoke(UnitOfWork)
        sibling.provide_value(i, name=f"n{i}")
    assert len(compiled) <= 3  # Handler (with RequestCtx inside), UnitOfWork


def test_the_compiled_path_names_a_failing_factory() -> None:
    class Down:
        def __init__(self) -> None:
            raise ConnectionError("repo down")

    injector = Injector()
    injector.provide_scoped(Down)
    with injector.scope() as scope, pytest.raises(ConnectionError) as caught:
        scope.invoke(Down)
    assert caught.value.__notes__ == [
        f"while building '{Down.__module__}.{Down.__qualname__}' (asked for by scope "
        f"'{scope.name}')"
    ]


def test_a_bound_type_check_failure_is_never_cached() -> None:
    class NotAMailer:
        pass

    def new_mailer():  # type: ignore[no-untyped-def]
        return NotAMailer()

    injector = Injector()
    injector.provide_scoped(new_mailer, provides=Handler)
    with injector.scope() as scope:
        for _ in range(2):
            with pytest.raises(TypeError, match="bound to"):
                scope.invoke(Handler)


def test_context_values_are_checked_against_their_declaration() -> None:
    injector = Injector()
    injector.provide_context(str, name="tenant")
    injector.provide_context(Request)
    with pytest.raises(TypeError, match="'tenant' must be a str, got int"):
        injector.scope(context={"tenant": 42})
    injector.scope(context={Request: "/"}).shutdown()  # a type key takes any stand-in


@pytest.mark.parametrize("warm", [False, True])
def test_one_request_scope_from_8_threads_builds_once(warm: bool) -> None:
    built: list[object] = []

    class Session:
        def __init__(self) -> None:
            built.append(self)
            time.sleep(0.05)

    injector = Injector()
    injector.provide_scoped(Session)
    if warm:  # compiled: new scopes start with its marker
        with injector.scope() as scope:
            scope.invoke(Session)
        built.clear()
    with injector.scope() as scope:
        got: list[Session] = []
        threads = [
            threading.Thread(target=lambda: got.append(scope.invoke(Session))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)
    assert len(built) == 1 and len(got) == 8 and len(set(map(id, got))) == 1


def test_an_override_in_a_scope_replaces_its_built_scoped_copy() -> None:
    injector = app()
    with injector.scope(context={Request: Request("/")}) as scope:
        first = scope.invoke(Handler)
        scope.override(FakeHandler, provides=Handler)
        assert isinstance(scope.invoke(Handler), FakeHandler)
        assert scope.invoke(Handler) is not first


def test_a_transient_replaced_by_a_generator_is_refused() -> None:
    def open_conn() -> Iterator[Database]:
        yield Database()

    injector = Injector()
    injector.provide_transient(Database)
    with pytest.raises(TypeError, match="generator factory's cleanup would never run"):
        injector.override(open_conn)


def test_anonymous_names_never_collide_with_chosen_ones() -> None:
    injector = Injector()
    injector.scope("root.2")
    names = {injector.scope().name for _ in range(3)}
    assert "root.2" not in names and len(names) == 3


def test_a_closed_scope_no_longer_answers_with_its_context() -> None:
    injector = app()
    injector.provide_scoped(open_unit_of_work)
    with injector.scope(context={Request: Request("/")}) as scope:
        scope.invoke(UnitOfWork)  # a generator: the general close
    with pytest.raises(ScopeClosedError):
        scope.invoke(Request)


def test_an_optional_context_parameter_takes_its_default() -> None:
    class Greeting:
        def __init__(self, request: Request | None = None) -> None:
            self.request = request

    injector = Injector()
    injector.provide_context(Request)
    injector.provide_scoped(Greeting)
    with injector.scope() as anonymous:
        assert anonymous.invoke(Greeting).request is None
    with injector.scope(context={Request: Request("/me")}) as known:
        assert known.invoke(Greeting).request.path == "/me"  # type: ignore[union-attr]


def test_a_singleton_needing_a_scoped_service_is_told_why() -> None:
    injector = Injector()
    injector.provide_scoped(Session)
    injector.provide(SessionCache)
    with injector.scope() as scope, pytest.raises(ScopeRequiredError) as caught:
        scope.invoke(SessionCache)
    # The headline leads with the cause and the fix, as validate() words it; never "open
    # a scope" to code that is in one.
    assert str(caught.value) == (
        f"captive dependency: singleton '{__name__}.SessionCache' (scope 'root') needs "
        f"scoped {__name__}.Session, which is provided in scope '{scope.name}'; a singleton "
        "resolves its dependencies from the scope that owns it, so make "
        f"'{__name__}.SessionCache' scoped with provide_scoped() (each scope builds its "
        f"own) or provide it in scope '{scope.name}'"
    )
    assert "open a scope" not in str(caught.value)


def test_validate_reports_a_bound_service_once() -> None:
    class Needs:
        def __init__(self, missing: Cache) -> None:
            self.missing = missing

    injector = Injector()
    injector.provide(Needs, provides=(Mailer, Sender, Needs))
    with pytest.raises(GraphError) as caught:
        injector.validate()
    assert len(caught.value.problems) == 1


class Session:
    pass


class SessionCache:
    def __init__(self, session: Session) -> None:
        self.session = session


# -- the request path: plans, markers, lock-free opening -------------------------------


def warm(injector: Injector) -> None:
    """One request, so the root's plan holds Handler's compiled builder."""
    with injector.scope(context={Request: Request("/warm")}) as scope:
        scope.invoke(Handler)


def test_a_provider_change_reaches_a_request_scope_opened_before_it() -> None:
    injector = app()
    warm(injector)
    with injector.scope(context={Request: Request("/")}) as scope:
        injector.override(FakeHandler, provides=Handler)
        handler = scope.invoke(Handler)
        assert isinstance(handler, FakeHandler) and handler is scope.invoke(Handler)
    with injector.scope(context={Request: Request("/")}) as later:
        assert isinstance(later.invoke(Handler), FakeHandler)


async def test_a_provider_change_reaches_ainvoke_through_a_stale_builder() -> None:
    class Repo:
        pass

    class AsyncRepo(Repo):
        pass

    async def open_repo() -> AsyncRepo:
        await anyio.sleep(0)
        return AsyncRepo()

    injector = Injector()
    injector.provide_transient(Repo)
    assert type(injector.invoke(Repo)) is Repo  # compiled, and marked in the instances
    injector.override(open_repo, provides=Repo)  # now async: only ainvoke can build it
    assert type(await injector.ainvoke(Repo)) is AsyncRepo
    with pytest.raises(AsyncRequiredError):
        injector.invoke(Repo)


def test_a_nested_scope_reads_its_ancestors_context() -> None:
    injector = app()
    warm(injector)
    outer_request, inner_request = Request("/outer"), Request("/inner")
    with injector.scope(context={Request: outer_request}) as outer:
        with outer.scope() as inner:
            assert inner.invoke(Handler).ctx.request is outer_request
        with outer.scope(context={Request: inner_request}) as inner:
            assert inner.invoke(Handler).ctx.request is inner_request
        assert outer.invoke(Handler).ctx.request is outer_request


def test_a_context_value_is_looked_for_no_higher_than_its_declaration() -> None:
    injector = Injector()
    injector.provide_value(Request("/root's own"))
    mid = injector.scope("mid")
    mid.provide_context(Request)  # shadows the root's singleton below mid
    with mid.scope() as request, pytest.raises(ContextNotProvidedError):
        request.invoke(Request)
    given = Request("/given")
    with mid.scope(context={Request: given}) as request:
        assert request.invoke(Request) is given
    assert injector.invoke(Request).path == "/root's own"


def test_a_chosen_name_may_not_take_an_anonymous_scopes_name() -> None:
    injector = Injector()
    anonymous = injector.scope()
    with pytest.raises(ValueError, match="already has a child scope named"):
        injector.scope(anonymous.name)
    anonymous.shutdown()
    injector.scope(anonymous.name).shutdown()  # freed with it


def open_until_closed(parent: Scope, opened: list[Scope], errors: list[BaseException]) -> None:
    """Open children until the parent closes: the shutdown begins after a few hundred.

    A thread that opens 5,000 first (the shutting thread starved of the CPU) stops, so
    that the shutdown does not have hundreds of thousands to close."""
    try:
        for _ in range(5_000):
            opened.append(parent.scope(context={Request: Request("/")}))
    except ScopeClosedError:
        pass
    except BaseException as error:
        errors.append(error)


@pytest.mark.parametrize("gil", [True, False])
@pytest.mark.parametrize("built", [True, False])
def test_opening_beside_a_parents_shutdown_never_leaves_a_child(
    gil: bool, built: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import di.scope

    monkeypatch.setattr(di.scope, "_GIL", gil)  # False: the locked path, as without a GIL
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            injector = app()
            warm(injector)
            parent = injector.scope("parent")
            if built:  # so the parent's shutdown takes the general path from its start
                parent.provide_value(Cache())
            parent.scope().shutdown()  # its children dict exists: the lock-free path
            opened: list[Scope] = []
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=open_until_closed, args=(parent, opened, errors))
                for _ in range(3)
            ]
            for thread in threads:
                thread.start()
            while len(opened) < 100 and any(thread.is_alive() for thread in threads):
                time.sleep(0.0001)
            parent.shutdown()
            for thread in threads:
                thread.join(PATIENCE)
            assert errors == []
            assert parent.closed and parent.children() == []
            assert all(child.closed for child in opened)
    finally:
        sys.setswitchinterval(interval)


def test_a_scope_opened_without_the_lock_still_sees_a_provider_change() -> None:
    injector = app()
    warm(injector)
    with injector.scope(context={Request: Request("/")}):
        pass  # the root's children dict exists now
    injector.override(FakeHandler, provides=Handler)
    with injector.scope(context={Request: Request("/")}) as scope:
        assert isinstance(scope.invoke(Handler), FakeHandler)
    assert injector.children() == []


def open_one(scope: Scope, start: threading.Barrier, got: list[Scope]) -> None:
    start.wait()
    with contextlib.suppress(ScopeClosedError):
        got.append(scope.scope())


def test_opening_a_first_child_beside_a_plain_close_never_leaves_it_open() -> None:
    injector = app()
    leaked = []
    for _ in range(300):
        scope = injector.scope()
        scope.scope().shutdown()  # its children dict exists: the lock-free path
        start = threading.Barrier(2)
        got: list[Scope] = []

        thread = threading.Thread(target=open_one, args=(scope, start, got))
        thread.start()
        start.wait()
        scope.shutdown()  # a plain close, unless it sees the child
        thread.join(PATIENCE)
        leaked += [child for child in got if not child.closed]
    assert leaked == []


def test_first_requests_from_many_threads_at_once_each_find_their_builder() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(30):
            injector = app()
            start = threading.Barrier(6)
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=first_requests, args=(injector, start, errors))
                for _ in range(6)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(PATIENCE)
            assert errors == []
            assert injector.children() == []
    finally:
        sys.setswitchinterval(interval)


def first_requests(
    injector: Injector, start: threading.Barrier, errors: list[BaseException]
) -> None:
    start.wait()
    try:
        for number in range(20):
            with injector.scope(context={Request: Request(str(number))}) as scope:
                assert scope.invoke(Handler).ctx.request.path == str(number)
    except BaseException as error:
        errors.append(error)


class CompilingContext(Mapping[Any, Any]):
    """A context mapping that, read for the first time, has Handler compiled meanwhile:
    what another thread's first request can do between two steps of scope()."""

    def __init__(self, injector: Injector, values: dict[Any, Any]) -> None:
        self.injector, self.values, self.read = injector, values, False

    def __iter__(self) -> Iterator[Any]:
        if not self.read:
            self.read = True
            warm(self.injector)
        return iter(self.values)

    def __getitem__(self, key: Any) -> Any:
        return self.values[key]

    def __len__(self) -> int:
        return len(self.values)


def test_a_builder_compiled_while_a_scope_opens_is_found_with_its_marker() -> None:
    injector = app()
    request = Request("/")
    with injector.scope(context=CompilingContext(injector, {Request: request})) as scope:
        assert scope.invoke(Handler).ctx.request is request


class BrokenOnPurpose:
    def __init__(self, request: Request) -> None:
        raise ValueError("broken on purpose")


class UsesBroken:
    def __init__(self, broken: BrokenOnPurpose) -> None:
        self.broken = broken


def test_a_traceback_through_a_compiled_builder_shows_its_source_line() -> None:
    import traceback

    injector = Injector()
    injector.provide_context(Request)
    injector.provide_scoped(BrokenOnPurpose)
    injector.provide_scoped(UsesBroken)
    with (
        injector.scope(context={Request: Request("/")}) as scope,
        pytest.raises(ValueError, match="broken on purpose") as raised,
    ):
        scope.invoke(UsesBroken)
    frames = traceback.extract_tb(raised.value.__traceback__)
    generated = [frame for frame in frames if frame.filename.startswith("<di scoped ")]
    assert generated, [frame.filename for frame in frames]
    # The line the builder failed on, as a traceback prints it: the factory's call.
    assert "BrokenOnPurpose_" in (generated[-1].line or "")
    assert "BrokenOnPurpose_" in "".join(traceback.format_tb(raised.value.__traceback__))


class BrokenTransient:
    def __init__(self, database: Database) -> None:
        raise ValueError("broken transient")


def test_a_traceback_through_a_compiled_transient_builder_shows_its_source_line() -> None:
    import traceback

    injector = Injector()
    injector.provide(Database)
    injector.provide_transient(BrokenTransient)
    for _ in range(2):  # compiled on the first invoke, then called from the scope's cache
        with pytest.raises(ValueError, match="broken transient") as raised:
            injector.invoke(BrokenTransient)
        frames = traceback.extract_tb(raised.value.__traceback__)
        generated = [frame for frame in frames if frame.filename.startswith("<di transient ")]
        assert generated, [frame.filename for frame in frames]
        assert "BrokenTransient_" in (generated[-1].line or "")


class Lookup:
    def __init__(self, database: Database) -> None:
        self.database = database


def _generated_lines() -> set[str]:
    import linecache

    return {name for name in linecache.cache if name.startswith("<di ")}


def test_generated_source_leaves_linecache_once_its_builders_are_gone() -> None:
    import gc

    injector = Injector()
    injector.provide(Database)
    before = _generated_lines()
    # Each request provides a transient of its own name: each compiles its own text.
    for number in range(200):
        with injector.scope() as request:
            request.provide_transient(Lookup, name=f"repo-{number}")
            request.invoke(f"repo-{number}")
    gc.collect()
    injector.provide_transient(Lookup)
    live = injector.invoke(Lookup)  # a compile settles what was collected
    added = _generated_lines() - before
    assert len(added) <= 2, sorted(added)  # this live builder's, and none of the 200
    assert any("transient tests.container.test_request_scopes.Lookup" in n for n in added)
    assert isinstance(live, Lookup)
