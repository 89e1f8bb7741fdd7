"""The request path: open a scope, build its scoped services, close it, in microseconds.

A request scope is a child that provides nothing itself: it resolves every key as its
parent does. The path of one request, and where each step lives:

- ``Scope.scope()`` (di/scope.py) opens the child: its instances start as a copy of the
  parent's :class:`Plan` template (a ``COMPILED`` marker per scoped service) plus the
  context values, and it joins the parent's children without the lock where the GIL
  orders it (else :func:`adopt` takes the lock); it is named on first ask
  (:func:`name_anonymous`);
- ``Scope.invoke()`` finds a marker and calls the compiled builder the plan holds
  (:func:`fast_builder` compiles one per parent and key, see :mod:`di._container.compile`);
  past its fast path, :func:`invoke` (and :func:`ainvoke`) finds the service and
  compiles or builds it;
  the builder calls back here through the constants it was given (:func:`enter`,
  :func:`record`, :func:`build_guarded`, :func:`note_failed`, :func:`context_value`),
  so that generated code reaches no private of the scope;
- the end of its ``with`` block closes it inline (:func:`di._container.inline.take`,
  which also ends at once a scope whose builds need no shutdown hook); ``shutdown()``,
  and a scope the inline close leaves, :func:`close_plainly` ends at once when nothing
  it built needs a shutdown hook; otherwise :mod:`di._container.shutdown` takes it
  from there. What compiled
  builders recorded becomes the scope's scoped copies only when something asks
  (:func:`materialize`: a shutdown, a health check, the graph).

A provider change at or above a scope bumps its version and drops its plan
(:func:`forget_builders`): builders already handed out are replaced by :class:`Again`
stand-ins, which take the full path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DIError, ScopeClosedError
from . import registry
from .compile import compile_scoped, compile_transient
from .hooks import own_hooks
from .keys import Key, describe
from .resolve import (
    async_closer,
    check_provides,
    check_type,
    closer,
    note_building,
    resolve_async,
    resolve_sync,
)
from .service import BLANK, COMPILED, Lifetime, Service
from .shutdown import discard_unused, leave
from .signature import Kind

if TYPE_CHECKING:
    from ..scope import Scope

_get_ident = threading.get_ident
logger = logging.getLogger("di")


class Plan:
    """What the request scopes of one scope share while the providers it sees stay put.

    A request scope (one that provides nothing) resolves every key as its parent does,
    so one compiled builder per scoped service serves all of them: ``builders`` holds
    them by key (``general``, the keys the general path must build), and ``template``
    the COMPILED marker of each, copied into every new request scope's instances so
    that its first invoke of one goes straight to the builder. ``accepted`` holds the
    type keys ``scope(context=...)`` takes without a closer look.
    """

    __slots__ = (
        "abuilders",
        "accepted",
        "ageneral",
        "builders",
        "general",
        "template",
        "version",
    )

    def __init__(self, version: int, accepted: frozenset[Key]) -> None:
        self.version = version
        self.accepted = accepted
        self.builders: dict[Key, Callable[[Scope], Any]] = {}
        self.general: set[Key] = set()
        self.template: dict[Key, Any] = {}
        # ``ainvoke``'s builders, for what only an async builder builds (async and
        # async generator factories, or what needs them), and the keys it cannot.
        self.abuilders: dict[Key, Callable[[Scope], Awaitable[Any]]] = {}
        self.ageneral: set[Key] = set()


def make_plan(scope: Scope) -> Plan:
    """The plan of ``scope``'s request scopes, made once per version of its view."""
    with scope._root._mutex:
        nearest: dict[Key, Service] = {}
        for each in (scope, *scope.ancestors()):
            for key, service in each._services.items():
                nearest.setdefault(key, service)
        plan = Plan(
            scope._version,
            frozenset(
                key
                for key, service in nearest.items()
                if not isinstance(key, str) and service.lifetime is Lifetime.CONTEXT
            ),
        )
        scope._plan = plan
        return plan


