"""Observability under faults: details any answer can carry, metrics per registry, logs."""

from __future__ import annotations

import datetime
import decimal
import json
import logging
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import di.metrics
from di import Degraded, HealthMonitor, Injector, Outcome
from di.asgi import health_app

from ..services import key
from ..timing import at_most

pytestmark = pytest.mark.anyio


class OddDetails:
    def health_check(self) -> dict[Any, Any]:
        return {
            "since": datetime.datetime(2024, 1, 1),
            "ratio": decimal.Decimal("0.5"),
            ("a", 1): 1,
            "lag": float("nan"),
        }


class Replicas:
    async def health_check(self) -> None:
        async with anyio.create_task_group() as tasks:

            async def probe() -> None:
                raise Degraded("one replica lags")

            tasks.start_soon(probe)


async def test_details_of_any_kind_make_valid_json_everywhere() -> None:
    injector = Injector()
    injector.provide(OddDetails, eager=True)
    await injector.astart()
    report = await injector.ahealth_report()
    text = json.dumps(report.to_dict(), allow_nan=False)  # strict JSON: no NaN
    details = json.loads(text)["checks"][0]["details"]
    assert details == {"since": "2024-01-01 00:00:00", "ratio": "0.5", "('a', 1)": 1, "lag": "nan"}
    monitor = HealthMonitor(injector)
    await monitor.check()
    app = health_app(monitor, show_details=True)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/health", "query_string": b""}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    json.loads(sent[1]["body"])


async def test_degraded_from_a_task_group_is_degraded() -> None:
    injector = Injector()
    injector.provide(Replicas, eager=True)
    await injector.astart()
    result = (await injector.ahealth_report())[key(Replicas)]
    assert result.outcome is Outcome.DEGRADED


async def test_one_healthdi_collector_per_registry() -> None:
    registry = CollectorRegistry()
    first = HealthMonitor(Injector())
    assert di.metrics.register(first, registry) is di.metrics.register(first, registry)
    with pytest.raises(ValueError, match="give each monitor its own registry"):
        di.metrics.register(HealthMonitor(Injector()), registry)
    for _ in range(3):  # a fresh registry each time gets the families
        fresh = CollectorRegistry()
        di.metrics.register(first, fresh)
        await first.check()
        assert b"healthdi_health_status" in generate_latest(fresh)


async def test_held_back_status_changes_are_summarised_once_due(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky:
        up = True

        def health_check(self) -> None:
            if not Flaky.up:
                raise ConnectionError("down")

    injector = Injector()
    injector.provide(Flaky, eager=True)
    await injector.astart()
    monitor = HealthMonitor(injector, interval=0.01, timeout=at_most(0), log_interval=0.3)
    caplog.set_level(logging.INFO, logger="di.health")
    for i in range(10):
        Flaky.up = i % 2 == 0
        await monitor.check()
    Flaky.up = False  # and stays down
    for _ in range(10):
        await monitor.check()
        await anyio.sleep(0.05)
    summaries = [r.getMessage() for r in caplog.records if "(not logged); now" in r.getMessage()]
    assert any(line.endswith("now NOT_SERVING") and "(overall)" in line for line in summaries)


def test_a_group_named_like_a_service_is_refused() -> None:
    injector = Injector()
    injector.provide(OddDetails, name="liveness")
    with pytest.raises(ValueError, match="group 'liveness' has the name of a service"):
        HealthMonitor(injector)


def test_groups_of_a_single_class_say_what_to_pass() -> None:
    with pytest.raises(TypeError, match=r"must list its members, such as groups="):
        HealthMonitor(Injector(), groups={"db": OddDetails})  # type: ignore[dict-item]


def test_an_override_keeps_a_services_criticality() -> None:
    class Search:
        def health_check(self) -> None:
            raise ConnectionError("search is down")

    class FakeSearch(Search):
        pass

    injector = Injector()
    injector.provide(Search, critical=False)
    injector.override(FakeSearch, provides=Search)
    injector.invoke(Search)
    assert injector.health_report().status == "warn"


async def test_aoverride_value_keeps_a_services_criticality_as_its_twin_does() -> None:
    class Search:
        def health_check(self) -> None:
            raise ConnectionError("search is down")

    injector = Injector()
    injector.provide(Search, critical=False)
    await injector.aoverride_value(Search(), provides=Search)
    assert (await injector.ahealth_report()).status == "warn"
