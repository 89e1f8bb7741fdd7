"""The dependency graph as a scope sees it, read without building anything.

``validate()`` finds what would fail at first use (a missing dependency, a cycle, a
singleton holding a scoped or context service, a key an ``@inject`` function asks for
that nothing provides), ``explain()`` draws one service's tree, what it needs and what
needs it, and ``graph()`` the whole graph as a Mermaid flowchart. A collection
(``list[T]``) needs each service collected under ``T``.

Which scope resolves a dependency follows :mod:`di._container.resolve`: a singleton's from the
scope that provides it, a scoped or transient service's from the scope that invokes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import GraphError
from . import injection, registry
from .keys import describe
from .resolve import params_of
from .service import Lifetime, Service
from .signature import Param, ScopeParam

if TYPE_CHECKING:
    from ..scope import Scope

_EMPTY = inspect.Parameter.empty
_SINGLETONS = (Lifetime.LAZY, Lifetime.VALUE)


def _edges(service: Service, invoker: Scope) -> Iterator[tuple[Param, Service | None]]:
    """Each parameter of ``service`` and the service that would fill it (None if absent).

    Raises ``TypeError`` when the factory's annotations cannot be resolved.
    """
    if service.lifetime is Lifetime.CONTEXT or service.lifetime is Lifetime.VALUE:
        return
    if service.lifetime is Lifetime.COLLECTION:
        for i, member in enumerate(registry.members(invoker, service)):
            yield Param(f"[{i}]", member.key, None, True, _EMPTY), member
        return
    resolver = service.owner if service.lifetime is Lifetime.LAZY else invoker
    for p in params_of(service):
        if p.target is ScopeParam:
            continue
        yield p, registry.lookup(resolver, p.target)


def validate(scope: Scope) -> None:
    """Raise one :class:`GraphError` listing every problem visible from ``scope``."""
    problems: list[str] = []
    cycles: set[tuple[str, ...]] = set()
    for service in registry.visible(scope):
        try:
            edges = list(_edges(service, scope))
        except TypeError as error:
            problems.append(str(error))
            continue
        for p, dependency in edges:
            if dependency is None:
                if p.default is _EMPTY:
                    problems.append(
                        f"{service.label} needs {describe(p.target)} (parameter {p.name!r}), "
                        f"which no scope in reach of {_where(service, scope)!r} provides"
                    )
                continue
        if service.lifetime in _SINGLETONS:
            captive = _captive(service, scope)
            if captive is not None:
                problems.append(captive)
        cycle = _cycle(service, scope)
        if cycle is not None:
            start = cycle.index(min(cycle[:-1]))
            canonical = tuple(cycle[start:-1] + cycle[:start])
            if canonical not in cycles:
                cycles.add(canonical)
                problems.append("circular dependency: " + " -> ".join(cycle))
    problems += injection.problems(scope)
    if problems:
        raise GraphError(scope.name, problems)


def _where(service: Service, scope: Scope) -> str:
    return service.owner.name if service.lifetime is Lifetime.LAZY else scope.name


def _captive(singleton: Service, scope: Scope) -> str | None:
    """How a singleton would hold a scoped or context service, if it would."""
    path = [singleton]
    seen: set[int] = set()

    def walk(service: Service) -> str | None:
        if id(service) in seen:
            return None
        seen.add(id(service))
        try:
            edges = list(_edges(service, singleton.owner))
        except TypeError:
            return None
        for _, dependency in edges:
            if dependency is None:
                continue
            owner = singleton.owner
            if dependency.lifetime is Lifetime.CONTEXT and registry.context_scope(
                owner, dependency.key
            ):
                continue  # the singleton's own scope received that value
            if dependency.lifetime is Lifetime.SCOPED and owner.parent is not None:
                continue  # built in the singleton's own scope: they live as long
            if dependency.lifetime in (Lifetime.SCOPED, Lifetime.CONTEXT):
                chain = " -> ".join(s.label for s in (*path, dependency))
                return (
                    f"captive dependency: singleton {singleton.label} (scope "
                    f"{singleton.owner.name!r}) needs {dependency.lifetime.value} "
                    f"{dependency.label} ({chain}); a singleton outlives every scope, so "
                    f"make {singleton.label} scoped (provide_scoped) or give it what it "
                    "needs another way"
                )
            if dependency.lifetime is Lifetime.TRANSIENT:
                path.append(dependency)
                found = walk(dependency)
                path.pop()
                if found is not None:
                    return found
        return None

    return walk(singleton)


def _cycle(start: Service, scope: Scope) -> list[str] | None:
    """A dependency path from ``start`` back to a service already on it, if any."""
    path: list[Service] = []
    done: set[int] = set()

    def walk(service: Service) -> list[str] | None:
        if service in path:
            return [s.label for s in path[path.index(service) :]] + [service.label]
        if id(service) in done:
            return None
        path.append(service)
        try:
            edges = list(_edges(service, scope))
        except TypeError:
            edges = []
        for _, dependency in edges:
            if dependency is not None:
                found = walk(dependency)
                if found is not None:
                    return found
        path.pop()
        done.add(id(service))
        return None

    return walk(start)


def kind(service: Service) -> str:
    """A service's lifetime as the graph shows it: ``eager`` for a lazy singleton that
    ``start()`` builds."""
    if service.lifetime is Lifetime.LAZY and service.key in service.owner._eager:
        return "eager"
    return service.lifetime.value


def _state(service: Service, scope: Scope) -> str:
    if service.lifetime is Lifetime.COLLECTION:
        count = len(registry.members(scope, service))
        return f"{count} collected"
    if service.lifetime is Lifetime.TRANSIENT:
        return "built on every invoke"
    if service.lifetime is Lifetime.CONTEXT:
        return "from scope(context=...)"
    if service.lifetime is Lifetime.SCOPED:
        return "built in this scope" if _built_here(scope, service) else "not built here"
    return "built" if service.index else "not built"


def _built_here(scope: Scope, service: Service) -> bool:
    """Whether ``scope`` has built its own copy of scoped declaration ``service``."""
    from .request import materialize

    with scope._root._mutex:
        materialize(scope)
        copy = scope._scoped.get(service)
        return copy is not None and bool(copy.index)


def explain(scope: Scope, root: Service) -> str:
    """One service's dependency tree, then what needs it, as text."""
    lines: list[str] = []

    def node(service: Service) -> str:
        return (
            f"{service.label} ({kind(service)}, provided by "
            f"{service.owner.name!r}, {_state(service, scope)})"
        )

    def walk(service: Service, prefix: str, path: tuple[Service, ...]) -> None:
        try:
            edges = list(_edges(service, scope))
        except TypeError as error:
            lines.append(f"{prefix}└── cannot read its parameters: {error}")
            return
        for i, (p, dependency) in enumerate(edges):
            last = i == len(edges) - 1
            branch, below = ("└── ", "    ") if last else ("├── ", "│   ")
            if dependency is None:
                missing = "default used" if p.default is not _EMPTY else "MISSING"
                lines.append(f"{prefix}{branch}{describe(p.target)} ({missing})")
            elif dependency in path:
                lines.append(f"{prefix}{branch}{dependency.label} (circular)")
            else:
                lines.append(f"{prefix}{branch}{node(dependency)}")
                walk(dependency, prefix + below, (*path, dependency))

    needs = _dependents(scope)

    def walk_up(service: Service, prefix: str, path: tuple[Service, ...]) -> None:
        above: list[Service | str] = [*needs.get(id(service), [])]
        above += injection.needing(scope, service.key)
        for i, dependent in enumerate(above):
            last = i == len(above) - 1
            branch, below = ("└── ", "    ") if last else ("├── ", "│   ")
            if isinstance(dependent, str):
                lines.append(f"{prefix}{branch}{dependent}")
            elif dependent in path:
                lines.append(f"{prefix}{branch}{dependent.label} (circular)")
            else:
                lines.append(f"{prefix}{branch}{node(dependent)}")
                walk_up(dependent, prefix + below, (*path, dependent))

    lines.append(node(root))
    walk(root, "", (root,))
    mark = len(lines)
    walk_up(root, "", (root,))
    if len(lines) == mark:
        lines.append(f"needed by: nothing in reach of scope {scope.name!r}")
    else:
        lines.insert(mark, "needed by:")
    return "\n".join(lines)


