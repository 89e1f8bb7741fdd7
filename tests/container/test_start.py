"""Eager services: provide(eager=True), Scope.start() and Scope.astart()."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from di import Injector

from .. import services
from ..services import Cache, Config, Database, Journal, key

pytestmark = pytest.mark.anyio


class Mailer:
    def __init__(self) -> None:
        services.built.add("Mailer")


def make() -> Injector:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Cache, eager=True)
    injector.provide(Mailer)  # lazy: start leaves it alone
    injector.provide(Database, eager=True)
    return injector


def test_start_builds_eager_services_in_provide_order_with_their_dependencies(
    built: Journal,
) -> None:
    injector = make()
    assert injector.health_check() == {}  # nothing built, nothing checked
    injector.start()
    assert built.lines == ["Cache", "Config", "Database"]
    assert injector.list_invoked() == [key(Cache), key(Config), key(Database)]
    injector.start()  # already built: nothing happens
    assert built.lines == ["Cache", "Config", "Database"]
    injector.invoke(Database).fail("database down")
    errors = injector.health_check()
    assert isinstance(errors[key(Database)], ConnectionError)


async def test_astart_awaits_async_factories(built: Journal) -> None:
    async def open_pool(config: Config) -> AsyncIterator[Database]:
        yield Database(config)
        built.add("closed")

    injector = Injector()
    injector.provide(Config)
    injector.provide(open_pool, eager=True)
    async with injector:
        await injector.astart()
        assert built.lines == ["Config", "Database"]
    assert built.lines[-1] == "closed"


def test_the_first_failure_is_raised_naming_the_service(built: Journal) -> None:
    def refuse(config: Config) -> Cache:
        raise ConnectionRefusedError("cache.internal refused")

    injector = Injector()
    injector.provide(Config)
    injector.provide(refuse, eager=True)
    injector.provide(Mailer, eager=True)
    with pytest.raises(ConnectionRefusedError) as caught:
        injector.start()
    assert f"while starting eager service '{key(Cache)}' of scope 'root'" in (
        caught.value.__notes__
    )
    assert built.lines == ["Config"]  # stopped at the first failure; what was built stays
    injector.shutdown()


def test_a_scope_starts_its_own_eager_services(built: Journal) -> None:
    injector = make()
    request = injector.scope("request")
    request.provide(Mailer, eager=True)
    request.start()
    assert built.lines == ["Mailer"]
    assert request.list_invoked() == [key(Mailer)]


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
