"""A provided service and how it gets built: once, by one caller, in dependency order.

Resolution is the slow path of ``invoke``: the fast path is a dict lookup in the scope
(``Scope._instances``), which is also the one place a built instance lives.

Concurrent callers share a *flight*: the first caller builds, the others wait for it
and get its instance (or its error; a failed build caches nothing). The builder, and
only it, tells the hooks listening from the scope that builds (``building``, then
``built`` or ``build_failed``, see :mod:`di._container.hooks`), in its own thread or
task, once the waiters are woken. A collection (``list[T]``) resolves each of its
members in turn. A cycle shows
itself in two ways, both reported as ``CircularDependencyError`` rather than a hang:
a service already on this caller's path, or a flight whose builder waits, through a
chain of other flights, on a flight this caller is building.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import AsyncRequiredError, CircularDependencyError, DIError, ScopeClosedError
from . import hooks, registry
from .keys import describe, unalias
from .runner import loop_notifier, running_asyncio_loop
from .service import COMPILED, MISSING, Landed, Lifetime, Service, Teardown
from .signature import Kind, Param, ScopeParam, label, read_params

if TYPE_CHECKING:
    from ..scope import Scope

logger = logging.getLogger("di")
# The services the current thread or task is building, outermost first.
_PATH: contextvars.ContextVar[tuple[Service, ...]] = contextvars.ContextVar("di_path", default=())
_EMPTY = inspect.Parameter.empty
_SPECIAL = (Lifetime.SCOPED, Lifetime.CONTEXT)


class _Flight:
    """One build in progress, which other callers may wait for."""

    __slots__ = (
        "callbacks",
        "done",
        "error",
        "event",
        "generation",
        "landed",
        "service",
        "thread",
        "waiting_on",
    )

    def __init__(self, service: Service, asynchronous: bool) -> None:
        self.service = service
        # The owner's shutdown count when the build began: a build that lands after its
        # scope began shutting down is shut down at once instead of cached.
        self.generation = service.owner._generation
        self.done = threading.Event()
        self.event = anyio.Event() if asynchronous else None
        self.thread = threading.get_ident()
        self.error: BaseException | None = None
        self.waiting_on: _Flight | None = None
        # Loops in other threads waiting for it: each is woken when it lands.
        self.callbacks: list[Callable[[], None]] = []
        self.landed = False

    async def wait_from_another_thread(self) -> None:
        """Wait, on this loop, for a build running in another thread (cancellable)."""
        woken = anyio.Event()
        notify = loop_notifier()
        with self.service.owner.root._mutex:
            if not self.landed:
                self.callbacks.append(lambda: notify(woken.set))
                landed = False
            else:
                landed = True
        if not landed:
            await woken.wait()


# -- entry points -------------------------------------------------------------------


def _special(service: Service, invoker: Scope) -> tuple[Service | None, Any]:
    """Where a scoped or context service is resolved: (the copy to build, or the value)."""
    if service.lifetime is Lifetime.CONTEXT:
        return None, registry.context_value(invoker, service)
    return registry.scoped_copy(invoker, service), MISSING


def resolve_sync(service: Service, invoker: Scope) -> Any:
    """The instance of ``service``, building it (and its dependencies) when needed."""
    lifetime = service.lifetime
    if lifetime is Lifetime.TRANSIENT:
        if invoker._listeners:
            return _transient_sync(service, invoker)
        return _make_sync(service, invoker)[0]
    if lifetime is Lifetime.COLLECTION:
        return [resolve_sync(member, invoker) for member in registry.members(invoker, service)]
    if service.template is None and lifetime in _SPECIAL:
        copy, value = _special(service, invoker)
        if copy is None:
            return value
        service = copy
    instances = service.owner._instances
    while True:
        instance = instances.get(service.key, COMPILED)  # COMPILED: not built yet
        if instance is not COMPILED:
            return instance
        claim = _claim(service, asynchronous=False)
        if claim is None:
            continue
        flight, mine, me = claim
        if mine:
            owner = service.owner
            listening = owner._listeners
            began = time.perf_counter()
            try:
                if listening:  # a hook stopping the program lands the flight too
                    hooks.emit(owner, "building", service)
                made = _make_sync(service, service.owner)
                check_provides(service, made[0])
            except BaseException as error:
                if isinstance(error, LookupError):
                    explain_captive(error, service, invoker)
                _land(service, flight, None, error)
                if listening:
                    hooks.emit(owner, "build_failed", service, None, error, _since(began))
                raise
            service.build_seconds = time.perf_counter() - began
            landed = _land(service, flight, made, None)
            if landed is not _KEPT:
                _discard_sync(service, made)  # before the hooks hear: one may raise
            if listening:
                _tell_landed(service, owner, landed, made[0], flight.error)
            if landed is not _KEPT and landed is not _BEATEN:
                service = _current(service, landed)
                instances = service.owner._instances
            continue
        if flight.event is not None and flight.thread == threading.get_ident():
            raise AsyncRequiredError(
                f"service {service.label!r} is being built by another task on this event "
                "loop; use `await scope.ainvoke(...)` to wait for it"
            )
        flight.done.wait()
        try:
            _landed(flight, me)
        except _Replaced:
            service = _current(service, _REPLACED)
            instances = service.owner._instances


async def resolve_async(service: Service, invoker: Scope) -> Any:
    """Like :func:`resolve_sync`, awaiting async factories and other callers' builds."""
    lifetime = service.lifetime
    if lifetime is Lifetime.TRANSIENT:
        if invoker._listeners:
            return await _transient_async(service, invoker)
        return (await _make_async(service, invoker))[0]
    if lifetime is Lifetime.COLLECTION:
        return [
            await resolve_async(member, invoker) for member in registry.members(invoker, service)
        ]
    if service.template is None and lifetime in _SPECIAL:
        copy, value = _special(service, invoker)
        if copy is None:
            return value
        service = copy
    instances = service.owner._instances
    while True:
        instance = instances.get(service.key, COMPILED)  # COMPILED: not built yet
        if instance is not COMPILED:
            return instance
        claim = _claim(service, asynchronous=True)
        if claim is None:
            continue
        flight, mine, me = claim
        if mine:
            owner = service.owner
            listening = owner._listeners
            began = time.perf_counter()
            try:
                if listening:  # a hook stopping the program lands the flight too
                    hooks.emit(owner, "building", service)
                made = await _make_async(service, service.owner)
                check_provides(service, made[0])
            except BaseException as error:
                if isinstance(error, LookupError):
                    explain_captive(error, service, invoker)
                _land(service, flight, None, error)
                if listening:
                    hooks.emit(owner, "build_failed", service, None, error, _since(began))
                raise
            service.build_seconds = time.perf_counter() - began
            landed = _land(service, flight, made, None)
            if landed is not _KEPT:
                await _discard_async(service, made)  # before the hooks hear: one may raise
            if listening:
                _tell_landed(service, owner, landed, made[0], flight.error)
            if landed is not _KEPT and landed is not _BEATEN:
                service = _current(service, landed)
                instances = service.owner._instances
            continue
        try:
            if flight.event is not None and flight.thread == threading.get_ident():
                await flight.event.wait()
            else:
                await flight.wait_from_another_thread()
        except BaseException:
            if me is not None:
                me.waiting_on = None
            raise
        try:
            _landed(flight, me)
        except _Replaced:
            service = _current(service, _REPLACED)
            instances = service.owner._instances


