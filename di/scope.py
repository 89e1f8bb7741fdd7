"""Scopes: where services are provided, invoked, and shut down."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio

from . import _health
from ._compile import compile_transient
from ._factory import Kind, Param, kind_of, label, provided_type, read_params
from ._keys import Key, _check_name, describe
from ._runner import cancel_requests, cancelled_from_outside, in_event_loop, is_cancellation, run
from ._service import COMPILED, MISSING, Lifetime, Service, check_type, resolve_async, resolve_sync
from ._threads import loop_notifier
from .errors import (
    DIError,
    ScopeClosedError,
    ServiceAlreadyProvidedError,
    ServiceNotFoundError,
    ShutdownError,
    ShutdownTimeoutError,
)
from .health import HealthReport

if TYPE_CHECKING:
    from .injector import Injector

T = TypeVar("T")
_EMPTY = inspect.Parameter.empty
logger = logging.getLogger("di")


class _Step:
    """One built service taken out of its scope, waiting for its shutdown hook."""

    __slots__ = ("instance", "key", "service", "teardown")

    def __init__(self, service: Service, instance: Any, key: str) -> None:
        self.service = service
        self.instance = instance
        self.teardown = service.teardown
        self.key = key  # how ShutdownError names it

    def hook(self) -> Callable[[], Any] | None:
        return hook_of(self.service, self.instance, self.teardown)


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
        "_closed",
        "_closing",
        "_compiled",
        "_eager",
        "_generation",
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
        # Shutdown: closed once it begins (for good, but for the root); the services
        # taken out and not shut down yet; how many shutdowns began.
        self._closed = False
        self._closing: list[_Step] = []
        self._generation = 0
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
        with self._root._mutex:
            return list(self._children.values())

    def list_provided(self) -> list[str]:
        """The keys this scope provides (not its ancestors'), in the order provided."""
        with self._root._mutex:
            return [s.label for s in self._services.values()]

    def list_invoked(self) -> list[str]:
        """The keys of this scope's built services, in invocation order."""
        return [s.label for s in self._built()]

    def scope(self, name: str) -> Scope:
        """Make a child scope; its lookups fall back to this scope and its ancestors.

        Sibling scopes must have different names; a shut-down child frees its name.
        """
        _check_name(name, "scope()")
        with self._root._mutex:
            if self._closed:
                raise ScopeClosedError(self._name, f"open child scope {name!r}")
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
        critical: bool = True,
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
        ``critical=False``: a failing or timed-out check is degraded, not unhealthy.

        >>> def new_cache(config: Config) -> Cache:
        ...     return Cache(config.cache_url)
        >>> injector.provide(new_cache)
        """
        service = self._service(factory, Lifetime.LAZY, name, shutdown, health_check)
        service.critical = critical
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
        critical: bool = True,
    ) -> None:
        """Provide an instance that is already built, keyed by its type or ``name``.

        It counts as built (and gets its invocation index) now. ``critical`` is as in
        :meth:`provide`.
        """
        service = self._service(lambda: value, Lifetime.VALUE, name, shutdown, health_check, value)
        service.critical = critical
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
        if old is not None and _has_async_hook(self, [old]) and in_event_loop():
            raise RuntimeError(
                f"override() was called inside a running event loop and the replaced "
                f"{old.label!r} has an async shutdown hook; use `await aoverride()` there"
            )
        steps = self._replace(service)
        if any(inspect.iscoroutinefunction(step.hook()) for step in steps):
            self._conclude(*run(lambda: _run_async(_drain(steps), self), "override", "aoverride"))
        else:
            self._conclude(*_run_sync(_drain(steps), self, "aoverride"), None)

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
        steps = self._replace(service)
        failures, fatal, cancelled = await _run_async(_drain(steps), self)
        self._conclude(failures, fatal, cancelled)

    def _replace(self, service: Service) -> list[_Step]:
        """Swap ``service`` in; the replaced instance, taken out, is left to shut down."""
        with self._root._mutex:
            if self._closed:
                raise ScopeClosedError(self._name, f"override {service.label!r}")
            old = self._services.get(service.key)
            steps = self._take_out([old] if old is not None and old.index else [])
            self._services[service.key] = service
            self._root._forget_builders()
        return steps

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
        with self._root._mutex:
            if self._closed:
                raise ScopeClosedError(self._name, f"provide {service.label!r}")
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
            root = self._root
            version = root._providers_version
            builder = compile_transient(self, found)
            if builder is not None:
                with root._mutex:
                    # Cached only if no provider changed while compiling.
                    if root._providers_version == version and not self._closed:
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
        if self._closed:
            raise ScopeClosedError(self._name, f"invoke {describe(service)!r}")
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
        for _, services in self._lineage():
            for key, service in services:
                seen.setdefault(key, service)
        return list(seen.values())

    def _lineage(self) -> list[tuple[Scope, list[tuple[Key, Service]]]]:
        """This scope and its ancestors, nearest first, each with its services then."""
        with self._root._mutex:
            return [(scope, list(scope._services.items())) for scope in (self, *self.ancestors())]

    def _not_found(self, key: Key) -> ServiceNotFoundError:
        return ServiceNotFoundError(describe(key), self._name, [s.label for s in self._visible()])

    def _built(self) -> list[Service]:
        with self._root._mutex:
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
        return run(self.ahealth_check, "health_check", "ahealth_check")

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
        if self._closed and self._parent is not None:
            raise ScopeClosedError(self._name, "check health")
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
        depends on. Every hook is attempted, once, whatever the others raise: failures
        are raised together afterwards as :class:`~di.ShutdownError`, and a
        ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``) is re-raised after every
        hook was attempted. Each hook gets at most ``shutdown_timeout`` seconds; sync
        hooks then run in a worker thread, and one that overruns is abandoned and
        reported as :class:`~di.ShutdownTimeoutError`.

        Built instances are dropped: the root injector builds anew on a later invoke,
        while a child scope is closed for good (invoking it raises
        :class:`~di.ScopeClosedError`) and leaves its parent. Async hooks need an event
        loop: from plain code one is run for them; inside a running loop use
        :meth:`ashutdown`.
        """
        if self._has_async_hooks():
            if in_event_loop():
                raise RuntimeError(
                    "shutdown() was called inside a running event loop and some services "
                    "have async shutdown hooks; use `await ashutdown()` there"
                )
            run(self.ashutdown, "shutdown", "ashutdown")
            return
        scopes = self._close()
        failures: dict[str, Exception] = {}
        fatal: BaseException | None = None
        for scope in scopes:
            found, error = _run_sync(scope._take_step, self, "ashutdown")
            failures |= found
            fatal = fatal or error
            scope._closed_out()
        self._conclude(failures, fatal, None)

    async def ashutdown(self) -> None:
        """:meth:`shutdown` for async code, awaiting async hooks and generator cleanups.

        Cancelling it stops it between hooks: the hooks not attempted yet stay with
        their scopes, and a later :meth:`ashutdown` runs them.
        """
        scopes = self._close()
        failures: dict[str, Exception] = {}
        fatal: BaseException | None = None
        for scope in scopes:
            found, error, cancelled = await _run_async(scope._take_step, self)
            failures |= found
            fatal = fatal or error
            if cancelled is not None:
                self._conclude(failures, fatal, cancelled)
            scope._closed_out()
        self._conclude(failures, fatal, None)

    def _has_async_hooks(self) -> bool:
        with self._root._mutex:
            scopes = self._subtree()
            pending = [step for scope in scopes for step in scope._closing]
        if any(inspect.iscoroutinefunction(step.hook()) for step in pending):
            return True
        return any(_has_async_hook(scope, scope._built()) for scope in scopes)

    def _subtree(self) -> list[Scope]:
        """This scope's subtree in shutdown order: children deepest first, then itself."""
        order: list[Scope] = []
        for child in reversed(list(self._children.values())):
            order += child._subtree()
        order.append(self)
        return order

    def _close(self) -> list[Scope]:
        """Close the subtree and take its built services out, ready to shut down.

        Builds still in flight see the scope closed when they land: they shut their
        instance down and raise :class:`~di.ScopeClosedError`.
        """
        with self._root._mutex:
            scopes = self._subtree()
            for scope in scopes:
                scope._closed = True
                scope._generation += 1
                built = sorted(
                    (s for s in scope._services.values() if s.index),
                    key=lambda s: s.index,
                    reverse=True,
                )
                scope._closing += scope._take_out(built, self)
                scope._forget_builders()
            return scopes

    def _take_out(self, services: Iterable[Service], shutting: Scope | None = None) -> list[_Step]:
        """Drop built instances from the scope (the caller holds the mutex)."""
        steps = []
        for service in services:
            key = service.label
            if shutting is not None and shutting is not self:
                key = f"{service.label} (scope {self._name!r})"
            steps.append(_Step(service, self._instances.pop(service.key), key))
            service.index = 0
            service.teardown = None
            service.probe = None
        return steps

    def _take_step(self) -> _Step | None:
        """The next service of this scope to shut down, taken so that no one else does."""
        with self._root._mutex:
            return self._closing.pop(0) if self._closing else None

    def _closed_out(self) -> None:
        """Every hook of this scope was attempted: a child leaves its parent, the root reopens."""
        with self._root._mutex:
            if self._closing:
                return  # another shutdown call is still running hooks here
            if self._parent is None:
                self._closed = False
            elif self._parent._children.get(self._name) is self:
                del self._parent._children[self._name]

    def _forget_builders(self) -> None:
        """Drop compiled transient builders here and below, after the providers change.

        The caller holds the root's mutex.
        """
        if self._parent is None:
            self._root._providers_version += 1
        for key in self._compiled:
            self._instances.pop(key, None)
        self._compiled.clear()
        for child in self._children.values():
            child._forget_builders()

    def _conclude(
        self,
        failures: dict[str, Exception],
        fatal: BaseException | None,
        cancelled: BaseException | None,
    ) -> None:
        """Raise what the hooks raised, once every hook that could run has run."""
        first = cancelled or fatal
        if first is not None:
            if failures:
                group = ShutdownError(self._name, failures)
                logger.error("%s", group, exc_info=group)
                first.add_note(str(group))
            raise first
        if failures:
            raise ShutdownError(self._name, failures)

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


def hook_of(
    service: Service, instance: Any, teardown: Callable[[], Any] | None
) -> Callable[[], Any] | None:
    """The zero-argument shutdown hook of a built instance, if it has one."""
    if teardown is not None:
        return teardown
    if service.shutdown_hook is not None:
        hook = service.shutdown_hook
        if inspect.iscoroutinefunction(hook):

            async def call_async() -> Any:
                return await hook(instance)

            return call_async
        return lambda: hook(instance)
    method = getattr(instance, "shutdown", None)
    return method if callable(method) else None


def _has_async_hook(scope: Scope, services: list[Service]) -> bool:
    for service in services:
        instance = scope._instances.get(service.key, MISSING)
        if instance is not MISSING and instance is not COMPILED:
            hook = hook_of(service, instance, service.teardown)
            if inspect.iscoroutinefunction(hook):
                return True
    return False


def _drain(steps: list[_Step]) -> Callable[[], _Step | None]:
    return lambda: steps.pop(0) if steps else None


def _run_sync(
    take: Callable[[], _Step | None], scope: Scope, async_name: str
) -> tuple[dict[str, Exception], BaseException | None]:
    """Attempt every step's hook from sync code; the failures, and the first BaseException."""
    failures: dict[str, Exception] = {}
    fatal: BaseException | None = None
    timeout = scope._root._shutdown_timeout
    while (step := take()) is not None:
        try:
            _call_sync(step, timeout, scope, async_name)
        except Exception as error:
            failures[step.key] = error
        except BaseException as error:  # re-raised once every hook ran
            fatal = fatal or error
    return failures, fatal


def _call_sync(step: _Step, timeout: float | None, scope: Scope, async_name: str) -> None:
    hook = step.hook()
    if hook is None:
        return
    if timeout is None:
        result = hook()
    else:
        # In a worker thread, so that a hook that hangs can be abandoned.
        done = threading.Event()
        outcome: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                outcome.append((True, hook()))
            except BaseException as error:  # handed to the caller's thread
                outcome.append((False, error))
            finally:
                done.set()

        scope._root._health_threads.submit(job)
        if not done.wait(timeout):
            raise ShutdownTimeoutError(step.key, timeout)
        ok, result = outcome[0]
        if not ok:
            raise result
    if inspect.isawaitable(result):
        if isinstance(result, Coroutine):
            result.close()
        raise TypeError(
            f"the shutdown hook of {step.key!r} returned an awaitable; "
            f"declare it `async def` or call `await {async_name}()`"
        )


async def _run_async(
    take: Callable[[], _Step | None], scope: Scope
) -> tuple[dict[str, Exception], BaseException | None, BaseException | None]:
    """Attempt every step's hook from async code, stopping only if cancelled from outside.

    The failures, the first other BaseException, and the cancellation that stopped it.
    """
    failures: dict[str, Exception] = {}
    fatal: BaseException | None = None
    timeout = scope._root._shutdown_timeout
    baseline = cancel_requests()
    while (step := take()) is not None:
        try:
            await _call_async(step, timeout, scope)
        except Exception as error:
            failures[step.key] = error
        except BaseException as error:
            if is_cancellation(error):
                if cancelled_from_outside(baseline):
                    return failures, fatal, error
                wrapped = DIError(
                    f"the shutdown hook of {step.key!r} raised {type(error).__name__} "
                    "while nothing was cancelling the shutdown"
                )
                wrapped.__cause__ = error
                failures[step.key] = wrapped
            else:
                fatal = fatal or error
    return failures, fatal, None


async def _call_async(step: _Step, seconds: float | None, scope: Scope) -> None:
    hook = step.hook()
    if hook is None:
        return
    with anyio.move_on_after(seconds) as bounded:
        if inspect.iscoroutinefunction(hook) or seconds is None:
            result = hook()
        else:
            result = await _in_thread(hook, scope)
        if inspect.isawaitable(result):
            await result
    if bounded.cancelled_caught:
        raise ShutdownTimeoutError(step.key, seconds or 0.0)


async def _in_thread(hook: Callable[[], Any], scope: Scope) -> Any:
    """Call a sync hook in a worker thread, left behind if the wait is cancelled."""
    done = anyio.Event()
    notify = loop_notifier()
    outcome: list[tuple[bool, Any]] = []

    def job() -> None:
        try:
            outcome.append((True, hook()))
        except BaseException as error:  # handed to the waiting task
            outcome.append((False, error))
        finally:
            notify(done.set)

    scope._root._health_threads.submit(job)
    await done.wait()
    ok, result = outcome[0]
    if not ok:
        raise result
    return result


# A parameter annotated Scope (or Injector, a Scope) receives the invoking scope.
Scope._scope_types = (Scope,)
