"""The registry: which services a scope provides, and what a key reaches from it.

Functions of the scope they work on, for ``Scope`` (di/scope.py) and the rest of the
container: adding a provider (:func:`add`; :func:`add_member` for one collected with
``collect=True``) and replacing one (:func:`override`, :func:`replace`), finding what a
key reaches (:func:`lookup`, walking up the ancestors, nearest provider first; the
services a collection gathers, :func:`members`), what a scope can see
(:func:`lineage`, :func:`visible`), caching a finished build (:func:`keep`), and
reading context values (:func:`context_value`, :func:`context_scope`) and scoped
copies (:func:`scoped_copy`).

A collection is a service of its own under ``list[T]`` in each scope that collects
under ``T`` (lifetime ``COLLECTION``, never built nor cached): its ``members`` are the
services collected there, each keyed by a :class:`~di._container.service.Member`.
Invoking it gathers the members of every scope from the root down to the invoker.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import (
    AsyncRequiredError,
    ContextNotProvidedError,
    ScopeClosedError,
    ScopeRequiredError,
    ServiceAlreadyProvidedError,
    ServiceNotFoundError,
)
from . import hooks, request, shutdown
from .keys import Key, check_name, describe, listed, unalias
from .runner import in_event_loop, run_blocking
from .service import BLANK, COMPILED, Landed, Lifetime, Member, Service, Teardown
from .shutdown import PendingHook
from .signature import Kind, label

if TYPE_CHECKING:
    from ..scope import Scope


def keep_lifetime(scope: Scope, service: Service) -> None:
    """An override keeps the lifetime of a scoped or transient service it replaces,
    and whether its failures are critical."""
    old = lookup(scope, service.key)
    if old is not None and old.lifetime in (Lifetime.SCOPED, Lifetime.TRANSIENT):
        service.lifetime = old.lifetime
    keep_criticality(scope, service)


def keep_criticality(scope: Scope, service: Service) -> None:
    """An override keeps whether the failures of the service it replaces are critical,
    its health policy and its tags."""
    old = lookup(scope, service.key)
    if old is not None:
        service.critical = old.critical
        service.policy = old.policy
        service.tags = old.tags


def override(scope: Scope, service: Service, sync_name: str, async_name: str) -> None:
    """Swap ``service`` in and shut the instances it replaces down, from sync code."""
    replaced = replaced_by(scope, service, sync_name)
    if replaced and shutdown.has_async_hook(scope, replaced) and in_event_loop():
        raise AsyncRequiredError(
            f"{sync_name}() was called inside a running event loop and the replaced "
            f"{replaced[0].label!r} has an async shutdown hook; use `await {async_name}()` "
            "there"
        )
    steps = replace(scope, service, sync_name)
    shut_down(scope, steps, sync_name, async_name)


def shut_down(scope: Scope, steps: list[PendingHook], sync_name: str, async_name: str) -> None:
    """Run the shutdown hooks of instances taken out (replaced), from sync code: on a
    loop of their own if one is async. Failures raise :class:`~di.ShutdownError`."""
    if any(inspect.iscoroutinefunction(step.hook()) for step in steps):
        run_blocking(lambda: shutdown.attempt_hooks_async(steps, scope), sync_name, async_name)
    else:
        shutdown.attempt_hooks_sync(steps, scope, async_name)


async def aoverride(scope: Scope, service: Service, where: str) -> None:
    """:func:`override` from async code, awaiting the replaced instances' hooks."""
    steps = replace(scope, service, where)
    await shutdown.attempt_hooks_async(steps, scope)


def replaced_by(scope: Scope, service: Service, where: str) -> list[Service]:
    """The built services of this scope that ``service`` would replace.

    Raises ``ServiceNotFoundError`` for a key no visible scope provides.
    """
    replaced: list[Service] = []
    for key in service.keys:
        if lookup(scope, key) is None:
            error = not_found(scope, key)
            error.add_note(
                f"{where}() replaces a service and never adds one; to stand in for an "
                f"interface, pass provides=: {where}({label(service.factory)}, "
                "provides=TheInterface)"
            )
            raise error
        old = scope._services.get(key)
        if old is not None and old.index and old not in replaced:
            replaced.append(old)
    # A scoped service this scope built from a declaration above: its copy goes too.
    with scope._root._mutex:
        request.materialize(scope)
        for template, copy in scope._scoped.items():
            if copy.index and copy not in replaced and set(template.keys) & set(service.keys):
                replaced.append(copy)
    return replaced