def _transient_sync(service: Service, invoker: Scope) -> Any:
    """Build a transient, telling the hooks listening from ``invoker``."""
    hooks.emit(invoker, "building", service)
    began = time.perf_counter()
    try:
        instance = _make_sync(service, invoker)[0]
    except BaseException as error:
        hooks.emit(invoker, "build_failed", service, None, error, _since(began))
        raise
    hooks.emit(invoker, "built", service, instance, None, _since(began))
    return instance


async def _transient_async(service: Service, invoker: Scope) -> Any:
    """:func:`_transient_sync`'s twin, awaiting an async factory."""
    hooks.emit(invoker, "building", service)
    began = time.perf_counter()
    try:
        instance = (await _make_async(service, invoker))[0]
    except BaseException as error:
        hooks.emit(invoker, "build_failed", service, None, error, _since(began))
        raise
    hooks.emit(invoker, "built", service, instance, None, _since(began))
    return instance


def _since(began: float) -> float:
    return time.perf_counter() - began


def _tell_landed(
    service: Service, owner: Scope, landed: Landed, instance: Any, error: BaseException | None
) -> None:
    """Tell the hooks how a build that returned landed: kept, or refused (scope closed,
    service replaced meanwhile). One beaten by a compiled builder was never the one."""
    if landed is _KEPT:
        hooks.emit(owner, "built", service, instance, None, service.build_seconds)
    elif landed is not _BEATEN:
        hooks.emit(owner, "build_failed", service, None, error, service.build_seconds)


