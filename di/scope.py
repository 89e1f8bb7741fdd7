"""Scopes: where services are provided, invoked, and shut down."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio

from . import _health
from ._compile import compile_transient
from ._factory import Kind, Param, kind_of, label, provided_type, read_params
from ._keys import Key, _check_name, describe
from ._runner import in_event_loop, run
from ._service import COMPILED, MISSING, Lifetime, Service, check_type, resolve_async, resolve_sync
from .errors import (
    ServiceAlreadyProvidedError,
    ServiceNotFoundError,
    ShutdownError,
)
from .health import HealthReport

if TYPE_CHECKING:
    from .injector import Injector

T = TypeVar("T")
_EMPTY = inspect.Parameter.empty

# A shutdown step: the service, a zero-argument call, and whether it must be awaited.
_Hook = tuple[Service, Callable[[], Any], bool]


class Scope:
    """A set of services, which can also see every service of its ancestors.

    Scopes are made with :meth:`scope`; the root of every tree is an
    :class:`~di.Injector`. Invoking looks in the scope, then in each ancestor up to the
    root; the nearest provider wins, so a child may shadow an ancestor's service.

    >>> request = injector.scope("request")
    >>> request.provide(RequestContext)
    >>> request.invoke(Database) is injector.invoke(Database)
    True
    """

    __slots__ = (
        "_children",
        "_compiled",
        "_eager",
        "_instances",
        "_name",
        "_parent",
        "_root",
        "_services",
    )

    _root: Injector
    # Parameter annotations that receive the invoking scope rather than a service.
    _scope_types: tuple[type, ...] = ()

    def __init__(self, name: str, parent: Scope) -> None:
        if not isinstance(parent, Scope):
            raise TypeError("create scopes with injector.scope(name), not Scope()")
        self._name = _check_name(name, "scope()")
        self._parent: Scope | None = parent
        self._root = parent._root
        self._services: dict[Key, Service] = {}
        # The fast path of invoke: every built singleton of this scope, by key, and
        # COMPILED for each transient with a compiled builder in _compiled.
        self._instances: dict[Key, Any] = {}
        self._compiled: dict[Key, Callable[[], Any]] = {}
        self._children: dict[str, Scope] = {}
        # Keys provided with eager=True, in provide order: what start() builds.
        self._eager: dict[Key, None] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}>"

    # -- introspection ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The scope's name, unique among its siblings."""
        return self._name

    @property
    def parent(self) -> Scope | None:
        """The enclosing scope; None for the root injector."""
        return self._parent

    def ancestors(self) -> list[Scope]:
        """The enclosing scopes, nearest first, ending with the root injector."""
        found = []
        scope = self._parent
        while scope is not None:
            found.append(scope)
            scope = scope._parent
        return found

    def children(self) -> list[Scope]:
        """The child scopes, in the order they were made."""
        return list(self._children.values())

    def list_provided(self) -> list[str]:
        """The keys this scope provides (not its ancestors'), in the order provided."""
        return [s.label for s in self._services.values()]

    def list_invoked(self) -> list[str]:
        """The keys of this scope's built services, in invocation order."""
        return [s.label for s in self._built()]

    def scope(self, name: str) -> Scope:
        """Make a child scope; its lookups fall back to this scope and its ancestors.

        Sibling scopes must have different names; a shut-down child frees its name.
        """
        _check_name(name, "scope()")
        if name in self._children:
            raise ValueError(
                f"scope {self._name!r} already has a child scope named {name!r}; "
                "choose another name or shut that one down first"
            )
        child = Scope(name, self)
        self._children[name] = child
        return child

    # -- providing ----------------------------------------------------------------

    def provide(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
        eager: bool = False,
    ) -> None:
        """Provide a lazy singleton, built by ``factory`` on first invoke.

        The key is the class itself, or the factory's return annotation, or ``name``.
        Parameters are filled by annotation: ``Scope`` or ``Injector`` receives the
        invoking scope, ``Annotated[T, Named("x")]`` the service named ``x``, any other
        type the service of that type. A generator factory (``Iterator[T]``,
        ``AsyncIterator[T]``) provides ``T`` and runs the code after ``yield`` at
        shutdown. ``shutdown`` and ``health_check`` take the instance and override its
        own ``shutdown()`` and ``health_check()`` methods. ``eager=True`` has
        :meth:`start` build it (a service never built is never checked).

        >>> def new_cache(config: Config) -> Cache:
        ...     return Cache(config.cache_url)
        >>> injector.provide(new_cache)
        """
        service = self._service(factory, Lifetime.LAZY, name, shutdown, health_check)
        self._add(service)
        if eager:
            self._eager[service.key] = None

    def provide_value(
        self,
        value: object,
        *,
        name: str | None = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """Provide an instance that is already built, keyed by its type or ``name``.

        It counts as built (and gets its invocation index) now.
        """
        service = self._service(lambda: value, Lifetime.VALUE, name, shutdown, health_check, value)
        self._add(service)
        resolve_sync(service, self)

    def provide_transient(self, factory: Callable[..., Any], *, name: str | None = None) -> None:
        """Provide a service built anew on every invoke and never cached.

        Transients are not tracked, so they are neither shut down nor health checked;
        generator factories are refused for that reason.
        """
        service = self._service(factory, Lifetime.TRANSIENT, name, None, None)
        if service.kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR):
            raise TypeError(
                f"provide_transient({service.label}): a generator factory's cleanup would "
                "never run, since transients are not tracked; use provide() instead"
            )
        self._add(service)

    def override(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """Replace the service with the same key in this scope (or provide it anew).

        A replaced instance that was already built is shut down first. Services already
        built from the old instance keep it. Meant for tests and fakes.
        """
        service = self._service(factory, Lifetime.LAZY, name, shutdown, health_check)
        old = self._services.get(service.key)
        steps = _hooks(self, [old] if old is not None and old.index else [])
        self._raise_failures(_run_hooks(steps, "override", "aoverride", self._replace(service)))

    async def aoverride(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """:meth:`override`, awaiting the replaced instance's async shutdown hook."""
        service = self._service(factory, Lifetime.LAZY, name, shutdown, health_check)
        old = self._services.get(service.key)
        steps = _hooks(self, [old] if old is not None and old.index else [])
        self._replace(service)()
        self._raise_failures(await _arun_hooks(steps))

    def _replace(self, service: Service) -> Callable[[], None]:
        """Swap ``service`` in, returning the step that releases the replaced instance."""
        old = self._services.get(service.key)
        replaced = [old] if old is not None and old.index else []

        def swap() -> None:
            self._release(replaced)
            self._services[service.key] = service
            self._root._forget_builders()

        return swap

    def _service(
        self,
        factory: Callable[..., Any],
        lifetime: Lifetime,
        name: str | None,
        shutdown: Callable[[Any], Any] | None,
        health_check: Callable[[Any], Any] | None,
        value: object = MISSING,
    ) -> Service:
        where = {Lifetime.LAZY: "provide", Lifetime.VALUE: "provide_value"}.get(
            lifetime, "provide_transient"
        )
        if not callable(factory):
            raise TypeError(f"{where}(): the factory must be callable, got {factory!r}")
        for argument, hook in (("shutdown", shutdown), ("health_check", health_check)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{where}(): {argument}= must be callable, got {hook!r}")
        if name is not None:
            _check_name(name, f"{where}()")
        params: list[Param] | None = []
        if value is not MISSING:
            kind, provides = Kind.PLAIN, type(value)
        else:
            kind = kind_of(factory)
            provides = provided_type(factory, kind)
            params = read_params(factory, self._scope_types)
        if name is None and provides is _EMPTY:
            raise TypeError(
                f"{where}({label(factory)}): the factory has no return annotation; "
                "annotate its return type or pass name="
            )
        key = name if name is not None else provides
        return Service(
            key=key,
            label=describe(key),
            lifetime=lifetime,
            owner=self,
            factory=factory,
            kind=kind,
            expected=None if provides is _EMPTY else provides,
            params=params,
            shutdown_hook=shutdown,
            check=health_check,
        )

    def _add(self, service: Service) -> None:
        if service.key in self._services:
            raise ServiceAlreadyProvidedError(service.label, self._name)
        self._services[service.key] = service
        self._root._forget_builders()

    # -- invoking -----------------------------------------------------------------

    @overload
    def invoke(self, service: type[T], name: str | None = None) -> T: ...
    @overload
    def invoke(self, service: str, name: None = None) -> Any: ...
    def invoke(self, service: type[T] | str, name: str | None = None) -> T | Any:
        """The instance of a service, building it and its dependencies if needed.

        ``invoke(Database)`` by type, ``invoke(Database, name="replica")`` a named
        service checked to be a ``Database``, ``invoke("replica")`` by name, untyped.
        An async factory must be built with :meth:`ainvoke` first.
        """
        if name is None:
            # The fast path: one dict lookup, no lock.
            try:
                instance = self._instances[service]
            except KeyError:
                pass
            else:
                if instance is not COMPILED:
                    return instance
                return self._compiled[service]()
        found, expected = self._find(service, name)
        if found.lifetime is Lifetime.TRANSIENT and expected is None:
            builder = compile_transient(self, found)
            if builder is not None:
                self._compiled[service] = builder
                self._instances[service] = COMPILED
                return builder()
        instance = resolve_sync(found, self)
        if expected is not None:
            check_type(found.label, instance, expected, "invoke()")
        return instance

    @overload
    async def ainvoke(self, service: type[T], name: str | None = None) -> T: ...
    @overload
    async def ainvoke(self, service: str, name: None = None) -> Any: ...
    async def ainvoke(self, service: type[T] | str, name: str | None = None) -> T | Any:
        """:meth:`invoke` for async code: awaits async factories and other tasks' builds."""
        if name is None:
            instance = self._instances.get(service, MISSING)
            if instance is COMPILED:
                return self._compiled[service]()
            if instance is not MISSING:
                return instance
        found, expected = self._find(service, name)
        instance = await resolve_async(found, self)
        if expected is not None:
            check_type(found.label, instance, expected, "ainvoke()")
        return instance

    def _find(self, service: Any, name: str | None) -> tuple[Service, Any]:
        """The service a caller asks for, and the type to check it against (if any)."""
        if name is not None:
            _check_name(name, "invoke()")
            if isinstance(service, str):
                raise TypeError(f"invoke({service!r}, name={name!r}): pass a type with name=")
            key, expected = name, service
        else:
            key, expected = service, None
        found = self._lookup(key)
        if found is None and isinstance(key, str):
            # A type-keyed service may also be asked for by its reported name.
            found = next((s for s in self._visible() if s.label == key), None)
        if found is None:
            raise self._not_found(key)
        return found, expected

    def _lookup(self, key: Key) -> Service | None:
        scope: Scope | None = self
        while scope is not None:
            found = scope._services.get(key)
            if found is not None:
                return found
            scope = scope._parent
        return None

    def _visible(self) -> list[Service]:
        """Every service this scope can invoke, nearest provider first."""
        seen: dict[Key, Service] = {}
        for scope in (self, *self.ancestors()):
            for key, service in scope._services.items():
                seen.setdefault(key, service)
        return list(seen.values())

    def _not_found(self, key: Key) -> ServiceNotFoundError:
        return ServiceNotFoundError(describe(key), self._name, [s.label for s in self._visible()])

    def _built(self) -> list[Service]:
        built = [s for s in self._services.values() if s.index]
        return sorted(built, key=lambda s: s.index)

    # -- starting -----------------------------------------------------------------

    def start(self) -> None:
        """Build every service of this scope provided with ``eager=True``, in provide order.

        Each is built as :meth:`invoke` builds it, dependencies first; one already built
        is left as it is. The first failure is raised, with a note naming the service.
        Inside a running loop, or with async factories, use :meth:`astart`.
        """
        for key in list(self._eager):
            try:
                self.invoke(key)
            except Exception as error:
                _note_start(error, self, key)
                raise

    async def astart(self) -> None:
        """:meth:`start` for async code: awaits async factories."""
        for key in list(self._eager):
            try:
                await self.ainvoke(key)
            except Exception as error:
                _note_start(error, self, key)
                raise

    # -- health checks ------------------------------------------------------------

    def health_check(self) -> dict[str, Exception | None]:
        """Check every built service visible from this scope; the status map.

        Each checked service maps to None when healthy, else to what its check raised
        (a :class:`~di.HealthCheckTimeoutError` on timeout). Never-built services,
        transients and services without a check are not in the map. Runs an event loop
        for the call; inside a running loop, use :meth:`ahealth_check`.

        >>> injector.health_check()
        {'app.Cache': None, 'app.Database': ConnectionRefusedError(111, 'Connection refused')}
        """
        return self.health_report().as_map()

    async def ahealth_check(self) -> dict[str, Exception | None]:
        """:meth:`health_check` for async code (asyncio or trio)."""
        return (await self.ahealth_report()).as_map()

    def health_report(self) -> HealthReport:
        """:meth:`health_check` with each check's outcome, scope, start and duration."""
        return run(self.ahealth_report, "health_report", "ahealth_report")

    async def ahealth_report(self) -> HealthReport:
        """:meth:`health_report` for async code.

        Checks start in reverse invocation order, at most ``health_check_parallelism``
        at once, each within ``health_check_timeout`` from its start and all within
        ``health_check_global_timeout``. A call made while an identical one is running
        on this scope shares its result.
        """
        return await _health.report(self)

    def health_check_service(
        self, service: type[Any] | str, name: str | None = None
    ) -> Exception | None:
        """Check one built service: None when healthy, else what its check raised."""
        return run(
            lambda: self.ahealth_check_service(service, name),
            "health_check_service",
            "ahealth_check_service",
        )

    async def ahealth_check_service(
        self, service: type[Any] | str, name: str | None = None
    ) -> Exception | None:
        """:meth:`health_check_service` for async code; same timeouts and pool as a full check.

        Raises ``ServiceNotFoundError`` for an unknown service, ``ServiceNotBuiltError``
        for one not built yet (a check never builds a service), and ``ValueError`` for
        one with no health check.
        """
        found, _ = self._find(service, name)
        return await _health.check_one(self, found)

    # -- shutting down ------------------------------------------------------------

    def shutdown(self) -> None:
        """Shut down child scopes (deepest first), then this scope's built services.

        Services go in reverse invocation order, so each is shut down before what it
        depends on. Every hook runs, once; failures are raised together afterwards as
        :class:`~di.ShutdownError`. Built instances are dropped: a later invoke builds
        anew. A child scope leaves its parent. Async hooks need an event loop: from
        plain code one is run for them; inside a running loop use :meth:`ashutdown`.
        """
        steps = self._steps()
        self._raise_failures(_run_hooks(steps, "shutdown", "ashutdown", self._detach))

    async def ashutdown(self) -> None:
        """:meth:`shutdown`, awaiting async hooks and async generator cleanups."""
        steps = self._steps()
        self._detach()
        self._raise_failures(await _arun_hooks(steps))

    def _steps(self) -> list[_Hook]:
        """This subtree's shutdown steps in order: children deepest first, then own."""
        steps: list[_Hook] = []
        for child in reversed(list(self._children.values())):
            steps += child._steps()
        return steps + _hooks(self, reversed(self._built()))

    def _detach(self) -> None:
        """Drop every built instance of this subtree and leave the parent."""
        for child in list(self._children.values()):
            child._detach()
        self._release(self._built())
        self._forget_builders()
        if self._parent is not None:
            self._parent._children.pop(self._name, None)

    def _release(self, services: list[Service]) -> None:
        for service in services:
            self._instances.pop(service.key, None)
            service.index = 0
            service.teardown = None
            service.probe = None

    def _forget_builders(self) -> None:
        """Drop compiled transient builders here and below, after the providers change."""
        for key in self._compiled:
            del self._instances[key]
        self._compiled.clear()
        for child in self._children.values():
            child._forget_builders()

    def _raise_failures(self, errors: dict[str, Exception]) -> None:
        if errors:
            raise ShutdownError(self._name, errors)

    def __enter__(self) -> Scope:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> Scope:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded so a cancelled block still releases what it built.
        with anyio.CancelScope(shield=True):
            await self.ashutdown()


def _note_start(error: Exception, scope: Scope, key: Key) -> None:
    """Name the eager service whose start ``error`` failed, in a note on it."""
    error.add_note(f"while starting eager service {describe(key)!r} of scope {scope._name!r}")


def _hooks(scope: Scope, services: Any) -> list[_Hook]:
    """The shutdown steps of built services, without changing anything yet."""
    steps: list[_Hook] = []
    for service in services:
        hook = _hook_of(service, scope._instances[service.key])
        if hook is not None:
            steps.append((service, hook, inspect.iscoroutinefunction(hook)))
    return steps


def _hook_of(service: Service, instance: Any) -> Callable[[], Any] | None:
    if service.teardown is not None:
        return service.teardown
    if service.shutdown_hook is not None:
        hook = service.shutdown_hook
        if inspect.iscoroutinefunction(hook):

            async def call_async() -> Any:
                return await hook(instance)

            return call_async
        return lambda: hook(instance)
    method = getattr(instance, "shutdown", None)
    return method if callable(method) else None


def _run_hooks(
    steps: list[_Hook], sync_name: str, async_name: str, commit: Callable[[], None]
) -> dict[str, Exception]:
    """Run shutdown steps from sync code; ``commit`` applies the state change first.

    With async steps inside a running loop nothing is changed: the caller is pointed to
    the async form, since blocking the loop to await on it would hang.
    """
    if any(is_async for _, _, is_async in steps):
        if in_event_loop():
            raise RuntimeError(
                f"{sync_name}() was called inside a running event loop and some services "
                f"have async shutdown hooks; use `await {async_name}()` there"
            )
        commit()
        return run(lambda: _arun_hooks(steps), sync_name, async_name)
    commit()
    errors: dict[str, Exception] = {}
    for service, hook, _ in steps:
        try:
            result = hook()
            if inspect.isawaitable(result):
                if isinstance(result, Coroutine):
                    result.close()
                raise TypeError(
                    f"the shutdown hook of {service.label!r} returned an awaitable; "
                    f"declare it `async def` or call `await {async_name}()`"
                )
        except Exception as error:
            errors.setdefault(service.label, error)
    return errors


async def _arun_hooks(steps: list[_Hook]) -> dict[str, Exception]:
    errors: dict[str, Exception] = {}
    for service, hook, _ in steps:
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            errors.setdefault(service.label, error)
    return errors


# A parameter annotated Scope (or Injector, a Scope) receives the invoking scope.
Scope._scope_types = (Scope,)