def replace(scope: Scope, service: Service, where: str) -> list[PendingHook]:
    """Swap ``service`` in; the replaced instances, taken out, are left to shut down."""
    if service.lifetime is Lifetime.TRANSIENT and service.kind in (
        Kind.GENERATOR,
        Kind.ASYNC_GENERATOR,
    ):
        raise TypeError(
            f"{where}({service.label}): the service replaced is a transient, and a "
            "generator factory's cleanup would never run for one"
        )
    replaced = replaced_by(scope, service, where)
    with scope._root._mutex:
        if scope._closed:
            raise ScopeClosedError(scope.name, f"override {service.label!r}")
        steps = shutdown.take_out(scope, replaced)
        for copy in replaced:
            if copy.template is not None and scope._scoped is not BLANK:
                scope._scoped.pop(copy.template, None)
        if scope._services is BLANK:
            scope._services = {}
        drop_received(scope, service.keys)
        for key in service.keys:
            old = scope._services.get(key)
            if old is not None and old is not service and len(old.keys) > 1:
                # The old service keeps the keys not overridden, as a service of its own.
                kept = tuple(k for k in old.keys if k not in service.keys)
                rest = old.rebound(kept)
                for other in kept:
                    scope._services[other] = rest
            scope._services[key] = service
        request.forget_builders(scope)
    announce(scope, service)
    return steps


def add(scope: Scope, service: Service, where: str = "provide") -> None:
    """Provide ``service`` in ``scope``; a key it already provides is an error, and so
    is a key collected in reach or below (``collect=True``): one key, one kind of
    binding."""
    with scope._root._mutex:
        if scope._closed:
            raise ScopeClosedError(scope.name, f"provide {service.label!r}")
        for key in service.keys:
            # A name may not pass for a type's reported name, nor the reverse:
            # reports and errors name both the same way.
            taken = key in scope._labels if isinstance(key, str) else describe(key)
            if key in scope._services or taken in scope._services or taken is True:
                raise ServiceAlreadyProvidedError(
                    describe(key),
                    scope.name,
                    None
                    if isinstance(key, str)
                    else "use override() to replace it, or provide each with collect=True "
                    f"to gather several (invoke list[{describe(key)}])",
                )
            if not isinstance(key, str):
                collection = lookup(scope, listed(key))
                if collection is None or collection.lifetime is not Lifetime.COLLECTION:
                    collection = _below(scope, listed(key), collection=True)
                if collection is not None:
                    raise ServiceAlreadyProvidedError(
                        describe(key),
                        collection.owner.name,
                        f"it is collected there (collect=True), and {where}() without "
                        "collect=True would bind it plainly too; pass collect=True to add "
                        f"one more to list[{describe(key)}], or use another key",
                    )
        if scope._services is BLANK:
            scope._services, scope._labels = {}, set()
        drop_received(scope, service.keys)
        for key in service.keys:
            scope._services[key] = service
            if not isinstance(key, str):
                scope._labels.add(describe(key))
        request.forget_builders(scope)
    announce(scope, service)


def announce(scope: Scope, service: Service) -> None:
    """Tell the hooks listening from ``scope`` that ``service`` was provided there."""
    if scope._listeners:
        value = service.factory() if service.lifetime is Lifetime.VALUE else None
        hooks.emit(scope, "provided", service, value)


