"""Overrides that restore: ``with scope.overridden(Key, Factory)``, for tests.

The path of one:

- :func:`overriding` makes the replacement (a service keyed by ``Key``, keeping the
  lifetime of the one it replaces, as ``override()`` does) and the
  :class:`Overriding` that ``with`` or ``async with`` enters;
- entering (:meth:`Overriding.apply`), under the root's mutex: ``Key`` must reach a
  provider; what the scope held for it is recorded (its provider, or None when an
  ancestor's is shadowed; its built instance, set aside out of the scope's instances:
  ``held``), the replacement takes the key, and the override joins the scope's stack
  for that key. Compiled builders are dropped, as for any provider change. A value
  replacement counts as built at once;
- leaving (:meth:`Overriding.restore`): the override on top of the stack puts back
  what it replaced, provider and built instance, untouched; one below the top (left
  out of order: another thread's, another task's) leaves the stack, and the one above
  it stands on what it had replaced instead. Either way the replacement's built
  instance is taken out, and shut down outside the lock.

A shutdown of the scope while overrides are active shuts the instances they set aside
down with the rest, each in its place in the build order (:func:`release_held`);
leaving then puts back the providers alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import AsyncRequiredError, ScopeClosedError
from . import registry, request, shutdown
from .keys import Key, describe
from .resolve import resolve_sync
from .runner import in_event_loop
from .service import BLANK, COMPILED, MISSING, Lifetime, Service, from_factory, from_value
from .shutdown import PendingHook, hook_of
from .signature import Kind, label

if TYPE_CHECKING:
    from ..scope import Scope

# What an override set aside: the service whose instance it was (None for a context
# value the scope received), and the instance.
Held = tuple[Service | None, Any]


def overriding(
    scope: Scope,
    key: Key,
    factory: Callable[..., Any] | None,
    value: Any,
    shutdown_hook: Callable[[Any], Any] | None,
    health_check: Callable[[Any], Any] | None,
) -> Overriding:
    """The override ``scope.overridden(key, factory)`` (or ``value=``) describes."""
    if (factory is None) == (value is MISSING):
        raise TypeError(
            f"overridden({describe(key)}, ...): pass a factory, overridden(Key, Factory), "
            "or an instance, overridden(Key, value=obj); one of the two"
        )
    if key is None:
        raise TypeError("overridden(None, ...): None is not a key")
    name, provides = (key, None) if isinstance(key, str) else (None, key)
    if factory is None:
        service = from_value(
            scope, value, "overridden", name, provides, shutdown_hook, health_check
        )
        registry.keep_criticality(scope, service)
    else:
        service = from_factory(
            scope,
            factory,
            Lifetime.LAZY,
            name,
            provides,
            shutdown_hook,
            health_check,
            where="overridden",
            scope_types=scope._scope_types,
        )
        registry.keep_lifetime(scope, service)
        if service.lifetime is Lifetime.TRANSIENT and service.kind in (
            Kind.GENERATOR,
            Kind.ASYNC_GENERATOR,
        ):
            raise TypeError(
                f"overridden({describe(key)}, {label(factory)}): the service replaced is a "
                "transient, and a generator factory's cleanup would never run for one"
            )
    return Overriding(scope, key, service)


class Overriding:
    """A replacement for one key of a scope while a ``with`` (or ``async with``) block runs.

    Made by :meth:`di.Scope.overridden`. Inside the block the key resolves to the
    replacement, from the scope and its descendants; on leaving, the provider it
    replaced and that provider's built instance (if any) come back untouched, and the
    replacement, if it was built, is shut down. Overrides of one key nest and unwind in
    order, from any thread or task. Each is entered once.
    """

    __slots__ = ("held", "key", "replaced", "scope", "service", "state")

    def __init__(self, scope: Scope, key: Key, service: Service) -> None:
        self.scope = scope
        self.key = key
        self.service = service
        self.replaced: Service | None = None  # None: an ancestor's provider was shadowed
        self.held: Held | None = None
        self.state = "new"

    def __repr__(self) -> str:
        return f"<overridden {self.service.label!r} in scope {self.scope.name!r} ({self.state})>"

    def __enter__(self) -> None:
        self.apply()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        unawaitable = in_event_loop() and self._async_hook_pending()
        steps = self.restore()  # whatever comes next: nothing can leave this block again
        if unawaitable:
            raise AsyncRequiredError(
                f"`with overridden({self.service.label})` ended inside a running event loop "
                "and the replacement has an async shutdown hook, which sync code cannot "
                "await there: the original is back, the replacement was not shut down; use "
                "`async with` there"
            )
        registry.shut_down(self.scope, steps, "overridden", "overridden")

    async def __aenter__(self) -> None:
        self.apply()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await shutdown.attempt_hooks_async(self.restore(), self.scope)

    def apply(self) -> None:
        """Put the replacement in place (entering the block)."""
        scope, key, service = self.scope, self.key, self.service
        with scope._root._mutex:
            if self.state != "new":
                raise RuntimeError(
                    f"{self!r} was entered already: make one overridden(...) per block"
                )
            if scope._closed:
                raise ScopeClosedError(scope.name, f"override {service.label!r}")
            if registry.lookup(scope, key) is None:
                error = registry.not_found(scope, key)
                error.add_note(
                    "overridden() replaces a service for a while and never adds one; "
                    "provide it first"
                )
                raise error
            request.materialize(scope)
            self.replaced = scope._services.get(key)
            self.held = _set_aside(scope, key)
            if scope._services is BLANK:
                scope._services, scope._labels = {}, set()
            scope._services[key] = service
            stacks = overrides_of(scope)
            if stacks is BLANK:
                stacks = scope._overrides = {}
            stacks.setdefault(key, []).append(self)
            request.forget_builders(scope)
            self.state = "active"
        try:
            registry.announce(scope, service)
            if service.lifetime is Lifetime.VALUE:
                resolve_sync(service, scope)  # a value counts as built, as provide_value's
        except BaseException:  # a hook stopping the program: the block never starts,
            self.restore()  # and nothing would ever leave it
            raise

    def restore(self) -> list[PendingHook]:
        """Put back what the replacement replaced (leaving the block); the replacement's
        built instances, taken out, for the caller to shut down."""
        scope, key = self.scope, self.key
        with scope._root._mutex:
            if self.state != "active":
                raise RuntimeError(f"{self!r} is not active: leave it once, after entering it")
            stack = scope._overrides[key]
            at = stack.index(self)
            steps: list[PendingHook] = []
            if at == len(stack) - 1:
                built = _built_here(scope, self.service)
                steps = shutdown.take_out(scope, built)
                for copy in built:
                    if copy.template is not None:
                        scope._scoped.pop(copy.template, None)
                if scope._instances.get(key) is COMPILED:
                    del scope._instances[key]  # a compiled transient's marker
                if self.replaced is None:
                    scope._services.pop(key, None)
                else:
                    scope._services[key] = self.replaced
                if self.held is not None:
                    scope._instances[key] = self.held[1]
            else:
                above = stack[at + 1]
                if above.held is not None and above.held[0] is self.service:
                    aside = {self.service: above.held[1]}
                    steps = shutdown.take_out(scope, [self.service], aside=aside)
                above.replaced, above.held = self.replaced, self.held
            del stack[at]
            if not stack:
                del scope._overrides[key]
            request.forget_builders(scope)
            self.state = "done"
        return steps

    def _async_hook_pending(self) -> bool:
        """Whether leaving would have to await the replacement's shutdown hook."""
        scope, service = self.scope, self.service
        with scope._root._mutex:
            if self.state != "active" or not service.index:
                return False
            stack = scope._overrides[self.key]
            at = stack.index(self)
            if at == len(stack) - 1:
                instance = scope._instances.get(self.key, MISSING)
            else:
                held = stack[at + 1].held
                instance = held[1] if held is not None and held[0] is service else MISSING
        if instance is MISSING or instance is COMPILED:
            return False
        return inspect.iscoroutinefunction(hook_of(service, instance, service.teardown, None))


