"""A provided service and how it gets built: once, by one caller, in dependency order.

Resolution is the slow path of ``invoke``: the fast path is a dict lookup in the scope
(``Scope._instances``), which is also the one place a built instance lives.

Concurrent callers share a *flight*: the first caller builds, the others wait for it
and get its instance (or its error; a failed build caches nothing). A cycle shows
itself in two ways, both reported as ``CircularDependencyError`` rather than a hang:
a service already on this caller's path, or a flight whose builder waits, through a
chain of other flights, on a flight this caller is building.
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._factory import Kind, Param, Scoped, label, read_params
from .errors import CircularDependencyError, DIError, ScopeClosedError

if TYPE_CHECKING:
    from .scope import Scope

MISSING: Final[Any] = object()
# Stands in Scope._instances for a transient whose builder is compiled.
COMPILED: Final[Any] = object()
_EMPTY = inspect.Parameter.empty

# The services the current thread or task is building, outermost first.
_PATH: contextvars.ContextVar[tuple[Service, ...]] = contextvars.ContextVar("di_path", default=())


class Lifetime(enum.Enum):
    """How long a built instance is kept."""

    LAZY = "lazy"
    VALUE = "value"
    TRANSIENT = "transient"


class Service:
    """One provided service in one scope."""

    __slots__ = (
        "build_seconds",
        "check",
        "critical",
        "expected",
        "factory",
        "flight",
        "index",
        "key",
        "kind",
        "label",
        "lifetime",
        "owner",
        "params",
        "probe",
        "shutdown_hook",
        "teardown",
    )

    def __init__(
        self,
        *,
        key: Any,
        label: str,
        lifetime: Lifetime,
        owner: Scope,
        factory: Callable[..., Any],
        kind: Kind,
        expected: Any,
        params: list[Param] | None,
        shutdown_hook: Callable[[Any], Any] | None,
        check: Callable[[Any], Any] | None,
    ) -> None:
        self.key = key
        self.label = label
        self.lifetime = lifetime
        self.owner = owner
        self.factory = factory
        self.kind = kind
        self.expected = expected
        self.params = params
        self.shutdown_hook = shutdown_hook
        self.check = check
        self.index = 0  # invocation index once built; 0 while unbuilt
        self.teardown: Callable[[], Any] | None = None
        self.flight: _Flight | None = None
        # The health check of the built instance: (call, is_async), NO_CHECK, or None
        # when not worked out yet. Reset when the instance is released.
        self.probe: Any = None
        self.critical = True  # False: a failing check degrades, see provide(critical=)
        self.build_seconds = 0.0  # how long its latest build took, dependencies included

    def __repr__(self) -> str:
        return f"<service {self.label!r} ({self.lifetime.value}) in scope {self.owner.name!r}>"


class _Flight:
    """One build in progress, which other callers may wait for."""

    __slots__ = ("done", "error", "event", "generation", "service", "thread", "waiting_on")

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


# -- entry points -------------------------------------------------------------------


def resolve_sync(service: Service, invoker: Scope) -> Any:
    """The instance of ``service``, building it (and its dependencies) when needed."""
    if service.lifetime is Lifetime.TRANSIENT:
        return _make_sync(service, invoker)[0]
    instances = service.owner._instances
    while True:
        instance = instances.get(service.key, MISSING)
        if instance is not MISSING:
            return instance
        claim = _claim(service, asynchronous=False)
        if claim is None:
            continue
        flight, mine, me = claim
        if mine:
            began = time.perf_counter()
            try:
                made = _make_sync(service, service.owner)
            except BaseException as error:
                _land(service, flight, None, error)
                raise
            service.build_seconds = time.perf_counter() - began
            if not _land(service, flight, made, None):
                _discard_sync(service, made)
            continue
        if flight.event is not None and flight.thread == threading.get_ident():
            raise DIError(
                f"service {service.label!r} is being built by another task on this event "
                "loop; use `await scope.ainvoke(...)` to wait for it"
            )
        flight.done.wait()
        _landed(flight, me)


async def resolve_async(service: Service, invoker: Scope) -> Any:
    """Like :func:`resolve_sync`, awaiting async factories and other callers' builds."""
    if service.lifetime is Lifetime.TRANSIENT:
        return (await _make_async(service, invoker))[0]
    instances = service.owner._instances
    while True:
        instance = instances.get(service.key, MISSING)
        if instance is not MISSING:
            return instance
        claim = _claim(service, asynchronous=True)
        if claim is None:
            continue
        flight, mine, me = claim
        if mine:
            began = time.perf_counter()
            try:
                made = await _make_async(service, service.owner)
            except BaseException as error:
                _land(service, flight, None, error)
                raise
            service.build_seconds = time.perf_counter() - began
            if not _land(service, flight, made, None):
                await _discard_async(service, made)
            continue
        if flight.event is not None and flight.thread == threading.get_ident():
            await flight.event.wait()
        else:
            await anyio.to_thread.run_sync(flight.done.wait)
        _landed(flight, me)


# -- flights ------------------------------------------------------------------------


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
    with owner._root._mutex:
        if service.key in owner._instances:
            return None
        if owner._closed:
            raise ScopeClosedError(owner._name, f"build {service.label!r}")
        flight = service.flight
        if flight is None:
            flight = service.flight = _Flight(service, asynchronous)
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


