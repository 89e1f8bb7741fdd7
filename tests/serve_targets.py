"""Applications for the `di serve` tests. Shutdown hooks print, so a test sees them run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

from di import Injector

from .services import Database, LaggingReplica
from .timing import at_most


def say(text: str) -> None:
    print(text, flush=True)


class AnnouncingDatabase(Database):
    """The shared Database (healthy), whose shutdown hook says it ran."""

    def shutdown(self) -> None:
        super().shutdown()
        say("database closed")


class Hung:
    """A sync check that never returns (its thread is a daemon: the process can exit)."""

    def health_check(self) -> None:
        say("hung check started")
        threading.Event().wait()


class Stubborn:
    """An async check that swallows its cancellation (a client's careless retry loop)."""

    async def health_check(self) -> None:
        while True:
            try:  # noqa: SIM105 (written as careless code is)
                await asyncio.sleep(0.1)
            except BaseException:
                pass


class BadText(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this error cannot be rendered")


class BadlyFailing:
    """Fails with an error whose str() raises."""

    def health_check(self) -> None:
        raise BadText()


class Failing:
    def health_check(self) -> None:
        raise ConnectionRefusedError("payments.internal:443 refused the connection")


class Exiting:
    """A check that calls sys.exit(), as some client libraries do."""

    def health_check(self) -> None:
        raise SystemExit(0)


def healthy() -> Injector:
    injector = Injector()
    injector.provide(AnnouncingDatabase, eager=True)
    return injector


def hung() -> Injector:
    """A hung check with Injector() defaults (a 5 s timeout per check, which the
    round's own timeout of one interval usually cuts first)."""
    injector = healthy()
    injector.provide(Hung, eager=True)
    return injector


def eager_failing() -> Injector:
    """A failing service that nobody invokes: only its eager start builds it."""
    injector = healthy()
    injector.provide(Failing, eager=True)
    return injector


def exiting() -> Injector:
    injector = healthy()
    injector.provide(Exiting, eager=True)
    return injector


def broken_start() -> Injector:
    def payments(database: AnnouncingDatabase) -> Failing:
        raise ConnectionRefusedError("cannot reach payments")

    injector = healthy()
    injector.provide(payments, eager=True)
    return injector


def slow_factory() -> Injector:
    """Builds a service, then takes its time: a signal arrives meanwhile."""
    injector = healthy()
    injector.invoke(AnnouncingDatabase)
    say("factory waiting")
    time.sleep(2)
    return injector


def slow_shutdown() -> Injector:
    def closing() -> Iterator[AnnouncingDatabase]:
        yield AnnouncingDatabase()
        say("slow hook started")
        time.sleep(2)
        say("slow hook finished")

    injector = Injector()
    injector.provide(closing, eager=True)
    return injector


def degraded() -> Injector:
    """A degraded check and a failing service that is not critical."""
    injector = healthy()
    injector.provide(LaggingReplica, eager=True)
    injector.provide(Failing, eager=True, critical=False)
    return injector


def hung_without_timeouts() -> Injector:
    """A hung check and no timeout but the round's (one interval)."""
    injector = Injector(health_check_timeout=None)
    injector.provide(AnnouncingDatabase, eager=True)
    injector.provide(Hung, eager=True)
    return injector


def stubborn() -> Injector:
    injector = Injector(health_check_timeout=None)
    injector.provide(AnnouncingDatabase, eager=True)
    injector.provide(Stubborn, eager=True)
    return injector


def badly_failing() -> Injector:
    injector = healthy()
    injector.provide(BadlyFailing, eager=True)
    return injector


def start_cancelled() -> Injector:
    """An eager factory that raises CancelledError: a failed start, not a stop."""

    def payments(database: AnnouncingDatabase) -> Failing:
        raise asyncio.CancelledError()

    injector = healthy()
    injector.provide(payments, eager=True)
    return injector


def start_exits() -> Injector:
    def payments(database: AnnouncingDatabase) -> Failing:
        raise SystemExit(3)

    injector = healthy()
    injector.provide(payments, eager=True)
    return injector


def slow_async_start() -> Injector:
    """An eager async factory that takes 30 s: a signal arrives meanwhile."""

    async def payments(database: AnnouncingDatabase) -> Failing:
        say("slow start begins")
        await asyncio.sleep(30)
        return Failing()

    injector = healthy()
    injector.provide(payments, eager=True)
    return injector


async def async_factory_hangs() -> Injector:
    """An async application factory that never returns."""
    injector = healthy()
    injector.invoke(AnnouncingDatabase)
    say("factory waiting")
    await asyncio.Event().wait()
    return injector


async def stubborn_factory() -> Injector:
    """An async application factory that never returns and ignores cancellation."""
    say("factory waiting")
    while True:
        try:  # noqa: SIM105 (written as careless code is)
            await asyncio.sleep(0.1)
        except BaseException:
            pass


class SlowToBuild:
    """A sync constructor that blocks (a client connecting synchronously)."""

    def __init__(self) -> None:
        time.sleep(1.5)


class LoopBlocker:
    """An async check that calls a blocking client: it stalls the event loop (from its
    second round on, so that the start's stall is seen apart)."""

    rounds = 0

    async def health_check(self) -> None:
        LoopBlocker.rounds += 1
        if LoopBlocker.rounds == 2:
            time.sleep(1.5)


def blocking() -> Injector:
    injector = healthy()
    injector.provide(SlowToBuild, eager=True)
    injector.provide(LoopBlocker, eager=True)
    return injector


def top_app() -> object:
    """The health app as uvicorn's top app: its lifespan owns the container."""
    from di import HealthMonitor
    from di.asgi import health_app

    return health_app(HealthMonitor(healthy(), interval=0.2, timeout=at_most(0)))
