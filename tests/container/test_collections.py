"""Collections: several services under one key with ``collect=True``, asked for as ``list[T]``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import anyio
import pytest

from di import (
    GraphError,
    Inject,
    Injector,
    ServiceAlreadyProvidedError,
    ServiceNotFoundError,
)

pytestmark = pytest.mark.anyio


class Plugin(Protocol):
    name: str


class Audit:
    name = "audit"

    def __init__(self) -> None:
        self.closed = False

    def health_check(self) -> None: ...

    def shutdown(self) -> None:
        self.closed = True


class Metrics:
    name = "metrics"

    def health_check(self) -> None:
        raise ConnectionError("statsd is down")


class Tracing:
    def __init__(self, name: str = "tracing") -> None:
        self.name = name


class Pipeline:
    def __init__(self, plugins: list[Plugin]) -> None:
        self.plugins = plugins


def collected() -> Injector:
    injector = Injector()
    injector.provide(Audit, provides=Plugin, collect=True)
    injector.provide(Metrics, provides=Plugin, collect=True)
    injector.provide_transient(Tracing, provides=Plugin, collect=True)
    injector.provide_value(Tracing("tracing, again"), provides=Plugin, collect=True)
    injector.provide(Pipeline)
    return injector


def test_every_collected_service_in_provide_order_each_its_own_service() -> None:
    injector = collected()
    plugins = injector.invoke(list[Plugin])
    assert [p.name for p in plugins] == ["audit", "metrics", "tracing", "tracing, again"]
    again = injector.invoke(list[Plugin])
    assert again[0] is plugins[0] and again[1] is plugins[1]  # singletons
    assert again[2] is not plugins[2]  # a transient, built anew
    assert injector.invoke(Pipeline).plugins[0] is plugins[0]  # a list[Plugin] parameter
    # Each is checked and shut down on its own, under its own name.
    health = injector.health_check()
    assert list(health) == [
        f"{__name__}.Plugin[{__name__}.Metrics]",
        f"{__name__}.Plugin[{__name__}.Audit]",
    ]
    assert isinstance(health[f"{__name__}.Plugin[{__name__}.Metrics]"], ConnectionError)
    report = injector.shutdown()
    assert [s.name for s in report] == [
        f"{__name__}.Pipeline",
        f"{__name__}.Plugin[{__name__}.Metrics]",
        f"{__name__}.Plugin[{__name__}.Audit]",
        f"{__name__}.Plugin[{__name__}.Tracing #2]",  # the value; #1 is the transient
    ]
    assert plugins[0].closed


def test_the_same_class_twice_gets_two_names() -> None:
    injector = Injector()
    injector.provide_value(Tracing("a"), provides=Plugin, collect=True)
    injector.provide_value(Tracing("b"), provides=Plugin, collect=True)
    assert injector.list_invoked() == [
        f"{__name__}.Plugin[{__name__}.Tracing]",
        f"{__name__}.Plugin[{__name__}.Tracing #2]",
    ]


def test_a_name_taken_below_is_not_given_again_above() -> None:
    # The child collects first, the root the same class afterwards: the child sees both,
    # and each must keep its own line in health checks and reports.
    injector = Injector()
    child = injector.scope("child")
    child.provide(Metrics, provides=Plugin, collect=True)
    injector.provide(Metrics, provides=Plugin, collect=True)
    assert len(child.invoke(list[Plugin])) == 2
    assert list(child.health_check()) == [
        f"{__name__}.Plugin[{__name__}.Metrics]",
        f"{__name__}.Plugin[{__name__}.Metrics #2]",
    ]


def test_a_child_adds_to_its_ancestors_collection() -> None:
    injector = collected()
    child = injector.scope("child")
    child.provide_value(Tracing("child's"), provides=Plugin, collect=True)
    names = [p.name for p in child.invoke(list[Plugin])]
    assert names == ["audit", "metrics", "tracing", "tracing, again", "child's"]
    assert len(injector.invoke(list[Plugin])) == 4  # the root does not see the child's


async def test_a_collection_holds_each_scopes_own_scoped_member_and_one_async_singleton() -> None:
    class Session:
        name = "session"

    async def open_queue() -> AsyncIterator[Tracing]:
        await anyio.sleep(0)
        yield Tracing("queue")

    injector = Injector()
    injector.provide_scoped(Session, provides=Plugin, collect=True)
    injector.provide(open_queue, provides=Plugin, collect=True)
    async with injector.scope() as one, injector.scope() as two:
        first, second = await one.ainvoke(list[Plugin]), await two.ainvoke(list[Plugin])
        assert [p.name for p in first] == ["session", "queue"]
        assert first[0] is not second[0] and first[1] is second[1]
        assert one.invoke(list[Plugin])[0] is first[0]  # built now: sync invoke works too

    @injector.inject
    async def job(plugins: Inject[list[Plugin]]) -> list[str]:
        return [p.name for p in plugins]

    assert await job() == ["session", "queue"]
    await injector.ashutdown()


def test_mixing_a_plain_binding_with_a_collection_is_an_error_that_says_so() -> None:
    injector = collected()
    with pytest.raises(ServiceAlreadyProvidedError, match="it is collected there"):
        injector.provide(Audit, provides=Plugin)
    with pytest.raises(ServiceAlreadyProvidedError, match="it is collected there"):
        injector.scope().provide(Audit, provides=Plugin)  # nor below
    plain = Injector()
    plain.provide(Audit, provides=Plugin)
    with pytest.raises(ServiceAlreadyProvidedError, match="bound plainly there"):
        plain.provide(Metrics, provides=Plugin, collect=True)
    with pytest.raises(ServiceAlreadyProvidedError, match="collect=True to gather several"):
        plain.provide(Metrics, provides=Plugin)  # the hint, for the second plain one
    with pytest.raises(TypeError, match="collection gathers services by type"):
        plain.provide(Metrics, name="metrics", collect=True)


def test_the_mix_is_refused_whichever_scope_binds_first() -> None:
    # A child collects first; its ancestor then binds the key plainly: refused too, as
    # the other order is, since the child would see both.
    injector = Injector()
    child = injector.scope("child")
    child.scope("grandchild").provide(Audit, provides=Plugin, collect=True)
    with pytest.raises(ServiceAlreadyProvidedError, match="it is collected there"):
        injector.provide(Metrics, provides=Plugin)
    # A grandchild binds it plainly first; an ancestor then collects under it.
    other = Injector()
    other.scope("child").scope("grandchild").provide(Audit, provides=Plugin)
    with pytest.raises(ServiceAlreadyProvidedError, match="bound plainly there"):
        other.provide(Metrics, provides=Plugin, collect=True)
    assert injector.list_provided() == other.list_provided() == []


def test_asking_for_one_of_a_collection_points_to_the_list() -> None:
    injector = collected()
    with pytest.raises(ServiceNotFoundError) as raised:
        injector.invoke(Plugin)
    assert "ask for every one of them with list[" in str(raised.value.__notes__)


def test_the_graph_sees_collections_and_their_members() -> None:
    injector = collected()
    injector.validate()
    text = injector.explain(Pipeline)
    assert text.splitlines()[:3] == [
        f"{__name__}.Pipeline (lazy, provided by 'root', not built)",
        f"└── list[{__name__}.Plugin] (collection, provided by 'root', 4 collected)",
        f"    ├── {__name__}.Plugin[{__name__}.Audit] (lazy, provided by 'root', not built)",
    ]
    member = injector.explain(f"{__name__}.Plugin[{__name__}.Audit]")
    assert member.splitlines()[-2:] == [
        f"└── list[{__name__}.Plugin] (collection, provided by 'root', 4 collected)",
        f"    └── {__name__}.Pipeline (lazy, provided by 'root', not built)",
    ]
    assert "collection in root" in injector.graph()

    class NeedsMissing:
        def __init__(self, missing: bytes) -> None: ...

    injector.provide(NeedsMissing, provides=Plugin, collect=True)
    with pytest.raises(GraphError, match=r"NeedsMissing\] needs bytes"):
        injector.validate()
