"""Types of the public API, pinned: `mypy --strict tests/typing` checks this file.

It is never run: every line is a claim about what a type checker infers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Annotated, Any, Literal, Protocol, assert_type

import di
from di import (
    AsyncHealthChecker,
    HealthChecker,
    HealthCheckResult,
    HealthMonitor,
    HealthPolicy,
    HealthReport,
    HookEvent,
    Inject,
    Injector,
    Named,
    Scope,
    ServiceShutdown,
    ServingStatus,
    ShutdownError,
    ShutdownReport,
)
from di._container.overrides import Overriding
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


class SmtpMailer:
    def send(self, to: str) -> None: ...


def injected(
    database: Inject[Database],
    replica: Inject[Annotated[Database, Named("replica")]],
    mailers: Inject[list[Mailer]],
) -> None:
    # For a type checker, Inject[T] is T.
    assert_type(database, Database)
    assert_type(replica, Database)
    assert_type(mailers, list[Mailer])


async def check_ergonomics(injector: Injector) -> None:
    # @inject keeps the return type; the injected parameters need not be passed.
    @injector.inject
    def main(database: Inject[Database], verbose: bool = False) -> int:
        return 0

    assert_type(main, Callable[..., int])
    assert_type(main(verbose=True), int)

    @injector.scope().inject
    async def job(database: Inject[Database]) -> str:
        return ""

    assert_type(await job(), str)

    @injector.inject
    async def stream(database: Inject[Database]) -> AsyncIterator[bytes]:
        yield b""

    assert_type(stream, Callable[..., AsyncIterator[bytes]])
    assert_type(job, Callable[..., Coroutine[Any, Any, str]])

    # overridden(): a factory of the key's type; `with` and `async with`. (A value is
    # not checked against the key: a type checker widens the key's type to fit it.)
    override = injector.overridden(Mailer, value=SmtpMailer())
    assert_type(override, Overriding)
    with override as entered:
        assert_type(entered, None)
    async with injector.overridden(Mailer, SmtpMailer):
        pass
    injector.overridden("replica", value=Database())

    # clone(): an Injector; collections: a list of the interface.
    assert_type(injector.clone(), Injector)
    assert_type(injector.invoke(list[Mailer]), list[Mailer])
    assert_type(await injector.ainvoke(list[Store]), list[Store])

    # Shutdown reports, from every shutdown and from ShutdownError.
    report = injector.shutdown()
    assert_type(report, ShutdownReport)
    assert_type(await injector.ashutdown(), ShutdownReport)
    assert_type(injector.shutdown_on_signals(), ShutdownReport)
    assert_type(await injector.ashutdown_on_signals(), ShutdownReport)
    assert_type(report.ok, bool)
    assert_type(report.services, tuple[ServiceShutdown, ...])
    for service in report:
        assert_type(service, ServiceShutdown)
        assert_type(service.outcome, Literal["ok", "failed", "timed_out"])
        assert_type(service.duration, float)
        assert_type(service.error, BaseException | None)
    try:
        injector.shutdown()
    except ShutdownError as error:
        assert_type(error.report, ShutdownReport)

    # Hooks take a HookEvent.
    def hook(event: HookEvent) -> None:
        assert_type(
            event.name,
            Literal["provided", "building", "built", "build_failed", "shutting_down", "shut_down"],
        )
        assert_type(event.duration, float | None)

    injector.add_hook("built", hook)
    injector.remove_hook("built", hook)


async def policies_and_root_causes(injector: Injector) -> None:
    policy = HealthPolicy(timeout=2.0, failure_threshold=3, skip_when_blocked=True)
    injector.provide(Database, health_policy=policy, tags=("db", "external"))
    report = await injector.ahealth_report()
    assert_type(report.root_causes, tuple[str, ...])
    assert_type(report.checks[0].blocked_by, tuple[str, ...])
    monitor = HealthMonitor(injector, policy=policy, info={"version": "1.4.2"})
    monitor.add_group("shop.Orders", [Database, "tag:db"])
    assert_type(monitor.snapshot.streaks, Mapping[str, tuple[int, int]])
    assert_type(monitor.snapshot.waiting, tuple[str, ...])


def refused(injector: Injector, database: Inject[Database]) -> None:
    """What a type checker must refuse: each line fails, or its ignore is unused (strict)."""
    injector.overridden(Mailer, Database)  # type: ignore[arg-type]
    injector.overridden(Database, lambda: "not a database")  # type: ignore[arg-type, return-value]
    injector.add_hook("invoked", print)  # type: ignore[arg-type]

    def wrong_hook(event: str) -> None: ...

    injector.add_hook("built", wrong_hook)  # type: ignore[arg-type]
    text: str = database  # type: ignore[assignment]
    listed: list[Database] = injector.invoke(list[Mailer])  # type: ignore[arg-type]
    HealthPolicy(timeout="1")  # type: ignore[arg-type]
    di.Injectr()  # type: ignore[attr-defined]  # names load lazily, yet a typo is refused
    del text, listed