def add_member(scope: Scope, service: Service, where: str) -> None:
    """Provide ``service`` collected under each of its keys (``collect=True``).

    It becomes a service of its own, keyed by a fresh :class:`Member`, and a member of
    the collection ``listed(key)`` of this scope for each key. A key bound plainly in
    reach or below is an error: one key, one kind of binding.
    """
    interfaces = service.keys
    for interface in interfaces:
        if isinstance(interface, str):
            raise TypeError(
                f"{where}(provides={interface!r}, collect=True): a collection gathers "
                "services by type; collect under a class or a Protocol"
            )
    with scope._root._mutex:
        if scope._closed:
            raise ScopeClosedError(scope.name, f"provide {service.label!r}")
        for interface in interfaces:
            plain = lookup(scope, interface)
            as_list = lookup(scope, listed(interface))
            if as_list is not None and as_list.lifetime is not Lifetime.COLLECTION:
                plain = as_list
            if plain is None:
                plain = _below(scope, interface, collection=False) or _below(
                    scope, listed(interface), collection=False
                )
            if plain is not None:
                raise ServiceAlreadyProvidedError(
                    describe(plain.key),
                    plain.owner.name,
                    f"it is bound plainly there, and {where}(..., collect=True) would "
                    "collect services under it too; provide that one with collect=True as "
                    "well, or collect under another key",
                )
        built = service.expected if isinstance(service.expected, type) else None
        what = describe(built) if built is not None else label(service.factory)
        # Names in use where this one will be seen: in reach, and below (a descendant
        # that collected first sees both).
        listing = listed(interfaces[0])
        below = [c for each in _descendants(scope) if (c := each._services.get(listing))]
        taken = {m.label for c in (*collections(scope, listing), *below) for m in c.members}
        name = f"{describe(interfaces[0])}[{what}]"
        number = 2
        while name in taken:
            name, number = f"{describe(interfaces[0])}[{what} #{number}]", number + 1
        key = Member(interfaces[0], name)
        service.key, service.keys, service.label = key, (key,), name
        if scope._services is BLANK:
            scope._services, scope._labels = {}, set()
        scope._services[key] = service
        for interface in interfaces:
            collection = scope._services.get(listed(interface))
            if collection is None:
                collection = scope._services[listed(interface)] = Service(
                    key=listed(interface),
                    label=describe(listed(interface)),
                    lifetime=Lifetime.COLLECTION,
                    owner=scope,
                    factory=list,
                    kind=Kind.PLAIN,
                    expected=None,
                    params=[],
                    shutdown_hook=None,
                    check=None,
                )
            collection.members.append(service)
        request.forget_builders(scope)
    announce(scope, service)


def _below(scope: Scope, key: Key, *, collection: bool) -> Service | None:
    """What a descendant of ``scope`` provides under ``key``: a collection, or with
    ``collection=False`` anything else (the caller holds the mutex). A key bound here
    is seen from below too, so the bindings below count."""
    for each in _descendants(scope):
        found = each._services.get(key)
        if found is not None and (found.lifetime is Lifetime.COLLECTION) == collection:
            return found
    return None


def _descendants(scope: Scope) -> Iterator[Scope]:
    """Every scope below ``scope``, each before its own children (mutex held)."""
    for child in list(scope._children.values()):
        yield child
        yield from _descendants(child)


def collections(scope: Scope, key: Key) -> list[Service]:
    """The collections ``key`` (``list[T]``) reaches from ``scope``, the root's first.

    A scope that provides ``key`` as anything but a collection hides those above it.
    """
    found: list[Service] = []
    each: Scope | None = scope
    while each is not None:
        service = each._services.get(key)
        if service is not None:
            if service.lifetime is not Lifetime.COLLECTION:
                break
            found.append(service)
        each = each._parent
    found.reverse()
    return found


def members(scope: Scope, collection: Service) -> list[Service]:
    """Every service ``collection`` gathers as seen from ``scope``: the root's first,
    each scope's in provide order."""
    return [m for c in collections(scope, collection.key) for m in c.members]


def drop_received(scope: Scope, keys: tuple[Key, ...]) -> None:
    """Forget the context values this scope received for ``keys``, which it is about
    to provide itself (the caller holds the mutex): its own provider wins."""
    for key in keys:
        seen = lookup(scope, key)
        if seen is not None and seen.lifetime is Lifetime.CONTEXT:
            scope._instances.pop(key, None)