def overrides_of(scope: Scope) -> dict[Key, list[Overriding]]:
    """The active overrides of ``scope``, by key, oldest first."""
    stacks: dict[Key, list[Overriding]] = getattr(scope, "_overrides", BLANK)
    return stacks


def _set_aside(scope: Scope, key: Key) -> Held | None:
    """Take what ``scope`` holds under ``key`` out of its instances (the mutex is held)."""
    borrowed: list[Key] | None = getattr(scope, "_borrowed", None)
    if borrowed and key in borrowed:
        return None  # an ancestor's singleton kept here: forget_builders drops it
    instance = scope._instances.pop(key, MISSING) if scope._instances else MISSING
    if instance is MISSING or instance is COMPILED:
        return None  # a compiled builder's marker goes with the builders
    service = scope._services.get(key)
    if service is not None and service.index:
        return service, instance
    for copy in scope._scoped.values():
        if copy.index and key in copy.keys:
            return copy, instance
    return None, instance  # a value the scope received through context=


def _built_here(scope: Scope, service: Service) -> list[Service]:
    """The built instances of replacement ``service`` in ``scope``: itself, or the
    copies a scoped replacement made here."""
    built = [service] if service.index and service.owner is scope else []
    built += [
        copy for template, copy in scope._scoped.items() if template is service and copy.index
    ]
    return built


def release_held(scope: Scope) -> dict[Service, Any]:
    """What the active overrides of ``scope`` set aside, for its shutdown to take out;
    they hold nothing from then on (the caller holds the mutex)."""
    aside: dict[Service, Any] = {}
    for stack in overrides_of(scope).values():
        for record in stack:
            if record.held is not None:
                service, instance = record.held
                record.held = None
                if service is not None:
                    aside[service] = instance
    return aside


def held(scope: Scope) -> list[tuple[Service, Any]]:
    """The built services the active overrides of ``scope`` set aside, and their instances."""
    return [
        (record.held[0], record.held[1])
        for stack in overrides_of(scope).values()
        for record in stack
        if record.held is not None and record.held[0] is not None
    ]
