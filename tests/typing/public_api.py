"""Types of the public API, pinned: `mypy --strict tests/typing` checks this file.

It is never run: every line is a claim about what a type checker infers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, assert_type

from di import (
    AsyncHealthChecker,
    HealthChecker,
    HealthCheckResult,
    HealthMonitor,
    HealthReport,
    Injector,
    Scope,
    ServingStatus,
)
from di.monitor import HealthSnapshot


class Mailer(Protocol):
    def send(self, to: str) -> None: ...


class Store(ABC):
    @abstractmethod
    def get(self, key: str) -> bytes: ...


class Database:
    def health_check(self) -> None: ...


class Cache:
    async def health_check(self) -> None: ...


async def check_types(injector: Injector) -> None:
    # invoke() and ainvoke() take a class, a Protocol or an ABC, and return an instance.
    assert_type(injector.invoke(Database), Database)
    assert_type(injector.invoke(Mailer), Mailer)
    assert_type(injector.invoke(Store), Store)
    assert_type(injector.invoke(Database, name="replica"), Database)
    assert_type(injector.invoke("replica"), Any)
    assert_type(await injector.ainvoke(Mailer), Mailer)
    assert_type(await injector.ainvoke(Store), Store)
    assert_type(await injector.ainvoke("replica"), Any)

    scope = injector.scope(context={Database: Database()})
    assert_type(scope, Scope)
    assert_type(injector.scope("named"), Scope)
    assert_type(scope.invoke(Mailer), Mailer)

    assert_type(injector.health_check(), dict[str, Exception | None])
    assert_type(await injector.ahealth_check(), dict[str, Exception | None])
    report = await injector.ahealth_report()
    assert_type(report, HealthReport)
    assert_type(report.checks, tuple[HealthCheckResult, ...])
    assert_type(injector.health_check_service(Database), Exception | None)

    assert_type(injector.explain(Mailer), str)
    assert_type(injector.graph(), str)

    monitor = HealthMonitor(injector)
    assert_type(monitor.status(""), ServingStatus | None)
    snapshot = monitor.snapshot
    assert_type(snapshot, HealthSnapshot)
    assert_type(snapshot.statuses[""], ServingStatus)
    assert_type(snapshot.results[""], tuple[HealthCheckResult, ...])
    assert_type(snapshot.evaluate("readiness", ["db"]), ServingStatus | None)
    assert_type(snapshot.unbuilt, tuple[str, ...])
    strict = HealthMonitor(injector, unbuilt="fail")
    strict.set_status(Database, ServingStatus.NOT_SERVING, ttl=600)
    strict.set_status("readiness", ServingStatus.NOT_SERVING)
    strict.clear_status(Database)

    # The protocols describe services with checks.
    sync_check: HealthChecker = Database()
    async_check: AsyncHealthChecker = Cache()
    del sync_check, async_check