def lookup(scope: Scope, key: Key) -> Service | None:
    """The service ``key`` reaches from ``scope``: its own provider, else the nearest
    ancestor's; None when no scope in reach provides it."""
    each: Scope | None = scope
    while each is not None:
        found = each._services.get(key)
        if found is not None:
            return found
        each = each._parent
    return None


def find(scope: Scope, service: Any, name: str | None) -> tuple[Service, Any]:
    """The service a caller of ``invoke(service, name)`` asks for, and the type to check
    it against (if any); ``ServiceNotFoundError`` when none is in reach."""
    if scope._closed:
        raise ScopeClosedError(scope.name, f"invoke {describe(service)!r}")
    if name is not None:
        check_name(name, "invoke()")
        if isinstance(service, str):
            raise TypeError(f"invoke({service!r}, name={name!r}): pass a type with name=")
        key, expected = name, unalias(service)
    else:
        key, expected = unalias(service), None
    found = lookup(scope, key)
    if found is None and isinstance(key, str):
        # A type-keyed service may also be asked for by its reported name.
        found = next((s for s in visible(scope) if s.label == key), None)
    if found is None:
        raise not_found(scope, key)
    return found, expected


def visible(scope: Scope) -> list[Service]:
    """Every service this scope can invoke, once each, nearest provider first."""
    seen: dict[Key, Service] = {}
    for _, services in lineage(scope):
        for key, service in services:
            seen.setdefault(key, service)
    return list(dict.fromkeys(seen.values()))


def lineage(scope: Scope) -> list[tuple[Scope, list[tuple[Key, Service]]]]:
    """This each and its ancestors, nearest first, each with its services then.

    A scope's copies of scoped services come before what it provides itself.
    """
    with scope._root._mutex:
        for each in (scope, *scope.ancestors()):
            request.materialize(each)
        return [
            (
                each,
                [(copy.key, copy) for copy in each._scoped.values()] + list(each._services.items()),
            )
            for each in (scope, *scope.ancestors())
        ]


def keep(
    scope: Scope, service: Service, instance: Any, teardown: Teardown | None, generation: int
) -> Landed:
    """Cache a build of ``service`` here, if it may be; the caller holds the mutex.

    Refused (CLOSED) once the scope began shutting down after the build began, and
    (REPLACED) when an override swapped the service out meanwhile.
    """
    if scope._closed or scope._generation != generation:
        return Landed.CLOSED
    if service.template is None and scope._services.get(service.key) is not service:
        return Landed.REPLACED
    if scope._instances.get(service.key, COMPILED) is not COMPILED:
        return Landed.BEATEN  # a compiled builder, in the scope's own thread, cached one first
    service.index = next(scope._root._counter)
    service.teardown = teardown
    keys = service.keys if service.template is None else request.reaching(scope, service.template)
    for key in keys:
        scope._instances[key] = instance
    return Landed.KEPT


def context_value(scope: Scope, service: Service) -> Any:
    """The value of a context key, from the nearest enclosing scope that received one.

    ``service`` is the key's declaration as seen from here. A scope keeps the
    values it received among its instances; from here up to the declaring scope,
    no scope provides that key itself (or it would be the one seen), so whatever
    one holds under it is a value it received.
    """
    each: Scope | None = scope
    while each is not None:
        value = each._instances.get(service.key, COMPILED)
        if value is not COMPILED:
            return value
        if each is service.owner:
            break
        each = each._parent
    if scope._closed:  # its values went with it
        raise ScopeClosedError(scope.name, f"invoke {service.label!r}")
    error = ContextNotProvidedError(service.label, scope.name)
    error.missing = service.key
    raise error


def scoped_copy(scope: Scope, service: Service) -> Service:
    """This scope's own copy of a scoped declaration, made on first use."""
    copy = scope._scoped.get(service)
    if copy is not None:
        return copy
    if scope._parent is None:
        error = ScopeRequiredError(service.label)
        error.missing = service.key
        raise error
    with scope._root._mutex:
        if scope._closed:
            raise ScopeClosedError(scope.name, f"build {service.label!r}")
        request.materialize(scope)
        if scope._scoped is BLANK:
            scope._scoped = {}
        return scope._scoped.setdefault(service, service.copy_for(scope))