# -- flights ------------------------------------------------------------------------


def forget_other_threads_flights(flights: set[Any]) -> None:
    """In a forked child: drop the builds in flight in the parent's other threads.

    Those threads do not exist here: their builds never land, and a caller waiting for
    one would wait for ever. The service builds afresh when next asked for. Called
    under no lock (the child has one thread), with the root's set of flights.
    """
    here = threading.get_ident()
    for flight in list(flights):
        if flight.thread != here:
            flights.discard(flight)
            if flight.service.flight is flight:
                flight.service.flight = None


def _enter(service: Service) -> tuple[Service, ...]:
    path = _PATH.get()
    if service in path:
        cycle = (*path[path.index(service) :], service)
        raise CircularDependencyError([s.label for s in cycle])
    return path


def _claim(service: Service, asynchronous: bool) -> tuple[_Flight, bool, _Flight | None] | None:
    """Start a flight for ``service`` or find the one to wait for; None if it just landed."""
    path = _enter(service)
    owner = service.owner
    with owner.root._mutex:
        if owner._instances.get(service.key, COMPILED) is not COMPILED:
            return None
        if owner.closed:
            raise ScopeClosedError(owner.name, f"build {service.label!r}")
        flight = service.flight
        if flight is None:
            flight = service.flight = _Flight(service, asynchronous)
            owner.root._flights.add(flight)
            return flight, True, None
        me = next((s.flight for s in reversed(path) if s.flight is not None), None)
        if me is not None:
            names = [me.service.label, service.label]
            waited: _Flight | None = flight.waiting_on
            while waited is not None and waited is not me:
                names.append(waited.service.label)
                waited = waited.waiting_on
            if waited is me:
                raise CircularDependencyError([*names, me.service.label])
            me.waiting_on = flight
        return flight, False, me


class _Replaced(DIError):
    """The service was replaced (override) while being built: build the new one."""


_KEPT, _CLOSED, _REPLACED, _BEATEN = Landed.KEPT, Landed.CLOSED, Landed.REPLACED, Landed.BEATEN


def _current(service: Service, landed: Landed) -> Service:
    """After a build that was not kept: the service to build instead, or the error."""
    owner = service.owner
    if landed is _REPLACED:
        current = registry.lookup(owner, service.key)
        if current is not None and current.owner is owner:
            return current
    raise ScopeClosedError(owner.name, f"build {service.label!r}")


def _land(
    service: Service,
    flight: _Flight,
    made: tuple[Any, Teardown | None] | None,
    error: BaseException | None,
) -> Landed:
    """Cache a build (or record its failure) and wake its waiters.

    Not kept when the scope began shutting down during the build (the waiters get
    :class:`ScopeClosedError`) or an override replaced the service meanwhile (the
    waiters build the new one): the caller must shut the instance down.
    """
    owner = service.owner
    kept = _KEPT
    with owner.root._mutex:
        if made is not None:
            kept = registry.keep(owner, service, made[0], made[1], flight.generation)
            if kept is _CLOSED:
                error = ScopeClosedError(owner.name, f"build {service.label!r}")
            elif kept is _REPLACED:
                error = _Replaced(f"service {service.label!r} was replaced while being built")
        service.flight = None
        owner.root._flights.discard(flight)
        flight.error = error
        flight.landed = True
        callbacks, flight.callbacks = flight.callbacks, []
    flight.done.set()
    if flight.event is not None:
        flight.event.set()
    for wake in callbacks:
        wake()
    return kept