def _land(
    service: Service,
    flight: _Flight,
    made: tuple[Any, Callable[[], Any] | None] | None,
    error: BaseException | None,
) -> bool:
    """Cache a build (or record its failure) and wake its waiters.

    False when the scope began shutting down during the build: nothing is cached, the
    waiters get :class:`ScopeClosedError`, and the caller must shut the instance down.
    """
    owner = service.owner
    root = owner._root
    kept = True
    with root._mutex:
        if made is not None:
            if owner._closed or owner._generation != flight.generation:
                kept = False
                error = ScopeClosedError(owner._name, f"build {service.label!r}")
            else:
                service.index = next(root._counter)
                service.teardown = made[1]
                owner._instances[service.key] = made[0]
        service.flight = None
    flight.error = error
    flight.done.set()
    if flight.event is not None:
        flight.event.set()
    return kept


def _discard_sync(service: Service, made: tuple[Any, Callable[[], Any] | None]) -> None:
    """Shut down an instance whose scope closed while it was being built, then refuse it."""
    from .scope import hook_of

    hook = hook_of(service, made[0], made[1])
    try:
        if hook is not None:
            result = hook()
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise DIError(
                    f"the shutdown hook of {service.label!r} is async; build it with "
                    "`await scope.ainvoke(...)` so it can be awaited"
                )
    finally:
        raise ScopeClosedError(service.owner._name, f"build {service.label!r}")


async def _discard_async(service: Service, made: tuple[Any, Callable[[], Any] | None]) -> None:
    """:func:`_discard_sync`, awaiting an async shutdown hook."""
    from .scope import hook_of

    hook = hook_of(service, made[0], made[1])
    try:
        if hook is not None:
            result = hook()
            if inspect.isawaitable(result):
                await result
    finally:
        raise ScopeClosedError(service.owner._name, f"build {service.label!r}")


def _landed(flight: _Flight, me: _Flight | None) -> None:
    if me is not None:
        me.waiting_on = None
    if flight.error is not None:
        raise flight.error


# -- building -----------------------------------------------------------------------


def _make_sync(service: Service, scope: Scope) -> tuple[Any, Callable[[], Any] | None]:
    if service.kind in (Kind.ASYNC, Kind.ASYNC_GENERATOR):
        raise DIError(
            f"service {service.label!r} has an async factory and is not built yet; "
            f"use `await scope.ainvoke(...)` to build it"
        )
    token = _PATH.set((*_enter(service), service))
    try:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in params_of(service):
            value = _argument_sync(p, scope, service)
            if p.positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        instance = service.factory(*args, **kwargs)
        if service.kind is Kind.GENERATOR:
            return next(instance), _closer(service, instance)
        return instance, None
    finally:
        _PATH.reset(token)


async def _make_async(service: Service, scope: Scope) -> tuple[Any, Callable[[], Any] | None]:
    token = _PATH.set((*_enter(service), service))
    try:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in params_of(service):
            value = await _argument_async(p, scope, service)
            if p.positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        instance = service.factory(*args, **kwargs)
        if service.kind is Kind.ASYNC:
            return await instance, None
        if service.kind is Kind.GENERATOR:
            return next(instance), _closer(service, instance)
        if service.kind is Kind.ASYNC_GENERATOR:
            return await _first_anext(instance), _async_closer(service, instance)
        return instance, None
    finally:
        _PATH.reset(token)


def _argument_sync(p: Param, scope: Scope, service: Service) -> Any:
    if p.target is Scoped:
        return scope
    dependency = _dependency(p, scope, service)
    if dependency is None:
        return p.default
    return _checked(p, resolve_sync(dependency, scope), service)


async def _argument_async(p: Param, scope: Scope, service: Service) -> Any:
    if p.target is Scoped:
        return scope
    dependency = _dependency(p, scope, service)
    if dependency is None:
        return p.default
    return _checked(p, await resolve_async(dependency, scope), service)


def _dependency(p: Param, scope: Scope, service: Service) -> Service | None:
    """The service filling ``p``; None when it is absent and the parameter has a default."""
    dependency = scope._lookup(p.target)
    if dependency is None and p.default is _EMPTY:
        error = scope._not_found(p.target)
        error.add_note(f"needed by parameter {p.name!r} of factory {service.label!r}")
        raise error
    return dependency


def _checked(p: Param, value: Any, service: Service) -> Any:
    if isinstance(p.target, str):
        check_type(p.target, value, p.expected, f"parameter {p.name!r} of {service.label!r}")
    return value


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
        if isinstance(p.annotation, str):
            try:
                eval(p.annotation, namespace)
            except Exception as error:
                return (
                    f"factory {label(factory)}: cannot resolve the annotation "
                    f"{p.annotation!r} of parameter {p.name!r} ({error}); "
                    "define or import that type at module level"
                )
    return f"factory {label(factory)}: cannot resolve its parameter annotations"


# -- teardown -----------------------------------------------------------------------


def _closer(service: Service, generator: Any) -> Callable[[], None]:
    def close() -> None:
        try:
            next(generator)
        except StopIteration:
            return
        generator.close()
        raise RuntimeError(f"generator factory of {service.label!r} yielded more than once")

    return close


def _first_anext(generator: Any) -> Any:
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
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and (loop := asyncio._get_running_loop()) is not None:
        return loop
    import trio

    return trio.lowlevel.current_root_task()


def _async_closer(service: Service, generator: Any) -> Callable[[], Any]:
    built_on = _loop_token()

    async def close() -> None:
        try:
            await generator.__anext__()
        except StopAsyncIteration:
            return
        except BaseException as error:
            if _loop_token() is not built_on:
                closed = getattr(built_on, "is_closed", lambda: True)()
                error.add_note(
                    f"the async generator factory of {service.label!r} was built on another "
                    f"event loop{', which has closed' if closed else ''}: shut down with "
                    "`await ashutdown()` on the loop that built it"
                )
            raise
        await generator.aclose()
        raise RuntimeError(f"generator factory of {service.label!r} yielded more than once")

    return close
