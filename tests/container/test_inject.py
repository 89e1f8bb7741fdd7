"""``Inject[T]`` and ``@injector.inject``: injection into any function, a scope per call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import click
import pytest
from click.testing import CliRunner

import di
from di import GraphError, Inject, Injector, Named, Scope
from di.integrations import fastapi, flask, grpc
from di.integrations._inject import INJECT

from ..services import Config, Database

pytestmark = pytest.mark.anyio


class Transaction:
    def __init__(self) -> None:
        self.log: list[str] = []


class Mailer:
    pass


def app(log: list[str] | None = None) -> Injector:
    """A container with a singleton, a named value and a scoped unit of work."""
    journal = [] if log is None else log
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_value("replica://", name="replica")

    def open_transaction() -> Iterator[Transaction]:
        transaction = Transaction()
        try:
            yield transaction
            journal.append("commit")
        except Exception as error:
            journal.append(f"rollback: {error}")
            raise

    injector.provide_scoped(open_transaction)
    return injector


def test_inject_is_one_object_for_the_core_and_every_integration() -> None:
    assert di.Inject is fastapi.Inject is flask.Inject is grpc.Inject
    annotation = Inject[Database]
    assert INJECT in annotation.__metadata__  # the one marker each integration reads
    assert Inject[Database] is annotation  # made once


def test_a_sync_function_gets_its_services_and_passes_its_other_arguments() -> None:
    injector = app()

    @injector.inject
    def report(
        title: str,
        db: Inject[Database],
        replica: Inject[Annotated[str, Named("replica")]],
        *,
        verbose: bool = False,
    ) -> tuple[str, Database, str, bool]:
        return title, db, replica, verbose

    db = injector.invoke(Database)
    assert report("orders") == ("orders", db, "replica://", False)
    assert report("orders", verbose=True)[3] is True
    assert report(title="stock")[0] == "stock"
    other = Database(Config())
    assert report("mine", db=other)[1] is other  # an argument passed wins
    assert report.__name__ == "report"
    assert list(report.__signature__.parameters) == ["title", "verbose"]  # type: ignore[attr-defined]


def test_positional_arguments_never_land_on_an_injected_parameter() -> None:
    injector = app()

    @injector.inject
    def copy(db: Inject[Database], source: str, target: str = "-") -> tuple[str, str]:
        assert isinstance(db, Database)
        return source, target

    assert copy("a", "b") == ("a", "b")
    assert copy("a") == ("a", "-")
    with pytest.raises(TypeError, match="takes 2 positional arguments besides the injected"):
        copy("a", "b", "c")
    with pytest.raises(TypeError, match="multiple values for 'source'"):
        copy("a", source="b")


async def test_variadic_positional_arguments_pass_through_to_star_args() -> None:
    injector = app()

    @injector.inject
    def run(*paths: str, db: Inject[Database], **options: str) -> tuple[tuple[str, ...], Any]:
        assert isinstance(db, Database)
        return paths, options

    @injector.inject
    def move(target: str, *sources: str, db: Inject[Database]) -> tuple[str, tuple[str, ...]]:
        assert isinstance(db, Database)
        return target, sources

    @injector.inject
    async def fetch(*urls: str, db: Inject[Database]) -> tuple[str, ...]:
        assert isinstance(db, Database)
        return urls

    assert run("a", "b", mode="fast") == (("a", "b"), {"mode": "fast"})
    assert move("dir", "x", "y") == ("dir", ("x", "y"))
    assert await fetch("u1", "u2") == ("u1", "u2")

    @injector.inject
    def tag(db: Inject[Database], *names: str) -> tuple[str, ...]:
        return names

    assert tag() == ()
    with pytest.raises(TypeError, match="declare the injected parameters after \\*args"):
        tag("a")  # it would land on db


def test_each_call_runs_in_a_scope_of_its_own_and_its_failure_reaches_generators() -> None:
    log: list[str] = []
    injector = app(log)
    scopes: list[Scope] = []

    @injector.inject
    def place(
        order: str,
        transaction: Inject[Transaction],
        again: Inject[Transaction],
        scope: Inject[Scope],
    ) -> Transaction:
        assert transaction is again  # scoped: one per call
        scopes.append(scope)
        if order == "bad":
            raise ValueError("the order is invalid")
        return transaction

    first, second = place("a"), place("b")
    assert first is not second
    assert log == ["commit", "commit"]
    with pytest.raises(ValueError, match="invalid"):
        place("bad")
    assert log[-1] == "rollback: the order is invalid"
    assert all(scope.closed and scope.parent is injector for scope in scopes)
    assert injector.children() == []


async def test_async_functions_and_async_generators_await_their_services() -> None:
    log: list[str] = []
    injector = app(log)

    async def open_cache(config: Config) -> AsyncIterator[dict[str, str]]:
        await anyio.sleep(0)
        yield {"dsn": config.url}

    injector.provide(open_cache)

    @injector.inject
    async def handle(job: int, cache: Inject[dict[str, str]], tx: Inject[Transaction]) -> str:
        await anyio.sleep(0)
        tx.log.append(str(job))
        return f"{job} {cache['dsn']}"

    @injector.inject
    async def stream(count: int, cache: Inject[dict[str, str]]) -> AsyncIterator[str]:
        for n in range(count):
            yield f"{n} {cache['dsn']}"

    async with anyio.create_task_group() as tasks:  # calls at once: a scope each
        for job in range(10):
            tasks.start_soon(handle, job)
    assert log == ["commit"] * 10
    assert await handle(1) == "1 sqlite://"
    assert [item async for item in stream(2)] == ["0 sqlite://", "1 sqlite://"]
    await injector.ashutdown()


def test_sync_generators_keep_their_scope_until_they_end() -> None:
    log: list[str] = []
    injector = app(log)

    @injector.inject
    def rows(count: int, tx: Inject[Transaction]) -> Iterator[int]:
        yield from range(count)

    produced = rows(3)
    assert next(produced) == 0 and log == []
    assert list(produced) == [1, 2] and log == ["commit"]


def test_validate_and_start_check_the_keys_of_functions_decorated_before() -> None:
    injector = app()

    @injector.inject
    def notify(mailer: Inject[Mailer], db: Inject[Database]) -> None: ...

    @injector.inject
    def late(thing: Inject[NotYetDefined]) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(GraphError) as raised:
        injector.validate()
    assert raised.value.problems == [
        f"function {notify.__qualname__} (@inject) needs {Mailer.__module__}."
        f"{Mailer.__qualname__} (parameter 'mailer'), which no scope in reach of 'root' "
        "provides",
        f"function {late.__qualname__} (@inject): cannot read its parameters: "
        "name 'NotYetDefined' is not defined",
    ]
    with pytest.raises(GraphError):
        injector.start()
    injector.provide(Mailer)
    injector.provide_context(str, name="tenant")

    @injector.inject
    def tenant(name: Inject[Annotated[str, Named("tenant")]]) -> None: ...

    with pytest.raises(GraphError) as again:
        injector.validate()
    assert len(again.value.problems) == 2
    assert "a context key no scope in reach of 'root' received" in again.value.problems[1]
    assert "function" in injector.explain(Database)  # explain names the functions too


def test_a_function_that_is_gone_is_not_checked() -> None:
    injector = app()

    def make() -> None:
        @injector.inject
        def temporary(missing: Inject[bytes]) -> None: ...

    make()
    import gc

    gc.collect()
    injector.validate()  # the function was collected: nothing to check


def test_click_commands_run_through_inject() -> None:
    log: list[str] = []
    injector = app(log)

    @click.group()
    def cli() -> None: ...

    @cli.command()
    @click.argument("order")
    @click.option("--quantity", type=int, default=1)
    @injector.inject
    def place(order: str, quantity: int, db: Inject[Database], tx: Inject[Transaction]) -> None:
        tx.log.append(order)
        click.echo(f"{order} x{quantity} on {db.config.url}")
        if quantity < 0:
            raise click.BadParameter("quantity must be positive")

    @cli.command()
    @injector.inject
    def dsn(replica: Inject[Annotated[str, Named("replica")]]) -> None:
        click.echo(replica)

    runner = CliRunner()
    done = runner.invoke(cli, ["place", "book", "--quantity", "3"])
    assert done.exit_code == 0, done.output
    assert done.output == "book x3 on sqlite://\n"
    assert runner.invoke(cli, ["dsn"]).output == "replica://\n"
    failed = runner.invoke(cli, ["place", "pen", "--quantity", "-1"])
    assert failed.exit_code == 2 and "quantity must be positive" in failed.output
    assert log == ["commit", "rollback: quantity must be positive"]
    help_text = runner.invoke(cli, ["place", "--help"]).output
    assert "--quantity" in help_text and "db" not in help_text.lower().split()


def test_a_request_scope_can_inject_too_and_the_scope_must_be_open() -> None:
    injector = app()
    request = injector.scope("request")
    seen: list[Any] = []

    @request.inject
    def handler(db: Inject[Database], scope: Inject[Scope]) -> None:
        seen.append((db, scope.parent))

    handler()
    assert seen == [(injector.invoke(Database), request)]
    request.shutdown()
    with pytest.raises(di.ScopeClosedError):
        handler()
    with pytest.raises(TypeError, match="is not a function"):
        injector.inject(42)  # type: ignore[arg-type]


def test_inject_written_as_annotated_metadata_says_to_write_inject_of_the_type() -> None:
    # Annotated[T, Inject] reads like Annotated[T, Depends(...)]; it marks nothing, so
    # the parameter would be left to the caller: the error names it and the spelling.
    injector = Injector()
    injector.provide(Database)

    def handler(db: Annotated[Database, Inject]) -> Database:
        return db

    for decorate in (injector.inject, flask.inject, grpc.inject):
        with pytest.raises(TypeError) as caught:
            decorate(handler)
        assert str(caught.value).endswith(
            "parameter 'db' is annotated Annotated[tests.services.Database, Inject], which "
            "marks nothing: write db: Inject[tests.services.Database]"
        ), str(caught.value)
