"""Lifecycle hooks: who listens to which event, and delivering an event to them.

The path of an event:

- ``scope.add_hook(event, fn)`` (:func:`add`) keeps ``fn`` among the scope's own hooks
  and works out again, for the scope and each descendant, its *listeners*: for each
  event, the hooks of the scope and of its ancestors (``Scope._listeners``, one dict
  shared by a scope and the children that add none of their own). It drops compiled
  builders below, so that they are compiled again with or without the calls;
- whoever does the work (resolution, compiled builders, shutdown, the registry)
  reads ``scope._listeners`` and, only when some hook listens, calls :func:`emit` (or
  :func:`deliver`, with the listeners already read): one :class:`~di.HookEvent`, each
  hook called in turn, in the thread or task doing the work. A hook that raises is
  logged and changes nothing.

With no hook anywhere, ``_listeners`` is the shared empty mapping and the paths that
read it pay one attribute read, or nothing at all (compiled builders and the fast path
of ``invoke`` never look).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..lifecycle import EVENTS, EventName, HookEvent
from .service import BLANK

if TYPE_CHECKING:
    from ..scope import Scope
    from .service import Service

logger = logging.getLogger("di")

Hook = Callable[[HookEvent], object]
# For each event someone listens to, its hooks: the scope's ancestors' first.
Listeners = dict[str, tuple[Hook, ...]]
BUILD_EVENTS = ("building", "built", "build_failed")
SHUTDOWN_EVENTS = ("shutting_down", "shut_down")


def check(event: object, fn: object, where: str) -> EventName:
    """``event``, if it names an event and ``fn`` is a sync callable; else the error."""
    if event not in EVENTS:
        raise ValueError(
            f"{where}({event!r}, ...): no such event; the events are "
            + ", ".join(repr(e) for e in EVENTS)
        )
    if not callable(fn):
        raise TypeError(f"{where}({event!r}, fn): fn must be callable, got {fn!r}")
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    ):
        raise TypeError(
            f"{where}({event!r}, {getattr(fn, '__qualname__', fn)}): hooks are called in "
            "the thread or task doing the work, and never awaited; pass a plain function "
            "(it may hand the event to a queue for async work)"
        )
    return event


def add(scope: Scope, event: str, fn: Hook) -> None:
    """Add ``fn`` to ``scope``'s own hooks for ``event``."""
    from .request import forget_builders

    with scope._root._mutex:
        own = own_hooks(scope)
        if own is BLANK:
            own = scope._hooks = {}
        own[event] = (*own.get(event, ()), fn)
        refresh(scope)
        forget_builders(scope)


def remove(scope: Scope, event: str, fn: Hook) -> None:
    """Remove ``fn`` (added to ``scope`` for ``event``); ValueError if it was not."""
    from .request import forget_builders

    with scope._root._mutex:
        own = own_hooks(scope)
        hooks = list(own.get(event, ()))
        if fn not in hooks:
            raise ValueError(
                f"remove_hook({event!r}, {getattr(fn, '__qualname__', fn)}): that hook was "
                f"not added to scope {scope.name!r} for {event!r}"
            )
        hooks.remove(fn)
        if hooks:
            own[event] = tuple(hooks)
        else:
            del own[event]
        refresh(scope)
        forget_builders(scope)


def own_hooks(scope: Scope) -> dict[str, tuple[Hook, ...]]:
    """The hooks added to ``scope`` itself (not its ancestors'), by event."""
    hooks: dict[str, tuple[Hook, ...]] = getattr(scope, "_hooks", BLANK)
    return hooks


def refresh(scope: Scope) -> None:
    """Work out the listeners of ``scope`` and its descendants again (mutex held)."""
    parent = scope._parent
    inherited: Listeners = parent._listeners if parent is not None else BLANK
    own = own_hooks(scope)
    if not own:
        scope._listeners = inherited
    else:
        merged = dict(inherited)
        for event, hooks in own.items():
            merged[event] = (*merged.get(event, ()), *hooks)
        scope._listeners = merged
    for child in list(scope._children.values()):
        refresh(child)


def listens(scope: Scope, events: tuple[str, ...]) -> bool:
    """Whether some hook of ``scope`` or an ancestor listens to one of ``events``."""
    listeners = scope._listeners
    return bool(listeners) and any(event in listeners for event in events)


def emit(
    scope: Scope,
    event: EventName,
    service: Service,
    instance: Any = None,
    error: BaseException | None = None,
    duration: float | None = None,
) -> None:
    """Deliver ``event`` about ``service`` to the hooks listening from ``scope``."""
    hooks = scope._listeners.get(event)
    if hooks:
        deliver(scope, hooks, event, service, instance, error, duration)


def deliver(
    scope: Scope,
    hooks: tuple[Hook, ...],
    event: EventName,
    service: Service,
    instance: Any,
    error: BaseException | None,
    duration: float | None,
) -> None:
    """Call each of ``hooks`` with the event; one that raises is logged, and the rest
    still run. :func:`emit` with the hooks already read: what compiled builders call."""
    # The tuple made directly: HookEvent(...) costs twice as much, once per build.
    happened = _make(HookEvent, (event, scope.name, service.label, instance, error, duration))
    for hook in hooks:
        try:
            hook(happened)
        except Exception:
            logger.exception(
                "the %r hook %s raised on %r of scope %r; the work goes on",
                event,
                getattr(hook, "__qualname__", repr(hook)),
                happened.key,
                happened.scope,
            )


_make = tuple.__new__