def check_context(scope: Scope, context: Mapping[Key, Any]) -> None:
    """Refuse a scope(context=...) that is no mapping, or holds an undeclared key."""
    if not isinstance(context, Mapping):
        raise TypeError(f"scope(context=...) takes a mapping of key to value, got {context!r}")
    for key, value in context.items():
        declared = registry.lookup(scope, key)
        if declared is None or declared.lifetime is not Lifetime.CONTEXT:
            raise DIError(
                f"scope(context=...): {describe(key)!r} is not a context key seen "
                f"from scope {scope.name!r}; declare it with "
                f"provide_context({describe(key)}) in this scope or above"
            )
        # A named key's value is checked against the type it was declared with;
        # a type key's is not: implementations need not subclass an interface.
        expected = declared.expected
        if isinstance(key, str) and isinstance(expected, type) and not isinstance(value, expected):
            raise TypeError(
                f"scope(context=...): the value of {describe(key)!r} must be a "
                f"{describe(expected)}, got {describe(type(value))}"
            )


def adopt(parent: Scope, child: Scope, name: str | None, key: str | int, plan: Plan) -> None:
    """Make ``child`` one of ``parent``'s children, under the lock: the path of a named
    scope, and of an anonymous one that could not be published without it (no GIL, or
    a provider or a hook changed since ``plan`` was made)."""
    # acquire/release rather than `with`: this runs once per request.
    mutex = parent._root._mutex
    mutex.acquire()
    try:
        if parent._closed:
            leave(child)  # if published without the lock
            raise ScopeClosedError(parent.name, f"open child scope {child.name!r}")
        children = parent._children
        if children is BLANK:
            children = parent._children = {}
        if name is not None and (
            name in children
            or any(other._name == name for other in list(children.values()) if other._number)
        ):
            raise ValueError(
                f"scope {parent.name!r} already has a child scope named {name!r}; "
                "choose another name (or none) or shut that one down first"
            )
        children[key] = child
        if plan.version != parent._version:
            forget_builders(child)  # a provider (or a hook) changed since the plan was made
            child._listeners = parent._listeners
    finally:
        mutex.release()


def name_anonymous(scope: Scope) -> str:
    """Name an anonymous scope ``"<parent's name>.<n>"``, the first time it is asked."""
    with scope._root._mutex:
        name = scope._name
        if name is None:
            parent = scope._parent
            assert parent is not None  # the root always has a name
            # Numbers are unique in the tree, so only a name chosen by hand can be taken.
            name = f"{parent.name}.{scope._number}"
            while name in parent._children:
                name = f"{parent.name}.{next(scope._root._scope_numbers)}"
            scope._name = name
        return name


def invoke(scope: Scope, service: Any, name: str | None) -> Any:
    """``scope.invoke(service, name)`` past its fast path: find the service; build a
    request scope's scoped one with its compiled builder, compile a transient's (and
    keep it, with its marker, for the fast path), or resolve it."""
    version = scope._version
    found, expected = registry.find(scope, service, name)
    if found.lifetime is Lifetime.SCOPED and expected is None:
        build = fast_builder(scope, found)
        if build is not None:
            return build(scope)
    if found.lifetime in _SINGLETONS and name is None and found.owner is not scope:
        instance = found.owner._instances.get(found.key, COMPILED)
        if instance is not COMPILED:
            borrow(scope, service, found, instance, version)
            return instance
    if found.lifetime is Lifetime.TRANSIENT and expected is None:
        version = scope._version
        builder = compile_transient(scope, found)
        if builder is not None:
            with scope._root._mutex:
                # Cached only if no provider changed while compiling.
                if scope._version == version and not scope._closed:
                    own_compiled(scope)[service] = builder
                    scope._instances[service] = COMPILED
            return builder(scope)
    instance = resolve_sync(found, scope)
    if expected is not None:
        check_type(found.label, instance, expected, "invoke()")
    return instance