def _discard_sync(service: Service, made: tuple[Any, Teardown | None]) -> None:
    """Shut down an instance built but not kept (its scope closed, or it was replaced)."""
    from .shutdown import hook_of

    try:
        hook = hook_of(service, made[0], made[1], None)
        if hook is not None:
            result = hook()
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                logger.warning(
                    "the async shutdown hook of %r, built but not kept, could not be awaited "
                    "from sync code; build it with `await scope.ainvoke(...)`",
                    service.label,
                )
    except Exception:
        logger.exception("shutting down %r, built but not kept, failed", service.label)


async def _discard_async(service: Service, made: tuple[Any, Teardown | None]) -> None:
    """:func:`_discard_sync`, awaiting an async shutdown hook."""
    from .shutdown import hook_of

    try:
        hook = hook_of(service, made[0], made[1], None)
        if hook is not None:
            result = hook()
            if inspect.isawaitable(result):
                await result
    except Exception:
        logger.exception("shutting down %r, built but not kept, failed", service.label)


def _landed(flight: _Flight, me: _Flight | None) -> None:
    if me is not None:
        me.waiting_on = None
    if flight.error is not None:
        raise flight.error


# -- building -----------------------------------------------------------------------


def _make_sync(service: Service, scope: Scope) -> tuple[Any, Teardown | None]:
    if service.kind in (Kind.ASYNC, Kind.ASYNC_GENERATOR):
        if service.lifetime is Lifetime.TRANSIENT:
            raise AsyncRequiredError(
                f"service {service.label!r} is a transient with an async factory: it is "
                "built anew on every invoke, so use `await scope.ainvoke(...)` for it"
            )
        raise AsyncRequiredError(
            f"service {service.label!r} has an async factory and is not built yet; "
            f"use `await scope.ainvoke(...)` to build it"
        )
    service.needs = []  # recorded anew by each build
    path = _enter(service)
    token = _PATH.set((*path, service))
    try:
        if path and len(path) % DEEP == 0:
            for dependency, invoker in _below(service, scope, path):
                resolve_sync(dependency, invoker)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in params_of(service):
            value = _argument_sync(p, scope, service)
            if p.positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        try:
            instance = service.factory(*args, **kwargs)
            if service.kind is Kind.GENERATOR:
                return next(instance), closer(service, instance)
        except Exception as error:
            note_building(error, service)
            raise
        return instance, None
    finally:
        _PATH.reset(token)


async def _make_async(service: Service, scope: Scope) -> tuple[Any, Teardown | None]:
    service.needs = []  # recorded anew by each build
    path = _enter(service)
    token = _PATH.set((*path, service))
    try:
        if path and len(path) % DEEP == 0:
            for dependency, invoker in _below(service, scope, path):
                await resolve_async(dependency, invoker)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in params_of(service):
            value = await _argument_async(p, scope, service)
            if p.positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        try:
            instance = service.factory(*args, **kwargs)
            if service.kind is Kind.ASYNC:
                return await instance, None
            if service.kind is Kind.GENERATOR:
                return next(instance), closer(service, instance)
            if service.kind is Kind.ASYNC_GENERATOR:
                return await first_anext(instance), async_closer(service, instance)
        except Exception as error:
            note_building(error, service)
            raise
        return instance, None
    finally:
        _PATH.reset(token)


# -- deep chains ----------------------------------------------------------------------

# Building recurses through parameters, a few Python frames per service. Every DEEP
# services down a chain, the build first makes room: it checks that the stack can take
# DEEP more, then builds the singletons and scoped services below, deepest first, so
# that the recursion from here on stops at each of them (a chain of them is any length).
# Transients are built anew on every use and cannot be built ahead: a chain of them
# deeper than the stack allows is a DIError naming the depth, never a RecursionError.
DEEP = 32
_FRAMES_PER_SERVICE = 8  # generous: resolve, make, argument, checked, the factory, ...


