"""Big and deep graphs: validate() and building walk them without recursion.

A chain deeper than Python's recursion limit validates, and its singletons and scoped
services build from either end, sync or async; a chain of transients too deep for the
stack is a DIError naming the depth, never a RecursionError.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from di import DIError, GraphError, Injector, Scope

pytestmark = pytest.mark.anyio


def _nodes(edges: list[list[int]]) -> tuple[list[type], list[Callable[..., object]]]:
    """One class per node and a factory for it whose parameters are the nodes in
    ``edges[i]`` (any index: a later one may close a cycle)."""
    types = [type(f"Node{i}", (), {}) for i in range(len(edges))]
    factories = []
    for i, deps in enumerate(edges):

        def factory(*args: object, cls: type = types[i]) -> object:
            return cls()

        params = [
            inspect.Parameter(f"p{n}", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=types[j])
            for n, j in enumerate(deps)
        ]
        factory.__signature__ = inspect.Signature(params, return_annotation=types[i])  # type: ignore[attr-defined]
        factory.__annotations__ = {p.name: p.annotation for p in params} | {"return": types[i]}
        factories.append(factory)
    return types, factories


def _chain(n: int) -> list[list[int]]:
    return [[i - 1] if i else [] for i in range(n)]


def _provided(edges: list[list[int]], provide: Callable[[Scope], Any]) -> tuple[Scope, list[type]]:
    injector = Injector()
    types, factories = _nodes(edges)
    for factory in factories:
        provide(injector)(factory)
    return injector, types


def test_a_chain_far_deeper_than_the_recursion_limit_validates() -> None:
    injector, _ = _provided(_chain(5000), lambda s: s.provide)
    injector.validate()


def test_a_big_random_graph_validates() -> None:
    pick = random.Random(18)
    edges = [pick.sample(range(i), min(i, pick.randint(1, 3))) if i else [] for i in range(5000)]
    injector, _ = _provided(edges, lambda s: s.provide)
    injector.validate()


def test_a_cycle_at_the_bottom_of_a_deep_chain_is_reported_once() -> None:
    edges = _chain(3000)
    edges[0] = [2]  # 2 -> 1 -> 0 -> 2
    injector, _ = _provided(edges, lambda s: s.provide)
    with pytest.raises(GraphError) as caught:
        injector.validate()
    cycles = [p for p in caught.value.problems if p.startswith("circular dependency: ")]
    assert len(cycles) == 1
    assert sorted(cycles[0].removeprefix("circular dependency: ").split(" -> ")[:-1]) == [
        f"{__name__}.Node{i}" for i in (0, 1, 2)
    ]


def _has_cycle(edges: list[list[int]]) -> bool:
    """A reference: repeatedly drop the nodes nothing left depends on."""
    left = set(range(len(edges)))
    while True:
        leaves = {i for i in left if not any(j in left for j in edges[i])}
        if not leaves:
            return bool(left)
        left -= leaves


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_validate_reports_a_cycle_exactly_when_the_graph_has_one(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=10))
    edges = [sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=3))) for _ in range(n)]
    injector, _ = _provided(edges, lambda s: s.provide)
    try:
        injector.validate()
        reported = False
    except GraphError as error:
        assert all(p.startswith("circular dependency: ") for p in error.problems)
        reported = True
    assert reported == _has_cycle(edges)


def test_a_captive_deep_below_a_singleton_through_transients_is_found() -> None:
    injector = Injector()
    edges = _chain(1500)
    _, factories = _nodes(edges)
    injector.provide_scoped(factories[0])
    for factory in factories[1:-1]:
        injector.provide_transient(factory)
    injector.provide(factories[-1])
    with pytest.raises(GraphError) as caught:
        injector.validate()
    (problem,) = caught.value.problems
    assert problem.startswith(f"captive dependency: singleton {__name__}.Node1499 (scope 'root')")
    assert problem.count(" -> ") == 1499


@pytest.mark.parametrize("provide", ["provide", "provide_scoped"])
async def test_a_deep_chain_of_singletons_or_scoped_services_builds(provide: str) -> None:
    injector, types = _provided(_chain(1500), lambda s: getattr(s, provide))
    with injector.scope("request") as request:
        built = request.invoke(types[-1])
        assert isinstance(built, types[-1])
        assert request.invoke(types[0]) is request.invoke(types[0])
    async with injector.scope("request") as request:
        assert isinstance(await request.ainvoke(types[-1]), types[-1])


async def test_a_chain_of_transients_too_deep_for_the_stack_names_its_depth() -> None:
    injector, types = _provided(_chain(1500), lambda s: s.provide_transient)
    for _ in range(2):  # the first failure leaves nothing half-built behind
        with pytest.raises(DIError, match=r"dependency chain too deep: .* services down a chain"):
            injector.invoke(types[-1])
    with pytest.raises(DIError, match=r"dependency chain too deep"):
        await injector.ainvoke(types[-1])
    # A transient chain that fits builds, by the general path past the compiled depth.
    assert isinstance(injector.invoke(types[150]), types[150])


# -- an ancestor's singleton from deep below -------------------------------------------


class Clock:
    pass


class FakeClock(Clock):
    pass


def _nested(depth: int) -> tuple[Injector, list[Scope]]:
    injector = Injector()
    injector.provide(Clock)
    scopes: list[Scope] = [injector]
    for level in range(depth):
        scopes.append(scopes[-1].scope(f"level{level}"))
    return injector, scopes


def test_a_deep_scope_sees_every_change_above_to_a_singleton_it_invoked() -> None:
    injector, scopes = _nested(50)
    deep, middle = scopes[-1], scopes[25]
    first = injector.invoke(Clock)
    assert deep.invoke(Clock) is first and deep.invoke(Clock) is first  # kept, then read

    injector.override(FakeClock, provides=Clock)
    replaced = deep.invoke(Clock)
    assert isinstance(replaced, FakeClock) and replaced is injector.invoke(Clock)

    middle.provide_value(Clock(), name="unrelated")  # a change elsewhere above
    assert deep.invoke(Clock) is replaced
    mine = Clock()
    middle.provide_value(mine)
    assert deep.invoke(Clock) is mine

    with injector.overridden(Clock, value=Clock()):
        assert deep.invoke(Clock) is mine  # the nearer provider still wins


def test_an_override_for_a_while_reaches_a_scope_that_kept_the_singleton() -> None:
    injector, scopes = _nested(3)
    deep = scopes[-1]
    original = deep.invoke(Clock)
    stand_in = FakeClock()
    with injector.overridden(Clock, value=stand_in):
        assert deep.invoke(Clock) is stand_in
    assert deep.invoke(Clock) is original
    with deep.overridden(Clock, value=stand_in):
        assert deep.invoke(Clock) is stand_in
    assert deep.invoke(Clock) is original


async def test_a_shut_down_root_builds_anew_for_the_scopes_below() -> None:
    injector, _ = _nested(0)
    before = injector.invoke(Clock)
    child = injector.scope("child")
    assert await child.ainvoke(Clock) is before
    injector.shutdown()
    fresh = injector.scope("again")
    after = await fresh.ainvoke(Clock)
    assert after is not before and fresh.invoke(Clock) is after