async def ainvoke(scope: Scope, service: Any, name: str | None) -> Any:
    """:func:`invoke`'s twin for ``ainvoke``: transients are not compiled here.

    Nor does a compiled builder run once another thread has built in the scope
    (``_thread`` is 0 then): such a builder hands each build to the general sync path,
    which would block this loop on a build in progress in that thread, where the async
    path awaits it.
    """
    version = scope._version
    found, expected = registry.find(scope, service, name)
    if found.lifetime in _SINGLETONS and name is None and found.owner is not scope:
        instance = found.owner._instances.get(found.key, COMPILED)
        if instance is not COMPILED:
            borrow(scope, service, found, instance, version)
            return instance
    if found.lifetime is Lifetime.SCOPED and expected is None and scope._thread:
        build = fast_builder(scope, found)
        if build is not None:
            return build(scope)
        abuild = fast_builder(scope, found, asynchronous=True)
        if abuild is not None:
            return await abuild(scope)
    instance = await resolve_async(found, scope)
    if expected is not None:
        check_type(found.label, instance, expected, "ainvoke()")
    return instance


_SINGLETONS = (Lifetime.LAZY, Lifetime.VALUE)


def borrow(scope: Scope, key: Any, found: Service, instance: Any, version: int) -> None:
    """Keep an ancestor's built singleton in ``scope``'s instances under ``key``, so
    that the next invoke of it from here is the fast path's one lookup, at any depth.

    Only if no provider changed since ``version`` was read (the caller's lookup is
    current) and ``key`` is one of the service's own keys; :func:`forget_builders`
    drops it again whenever a provider changes here or above, or an ancestor's
    instance is dropped (an override, a shutdown).
    """
    if key not in found.keys:
        return  # an alias or a reported name: the general path each time
    with scope._root._mutex:
        if scope._version != version or scope._closed:
            return
        borrowed: list[Key] | None = getattr(scope, "_borrowed", None)
        if borrowed is None:
            borrowed = scope._borrowed = []
        scope._instances[key] = instance
        borrowed.append(key)


# -- builders --------------------------------------------------------------------------------


def fast_builder(
    scope: Scope, service: Service, asynchronous: bool = False
) -> Callable[[Scope], Any] | None:
    """The compiled builder of a scoped declaration for ``scope``, if it can have one.

    Only a scope that provides nothing itself (a request scope) shares its parent's
    builder; one is compiled per parent and kept in the parent's plan, by key, until
    a provider changes in the parent or above. ``asynchronous``: the ``async def``
    builder ``ainvoke`` awaits, for a service only it can build.
    """
    parent = scope._parent
    if parent is None or scope._services or service.template is not None:
        return None
    if own_hooks(scope):
        return None  # the parent's builders do not tell this scope's own hooks
    plan = parent._plan
    if plan is None:
        plan = make_plan(parent)
    builders, general = (
        (plan.abuilders, plan.ageneral) if asynchronous else (plan.builders, plan.general)
    )
    builder = builders.get(service.key)
    if type(builder) is Awaited:
        return None  # the sync path of a service only ainvoke's builder builds
    if builder is not None or service.key in general:
        return builder
    builder = compile_scoped(parent, service, CALLBACKS, asynchronous)
    with scope._root._mutex:
        if parent._plan is plan:  # no provider changed meanwhile
            # Only the keys that reach this service from here: a nearer provider
            # of another of its keys keeps that key.
            for key in [k for k in service.keys if registry.lookup(parent, k) is service]:
                if builder is None:
                    general.add(key)
                    continue
                builders[key] = builder
                if not asynchronous:
                    plan.template[key] = COMPILED
                elif key in plan.general and key not in plan.builders:
                    # Only ainvoke builds it: new request scopes get its marker, and
                    # their ainvoke finds the async builder at once (see Awaited).
                    plan.builders[key] = Awaited(key, builder)
                    plan.template[key] = COMPILED
    return builder