def not_found(scope: Scope, key: Key, needed_by: str | None = None) -> ServiceNotFoundError:
    """The error for a key no scope in reach provides, listing what ``scope`` sees."""
    available = [
        describe(k)
        for s in visible(scope)
        if s.label != needed_by and not isinstance(s.key, Member)
        for k in s.keys
    ]
    error = ServiceNotFoundError(describe(key), scope.name, available)
    if not isinstance(key, str) and collections(scope, listed(key)):
        error.add_note(
            f"{describe(key)} is collected (provide(..., collect=True)): ask for every "
            f"one of them with list[{describe(key)}]"
        )
    return error


def context_scope(scope: Scope, key: Key) -> str | None:
    """The nearest scope, from here up, whose context holds ``key`` (as declared here)."""
    declared = lookup(scope, key)
    if declared is None or declared.lifetime is not Lifetime.CONTEXT:
        return None
    each: Scope | None = scope
    while each is not None:
        if each._instances.get(key, COMPILED) is not COMPILED:
            return each.name
        if each is declared.owner:
            break
        each = each._parent
    return None


def built_services(scope: Scope) -> list[Service]:
    """The services built in ``scope`` itself, in build order."""
    with scope._root._mutex:
        request.materialize(scope)
        built = {s for s in (*scope._services.values(), *scope._scoped.values()) if s.index}
    return sorted(built, key=lambda s: s.index)


def copy_into(source: Scope, target: Scope) -> list[Service]:
    """Provide in ``target`` what ``source`` provides itself, nothing built: each
    service a fresh record (collections with their members), a key overridden for a
    while (``overridden()``) by what the override replaced; the values, which the
    caller builds. ``target`` provides nothing yet."""
    copies: dict[Service, Service] = {}

    def copy(service: Service) -> Service:
        made = copies.get(service)
        if made is None:
            made = copies[service] = service._like(target, service.lifetime, service.keys)
            if service.lifetime is Lifetime.VALUE:
                made.shutdown_hook = _left_alone  # the source's own, to shut down
        return made

    from .overrides import overrides_of

    with source._root._mutex:
        provided = dict(source._services)
        for key, stack in overrides_of(source).items():
            original = stack[0].replaced  # what the oldest active override replaced
            if original is None:
                del provided[key]
            else:
                provided[key] = original
        services = {key: copy(service) for key, service in provided.items()}
        for original, made in list(copies.items()):
            made.members = [copy(member) for member in original.members]
        if services:
            target._services, target._labels = services, set(source._labels)
        if source._eager:
            target._eager = dict(source._eager)
    return [made for made in copies.values() if made.lifetime is Lifetime.VALUE]


def _left_alone(instance: object) -> None:
    """The shutdown hook of a clone's value: the injector it was given to owns it."""


# -- starting: build the eager services (twins, change both) --------------------------------


def build_eager(scope: Scope) -> None:
    """Build every ``eager=True`` service of ``scope`` as ``invoke`` would, in provide
    order; the first failure raised with a note naming the service."""
    for key in list(scope._eager):
        try:
            scope.invoke(key)
        except AsyncRequiredError as error:
            # invoke() names ainvoke(); the caller called start().
            raise AsyncRequiredError(
                f"start() cannot build eager service {describe(key)!r}: it or a service "
                "it needs has an async factory; use `await scope.astart()`"
            ) from error
        except Exception as error:
            _note_start(error, scope, key)
            raise


async def abuild_eager(scope: Scope) -> None:
    """:func:`build_eager` for async code, awaiting async factories."""
    for key in list(scope._eager):
        try:
            await scope.ainvoke(key)
        except Exception as error:
            _note_start(error, scope, key)
            raise


def _note_start(error: Exception, scope: Scope, key: Key) -> None:
    """Name the eager service whose start ``error`` failed, in a note on it."""
    error.add_note(f"while starting eager service {describe(key)!r} of scope {scope.name!r}")