def _below(
    service: Service, scope: Scope, path: tuple[Service, ...]
) -> list[tuple[Service, Scope]]:
    """The singletons and scoped services below ``service`` not built yet, each with
    the scope to invoke it from, deepest first; a :class:`DIError` naming the depth
    when the stack cannot take another ``DEEP`` services.

    One iterative walk: each (service, scope) pair once, a service already on the
    walk's path skipped (the build then reports the cycle).
    """
    frames = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    if frames + DEEP * _FRAMES_PER_SERVICE + 50 > sys.getrecursionlimit():
        shown = [s.label for s in path[:3]] + ["..."] + [s.label for s in path[-2:]]
        raise DIError(
            f"dependency chain too deep: building {service.label!r} is {len(path)} services "
            f"down a chain ({' -> '.join(shown)} -> {service.label}), deeper than the Python "
            f"stack allows here ({frames} frames in use, limit {sys.getrecursionlimit()}); "
            "a chain of transients is built through the stack on every use: make some of "
            "them singletons or scoped, or raise sys.setrecursionlimit()"
        )
    order: list[tuple[Service, Scope]] = []
    seen: set[tuple[int, int]] = {(id(service), id(scope))}
    stack: list[tuple[Service, Scope, list[Service], int]] = [
        (service, scope, _needs(service, scope), 0)
    ]
    while stack:
        node, where, needs, i = stack[-1]
        if i == len(needs):
            stack.pop()
            if stack and node.lifetime in (Lifetime.LAZY, Lifetime.SCOPED):
                order.append((node, stack[-1][1]))
            continue
        stack[-1] = (node, where, needs, i + 1)
        dependency = needs[i]
        lifetime = dependency.lifetime
        if lifetime is Lifetime.LAZY:
            builds_in = dependency.owner
        elif lifetime is Lifetime.SCOPED or lifetime is Lifetime.TRANSIENT:
            builds_in = where
        else:
            continue
        mark = (id(dependency), id(builds_in))
        if mark in seen:
            continue
        seen.add(mark)
        if lifetime is not Lifetime.TRANSIENT and (
            builds_in._instances.get(dependency.key, COMPILED) is not COMPILED
        ):
            continue  # built already
        stack.append((dependency, builds_in, _needs(dependency, builds_in), 0))
    return order


def _needs(service: Service, scope: Scope) -> list[Service]:
    """The services filling ``service``'s parameters from ``scope`` (a collection's
    members in its place); none for a factory whose annotations cannot be read."""
    try:
        params = params_of(service)
    except TypeError:
        return []
    found: list[Service] = []
    for p in params:
        if p.target is ScopeParam:
            continue
        dependency = registry.lookup(scope, p.target)
        if dependency is None:
            continue
        if dependency.lifetime is Lifetime.COLLECTION:
            found += registry.members(scope, dependency)
        else:
            found.append(dependency)
    return found


def _argument_sync(p: Param, scope: Scope, service: Service) -> Any:
    if p.target is ScopeParam:
        return scope
    dependency = _dependency(p, scope, service)
    if dependency is None or _absent_context(dependency, p, scope):
        return p.default
    service.needs.append(dependency)  # the build graph, for health results' blocked_by
    return _checked(p, resolve_sync(dependency, scope), service)


async def _argument_async(p: Param, scope: Scope, service: Service) -> Any:
    if p.target is ScopeParam:
        return scope
    dependency = _dependency(p, scope, service)
    if dependency is None or _absent_context(dependency, p, scope):
        return p.default
    service.needs.append(dependency)  # the build graph, for health results' blocked_by
    return _checked(p, await resolve_async(dependency, scope), service)


def _absent_context(dependency: Service, p: Param, scope: Scope) -> bool:
    """A context key with no value here, asked for by a parameter with a default."""
    return (
        dependency.lifetime is Lifetime.CONTEXT
        and p.default is not _EMPTY
        and registry.context_scope(scope, dependency.key) is None
    )


def note_building(error: Exception, service: Service, where: str = "") -> None:
    """Name, once, the service whose factory raised and the chain that asked for it."""
    if any(note.startswith(_BUILDING) for note in getattr(error, "__notes__", ())):
        return
    chain = " -> ".join(s.label for s in _PATH.get()) or where
    error.add_note(f"{_BUILDING}{service.label!r} (asked for by {chain})")


_BUILDING = "while building "