def own_compiled(scope: Scope) -> dict[Key, Callable[[Scope], Any]]:
    """``scope``'s own dict of compiled builders, to write (the caller holds the mutex).

    A request scope starts with its parent's plan's, shared, or with none.
    """
    compiled = scope._compiled
    parent = scope._parent
    plan = parent._plan if parent is not None else None
    if compiled is BLANK or (plan is not None and compiled is plan.builders):
        compiled = scope._compiled = dict(compiled)
    return compiled


def forget_builders(scope: Scope) -> None:
    """Drop compiled builders here and below, after the providers change.

    The caller holds the root's mutex.
    """
    scope._version += 1
    scope._plan = None
    borrowed: list[Key] | None = getattr(scope, "_borrowed", None)
    if borrowed:
        for key in borrowed:
            scope._instances.pop(key, None)
        borrowed.clear()
    if scope._compiled:
        # The COMPILED markers stay in the instances (a compiled builder may be
        # replacing one with its instance in another thread right now): each is
        # sent to the full path of invoke instead.
        scope._compiled = {key: Again(key) for key in scope._compiled}
    for child in list(scope._children.values()):
        forget_builders(child)


class Awaited:
    """Stands in ``Scope._compiled`` for a scoped service only an async builder builds
    (an async or async generator factory, or what needs one): ``ainvoke`` awaits
    ``build``; ``invoke`` takes the full path, which says to use ``ainvoke``."""

    __slots__ = ("build", "key")

    def __init__(self, key: Key, build: Callable[[Scope], Awaitable[Any]]) -> None:
        self.key = key
        self.build = build

    def __call__(self, scope: Scope) -> Any:
        return scope._invoke(self.key, None)


class Again:
    """Stands in ``Scope._compiled`` for a builder dropped after a provider changed."""

    __slots__ = ("key",)

    def __init__(self, key: Key) -> None:
        self.key = key

    def __call__(self, scope: Scope) -> Any:
        return scope._invoke(self.key, None)


# -- what compiled scoped builders call back ---------------------------------------------------


def enter(scope: Scope) -> tuple[dict[Key, Any], list[Any]] | None:
    """What a compiled builder builds into: the scope's instances and its list of
    compiled builds (see :func:`materialize`). None from another thread than the scope's
    own, which must take the general path (:func:`build_guarded`)."""
    if scope._thread != _get_ident():
        return None
    return scope._instances, scope._fast


def record(scope: Scope, service: Service, instance: Any, generator: Any = None) -> Any:
    """Cache a scoped instance a compiled builder made here; the instance to use.

    ``generator`` is a generator factory's, which the scope's close finishes. If
    another thread cached one first, that one is used and this one shut down; a scope
    closed meanwhile undoes it and raises ``ScopeClosedError``.
    """
    if service.key is not service.expected:
        check_provides(service, instance)
    instances = scope._instances
    kept = instances.get(service.key, COMPILED)
    if kept is not COMPILED:
        if kept is not instance:
            _discard(service, instance, generator)
        return kept
    for key in reaching(scope, service):
        instances[key] = instance
    scope._fast.append((service, instance, next(scope._root._counter), generator))
    if scope._closed:
        refuse(scope, service, instance, generator)
    return instance


def _discard(service: Service, instance: Any, generator: Any) -> None:
    """Shut down a compiled build never handed out; a generator is finished as the
    general path finishes one built but not kept (an async one is only closed)."""
    if generator is None:
        discard_unused(service, instance)
    elif service.kind is Kind.GENERATOR:
        closer(service, generator)(None)
    else:
        logger.warning(
            "the async generator factory of %r, built but not kept, could not be "
            "finished from here; it was closed",
            service.label,
        )
        generator.aclose().close()


def build_guarded(scope: Scope, service: Service) -> Any:
    """Build a scoped declaration by the general path, for a compiled builder asked from
    another thread: that path's flights make sure two threads never both build it. From
    then on the scope's own thread takes it too (no thread matches 0), so its later
    builds join those flights."""
    scope._thread = 0
    return resolve_sync(service, scope)


