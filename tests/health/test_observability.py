"""Degraded checks, check details, Prometheus metrics, OpenTelemetry spans, quiet logs.

Served answers come from real servers (uvicorn and grpcio on loopback) read by real
clients; metrics are scraped over HTTP and parsed with prometheus-client's own parser;
spans go to OpenTelemetry's in-memory exporter.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import di.metrics
from di import HealthCheckTimeoutError, HealthMonitor, Injector, Outcome

from ..processes import ROOT
from ..processes import di as run_di
from ..servers import Served, serve
from ..services import Cache, Database, LaggingReplica, Queue, key
from ..timing import at_most

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DB = key(Database)


class Search:
    """Not critical (provided with critical=False); down."""

    def health_check(self) -> None:
        raise ConnectionRefusedError("search.internal:9200 refused")


class Pool:
    """Healthy, and says how."""

    async def health_check(self) -> dict[str, Any]:
        return {"size": 10, "in_use": 3}


class Latency:
    def health_check(self) -> dict[str, float]:
        return {"ms": 12.5}


class Slow:
    """Times out: it takes longer than any per-check timeout here."""

    async def health_check(self) -> None:
        await anyio.sleep(10)


class SlowToBuild:
    def __init__(self) -> None:
        time.sleep(0.05)

    def health_check(self) -> None:
        pass


def degraded_injector(timeout: float = 5.0) -> tuple[Injector, Database]:
    injector = Injector(health_check_timeout=timeout)
    injector.provide(Database)
    injector.provide(LaggingReplica)
    injector.provide(Search, critical=False)
    db = injector.invoke(Database)
    injector.invoke(LaggingReplica)
    injector.invoke(Search)
    return injector, db


# -- the engine -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_degraded_and_non_critical_failures_are_warn_and_still_healthy() -> None:
    injector, db = degraded_injector(timeout=at_most(0))  # Slow's times out, no other
    injector.provide(Slow, critical=False)
    injector.invoke(Slow)
    report = await injector.ahealth_report()
    outcomes = {check.key: check.outcome for check in report.checks}
    assert outcomes == {
        DB: Outcome.HEALTHY,
        key(LaggingReplica): Outcome.DEGRADED,
        f"{__name__}.Search": Outcome.DEGRADED,
        f"{__name__}.Slow": Outcome.DEGRADED,
    }
    assert report.healthy and report.status == "warn"
    assert isinstance(report[f"{__name__}.Search"].error, ConnectionRefusedError)
    assert isinstance(report[f"{__name__}.Slow"].error, HealthCheckTimeoutError)
    assert report[key(LaggingReplica)].details == {"lag_seconds": 42.0}
    assert report[key(LaggingReplica)].status == "warn"
    assert report.to_dict()["status"] == "warn"
    db.fail()
    report = await injector.ahealth_report()
    assert not report.healthy and report.status == "fail"
    assert report[DB].outcome is Outcome.UNHEALTHY


@pytest.mark.anyio
async def test_a_failing_non_critical_value_and_a_degraded_critical_check_read_degraded() -> None:
    injector = Injector()
    injector.provide_value(Search(), critical=False)
    injector.provide_value(LaggingReplica())  # critical, but it says it is only degraded
    report = await injector.ahealth_report()
    assert [check.outcome for check in report.checks] == [Outcome.DEGRADED, Outcome.DEGRADED]
    assert report.status == "warn"


@pytest.mark.anyio
async def test_checks_return_details_sync_and_async() -> None:
    injector = Injector()
    injector.provide(Pool)
    injector.provide(Latency)
    injector.provide(Cache)
    for cls in (Pool, Latency, Cache):
        injector.invoke(cls)
    report = await injector.ahealth_report()
    assert report[f"{__name__}.Pool"].details == {"size": 10, "in_use": 3}
    assert report[f"{__name__}.Latency"].details == {"ms": 12.5}
    assert report[key(Cache)].details is None
    assert report.status == "pass"
    assert report[f"{__name__}.Pool"].to_dict()["details"] == {"size": 10, "in_use": 3}


def test_build_durations_are_recorded() -> None:
    injector = Injector()
    injector.provide(SlowToBuild)
    injector.invoke(SlowToBuild)
    from di._container import views

    service = views.find(injector, SlowToBuild)
    assert service.build_seconds >= 0.05


# -- served: gRPC, Kubernetes probes, health+json --------------------------------------


@pytest.fixture
def degraded_served() -> Iterator[tuple[Served, Database]]:
    injector, db = degraded_injector()
    with serve(injector, interval=60) as served:
        yield served, db


def grpc_status(served: Served, name: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=name)
        return int(stub.Check(request, timeout=5).status)


def test_degraded_keeps_grpc_and_readiness_serving_and_reads_warn(
    degraded_served: tuple[Served, Database],
) -> None:
    served, db = degraded_served
    assert grpc_status(served, "") == SERVING
    assert grpc_status(served, "readiness") == SERVING
    assert grpc_status(served, f"{__name__}.Search") == SERVING
    ready = httpx.get(served.url + "/readyz", timeout=5)
    assert (ready.status_code, ready.text) == (200, "ok")
    verbose = httpx.get(served.url + "/readyz?verbose", timeout=5)
    assert verbose.status_code == 200
    lines = verbose.text.splitlines()
    assert f"[+]{key(LaggingReplica)} degraded: reason withheld" in lines
    assert f"[+]{__name__}.Search degraded: reason withheld" in lines
    assert f"[+]{DB} ok" in lines and lines[-1] == "readyz check passed"
    single = httpx.get(served.url + f"/readyz/{key(LaggingReplica)}", timeout=5)
    assert single.status_code == 200 and "degraded" in single.text
    health = httpx.get(served.url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.headers["content-type"] == "application/health+json"
    body = health.json()
    assert body["status"] == "warn"
    assert body["checks"][key(LaggingReplica)][0]["status"] == "warn"
    assert body["checks"][key(LaggingReplica)][0]["output"] == "reason withheld"
    assert body["checks"][DB][0]["status"] == "pass"

    db.fail()  # a critical failure still fails all of them
    served.check()
    assert grpc_status(served, "") == NOT_SERVING
    assert grpc_status(served, "readiness") == NOT_SERVING
    assert httpx.get(served.url + "/readyz", timeout=5).status_code == 503
    health = httpx.get(served.url + "/health", timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "fail"


@pytest.mark.parametrize("show_details", [False, True])
def test_details_appear_only_with_show_details(show_details: bool) -> None:
    injector, _ = degraded_injector()
    injector.provide(Pool)
    injector.provide(Latency)
    injector.invoke(Pool)
    injector.invoke(Latency)
    with serve(injector, show_details=show_details, interval=60) as served:
        checks = httpx.get(served.url + "/health", timeout=5).json()["checks"]
        verbose = httpx.get(served.url + "/readyz?verbose", timeout=5).text
    replica = checks[key(LaggingReplica)][0]
    pool = checks[f"{__name__}.Pool"][0]
    latency = checks[f"{__name__}.Latency"][0]
    if show_details:
        # One value: the entry's observation; several: fields of the entry.
        assert (replica["observedValue"], replica["observedUnit"]) == (42.0, "lag_seconds")
        assert replica["output"] == "Degraded: replication lag over 30 s"
        assert (latency["observedValue"], latency["observedUnit"]) == (12.5, "ms")
        assert pool["size"] == 10 and pool["in_use"] == 3 and pool["observedUnit"] == "ms"
        assert f"[+]{key(LaggingReplica)} degraded: Degraded: replication lag over 30 s" in verbose
    else:
        assert replica["observedUnit"] == "ms" and "lag_seconds" not in str(checks)
        assert "size" not in pool and latency["observedUnit"] == "ms"
        assert "30 s" not in str(checks) and "30 s" not in verbose


# -- di check -----------------------------------------------------------------------------


def test_di_check_exits_0_when_degraded_and_1_on_a_critical_failure() -> None:
    done = run_di("check", "tests.cli_targets:degraded")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:-1]}
    assert rows[key(LaggingReplica)] == "degraded"
    assert rows[key(Queue)] == "degraded"
    assert done.stdout.splitlines()[-1] == "degraded: 4 checks, 0 failed, 2 degraded"
    done = run_di("check", "tests.cli_targets:critical_failure")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "unhealthy: 4 checks, 1 failed, 2 degraded"


# -- Prometheus ----------------------------------------------------------------------------


class Healthy:
    def __init__(self) -> None:
        time.sleep(at_most(0))  # a slow start-up, as the build metric shows

    async def health_check(self) -> None:
        pass


class Failing:
    def health_check(self) -> None:
        raise ConnectionError("down")


def scrape(url: str) -> dict[str, Any]:
    answer = httpx.get(url + "/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def samples(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for sample in family.samples
        if sample.name == family.name + suffix
    }


def test_metrics_scraped_over_http_show_the_four_families() -> None:
    limit = at_most(0)  # Slow's check times out, no other
    injector = Injector(health_check_timeout=limit)
    injector.provide(Healthy)
    injector.provide(LaggingReplica)
    injector.provide(Failing)
    injector.provide(Slow)
    for cls in (Healthy, LaggingReplica, Failing, Slow):
        injector.invoke(cls)
    registry = CollectorRegistry()
    with serve(injector, metrics=registry, interval=3600) as served:
        served.check()  # the start's round, then this one: two rounds
        families = scrape(served.url)
    name = {cls: key(cls) for cls in (Healthy, LaggingReplica, Failing, Slow)}

    status = samples(families["healthdi_health_status"])
    current = {labels: value for labels, value in status.items() if value == 1}
    assert current == {
        (("name", ""), ("status", "fail")): 1,
        (("name", "liveness"), ("status", "pass")): 1,
        (("name", "readiness"), ("status", "fail")): 1,
        (("name", "startup"), ("status", "pass")): 1,
        (("name", name[Healthy]), ("status", "pass")): 1,
        (("name", name[LaggingReplica]), ("status", "warn")): 1,
        (("name", name[Failing]), ("status", "fail")): 1,
        (("name", name[Slow]), ("status", "fail")): 1,
    }
    assert len(status) == 3 * len(current)  # every status of every name, 0 or 1

    durations = families["healthdi_health_check_duration_seconds"]
    assert durations.type == "histogram"
    counts = samples(durations, "_count")
    assert counts == {(("service", service),): 2.0 for service in name.values()}
    sums = samples(durations, "_sum")
    assert sums[(("service", name[Slow]),)] >= 2 * limit

    checks = families["healthdi_health_check"]
    assert checks.type == "counter"
    assert samples(checks, "_total") == {
        (("outcome", "healthy"), ("service", name[Healthy])): 2.0,
        (("outcome", "degraded"), ("service", name[LaggingReplica])): 2.0,
        (("outcome", "unhealthy"), ("service", name[Failing])): 2.0,
        (("outcome", "timeout"), ("service", name[Slow])): 2.0,
    }

    builds = samples(families["healthdi_service_build_duration_seconds"])
    assert set(builds) == {(("service", service),) for service in name.values()}
    assert builds[(("service", name[Slow]),)] < at_most(0) <= builds[(("service", name[Healthy]),)]


def test_registering_twice_is_one_collector_and_default_registry_is_used() -> None:
    injector = Injector()
    monitor = HealthMonitor(injector)
    registry = CollectorRegistry()
    assert di.metrics.register(monitor, registry) is di.metrics.register(monitor, registry)


def test_di_serve_with_metrics_serves_the_default_registry_at_metrics(tmp_path: Any) -> None:
    from ..processes import Serving, wait_for

    serving = Serving(
        "tests.serve_targets:degraded",
        "--metrics",
        "--interval",
        str(at_most(0)),  # each round bounded by it: as long as the checks may take
        log=tmp_path / "log",
    )
    try:
        wait_for(lambda: _status(serving.url + "/readyz") == 200, "di serve to be ready")
        families = scrape(serving.url)
        status = samples(families["healthdi_health_status"])
        assert status[(("name", ""), ("status", "warn"))] == 1
        assert "process_cpu_seconds" in families  # the default registry's collectors
        assert "/metrics" in serving.output()
    finally:
        serving.close()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_serve_metrics_needs_the_http_port() -> None:
    done = run_di("serve", "tests.serve_targets:healthy", "--grpc", "127.0.0.1:0", "--metrics")
    assert done.returncode == 1
    assert "--metrics serves /metrics on the HTTP port" in done.stderr


# -- OpenTelemetry -------------------------------------------------------------------------


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.anyio
@pytest.mark.parametrize("show_details", [False, True])
async def test_a_round_can_be_a_span_with_one_child_per_check(
    traced: tuple[TracerProvider, InMemorySpanExporter], show_details: bool
) -> None:
    provider, exporter = traced
    injector, _ = degraded_injector()
    monitor = HealthMonitor(
        injector, tracing=provider, show_details=show_details, trace_checks="all"
    )
    report = await monitor.check()
    spans = exporter.get_finished_spans()
    rounds = [span for span in spans if span.name == "health round"]
    assert len(rounds) == 1
    round_span = rounds[0]
    children = [span for span in spans if span.name == "health check"]
    assert len(spans) == 1 + len(report.checks) == 4
    assert len(children) == len(report.checks)
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == round_span.context.span_id
        assert child.context.trace_id == round_span.context.trace_id
        assert round_span.start_time <= child.start_time <= child.end_time
    by_service = {child.attributes["healthdi.service"]: child for child in children}
    search = by_service[f"{__name__}.Search"].attributes
    assert search["healthdi.outcome"] == "degraded"
    assert search["healthdi.scope"] == "root"
    assert search["error.type"] == "ConnectionRefusedError"
    assert ("healthdi.error.message" in search) is show_details
    assert "error.type" not in by_service[DB].attributes
    assert round_span.attributes["healthdi.status"] == "warn"


@pytest.mark.anyio
@pytest.mark.parametrize("trace_checks", ["problems", "events"])
async def test_by_default_only_checks_not_healthy_get_a_span_of_their_own(
    traced: tuple[TracerProvider, InMemorySpanExporter], trace_checks: str
) -> None:
    provider, exporter = traced
    injector, _ = degraded_injector()
    monitor = HealthMonitor(injector, tracing=provider, trace_checks=trace_checks)  # type: ignore[arg-type]
    if trace_checks == "problems":
        assert HealthMonitor(injector, tracing=provider)._trace_checks == "problems"
    report = await monitor.check()
    (round_span,) = [s for s in exporter.get_finished_spans() if s.name == "health round"]
    children = [s for s in exporter.get_finished_spans() if s.name == "health check"]
    # Database is healthy; LaggingReplica and Search are degraded: a span each.
    assert sorted(child.attributes["healthdi.service"] for child in children) == sorted(
        [key(LaggingReplica), f"{__name__}.Search"]
    )
    for child in children:
        assert child.parent is not None and child.parent.span_id == round_span.context.span_id
    attributes = round_span.attributes
    assert attributes["healthdi.checks"] == len(report.checks) == 3
    assert (attributes["healthdi.checks.healthy"], attributes["healthdi.checks.degraded"]) == (
        1,
        2,
    )
    events = round_span.events
    if trace_checks == "events":
        assert sorted(e.attributes["healthdi.service"] for e in events) == sorted(
            check.key for check in report.checks
        )
        assert all(e.name == "health check" for e in events)
    else:
        assert events == ()


def test_trace_checks_must_be_one_of_three() -> None:
    with pytest.raises(ValueError, match=r"trace_checks=\.\.\.\) must be 'problems'"):
        HealthMonitor(Injector(), trace_checks="failures")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_tracing_off_makes_no_span(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = traced
    injector, _ = degraded_injector()
    await HealthMonitor(injector, tracing=False).check()
    assert exporter.get_finished_spans() == ()


def test_nothing_is_imported_without_the_extras() -> None:
    """With neither prometheus-client nor opentelemetry importable, rounds still run."""
    script = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("opentelemetry", "prometheus_client"):
            raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, Absent())
import anyio
import di.asgi, di.grpc
from di import HealthMonitor, Injector
from tests.services import Cache

injector = Injector()
injector.provide(Cache)
injector.invoke(Cache)
monitor = HealthMonitor(injector)
report = anyio.run(monitor.check)
assert report.healthy and monitor._tracer is None
di.asgi.health_app(monitor)
loaded = [m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "prometheus_client")]
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.stdout.strip() == "ok", done.stderr


# -- logs that don't storm -----------------------------------------------------------------


class Flapping:
    def __init__(self) -> None:
        self.calls = 0

    async def health_check(self) -> None:
        self.calls += 1
        if self.calls % 2 == 0:
            raise ConnectionResetError("flap")


@pytest.mark.anyio
async def test_a_check_flapping_100_times_in_2_s_logs_its_first_failure_and_recovery_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    injector.provide(Flapping)
    flapping = injector.invoke(Flapping)
    monitor = HealthMonitor(injector, interval=0.01, timeout=at_most(0))
    with caplog.at_level(logging.DEBUG, logger="di"), anyio.fail_after(30):
        for _ in range(101):  # 100 transitions
            await monitor.check()
            await anyio.sleep(0.015)
    assert flapping.calls == 101  # the last passed
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("di")]
    key = f"{__name__}.Flapping"
    # The start (the startup name), the first round (3 names), the first failure and the
    # first recovery (the check and 3 names each); the 98 changes after them are
    # counted, to be summed up later.
    assert len(lines) == 12, lines
    assert [line for line in lines if line.startswith("health check")] == [
        f"health check of {key!r} failed (unhealthy): ConnectionResetError: flap",
        f"health check of {key!r} recovered (was failing)",
    ]
    assert lines[-3:] == [
        f"health status of {name!r}: NOT_SERVING -> SERVING"
        for name in ("(overall)", "readiness", key)
    ]


@pytest.mark.anyio
async def test_suppressed_transitions_are_summed_up_after_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    injector.provide(Flapping)
    injector.invoke(Flapping)
    log_interval = at_most(11 * 0.005)  # longer than the eleven checks take
    monitor = HealthMonitor(injector, log_interval=log_interval)
    with caplog.at_level(logging.INFO, logger="di.health"), anyio.fail_after(30):
        # Passes, fails, passes, ...: 10 changes; the first failure and the first
        # recovery are logged, the 8 after them counted.
        for _ in range(11):
            await monitor.check()
        await anyio.sleep(log_interval + 0.1)
        await monitor.check()  # the 11th transition, after the interval
    messages = [r.getMessage() for r in caplog.records]
    name = key(Flapping)
    summaries = [m for m in messages if m.startswith(f"health check of {name!r} changed")]
    assert summaries == [
        f"health check of {name!r} changed 9 more times in the last {log_interval:g} s "
        "(not logged); "
        "now unhealthy (ConnectionResetError: flap)"
    ]


@pytest.mark.anyio
async def test_degraded_transitions_are_logged_into_and_out_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    injector = Injector()
    injector.provide(LaggingReplica)
    replica = injector.invoke(LaggingReplica)
    monitor = HealthMonitor(injector, log_interval=0)
    with caplog.at_level(logging.INFO, logger="di.health"):
        await monitor.check()
        replica.lag = 1.0
        await monitor.check()
    messages = [r.getMessage() for r in caplog.records]
    name = key(LaggingReplica)
    assert (
        f"health check of {name!r} is degraded (degraded): Degraded: replication lag over 30 s"
        in messages
    )
    assert f"health check of {name!r} recovered (was degraded)" in messages