def _dependents(scope: Scope) -> dict[int, list[Service]]:
    """For each service visible from ``scope`` (by id), the services that need it."""
    found: dict[int, list[Service]] = {}
    for service in registry.visible(scope):
        try:
            edges = list(_edges(service, scope))
        except TypeError:
            continue
        for _, dependency in edges:
            if dependency is not None:
                needing = found.setdefault(id(dependency), [])
                if service not in needing:
                    needing.append(service)
    return found


def graph(scope: Scope) -> str:
    """Every service visible from ``scope`` and what each needs, as a Mermaid flowchart."""
    services = registry.visible(scope)
    ids = {id(service): f"s{i}" for i, service in enumerate(services)}
    lines = ["flowchart TD"]
    missing: dict[str, str] = {}
    for service in services:
        keys = " | ".join(describe(key) for key in service.keys)
        text = f"{keys}<br/>{kind(service)} in {service.owner.name}"
        lines.append(f'    {ids[id(service)]}["{_escape(text)}"]')
    for service in services:
        try:
            edges = list(_edges(service, scope))
        except TypeError:
            continue
        for p, dependency in edges:
            source = ids[id(service)]
            if dependency is not None and id(dependency) in ids:
                lines.append(f"    {source} --> {ids[id(dependency)]}")
            elif dependency is None and p.default is _EMPTY:
                label = describe(p.target)
                if label not in missing:
                    missing[label] = f"m{len(missing)}"
                    lines.append(f'    {missing[label]}["{_escape(label)}<br/>MISSING"]')
                lines.append(f"    {source} -.-> {missing[label]}")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
