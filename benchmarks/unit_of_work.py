"""R1-gen: one request whose scoped service is a generator factory (a unit of work).

One request: open a scope with the request object in its context, build a scoped
``UnitOfWork`` from a generator factory (it needs the ``Request`` and the app's
``Database`` singleton, and marks itself committed after its ``yield``), close the
scope. Three shapes, each beside dishka's:

- ``sync with``: a sync generator, ``with scope: scope.invoke(...)``;
- ``sync gen async``: the same generator, ``async with scope: await
  scope.ainvoke(...)``;
- ``async gen``: an async generator factory, under ``async with`` too.

Each setup checks once that its request builds a fresh unit of work and commits it on
close, so no row times a no-op. The async shapes time a loop of requests on one
asyncio event loop, per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

ROUNDS = 7
# Requests per timed turn of the async shapes.
BATCH = 2_000


class Request:
    pass


class Database:
    pass


class UnitOfWork:
    def __init__(self, request: Request, db: Database) -> None:
        self.request = request
        self.db = db
        self.committed = False


def unit_of_work(request: Request, db: Database) -> Iterator[UnitOfWork]:
    uow = UnitOfWork(request, db)
    yield uow
    uow.committed = True


async def async_unit_of_work(request: Request, db: Database) -> AsyncIterator[UnitOfWork]:
    uow = UnitOfWork(request, db)
    yield uow
    uow.committed = True


SHAPES = ("sync with", "sync gen async", "async gen")


def _checked_sync(one: Callable[[], UnitOfWork]) -> Callable[[], UnitOfWork]:
    first, second = one(), one()
    assert first is not second and first.committed and second.committed
    assert first.db is second.db
    return one


def _checked_async(one: Callable[[], Awaitable[UnitOfWork]]) -> Callable[[], Awaitable[UnitOfWork]]:
    async def twice() -> tuple[UnitOfWork, UnitOfWork]:
        return await one(), await one()

    first, second = asyncio.run(twice())
    assert first is not second and first.committed and second.committed
    assert first.db is second.db
    return one


def healthdi(shape: str) -> Callable[[], Any]:
    from di import Injector

    injector = Injector()
    injector.provide(Database)
    injector.provide_context(Request)
    if shape == "async gen":
        injector.provide_scoped(async_unit_of_work)
    else:
        injector.provide_scoped(unit_of_work)
    injector.invoke(Database)
    request = Request()
    if shape == "sync with":

        def one() -> UnitOfWork:
            with injector.scope(context={Request: request}) as scope:
                return scope.invoke(UnitOfWork)

        return _checked_sync(one)

    async def one_async() -> UnitOfWork:
        async with injector.scope(context={Request: request}) as scope:
            return await scope.ainvoke(UnitOfWork)

    return _checked_async(one_async)


def dishka(shape: str) -> Callable[[], Any]:
    from dishka import Provider, Scope, make_async_container, make_container

    provider = Provider()
    provider.from_context(provides=Request, scope=Scope.REQUEST)
    provider.provide(Database, scope=Scope.APP)
    request = Request()
    if shape == "sync with":
        provider.provide(unit_of_work, scope=Scope.REQUEST)
        container = make_container(provider)

        def one() -> UnitOfWork:
            with container(context={Request: request}) as scope:
                uow: UnitOfWork = scope.get(UnitOfWork)
                return uow

        return _checked_sync(one)
    factory = async_unit_of_work if shape == "async gen" else unit_of_work
    provider.provide(factory, scope=Scope.REQUEST)
    async_container = make_async_container(provider)

    async def one_async() -> UnitOfWork:
        async with async_container(context={Request: request}) as scope:
            uow: UnitOfWork = await scope.get(UnitOfWork)
            return uow

    return _checked_async(one_async)


def _turn(one: Callable[[], Any], is_async: bool) -> float:
    """µs per request over one turn of BATCH requests."""
    if not is_async:
        began = time.perf_counter()
        for _ in range(BATCH):
            one()
        return (time.perf_counter() - began) / BATCH * 1e6

    async def batch() -> float:
        began = time.perf_counter()
        for _ in range(BATCH):
            await one()
        return (time.perf_counter() - began) / BATCH * 1e6

    return asyncio.run(batch())


def measure() -> dict[str, dict[str, float | None]]:
    """µs per request: {row: {shape: µs}}, best of ROUNDS turns taken in rotation."""
    rows: dict[str, dict[str, float | None]] = {}
    made: dict[tuple[str, str], Callable[[], Any]] = {}
    for name, setup in (("healthdi", healthdi), ("dishka", dishka)):
        rows[name] = dict.fromkeys(SHAPES)
        for shape in SHAPES:
            with contextlib.suppress(ImportError):  # a peer that is not installed
                made[(name, shape)] = setup(shape)
    for _ in range(ROUNDS):
        for (name, shape), one in made.items():
            took = _turn(one, shape != "sync with")
            best = rows[name][shape]
            rows[name][shape] = took if best is None else min(best, took)
    return rows
