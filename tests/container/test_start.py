"""Eager services: provide(eager=True), Scope.start() and Scope.astart()."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from di import Injector

pytestmark = pytest.mark.anyio

built: list[str] = []


class Config:
    def __init__(self) -> None:
        built.append("Config")


class Database:
    def __init__(self, config: Config) -> None:
        built.append("Database")
        self.config = config

    def health_check(self) -> None:
        raise ConnectionError("database down")


class Cache:
    def __init__(self) -> None:
        built.append("Cache")


class Mailer:
    def __init__(self) -> None:
        built.append("Mailer")


def make() -> Injector:
    built.clear()
    injector = Injector()
    injector.provide(Config)
    injector.provide(Cache, eager=True)
    injector.provide(Mailer)  # lazy: start leaves it alone
    injector.provide(Database, eager=True)
    return injector


def test_start_builds_eager_services_in_provide_order_with_their_dependencies() -> None:
    injector = make()
    assert injector.health_check() == {}  # nothing built, nothing checked
    injector.start()
    assert built == ["Cache", "Config", "Database"]
    assert injector.list_invoked() == [
        "tests.container.test_start.Cache",
        "tests.container.test_start.Config",
        "tests.container.test_start.Database",
    ]
    injector.start()  # already built: nothing happens
    assert built == ["Cache", "Config", "Database"]
    errors = injector.health_check()
    assert isinstance(errors["tests.container.test_start.Database"], ConnectionError)


async def test_astart_awaits_async_factories() -> None:
    async def open_pool(config: Config) -> AsyncIterator[Database]:
        yield Database(config)
        built.append("closed")

    built.clear()
    injector = Injector()
    injector.provide(Config)
    injector.provide(open_pool, eager=True)
    async with injector:
        await injector.astart()
        assert built == ["Config", "Database"]
    assert built[-1] == "closed"


def test_the_first_failure_is_raised_naming_the_service() -> None:
    def refuse(config: Config) -> Cache:
        raise ConnectionRefusedError("cache.internal refused")

    built.clear()
    injector = Injector()
    injector.provide(Config)
    injector.provide(refuse, eager=True)
    injector.provide(Mailer, eager=True)
    with pytest.raises(ConnectionRefusedError) as caught:
        injector.start()
    assert "while starting eager service 'tests.container.test_start.Cache' of scope 'root'" in (
        caught.value.__notes__
    )
    assert built == ["Config"]  # stopped at the first failure; what was built stays
    injector.shutdown()


def test_a_scope_starts_its_own_eager_services() -> None:
    injector = make()
    request = injector.scope("request")
    request.provide(Mailer, eager=True)
    request.start()
    assert built == ["Mailer"]
    assert request.list_invoked() == ["tests.container.test_start.Mailer"]


# -- messages name the method the caller used ----------------------------------------


class Pool:
    pass


async def open_pool() -> Pool:
    return Pool()


class Client:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


async def test_start_with_an_async_factory_points_to_astart() -> None:
    from di import AsyncRequiredError

    injector = Injector()
    injector.provide(open_pool)
    injector.provide(Client, eager=True)
    with pytest.raises(AsyncRequiredError, match=r"start\(\).*`await scope\.astart\(\)`"):
        injector.start()
    await injector.astart()  # what the message says works
    assert isinstance(injector.invoke(Client).pool, Pool)


async def test_a_with_block_inside_a_loop_points_to_async_with() -> None:
    from di import AsyncRequiredError

    class Hooked:
        async def shutdown(self) -> None:
            pass

    injector = Injector()
    injector.provide(Hooked)
    injector.invoke(Hooked)
    with pytest.raises(AsyncRequiredError, match="use `async with` there"):  # noqa: SIM117
        with injector:
            pass
    await injector.ashutdown()
