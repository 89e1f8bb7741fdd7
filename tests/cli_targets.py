"""Targets for the CLI tests."""

from __future__ import annotations

from di import Injector

from .services import Cache, Database, LaggingReplica, Queue

not_an_injector = 42


def returns_a_number() -> int:
    return 42


def healthy() -> Injector:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    injector.invoke(Database)
    injector.invoke(Cache)
    return injector


async def unhealthy() -> Injector:
    injector = healthy()
    (await injector.ainvoke(Database)).fail()
    return injector


def single() -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    return injector


def three_one_failing() -> Injector:
    injector = healthy()
    injector.provide(Queue, eager=True)
    injector.invoke(Database).fail()
    return injector


def nothing_built() -> Injector:
    injector = Injector()
    injector.provide(Database)  # lazy, and nobody invokes it
    return injector


def broken() -> Injector:
    raise RuntimeError("cannot reach the config service")


module_level = healthy()


def degraded() -> Injector:
    """A degraded check and a failing service provided with critical=False."""
    injector = healthy()
    injector.provide(LaggingReplica)
    injector.invoke(LaggingReplica)
    injector.provide(Queue, critical=False)
    injector.invoke(Queue).fail()
    return injector


def critical_failure() -> Injector:
    """The same, with a critical service failing too."""
    injector = degraded()
    injector.invoke(Database).fail()
    return injector


class Needs:
    def __init__(self, database: Database, cache: Cache) -> None:
        self.database = database


class Orphan:
    def __init__(self, missing: Missing) -> None:
        self.missing = missing


class Missing:
    pass


def graph() -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(Cache)
    injector.provide(Needs)
    return injector


def broken_graph() -> Injector:
    injector = graph()
    injector.provide(Orphan)
    return injector


def long_names() -> Injector:
    """Services under the names a client library's classes give them (full module paths)."""
    injector = Injector()
    injector.provide(Database, name="sqlalchemy.ext.asyncio.engine.AsyncEngine", eager=True)
    injector.provide(Cache, name="cache", eager=True)
    injector.start()
    injector.invoke(Database, "sqlalchemy.ext.asyncio.engine.AsyncEngine").fail()
    return injector
