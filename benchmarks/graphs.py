"""Big graphs: ``validate()`` beside dishka's ``make_container`` on the same graphs.

Two graphs of 10,000 services: a chain (each needs the one before) and a random graph
(each needs up to 3 of those before it, seeded). healthdi provides each as a singleton
and times ``validate()`` (what ``start()`` runs); dishka gets one ``Provider`` with the
same factories at APP scope and times ``make_container`` (which validates the graph).
Each is timed best of 5, each run after a full garbage collection with the collector
paused (a generation-2 collection over 10,000 fresh classes costs seconds on its own and
lands on whichever row allocates when it comes due).
"""

from __future__ import annotations

import gc
import inspect
import random
import time
from collections.abc import Callable
from typing import Any

SIZE = 10_000
RUNS = 5


def _graph(kind: str, size: int) -> list[list[int]]:
    if kind == "chain":
        return [[i - 1] if i else [] for i in range(size)]
    pick = random.Random(18)
    return [pick.sample(range(i), min(i, pick.randint(1, 3))) if i else [] for i in range(size)]


def _factories(edges: list[list[int]]) -> tuple[list[type], list[Callable[..., object]]]:
    types = [type(f"Node{i}", (), {}) for i in range(len(edges))]
    made = []
    for i, deps in enumerate(edges):

        def factory(*args: object, cls: type = types[i]) -> object:
            return cls()

        params = [
            inspect.Parameter(f"p{n}", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=types[j])
            for n, j in enumerate(deps)
        ]
        factory.__signature__ = inspect.Signature(params, return_annotation=types[i])  # type: ignore[attr-defined]
        factory.__annotations__ = {p.name: p.annotation for p in params} | {"return": types[i]}
        made.append(factory)
    return types, made


def _best(run: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(RUNS):
        gc.collect()
        gc.disable()
        try:
            began = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - began)
        finally:
            gc.enable()
    return best * 1000


def healthdi(edges: list[list[int]]) -> float:
    from di import Injector

    injector = Injector()
    for factory in _factories(edges)[1]:
        injector.provide(factory)
    return _best(injector.validate)


def dishka(edges: list[list[int]]) -> float:
    from dishka import Provider, Scope, make_container

    provider = Provider()
    for factory in _factories(edges)[1]:
        provider.provide(factory, scope=Scope.APP)
    return _best(lambda: make_container(provider))


def measure(size: int = SIZE) -> dict[str, dict[str, float | None]]:
    """ms per run: {row: {"chain": ms, "random": ms}}."""
    rows: dict[str, dict[str, float | None]] = {}
    for name, run in (("healthdi validate()", healthdi), ("dishka make_container", dishka)):
        rows[name] = {}
        for kind in ("chain", "random"):
            try:
                rows[name][kind] = run(_graph(kind, size))
            except ImportError:
                rows[name][kind] = None
    return rows


def deep_scopes() -> dict[str, tuple[str, dict[str, Any]]]:
    """D: invoke a built root singleton from the root, and from a scope 1 and 50 levels
    below it (each checked once to be the root's instance): rows for ``measure``."""
    from di import Injector

    class Database:
        pass

    injector = Injector()
    injector.provide(Database)
    root_instance = injector.invoke(Database)
    scopes = {0: injector}
    scope = injector
    for depth in range(1, 51):
        scope = scope.scope(f"level{depth}")
        scopes[depth] = scope
    rows = {}
    for depth, title in ((0, "root"), (1, "depth 1"), (50, "depth 50")):
        chosen = scopes[depth]
        assert chosen.invoke(Database) is root_instance
        rows[title] = ("invoke(Database)", {"invoke": chosen.invoke, "Database": Database})
    return rows
