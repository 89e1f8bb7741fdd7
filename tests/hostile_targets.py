"""Applications for `di check` and `di serve` whose checks return or raise what nobody
planned for, or that leave services with a check unbuilt."""

from __future__ import annotations

from typing import Any

from di import Degraded, Injector

from .hostile import AsyncHostile, Hostile, Unprintable, UnprintableError
from .services import Cache, Database, key


def hostile() -> Injector:
    """The checks of :mod:`tests.hostile` (what they do is set by the test) and a
    healthy database beside them."""
    injector = Injector(health_check_timeout=30.0)
    injector.provide(Hostile, eager=True)
    injector.provide(AsyncHostile, eager=True)
    injector.provide(Database, eager=True)
    return injector


class UnprintableDetail:
    """Returns a detail whose str() raises (the issue's first finding)."""

    def health_check(self) -> dict[str, Any]:
        return {"pool": Unprintable(ValueError("no text"))}


class HugeInt:
    """Degraded, with a 5,000-digit integer in its details."""

    def health_check(self) -> None:
        raise Degraded("odd counter", details={"counter": 10**5000})


class HugeDetail:
    """Returns a 5 MB string."""

    def health_check(self) -> dict[str, str]:
        return {"dump": "x" * 5_000_000}


# A failure whose text draws a green line under `di check`'s table and forges a log line.
FORGED = (
    f"refused\n\x1b[32m{key(Cache)}  healthy  0.1 ms\x1b[0m\n"
    "2024-01-01 00:00:00,000 INFO di.health: health check of 'payments' recovered"
)


class Forging:
    def health_check(self) -> None:
        raise ConnectionRefusedError(FORGED)


def _with(service: type) -> Injector:
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(service, eager=True)
    return injector


def unprintable_detail() -> Injector:
    return _with(UnprintableDetail)


def huge_int() -> Injector:
    return _with(HugeInt)


def huge_detail() -> Injector:
    return _with(HugeDetail)


def forging() -> Injector:
    return _with(Forging)


def forging_factory() -> Any:
    """An application factory (of an injector, or an app for `di run --factory`) that
    fails with the forging text."""
    raise ConnectionRefusedError(FORGED)


def unprintable_factory() -> Any:
    """An application factory that fails with an error whose str() raises."""
    raise UnprintableError(ValueError("no text"))


# -- services with a check that nothing builds ----------------------------------------------


class DownCache:
    """A cache whose check always fails."""

    def health_check(self) -> None:
        raise ConnectionRefusedError("cache.internal:6379 refused")


DOWN_CACHE = f"{__name__}.DownCache"


def forgotten_eager() -> Injector:
    """A lazy cache whose check always fails, never built: only the database is checked."""
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.provide(DownCache)  # eager=True forgotten
    return injector


def nothing_eager() -> Injector:
    """Services with checks, none of them eager or built: no check runs."""
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    return injector


def no_checks() -> Injector:
    """Services, none with a check."""
    injector = Injector()
    injector.provide_value("postgres://db", name="dsn")
    return injector
