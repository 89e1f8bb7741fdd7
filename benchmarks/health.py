"""H1-H4: health-check overhead and wall time, healthdi beside its floors and svcs.

- H1: 10,000 built services with no-op async checks, parallelism 100, both timeouts set.
- H2: the same with sync no-op checks.
- H3: 1,000 async checks each awaiting 10 ms, parallelism 100 (ideal: 100 ms).
- H4: 1,000 sync checks each sleeping 10 ms, parallelism 100 (ideal: 100 ms).
- C10: one call of 10 no-op async checks, in microseconds per call.

healthdi is measured through ``await ahealth_report()`` inside a loop and through the
sync ``health_check()`` (which runs an event loop per call), both as users call them.
Each row runs the whole call several times and keeps the best wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from di import Injector


async def _noop_async(self: object) -> None:
    pass


def _noop_sync(self: object) -> None:
    pass


async def _sleep_async(self: object) -> None:
    await anyio.sleep(0.010)


def _sleep_sync(self: object) -> None:
    time.sleep(0.010)


def _classes(count: int, check: Callable[..., Any]) -> list[type]:
    return [type(f"Service{i}", (), {"health_check": check}) for i in range(count)]


def _injector(classes: list[type], parallelism: int = 100) -> Injector:
    injector = Injector(
        health_check_parallelism=parallelism,
        health_check_timeout=5.0,
        health_check_global_timeout=60.0,
    )
    for cls in classes:
        injector.provide(cls)
        injector.invoke(cls)
    return injector


def _best_sync(call: Callable[[], object], repeats: int) -> float:
    """:func:`_best` for a plain call made outside any event loop."""
    call()
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def sync_entry(count: int = 10_000, repeats: int = 5) -> dict[str, float]:
    """H1-H4 through the sync ``health_check()``, timed outside any loop."""
    per_check = 1e6 / count
    h1 = _best_sync(_injector(_classes(count, _noop_async)).health_check, repeats)
    h2 = _best_sync(_injector(_classes(count, _noop_sync)).health_check, repeats)
    h3 = _best_sync(_injector(_classes(1_000, _sleep_async)).health_check, 3)
    h4 = _best_sync(_injector(_classes(1_000, _sleep_sync)).health_check, 3)
    return {"H1": h1 * per_check, "H2": h2 * per_check, "H3": h3 * 1000, "H4": h4 * 1000}


async def _c10(calls: int = 1_000, repeats: int = 5) -> dict[str, dict[str, float]]:
    """C10: a whole call of 10 no-op async checks, beside gather of the same coroutines."""
    classes = _classes(10, _noop_async)
    injector = _injector(classes)
    instances = [cls() for cls in classes]

    async def ours() -> None:
        for _ in range(calls):
            await injector.ahealth_report()

    async def gather() -> None:
        for _ in range(calls):
            await asyncio.gather(*(i.health_check() for i in instances))

    per_call = 1e6 / calls
    return {
        "healthdi": {"C10": await _best(ours, repeats) * per_call},
        "floor: asyncio.gather, no timeouts": {"C10": await _best(gather, repeats) * per_call},
    }


async def _best(call: Callable[[], Awaitable[object]], repeats: int) -> float:
    await call()  # warm up: threads, caches
    best = math.inf
    for _ in range(repeats):
        # Start each repeat without garbage left by earlier rows (timeit's rows do too).
        gc.collect()
        started = time.perf_counter()
        await call()
        best = min(best, time.perf_counter() - started)
    return best


def _svcs_pings(classes: list[type]) -> Callable[[], Awaitable[None]]:
    import svcs

    registry = svcs.Registry()
    for cls in classes:
        registry.register_factory(cls, cls, ping=cls.health_check)
    container = svcs.Container(registry)
    for cls in classes:
        container.get(cls)

    async def ping_all() -> None:
        # svcs's documented health endpoint: one ping after another, no timeouts.
        for ping in container.get_pings():
            with contextlib.suppress(Exception):
                await ping.aping()

    return ping_all


def _task_per_check(instances: list[Any], limit: int) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        limiter = anyio.CapacityLimiter(limit)

        async def one(instance: Any) -> None:
            async with limiter:
                with anyio.fail_after(5.0):
                    await instance.health_check()

        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(one, instance)

    return run


def _thread_per_check(instances: list[Any], limit: int) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        limiter = anyio.CapacityLimiter(limit)

        async def one(instance: Any) -> None:
            with anyio.fail_after(5.0):
                await anyio.to_thread.run_sync(instance.health_check, limiter=limiter)

        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(one, instance)

    return run


WORKERS_FLOOR = "floor: 100 worker tasks, move_on_after per check"


def _workers(instances: list[Any], count: int) -> Callable[[], Awaitable[None]]:
    """The engine's true floor: ``count`` bare worker tasks pulling checks from one
    iterator, each check under its own ``anyio.move_on_after`` (the per-check timeout),
    no bookkeeping, no report."""

    async def run() -> None:
        queue = iter(instances)

        async def worker() -> None:
            for instance in queue:
                with anyio.move_on_after(5.0):
                    await instance.health_check()

        async with anyio.create_task_group() as tasks:
            for _ in range(count):
                tasks.start_soon(worker)

    return run


async def _h1_h2(count: int, repeats: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    async_classes = _classes(count, _noop_async)
    sync_classes = _classes(count, _noop_sync)
    async_injector = _injector(async_classes)
    sync_injector = _injector(sync_classes)
    async_instances = [cls() for cls in async_classes]
    sync_instances = [cls() for cls in sync_classes]

    async def gather() -> None:
        await asyncio.gather(*(i.health_check() for i in async_instances))

    per_check = 1e6 / count
    rows["healthdi"] = {
        "H1": await _best(async_injector.ahealth_report, repeats) * per_check,
        "H2": await _best(sync_injector.ahealth_report, repeats) * per_check,
    }
    rows["floor: asyncio.gather, no timeouts"] = {"H1": await _best(gather, repeats) * per_check}
    rows[WORKERS_FLOOR] = {"H1": await _best(_workers(async_instances, 100), repeats) * per_check}
    rows["anyio: task + fail_after + limiter per check"] = {
        "H1": await _best(_task_per_check(async_instances, 100), repeats) * per_check,
        "H2": await _best(_thread_per_check(sync_instances, 100), 1) * per_check,
    }
    rows["svcs: sequential pings, no timeouts"] = {
        "H1": await _best(_svcs_pings(async_classes), repeats) * per_check,
        "H2": await _best(_svcs_pings(sync_classes), repeats) * per_check,
    }
    return rows


async def _bare(count: int, parallelism: int) -> tuple[float, float]:
    """What the event loop and the OS deliver with no engine at all: P tasks (threads)
    each awaiting (sleeping) 10 ms, N/P times in a row."""

    async def task() -> None:
        for _ in range(count // parallelism):
            await anyio.sleep(0.010)

    def thread() -> None:
        for _ in range(count // parallelism):
            time.sleep(0.010)

    async def tasks() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(parallelism):
                tg.start_soon(task)

    async def threads() -> None:
        limiter = anyio.CapacityLimiter(parallelism)
        async with anyio.create_task_group() as tg:
            for _ in range(parallelism):
                tg.start_soon(functools.partial(anyio.to_thread.run_sync, thread, limiter=limiter))

    return await _best(tasks, 3), await _best(threads, 3)


async def _h3_h4(count: int, parallelism: int, repeats: int) -> dict[str, dict[str, float]]:
    ideal = math.ceil(count / parallelism) * 0.010
    async_injector = _injector(_classes(count, _sleep_async), parallelism)
    sync_injector = _injector(_classes(count, _sleep_sync), parallelism)
    h3 = await _best(async_injector.ahealth_report, repeats)
    h4 = await _best(sync_injector.ahealth_report, repeats)
    bare_tasks, bare_threads = await _bare(count, parallelism)
    return {
        "healthdi": {"H3": h3 * 1000, "H4": h4 * 1000},
        "floor: bare tasks / threads, no engine": {
            "H3": bare_tasks * 1000,
            "H4": bare_threads * 1000,
        },
        "ideal: ceil(N/P) x 10 ms": {"H3": ideal * 1000, "H4": ideal * 1000},
    }


def measure(backend: str = "asyncio") -> dict[str, Any]:
    """All four scenarios on one backend: H1/H2 in us per check, H3/H4 in ms of wall time."""

    async def main() -> dict[str, Any]:
        overhead = await _h1_h2(10_000, 5)
        wall = await _h3_h4(1_000, 100, 3)
        return {"overhead": overhead, "wall": wall, "call": await _c10()}

    if backend == "trio":

        async def trio_main() -> dict[str, Any]:
            # asyncio.gather and svcs's aping need asyncio: trio gets healthdi's rows only.
            async_injector = _injector(_classes(10_000, _noop_async))
            sync_injector = _injector(_classes(10_000, _noop_sync))
            h1 = await _best(async_injector.ahealth_report, 5) * 100
            h2 = await _best(sync_injector.ahealth_report, 5) * 100
            wall = await _h3_h4(1_000, 100, 3)
            return {"overhead": {"healthdi": {"H1": h1, "H2": h2}}, "wall": wall}

        return anyio.run(trio_main, backend="trio")
    return anyio.run(main, backend=backend)


class _Base:
    """What every service of the semantics rows is built on."""

    failing = False

    def health_check(self) -> None:
        if self.failing:
            raise ConnectionError("base down")


async def _failing_async(self: object) -> None:
    raise ConnectionError("down")


def _on_base(classes: list[type], policy: Any = None, tags: tuple[str, ...] = ()) -> Injector:
    """Each class built on one ``_Base`` (the build graph root causes are read from)."""
    injector = Injector(
        health_check_parallelism=100, health_check_timeout=5.0, health_check_global_timeout=60.0
    )
    injector.provide(_Base)
    for cls in classes:

        def factory(base: _Base, cls: type = cls) -> Any:
            return cls()

        factory.__annotations__ = {"base": _Base, "return": cls}
        injector.provide(factory, health_policy=policy, tags=tags)
        injector.invoke(cls)
    return injector


def semantics(count: int = 10_000, repeats: int = 5) -> dict[str, float]:
    """H1 and a monitor's round with per-service policies, tags and root causes in use,
    beside the same without, in us per check.

    - ``H1``: no-op async checks, plain; ``H1 policies+tags``: each service with its own
      ``HealthPolicy(timeout=5.0, failure_threshold=3, success_threshold=2)`` and two
      tags, built on a ``_Base`` (so the build graph is recorded);
    - ``round``: a monitor's round of the plain ones; ``round policies+tags``: the
      others, under a monitor with a default policy and a ``"tag:edge"`` group;
    - ``failing``: every check fails, no dependencies; ``failing root cause``: every
      check fails and so does the ``_Base`` they are built on, so that each result
      names it in ``blocked_by`` (the root cause computed for 10,000 results).
    """
    from di import HealthMonitor, HealthPolicy

    async def main() -> dict[str, float]:
        per_check = 1e6 / count
        policy = HealthPolicy(timeout=5.0, failure_threshold=3, success_threshold=2)
        plain = _injector(_classes(count, _noop_async))
        rich = _on_base(_classes(count, _noop_async), policy, ("edge", "internal"))
        rows = {
            "H1": await _best(plain.ahealth_report, repeats) * per_check,
            "H1 policies+tags": await _best(rich.ahealth_report, repeats) * per_check,
        }
        off = HealthMonitor(plain, tracing=False, interval=3600)
        on = HealthMonitor(
            rich,
            tracing=False,
            interval=3600,
            policy=HealthPolicy(failure_threshold=2),
            groups={"edge": ["tag:edge"]},
        )
        rows["round"] = await _best(off.check, repeats) * per_check
        rows["round policies+tags"] = await _best(on.check, repeats) * per_check
        failing = _injector(_classes(count, _failing_async))
        caused = _on_base(_classes(count, _failing_async))
        caused.invoke(_Base).failing = True
        report = await caused.ahealth_report()
        assert len(report.root_causes) == 1  # the base: every other result names it
        rows["failing"] = await _best(failing.ahealth_report, repeats) * per_check
        rows["failing root cause"] = await _best(caused.ahealth_report, repeats) * per_check
        return rows

    return anyio.run(main, backend="asyncio")


def observability(count: int = 10_000, repeats: int = 5) -> dict[str, float]:
    """H1 through a monitor's round: metrics and tracing off; tracing on (the default
    ``trace_checks="problems"``, and ``"all"``); metrics on; both on.

    Metrics: ``di.metrics.register`` on a registry of its own. Tracing: an OpenTelemetry
    SDK tracer provider whose spans go through a simple processor to an exporter that
    drops them (so the row counts healthdi's work, not an exporter's). In us per check;
    the monitors' rounds are timed in turns.
    """
    import importlib.util

    from di import HealthMonitor

    needed = ("prometheus_client", "opentelemetry.sdk")
    if any(importlib.util.find_spec(name.split(".")[0]) is None for name in needed):
        return {}
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from prometheus_client import CollectorRegistry

    import di.metrics

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    async def main() -> dict[str, float]:
        classes = _classes(count, _noop_async)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        monitors = {
            "off": HealthMonitor(_injector(classes), tracing=False, interval=3600),
            "tracing": HealthMonitor(_injector(classes), tracing=provider, interval=3600),
            "tracing, a span per check": HealthMonitor(
                _injector(classes), tracing=provider, interval=3600, trace_checks="all"
            ),
            "metrics": HealthMonitor(_injector(classes), tracing=False, interval=3600),
            "on": HealthMonitor(_injector(classes), tracing=provider, interval=3600),
        }
        di.metrics.register(monitors["metrics"], CollectorRegistry())
        di.metrics.register(monitors["on"], CollectorRegistry())
        per_check = 1e6 / count
        best = dict.fromkeys(monitors, float("inf"))
        for _ in range(repeats):
            for name, monitor in monitors.items():
                best[name] = min(best[name], await _best(monitor.check, 1) * per_check)
        best["overhead"] = best["on"] - best["off"]
        return best

    return anyio.run(main, backend="asyncio")
