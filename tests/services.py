"""Small services shared by the tests. Module level, so annotations resolve."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio


class Config:
    def __init__(self) -> None:
        self.url = "sqlite://"


class Database:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.closed = False

    def shutdown(self) -> None:
        self.closed = True


class Cache:
    pass


class Repo:
    def __init__(self, db: Database) -> None:
        self.db = db


class Service:
    def __init__(self, repo: Repo, config: Config) -> None:
        self.repo = repo
        self.config = config


def new_cache() -> Cache:
    return Cache()


async def new_async_cache() -> Cache:
    await anyio.sleep(0)
    return Cache()


events: list[str] = []


def new_database_gen(config: Config) -> Iterator[Database]:
    db = Database(config)
    events.append("open")
    yield db
    events.append("close")


async def new_database_agen(config: Config) -> AsyncIterator[Database]:
    db = Database(config)
    events.append("aopen")
    yield db
    await anyio.sleep(0)
    events.append("aclose")


class NeedsMissing:
    def __init__(self, nothing: Cache) -> None:
        self.nothing = nothing


class Later:
    """Annotated with a name that only exists once `Undefined` is defined below."""

    def __init__(self, thing: Undefined) -> None:  # type: ignore[name-defined] # noqa: F821
        self.thing = thing