async def abuild_guarded(scope: Scope, service: Service) -> Any:
    """:func:`build_guarded` for an async compiled builder: awaits the general path."""
    scope._thread = 0
    return await resolve_async(service, scope)


def note_failed(scope: Scope, error: Exception, service: Service) -> None:
    """Name the scoped service whose factory raised, in a note on the error."""
    note_building(error, service, f"scope {scope.name!r}")


def context_value(scope: Scope, declared: Service) -> Any:
    """The value of a context key from an enclosing scope."""
    return registry.context_value(scope, declared)


def refuse(scope: Scope, service: Service, instance: Any, generator: Any = None) -> None:
    """A compiled build landed in a scope shut down meanwhile: undo it and raise."""
    with scope._root._mutex:
        for key in service.keys:
            if scope._instances.get(key) is instance:
                del scope._instances[key]
        scope._fast = [entry for entry in scope._fast if entry[1] is not instance]
    _discard(service, instance, generator)
    raise ScopeClosedError(scope.name, f"build {service.label!r}")


CALLBACKS: dict[str, Callable[..., Any]] = {
    "_enter": enter,
    "_record": record,
    "_refuse": refuse,
    "_guarded": build_guarded,
    "_aguarded": abuild_guarded,
    "_failed": note_failed,
    "_context": context_value,
}


def reaching(scope: Scope, declared: Service) -> tuple[Key, ...]:
    """The keys of scoped ``declared`` that reach it from ``scope``, under which the
    scope keeps its instance: a nearer provider of one of its bound keys keeps that key."""
    keys = declared.keys
    if len(keys) == 1:
        return keys
    return tuple(key for key in keys if registry.lookup(scope, key) is declared)


def materialize(scope: Scope) -> None:
    """Turn what compiled builders recorded into scoped copies (the caller holds the mutex)."""
    while scope._fast:
        service, _, index, generator = scope._fast.pop(0)
        copy = scope._scoped.get(service)
        if copy is None:
            if scope._scoped is BLANK:
                scope._scoped = {}
            copy = scope._scoped[service] = service.copy_for(scope)
        copy.index = index
        if generator is not None:
            copy.teardown = (
                closer(copy, generator)
                if service.kind is Kind.GENERATOR
                else async_closer(copy, generator, None)
            )


# -- closing ------------------------------------------------------------------------------------


def close_plainly(scope: Scope) -> bool:
    """Close a child scope with no children and no hook to run at once; whether it did.

    The common end of a request scope: what it built needs no shutdown, so there is
    nothing to order, run or report (unless a hook listens to shutdowns).
    """
    parent = scope._parent
    if parent is None:
        return False
    listeners = scope._listeners
    if listeners and ("shut_down" in listeners or "shutting_down" in listeners):
        return False
    if scope._services and any(s.index for s in scope._services.values()):
        return False
    fast = scope._fast
    for entry in fast:  # compiled builds: factories without shutdown= only
        if entry[3] is not None:
            return False  # a generator to finish
        try:
            if callable(getattr(entry[1], "shutdown", None)):
                return False
        except Exception:
            return False
    built = len(fast)
    # acquire/release rather than `with`: this runs once per request.
    mutex = scope._root._mutex
    mutex.acquire()
    try:
        if scope._closed:
            return False
        # Closed before looking at the children: a child being opened without the
        # lock then either sees it or is seen here (see Scope.scope).
        scope._closed = True
        if scope._children or scope._scoped or scope._closing or len(fast) != built:
            return False  # the general path takes it from here, closed already
        scope._generation += 1
        fast.clear()
        scope._instances.clear()  # a scope kept by its caller keeps nothing alive
        children = parent._children  # shutdown.leave(), inlined
        key = scope._number or scope.name
        if children.get(key) is scope:
            del children[key]
    finally:
        mutex.release()
    return True
