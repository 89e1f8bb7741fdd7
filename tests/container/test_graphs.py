"""Property: over random dependency graphs, indexes and shutdown order respect every edge."""

from __future__ import annotations

import inspect
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from di import Inject, Injector, Scope

from ..services import Config, key


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[bool], list[list[int]], list[int]]:
    """Nodes 0..n-1, each in the root or the child scope; node i may depend on j < i.

    A root node depends only on root nodes (a root service cannot see the child).
    """
    n = draw(st.integers(min_value=1, max_value=12))
    in_child = [draw(st.booleans()) for _ in range(n)]
    edges = []
    for i in range(n):
        allowed = [j for j in range(i) if in_child[i] or not in_child[j]]
        edges.append(sorted(draw(st.sets(st.sampled_from(allowed)))) if allowed else [])
    order = draw(st.permutations(range(n)))
    invoked = order[: draw(st.integers(min_value=1, max_value=n))]
    return in_child, edges, invoked


def _build(
    in_child: list[bool], edges: list[list[int]], log: list[int]
) -> tuple[Scope, list[type]]:
    injector = Injector()
    child = injector.scope("child")
    types: list[type] = []
    for i, deps in enumerate(edges):

        def shutdown(self: Any, i: int = i) -> None:
            log.append(i)

        cls = type(f"Node{i}", (), {"shutdown": shutdown})
        types.append(cls)

        def factory(*args: object, cls: type = cls) -> object:
            return cls()

        params = [
            inspect.Parameter(f"p{j}", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=types[j])
            for j in deps
        ]
        factory.__signature__ = inspect.Signature(params, return_annotation=cls)  # type: ignore[attr-defined]
        factory.__annotations__ = {p.name: p.annotation for p in params} | {"return": cls}
        (child if in_child[i] else injector).provide(factory)
    return child, types


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_indexes_and_shutdown_order_respect_every_edge(
    graph: tuple[list[bool], list[list[int]], list[int]],
) -> None:
    in_child, edges, invoked = graph
    log: list[int] = []
    child, types = _build(in_child, edges, log)
    root = child.parent
    assert root is not None
    for i in invoked:
        child.invoke(types[i])

    def service(i: int) -> Any:
        return (child if in_child[i] else root)._services[types[i]]

    built = {i for i in range(len(edges)) if service(i).index}
    for i in built:
        for j in edges[i]:
            assert j in built, f"Node{i} was built without its dependency Node{j}"
            assert service(j).index < service(i).index
    root.shutdown()
    assert sorted(log) == sorted(built)
    position = {node: k for k, node in enumerate(log)}
    for i in built:
        for j in edges[i]:
            assert position[i] < position[j], f"Node{j} shut down before its dependent Node{i}"


# -- explain: what a service needs, and what needs it -------------------------------------


class Pool:
    def __init__(self, config: Config) -> None: ...


class Orders:
    def __init__(self, pool: Pool) -> None: ...


class Reports:
    def __init__(self, pool: Pool, orders: Orders) -> None: ...


def test_explain_lists_dependents_as_a_tree_and_calls_eager_services_eager() -> None:
    injector = Injector()
    injector.provide_value(Config())
    injector.provide(Pool, eager=True)
    injector.provide(Orders)
    injector.provide_transient(Reports)

    @injector.inject
    def export(reports: Inject[Reports]) -> None: ...

    assert injector.explain(Pool).splitlines() == [
        f"{__name__}.Pool (eager, provided by 'root', not built)",
        f"└── {key(Config)} (value, provided by 'root', built)",
        "needed by:",
        f"├── {__name__}.Orders (lazy, provided by 'root', not built)",
        f"│   └── {__name__}.Reports (transient, provided by 'root', built on every invoke)",
        f"│       └── function {export.__qualname__} (@inject)",
        f"└── {__name__}.Reports (transient, provided by 'root', built on every invoke)",
        f"    └── function {export.__qualname__} (@inject)",
    ]
    assert injector.explain(Reports).splitlines()[-2:] == [
        "needed by:",
        f"└── function {export.__qualname__} (@inject)",
    ]
    chart = injector.graph()
    assert f"{__name__}.Pool<br/>eager in root" in chart
    assert f"{__name__}.Orders<br/>lazy in root" in chart
