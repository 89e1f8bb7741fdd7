"""Applications for the `di serve` tests. Shutdown hooks print, so a test sees them run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from di import Injector


def say(text: str) -> None:
    print(text, flush=True)


class Database:
    """Healthy; its shutdown hook says it ran."""

    def health_check(self) -> None:
        pass

    def shutdown(self) -> None:
        say("database closed")


class Hung:
    """A sync check that never returns (its thread is a daemon: the process can exit)."""

    def health_check(self) -> None:
        threading.Event().wait()


class Failing:
    def health_check(self) -> None:
        raise ConnectionRefusedError("payments.internal:443 refused the connection")


class Exiting:
    """A check that calls sys.exit(), as some client libraries do."""

    def health_check(self) -> None:
        raise SystemExit(0)


def healthy() -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    return injector


def hung() -> Injector:
    """A hung check with Injector() defaults: no timeouts of its own."""
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
    def payments(database: Database) -> Failing:
        raise ConnectionRefusedError("cannot reach payments")

    injector = healthy()
    injector.provide(payments, eager=True)
    return injector


def slow_factory() -> Injector:
    """Builds a service, then takes its time: a signal arrives meanwhile."""
    injector = healthy()
    injector.invoke(Database)
    say("factory waiting")
    time.sleep(2)
    return injector


def slow_shutdown() -> Injector:
    def closing() -> Iterator[Database]:
        yield Database()
        say("slow hook started")
        time.sleep(2)
        say("slow hook finished")

    injector = Injector()
    injector.provide(closing, eager=True)
    return injector


class Lagging:
    """Works, impaired: its check says so."""

    def health_check(self) -> dict[str, float]:
        from di import Degraded

        raise Degraded("replication lag over 30 s", details={"lag_seconds": 42.0})


def degraded() -> Injector:
    """A degraded check and a failing service that is not critical."""
    injector = healthy()
    injector.provide(Lagging, eager=True)
    injector.provide(Failing, eager=True, critical=False)
    return injector
