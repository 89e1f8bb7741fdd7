"""Request scopes: anonymous scopes with context, scoped services, binding, validation."""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import anyio
import pytest

from di import (
    AsyncRequiredError,
    ContextNotProvidedError,
    DIError,
    GraphError,
    Injector,
    NoHealthCheckError,
    ScopeClosedError,
    ServiceNotFoundError,
)

pytestmark = pytest.mark.anyio


class Request:
    def __init__(self, path: str) -> None:
        self.path = path


class Database:
    def __init__(self) -> None:
        self.closed = False

    def shutdown(self) -> None:
        self.closed = True


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


async def test_200_concurrent_requests_each_with_its_own_scope() -> None:
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


def test_6_threads_300_requests_each_beside_200_long_lived_scopes_while_the_root_provides() -> None:
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
    provider.join(10)
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
    assert caught.value.key == f"{__name__}.Request"
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


class Cache:
    pass


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
        p.startswith(f"{__name__}.Reports needs {__name__}.Cache (parameter 'cache')")
        for p in problems
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


def test_explain_and_graph_on_a_real_graph() -> None:
    injector = app()
    injector.invoke(Database)
    with injector.scope(context={Request: Request("/")}) as scope:
        scope.invoke(Handler)
        text = scope.explain(Handler)
    assert text.splitlines() == [
        f"{__name__}.Handler (scoped, provided by 'root', built in this scope)",
        f"└── {__name__}.RequestCtx (scoped, provided by 'root', built in this scope)",
        f"    ├── {__name__}.Request (context, provided by 'root', from scope(context=...))",
        f"    └── {__name__}.Database (lazy, provided by 'root', built)",
    ]
    chart = injector.graph().splitlines()
    assert chart[0] == "flowchart TD"
    ids = {line.split("[")[0].strip(): line for line in chart[1:] if "[" in line}
    by_label = {
        label: node for node, line in ids.items() for label in [line.split('"')[1].split("<")[0]]
    }
    handler, ctx = by_label[f"{__name__}.Handler"], by_label[f"{__name__}.RequestCtx"]
    assert f"    {handler} --> {ctx}" in chart
    assert f"    {ctx} --> {by_label[f'{__name__}.Database']}" in chart


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
    injector.provide(Database)
    injector.invoke(Database)
    with pytest.raises(NoHealthCheckError):
        injector.health_check_service(Database)


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