def _dependency(p: Param, scope: Scope, service: Service) -> Service | None:
    """The service filling ``p``; None when it is absent and the parameter has a default."""
    dependency = registry.lookup(scope, p.target)
    if dependency is None and p.default is _EMPTY:
        error = registry.not_found(scope, p.target, service.label)
        error.missing = p.target
        error.add_note(f"needed by parameter {p.name!r} of factory {service.label!r}")
        raise error
    return dependency


def explain_captive(error: Exception, service: Service, invoker: Scope) -> None:
    """When a singleton misses a key that the invoking scope does see, say why and what to do.

    The error's headline becomes the cause and the fix, as ``validate()`` words a captive
    dependency: its own (such as "open a scope", to code that is in one) would mislead.
    """
    owner = service.owner
    missing = getattr(error, "missing", MISSING)
    explained = any(_CAPTIVE in str(arg) or _OUTLIVES in str(arg) for arg in error.args)
    if missing is MISSING or explained:
        return
    if invoker is owner:
        _explain_captive_at_owner(error, service, missing)
        return
    provider = registry.lookup(invoker, missing)
    where = None
    if provider is None:
        pass
    elif provider.lifetime is Lifetime.CONTEXT:
        where = registry.context_scope(invoker, missing)
    elif provider.lifetime is Lifetime.SCOPED:
        where = invoker.name if invoker.parent is not None else None
    else:
        where = provider.owner.name
    if where is None or where == owner.name or provider is None:
        return
    kind = f"{provider.lifetime.value} " if provider.lifetime in _PER_SCOPE else ""
    error.args = (
        f"captive dependency: singleton {service.label!r} (scope {owner.name!r}) needs "
        f"{kind}{describe(missing)}, which is provided in scope {where!r}; {_CAPTIVE} "
        f"that owns it, so make {service.label!r} scoped with provide_scoped() (each "
        f"scope builds its own) or provide it in scope {where!r}",
    )


def _explain_captive_at_owner(error: Exception, service: Service, missing: Any) -> None:
    """A singleton invoked in its own scope that needs a per-scope service or value:
    "open a scope" would only lead to the captive dependency, so name it instead."""
    if service.lifetime is not Lifetime.LAZY or missing in service.keys:
        return
    provider = registry.lookup(service.owner, missing)
    if provider is None or provider.lifetime not in _PER_SCOPE:
        return
    error.args = (
        f"captive dependency: singleton {service.label} (scope {service.owner.name!r}) "
        f"needs {provider.lifetime.value} {describe(missing)}; {_OUTLIVES}, so make "
        f"{service.label} scoped (provide_scoped) or give it what it needs another way",
    )


_CAPTIVE = "a singleton resolves its dependencies from the scope"
_OUTLIVES = "a singleton outlives every scope"
_PER_SCOPE = (Lifetime.SCOPED, Lifetime.CONTEXT)


def _checked(p: Param, value: Any, service: Service) -> Any:
    if isinstance(p.target, str):
        check_type(p.target, value, p.expected, f"parameter {p.name!r} of {service.label!r}")
    return value


def check_provides(service: Service, instance: Any) -> None:
    """Refuse an instance that is not of a type its service was bound to with provides=."""
    for key in service.keys:
        if key is service.expected or not isinstance(key, type):
            continue
        try:
            matches = isinstance(instance, key)
        except TypeError:
            continue  # a Protocol that is not runtime-checkable: trust the binding
        if not matches:
            raise TypeError(
                f"service {service.label!r} is bound to {describe(key)} with provides=, "
                f"but its factory built {describe(type(instance))}"
            )


def check_type(name: str, value: Any, expected: Any, where: str) -> None:
    """Raise ``TypeError`` when a named service is not of the type asked for."""
    if isinstance(expected, type) and not isinstance(value, expected):
        raise TypeError(
            f"{where} asks for service {name!r} as {expected.__module__}."
            f"{expected.__qualname__}, but it was built as {type(value).__module__}."
            f"{type(value).__qualname__}"
        )


def params_of(service: Service) -> list[Param]:
    """The factory's parameters, resolving annotations deferred at provide time."""
    params = service.params
    if params is None:
        params = read_params(service.factory, service.owner._scope_types)
        if params is None:
            raise TypeError(_unresolvable(service.factory))
        service.params = params
    return params


