"""Errors that point the right way: each message is quoted as a user reads it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from di import (
    AsyncRequiredError,
    ContextNotProvidedError,
    Injector,
    ScopeRequiredError,
    ServiceNotFoundError,
)

from ..services import Database


class RequestContext:
    pass


class AuditLog:
    def __init__(self, context: RequestContext) -> None:
        self.context = context


class Orders:
    def __init__(self, repo: OrdersRepo) -> None:
        self.repo = repo


class OrdersRepo:
    def __init__(self, db: UnreachableDatabase) -> None:
        self.db = db


class UnreachableDatabase:
    """Its constructor cannot reach the server: building it raises."""

    def __init__(self) -> None:
        raise ConnectionRefusedError("cannot reach db:5432")


def test_a_root_singleton_needing_a_request_value_says_why_and_how_to_fix_it() -> None:
    injector = Injector()
    injector.provide(AuditLog)
    request = injector.scope("request")
    request.provide_value(RequestContext())
    with pytest.raises(ServiceNotFoundError) as caught:
        request.invoke(AuditLog)
    # The headline is the cause and the fix, as validate() words a captive dependency.
    assert str(caught.value) == (
        f"captive dependency: singleton '{__name__}.AuditLog' (scope 'root') needs "
        f"{__name__}.RequestContext, which is provided in scope 'request'; a singleton "
        "resolves its dependencies from the scope that owns it, so make "
        f"'{__name__}.AuditLog' scoped with provide_scoped() (each scope builds its own) "
        "or provide it in scope 'request'"
    )
    assert "did you mean" not in str(caught.value)  # AuditLog is not a near miss


def test_the_same_holds_for_a_context_value() -> None:
    injector = Injector()
    injector.provide_context(RequestContext)
    injector.provide(AuditLog)
    scope = injector.scope(context={RequestContext: RequestContext()})
    with pytest.raises(ContextNotProvidedError) as caught:
        scope.invoke(AuditLog)
    assert str(caught.value).startswith(
        f"captive dependency: singleton '{__name__}.AuditLog' (scope 'root') needs context "
        f"{__name__}.RequestContext, which is provided in scope '{scope.name}'; "
    )
    assert "open the scope with context=" not in str(caught.value)


class RequestRepo:
    def __init__(self, context: RequestContext) -> None:
        self.context = context


class Reports:
    def __init__(self, repo: RequestRepo) -> None:
        self.repo = repo


class Dashboard:
    def __init__(self, reports: Reports) -> None:
        self.reports = reports


def test_a_root_singleton_needing_a_scoped_service_is_told_it_is_captive() -> None:
    # "Open a scope and invoke it there" would only lead to the captive-dependency error:
    # the headline is the cause and the fix, as validate() words it.
    injector = Injector()
    injector.provide_scoped(RequestRepo)
    injector.provide_value(RequestContext())
    injector.provide(Reports)
    with pytest.raises(ScopeRequiredError) as caught:
        injector.invoke(Reports)
    assert str(caught.value) == (
        f"captive dependency: singleton {__name__}.Reports (scope 'root') needs scoped "
        f"{__name__}.RequestRepo; a singleton outlives every scope, so make "
        f"{__name__}.Reports scoped (provide_scoped) or give it what it needs another way"
    )
    # Invoking the scoped service itself at the root still says to open a scope.
    with pytest.raises(ScopeRequiredError, match="open a scope"):
        injector.invoke(RequestRepo)


def test_the_captive_named_is_the_singleton_that_needs_the_scoped_service() -> None:
    injector = Injector()
    injector.provide_scoped(RequestRepo)
    injector.provide_value(RequestContext())
    injector.provide(Reports)
    injector.provide(Dashboard)
    with pytest.raises(ScopeRequiredError) as caught:
        injector.invoke(Dashboard)
    assert str(caught.value).startswith(
        f"captive dependency: singleton {__name__}.Reports (scope 'root') needs scoped "
    )


@pytest.mark.anyio
async def test_the_same_holds_for_ainvoke_and_a_context_value_at_the_root() -> None:
    injector = Injector()
    injector.provide_context(RequestContext)
    injector.provide(AuditLog)
    with pytest.raises(ContextNotProvidedError) as caught:
        await injector.ainvoke(AuditLog)
    assert str(caught.value).startswith(
        f"captive dependency: singleton {__name__}.AuditLog (scope 'root') needs context "
        f"{__name__}.RequestContext; "
    )


def test_did_you_mean_compares_short_names_and_only_close_ones() -> None:
    class Databse:
        pass

    injector = Injector()
    injector.provide(Databse)
    injector.provide(AuditLog)
    with pytest.raises(ServiceNotFoundError) as caught:
        injector.invoke(Database)
    assert f"did you mean '{__name__}.test_did_you_mean" in str(caught.value)
    assert "Databse'?" in str(caught.value)
    with pytest.raises(ServiceNotFoundError) as caught:
        injector.invoke(Orders)
    assert "did you mean" not in str(caught.value)


def test_a_different_class_with_the_same_name_is_called_so() -> None:
    def make() -> type:
        class Twin:
            pass

        return Twin

    injector = Injector()
    injector.provide(make())
    with pytest.raises(ServiceNotFoundError) as caught:
        injector.invoke(make())
    assert "another class with the same name is provided" in str(caught.value)


def test_a_factory_that_raises_names_the_service_and_the_chain() -> None:
    injector = Injector()
    for cls in (Orders, OrdersRepo, UnreachableDatabase):
        injector.provide(cls)
    with pytest.raises(ConnectionRefusedError) as caught:
        injector.invoke(Orders)
    assert caught.value.__notes__ == [
        f"while building '{__name__}.UnreachableDatabase' (asked for by {__name__}.Orders -> "
        f"{__name__}.OrdersRepo -> {__name__}.UnreachableDatabase)"
    ]


def test_a_class_passed_to_provide_value_is_refused() -> None:
    with pytest.raises(TypeError) as caught:
        Injector().provide_value(Database)
    assert str(caught.value) == (
        "provide_value(Database): that is a class, not an instance; provide(...) builds a "
        "service from its class: provide(Database)"
    )


def test_a_generator_factory_without_annotation_shows_no_internal_sentinel() -> None:
    def open_db():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError) as caught:
        Injector().provide(open_db)
    assert "_empty" not in str(caught.value)
    assert str(caught.value).endswith("(the service is T), got no return annotation")


def test_an_unresolvable_quoted_annotation_names_its_parameter(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from di import Injector

            def make():
                class Local:
                    pass

                class Needs:
                    def __init__(self, helper: Local) -> None:
                        self.helper = helper

                return Needs

            Needs = make()
            injector = Injector()
            injector.provide(Needs)
            try:
                injector.invoke(Needs)
            except Exception as error:
                print(type(error).__name__, error)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(module)], capture_output=True, text=True, timeout=30, check=True
    )
    assert "cannot resolve the annotation 'Local' of parameter 'helper'" in done.stdout


class Client:
    pass


def test_an_async_transient_from_invoke_does_not_say_not_built_yet() -> None:
    async def new_client() -> Client:
        return Client()

    injector = Injector()
    injector.provide_transient(new_client, name="client")
    with pytest.raises(AsyncRequiredError) as caught:
        injector.invoke("client")
    assert "not built yet" not in str(caught.value)
    assert str(caught.value) == (
        "service 'client' is a transient with an async factory: it is built anew on every "
        "invoke, so use `await scope.ainvoke(...)` for it"
    )


def _unused() -> Iterator[None]:
    yield


def test_a_twice_quoted_annotation_names_its_parameter(tmp_path: Path) -> None:
    module = tmp_path / "quoted.py"
    module.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from di import Injector

            class Needs:
                def __init__(self, db: 'Databse') -> None:
                    self.db = db

            injector = Injector()
            injector.provide(Needs)
            try:
                injector.invoke(Needs)
            except TypeError as error:
                print(error)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(module)], capture_output=True, text=True, timeout=30, check=True
    )
    assert "cannot resolve the annotation 'Databse' of parameter 'db'" in done.stdout
