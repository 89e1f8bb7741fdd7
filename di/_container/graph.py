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
    """Raise one :class:`GraphError` listing every problem visible from ``scope``.

    One pass over the services and their edges, without recursion: each service's
    edges are read once (:class:`_Edges`), cycles are found by one depth-first walk
    over the whole graph (:func:`_cycles`), and a singleton's captive dependencies by a
    walk through transients whose findings are kept per transient (:func:`_captives`).
    """
    problems: list[str] = []
    services = registry.visible(scope)
    edges = _Edges(scope)
    for service in services:
        try:
            found = edges.of(service, scope)
        except TypeError as error:
            problems.append(str(error))
            continue
        for p, dependency in found:
            if dependency is None and p.default is _EMPTY:
                problems.append(
                    f"{service.label} needs {describe(p.target)} (parameter {p.name!r}), "
                    f"which no scope in reach of {_where(service, scope)!r} provides"
                )
    problems += _captives(services, edges)
    problems += _cycles(services, edges, scope)
    problems += injection.problems(scope)
    if problems:
        raise GraphError(scope.name, problems)


class _Edges:
    """Each service's edges as seen from one invoking scope, read once and kept."""

    __slots__ = ("_kept", "_scope")

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._kept: dict[tuple[int, int], list[tuple[Param, Service | None]] | TypeError] = {}

    def of(self, service: Service, invoker: Scope) -> list[tuple[Param, Service | None]]:
        """The edges of ``service`` invoked from ``invoker``; ``TypeError`` when its
        factory's annotations cannot be resolved."""
        key = (id(service), id(invoker))
        found = self._kept.get(key)
        if found is None:
            try:
                found = list(_edges(service, invoker))
            except TypeError as error:
                found = error
            self._kept[key] = found
        if isinstance(found, TypeError):
            raise found
        return found

    def quietly(self, service: Service, invoker: Scope) -> list[tuple[Param, Service | None]]:
        """:meth:`of`, with no edges for a factory whose annotations cannot be read."""
        try:
            return self.of(service, invoker)
        except TypeError:
            return []


def _where(service: Service, scope: Scope) -> str:
    return service.owner.name if service.lifetime is Lifetime.LAZY else scope.name


def _captives(services: list[Service], edges: _Edges) -> list[str]:
    """How each singleton would hold a scoped or context service, one line each.

    A singleton resolves from its own scope, and so do the transients it needs: the walk
    follows transients only, and what a transient leads to (the chain to the first
    captive, or nothing) is kept per transient and owning scope, so each is walked once.
    """
    found: list[str] = []
    # (id(transient), id(owner)) -> the chain after it to a captive, or None.
    leads: dict[tuple[int, int], tuple[Service, ...] | None] = {}
    for singleton in services:
        if singleton.lifetime not in _SINGLETONS:
            continue
        owner = singleton.owner
        chain = _captive_chain(singleton, owner, edges, leads)
        if chain is not None:
            dependency = chain[-1]
            path = " -> ".join(s.label for s in (singleton, *chain))
            found.append(
                f"captive dependency: singleton {singleton.label} (scope "
                f"{owner.name!r}) needs {dependency.lifetime.value} "
                f"{dependency.label} ({path}); a singleton outlives every scope, so "
                f"make {singleton.label} scoped (provide_scoped) or give it what it "
                "needs another way"
            )
    return found


def _captive_chain(
    start: Service,
    owner: Scope,
    edges: _Edges,
    leads: dict[tuple[int, int], tuple[Service, ...] | None],
) -> tuple[Service, ...] | None:
    """The chain from ``start``'s dependencies to a scoped or context service that
    ``owner`` would hold, through transients; None if there is none. Iterative: a
    stack of (service, its edges, next edge) frames."""
    scope_key = id(owner)

    def captive(dependency: Service) -> bool:
        if dependency.lifetime is Lifetime.CONTEXT and registry.context_scope(
            owner, dependency.key
        ):
            return False  # the singleton's own scope received that value
        if dependency.lifetime is Lifetime.SCOPED and owner.parent is not None:
            return False  # built in the singleton's own scope: they live as long
        return dependency.lifetime in (Lifetime.SCOPED, Lifetime.CONTEXT)

    on_path: set[int] = {id(start)}
    stack: list[tuple[Service, list[tuple[Param, Service | None]], int]] = [
        (start, edges.quietly(start, owner), 0)
    ]
    # What the frame on top found below it, to hand to the frame beneath.
    result: tuple[Service, ...] | None = None
    while stack:
        service, out, i = stack[-1]
        if result is not None:
            # A dependency of this frame led to a captive: so does this frame.
            stack.pop()
            on_path.discard(id(service))
            if service is not start:
                leads[(id(service), scope_key)] = result
                result = (service, *result)
            continue
        if i == len(out):
            stack.pop()
            on_path.discard(id(service))
            if service is not start:
                leads[(id(service), scope_key)] = None
            continue
        stack[-1] = (service, out, i + 1)
        dependency = out[i][1]
        if dependency is None:
            continue
        if captive(dependency):
            result = (dependency,)
            continue
        if dependency.lifetime is not Lifetime.TRANSIENT or id(dependency) in on_path:
            continue
        lead_key = (id(dependency), scope_key)
        if lead_key in leads:
            known = leads[lead_key]
            if known is not None:
                result = (dependency, *known)
            continue
        on_path.add(id(dependency))
        stack.append((dependency, edges.quietly(dependency, owner), 0))
    return result


def _cycles(services: list[Service], edges: _Edges, scope: Scope) -> list[str]:
    """Every circular dependency among ``services``, once each: one depth-first walk
    over the whole graph, iterative, a back edge to a service on the walk's path
    closing a cycle."""
    found: list[str] = []
    reported: set[tuple[str, ...]] = set()
    done: set[int] = set()
    for root in services:
        if id(root) in done:
            continue
        path: list[Service] = [root]
        where: dict[int, int] = {id(root): 0}  # a service on the path -> its place
        stack: list[tuple[list[tuple[Param, Service | None]], int]] = [
            (edges.quietly(root, scope), 0)
        ]
        while stack:
            out, i = stack[-1]
            if i == len(out):
                stack.pop()
                gone = path.pop()
                del where[id(gone)]
                done.add(id(gone))
                continue
            stack[-1] = (out, i + 1)
            dependency = out[i][1]
            if dependency is None or id(dependency) in done:
                continue
            at = where.get(id(dependency))
            if at is not None:
                cycle = [s.label for s in path[at:]] + [dependency.label]
                first = cycle.index(min(cycle[:-1]))
                canonical = tuple(cycle[first:-1] + cycle[:first])
                if canonical not in reported:
                    reported.add(canonical)
                    found.append("circular dependency: " + " -> ".join(cycle))
                continue
            where[id(dependency)] = len(path)
            path.append(dependency)
            stack.append((edges.quietly(dependency, scope), 0))
    return found


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


def dependencies(scope: Scope) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every service visible from ``scope``: its label (as health results name it), its
    kind, and the labels of the services it needs (a missing one named ``MISSING``), in
    provide order, without building anything."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for service in registry.visible(scope):
        needs: list[str] = []
        try:
            edges = list(_edges(service, scope))
        except TypeError:
            edges = []
        for p, dependency in edges:
            if dependency is not None:
                needs.append(dependency.label)
            elif p.default is _EMPTY:
                needs.append(f"{describe(p.target)} MISSING")
        found.append((service.label, kind(service), tuple(dict.fromkeys(needs))))
    return found