def _unresolvable(factory: Callable[..., Any]) -> str:
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    namespace = getattr(target, "__globals__", {})
    for p in inspect.signature(factory).parameters.values():
        try:
            unalias(p.annotation)
        except NameError as error:  # a type alias naming what is not defined
            return f"factory {label(factory)}: parameter {p.name!r}: {error}"
        if isinstance(p.annotation, str):
            value: Any = p.annotation
            text = value
            try:
                while isinstance(value, str):  # quoted twice under postponed annotations
                    text = value
                    value = eval(value, namespace)
                unalias(value)
            except Exception as error:
                return (
                    f"factory {label(factory)}: cannot resolve the annotation "
                    f"{text!r} of parameter {p.name!r} ({error}); "
                    "define or import that type at module level"
                )
    return f"factory {label(factory)}: cannot resolve its parameter annotations"


# -- teardown -----------------------------------------------------------------------


def closer(service: Service, generator: Any) -> Callable[[BaseException | None], None]:
    """The teardown of a generator factory's build: :func:`finish_generator`."""
    return functools.partial(finish_generator, service, generator)


FINISHED: Any = object()  # what next() gives for a generator that returned


def finish_generator(
    service: Service, generator: Any, failure: BaseException | None, resumed: bool = False
) -> None:
    """Run a generator factory's code after its ``yield``: ``failure`` (the block's)
    thrown in there, or resumed; a second ``yield`` is an error. ``resumed``: it was
    resumed already, and yielded again."""
    try:
        if resumed:
            pass
        elif failure is None:
            if next(generator, FINISHED) is FINISHED:  # no StopIteration to catch
                return
        else:
            generator.throw(failure)  # the block's failure, at the yield
    except StopIteration:
        return
    except BaseException as raised:
        if raised is failure:
            return  # it let the failure through: nothing more went wrong
        raise
    generator.close()
    raise RuntimeError(f"generator factory of {service.label!r} yielded more than once")


def first_anext(generator: Any) -> Any:
    """The first ``__anext__()`` of an async generator factory, untracked by the loop.

    An event loop finalizes the async generators first iterated on it when it ends
    (``asyncio.run`` does): the code after ``yield`` would never run at a shutdown made
    later. Without the loop's hooks, the generator is the container's alone to close.
    """
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
    try:
        return generator.__anext__()
    finally:
        sys.set_asyncgen_hooks(*hooks)


def _loop_token() -> Any:
    """Something that identifies the running event loop."""
    loop = running_asyncio_loop()
    if loop is not None:
        return loop
    import trio

    return trio.lowlevel.current_root_task()


def async_closer(
    service: Service, generator: Any, built_on: Any = MISSING
) -> Callable[[BaseException | None], Any]:
    """The teardown of an async generator factory's build (:func:`afinish_generator`);
    ``built_on`` the loop it was built on (the running one unless given; None when
    unknown)."""
    if built_on is MISSING:
        built_on = _loop_token()
    return functools.partial(afinish_generator, service, generator, built_on=built_on)


async def afinish_generator(
    service: Service,
    generator: Any,
    failure: BaseException | None,
    built_on: Any = None,
    yielded: bool = False,
) -> None:
    """:func:`finish_generator`'s twin for an async generator factory; ``yielded``: it
    was resumed already and yielded again (the error, and its close)."""
    try:
        if yielded:
            pass
        elif failure is None:
            if await anext(generator, FINISHED) is FINISHED:
                return
        else:
            await generator.athrow(failure)  # the block's failure, at the yield
    except StopAsyncIteration:
        return
    except BaseException as error:
        if error is failure:
            return  # it let the failure through: nothing more went wrong
        if built_on is not None and _loop_token() is not built_on:
            closed = getattr(built_on, "is_closed", lambda: True)()
            error.add_note(
                f"the async generator factory of {service.label!r} was built on another "
                f"event loop{', which has closed' if closed else ''}: shut down with "
                "`await ashutdown()` on the loop that built it"
            )
        raise
    await generator.aclose()
    raise RuntimeError(f"generator factory of {service.label!r} yielded more than once")
