"""Nothing a check returns or raises can take reporting down (property tests).

Whatever a hostile check does (see :mod:`tests.hostile`), on asyncio and trio, sync and
async: its neighbour is reported healthy, the report's JSON is strict JSON within the
caps, the monitor publishes, logs one printable line per change, renders every answer
from its snapshot (health+json with and without details, the Kubernetes text with one
printable line per check), and its metrics and spans are made. The same, through real
servers and the di command, is in tests/wire/test_hostile_answers.py.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import di.metrics
from di import HealthMonitor, Injector, Outcome, ServingStatus
from di._answers import render_health, render_probe
from di._health.verdicts import DETAILS_LIMIT, json_ready

from ..hostile import (
    HOSTILE,
    TEXT_BOUND,
    AsyncHostile,
    Behaviour,
    Hostile,
    Masked,
    MaskedError,
    Now,
    UnreadableDegraded,
    assert_plain_lines,
    behaviours,
    details,
    strict_json,
)
from ..services import Database, key

pytestmark = pytest.mark.anyio

DB = key(Database)
BODY_BOUND = 64 * 1024  # an answer carries two hostile checks' capped texts at most
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Lines(logging.Handler):
    """Every line the ``di`` loggers write, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def hostile_injector() -> Injector:
    injector = Injector(health_check_timeout=30.0)
    injector.provide(Hostile, eager=True)
    injector.provide(AsyncHostile, eager=True)
    injector.provide(Database, eager=True)
    return injector


@EXAMPLES
@given(behaviour=behaviours)
@example(behaviour=Behaviour(returns=Masked()))
@example(behaviour=Behaviour(raises=MaskedError("masked")))
@example(behaviour=Behaviour(raises=UnreadableDegraded(RuntimeError("no details"))))
async def test_the_report_carries_any_check_result_as_strict_json_within_the_caps(
    behaviour: Behaviour,
) -> None:
    Now.behaviour = behaviour
    injector = hostile_injector()
    await injector.astart()
    try:
        report = await injector.ahealth_report()
    finally:
        await injector.ashutdown()
    assert sorted(check.key for check in report.checks) == sorted([*HOSTILE, DB])
    assert report[DB].outcome is Outcome.HEALTHY
    text = json.dumps(report.to_dict(), allow_nan=False)
    for check in strict_json(text)["checks"]:
        assert check["error"] is None or len(check["error"]) <= TEXT_BOUND
        assert len(json.dumps(check.get("details", {}))) <= DETAILS_LIMIT
    for check in report.checks:
        assert check.details is None or json.loads(json.dumps(check.details)) == check.details


@EXAMPLES
@given(behaviour=behaviours)
@example(behaviour=Behaviour(returns=Masked()))
@example(behaviour=Behaviour(raises=MaskedError("masked")))
@example(behaviour=Behaviour(raises=UnreadableDegraded(RuntimeError("no details"))))
async def test_the_monitor_publishes_logs_and_renders_any_check_result(
    behaviour: Behaviour,
) -> None:
    Now.behaviour = behaviour
    injector = hostile_injector()
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monitor = HealthMonitor(
        injector, log_interval=0, tracing=provider, show_details=True, trace_checks="all"
    )
    di.metrics.register(monitor, registry)
    lines = Lines()
    logger = logging.getLogger("di")
    logger.addHandler(lines)
    try:
        await monitor.start()
        await monitor.check()
        Now.behaviour = Behaviour()  # recovers: a change, logged
        await monitor.check()
        Now.behaviour = behaviour  # and fails again
        await monitor.check()
    finally:
        logger.removeHandler(lines)
        await injector.ashutdown()
    assert monitor.status(DB) is ServingStatus.SERVING
    assert len(exporter.get_finished_spans()) == 3 * 4  # three rounds of three checks
    for line in lines.lines:
        assert line.isprintable(), repr(line)
    snapshot = monitor.snapshot
    for show in (False, True):
        for name in ("", "readiness", DB, *HOSTILE):
            answer = render_health(snapshot, name, show)
            assert answer.status in (200, 503) and len(answer.body) < BODY_BOUND
            health = strict_json(answer.body)
            assert set(health["checks"]) <= {*HOSTILE, DB}
        probe = render_probe(snapshot, "readyz", None, {"verbose": [""]}, show)
        printed = assert_plain_lines(
            probe.body.decode(), r"^(\[[+-]\]\S|readyz check (passed|failed)$)"
        )
        assert printed.count(f"[+]{DB} ok") == 1
        assert sum(not line.startswith("[") for line in printed) == 1  # the last line
        for name in HOSTILE:
            single = render_probe(snapshot, "readyz", name, {}, show)
            assert single.status in (200, 503)
            assert_plain_lines(single.body.decode(), r"^(ok$|\[[+-]\]\S|readyz check )")
    families = {
        family.name: family
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }
    statuses = {
        sample.labels["name"]: sample.labels["status"]
        for sample in families["healthdi_health_status"].samples
        if sample.value == 1.0
    }
    assert statuses[DB] == "pass"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=details)
def test_details_are_made_plain_whatever_they_hold(value: Any) -> None:
    plain = json_ready(value)
    if plain is None:
        return
    text = json.dumps(plain, allow_nan=False)
    assert len(text) <= DETAILS_LIMIT
    assert strict_json(text) == plain
