"""The services the tests share: one Database, Cache, Queue, Config, Repo, Request...

Module level, so annotations resolve and reported names are stable. Every layer's
tests use these; a test whose service must behave otherwise (one that raises when
built, one that prints when closed) defines its own and names it for what it does
(``UnreachableDatabase``). A test that reads a reported name builds it with
:func:`key` (``key(Database) == "tests.services.Database"``), never spells it out.

What they keep, for a test to read:

- :data:`built`: which of them were built, in order (``Config``, ``Database``,
  ``Cache``, ``Queue``); the ``built`` fixture of ``tests/conftest.py`` empties it
  when a test starts.
- A :class:`Database`, :class:`Cache` or :class:`Queue` is healthy until told
  ``fail(text)``, and again after ``recover()``; each check is counted in ``checks``.
  The text it fails with by default names a host (``secret-host:5432``), so the tests
  that check an error's text is withheld have something to withhold.
- A :class:`Database` is ``closed`` by its shutdown hook. It takes the Config when one
  is provided (``db.config``, None otherwise); given a :class:`Journal`
  (``provide_value(Journal())``), it writes "database built" and "database shut
  down" there, in order with whatever else the test writes.
- An :class:`UnclosableQueue`'s shutdown hook raises OSError.
- A :class:`LaggingReplica` works, impaired: its check raises Degraded while its
  ``lag`` is over 30 s.

The path of a check: the engine calls ``health_check`` (sync for the Database, async
for the Cache and Queue), which counts it in :meth:`Switch._check` and raises
``ConnectionError(text)`` while the service is told to fail.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

from di import Degraded


def key(cls: type) -> str:
    """The name the container reports a class's service under: its module and qualname."""
    return f"{cls.__module__}.{cls.__qualname__}"


def build(injector: Any, *classes: type) -> None:
    """Provide each class as a lazy singleton and build it."""
    for cls in classes:
        injector.provide(cls)
        injector.invoke(cls)


class Journal:
    """Lines in the order they were written, from any thread."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def count(self, line: str) -> int:
        with self.lock:
            return self.lines.count(line)

    def clear(self) -> None:
        with self.lock:
            self.lines.clear()


built = Journal()
"""The class name of every shared service built, in order (the ``built`` fixture)."""


class Config:
    def __init__(self) -> None:
        built.add("Config")
        self.url = "sqlite://"


class Switch:
    """Healthy until told ``fail(text)``, and again after ``recover()``; counts its checks."""

    def __init__(self) -> None:
        built.add(type(self).__name__)
        self.failure: str | None = None
        self.checks = 0
        self.lock = threading.Lock()

    def fail(self, text: str | None = None) -> None:
        """Checks raise ``ConnectionError(text)`` from now on; by default the text names
        a host, as a driver's error does."""
        self.failure = (
            text if text is not None else f"{type(self).__name__} is down (secret-host:5432)"
        )

    def recover(self) -> None:
        self.failure = None

    def _check(self) -> None:
        with self.lock:
            self.checks += 1
        if self.failure is not None:
            raise ConnectionError(self.failure)


class Database(Switch):
    """A sync check; closed by its shutdown hook. Takes the Config and the Journal when
    they are provided, and works without them."""

    def __init__(self, config: Config | None = None, journal: Journal | None = None) -> None:
        super().__init__()
        self.config = config
        self.journal = journal
        self.closed = False
        if journal is not None:
            journal.add("database built")

    def health_check(self) -> None:
        self._check()

    def shutdown(self) -> None:
        self.closed = True
        if self.journal is not None:
            self.journal.add("database shut down")


class Cache(Switch):
    """An async check."""

    async def health_check(self) -> None:
        self._check()


class Queue(Switch):
    """An async check."""

    async def health_check(self) -> None:
        self._check()


class UnclosableQueue:
    """Its shutdown fails: the broker went away. Takes the Database when one is provided."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db

    def shutdown(self) -> None:
        raise OSError("the broker went away")


class LaggingReplica:
    """Works, impaired: while its ``lag`` is over 30 s (42 s to begin with), its async
    check raises Degraded, with the lag in its details."""

    def __init__(self) -> None:
        self.lag = 42.0

    async def health_check(self) -> None:
        if self.lag > 30:
            raise Degraded("replication lag over 30 s", details={"lag_seconds": self.lag})


class Repo:
    def __init__(self, db: Database) -> None:
        self.db = db


class Service:
    def __init__(self, repo: Repo, config: Config) -> None:
        self.repo = repo
        self.config = config


class Request:
    """What a request scope receives as context."""

    def __init__(self, path: str) -> None:
        self.path = path


def new_cache() -> Cache:
    return Cache()


async def new_async_cache() -> Cache:
    await anyio.sleep(0)
    return Cache()


events: list[str] = []
"""What the generator factories below did; a test that reads it empties it first."""


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
