"""Targets for the CLI tests."""

from __future__ import annotations

from di import Injector

from .health_services import Cache, Database

not_an_injector = 42


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


def broken() -> Injector:
    raise RuntimeError("cannot reach the config service")


module_level = healthy()
