"""Scopes: where services are provided, invoked, and shut down."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import anyio.lowlevel
from typing_extensions import TypeForm

from . import _health
from ._container import graph as _graph
from ._container.compile import compile_scoped, compile_transient
from ._container.keys import Key, describe
from ._container.keys import check_name as _check_name
from ._container.resolve import (
    check_provides,
    check_type,
    note_building,
    resolve_async,
    resolve_sync,
)
from ._container.runner import (
    cancel_requests,
    cancelled_from_outside,
    in_event_loop,
    is_cancellation,
    loop_notifier,
    run,
    to_completion,
)
from ._container.service import (
    COMPILED,
    MISSING,
    Landed,
    Lifetime,
    Service,
    Teardown,
)
from ._container.signature import Kind, Param, kind_of, label, provided_type, read_params
from .errors import (
    AsyncRequiredError,
    ContextNotProvidedError,
    DIError,
    ScopeClosedError,
    ScopeRequiredError,
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
# What provides= takes: a key (a type or a name), a tuple of keys, or None.
Keys = Any | tuple[Any, ...] | None
logger = logging.getLogger("di")
_get_ident = threading.get_ident
_new = object.__new__
# Whether the GIL makes single dict and attribute operations atomic and ordered, as the
# lock-free opening of a request scope relies on; without it, scope() takes the lock.
_GIL: bool = getattr(sys, "_is_gil_enabled", lambda: True)()
# A read-only empty mapping (and tuple) standing in for a scope's unwritten containers.
_BLANK: Any = MappingProxyType({})
_BLANK_LIST: Any = ()


class _Step:
    """One built service taken out of its scope, waiting for its shutdown hook."""

    __slots__ = ("failure", "instance", "key", "service", "teardown")

    def __init__(
        self, service: Service, instance: Any, key: str, failure: BaseException | None
    ) -> None:
        self.service = service
        self.instance = instance
        self.teardown = service.teardown
        self.key = key  # how ShutdownError names it
        self.failure = failure  # what the scope's block raised, for generator factories

    def hook(self) -> Callable[[], Any] | None:
        return hook_of(self.service, self.instance, self.teardown, self.failure)


class _Shutting:
    """A shutdown in progress, which other callers wait for (from any thread or loop)."""

    __slots__ = ("_callbacks", "_done", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def end(self) -> None:
        self._done.set()
        for wake in self._callbacks:
            wake()

    def wait(self) -> None:
        self._done.wait()

    async def await_end(self) -> None:
        ended = anyio.Event()
        notify = loop_notifier()
        self._callbacks.append(lambda: notify(ended.set))
        if not self._done.is_set():
            await ended.wait()


class _Plan:
    """What the request scopes of one scope share while the providers it sees stay put.

    A request scope (one that provides nothing) resolves every key as its parent does,
    so one compiled builder per scoped service serves all of them: ``builders`` holds
    them by key (``general``, the keys the general path must build), and ``template``
    the COMPILED marker of each, copied into every new request scope's instances so
    that its first invoke of one goes straight to the builder. ``accepted`` holds the
    type keys ``scope(context=...)`` takes without a closer look.
    """

    __slots__ = ("accepted", "builders", "general", "template", "version")

    def __init__(self, version: int, accepted: frozenset[Key]) -> None:
        self.version = version
        self.accepted = accepted
        self.builders: dict[Key, Callable[[Scope], Any]] = {}
        self.general: set[Key] = set()
        self.template: dict[Key, Any] = {}


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
        "_fast",
        "_generation",
        "_instances",
        "_labels",
        "_name",
        "_number",
        "_parent",
        "_plan",
        "_root",
        "_scoped",
        "_services",
        "_shutting",
        "_thread",
        "_version",
    )

    _root: Injector
    # Parameter annotations that receive the invoking scope rather than a service.
    _scope_types: tuple[type, ...] = ()

    def __init__(
        self,
        name: str | None,
        parent: Scope,
        number: int = 0,
        instances: dict[Key, Any] | None = None,
        compiled: dict[Key, Callable[[Scope], Any]] = _BLANK,
    ) -> None:
        if not isinstance(parent, Scope):
            raise TypeError("create scopes with injector.scope(name), not Scope()")
        self._fill(name, parent, number, instances, compiled)

    def _fill(
        self,
        name: str | None,
        parent: Scope,
        number: int,
        instances: dict[Key, Any] | None,
        compiled: dict[Key, Callable[[Scope], Any]],
    ) -> None:
        """Set every attribute: for __init__, and for scope() on a bare object."""
        # A named scope's name (checked by scope()); an anonymous one's number, which
        # keys it among its siblings, and its name once someone asks for it (see name).
        self._name = name
        self._number = number
        self._parent: Scope | None = parent
        self._root = parent._root
        # Containers most request scopes never write start as the shared _BLANK, which
        # refuses writes: each write site makes the scope its own first (_own).
        self._services: dict[Key, Service] = _BLANK
        # The fast path of invoke: every built singleton of this scope, by key, and
        # COMPILED for each transient with a compiled builder in _compiled.
        self._instances: dict[Key, Any] = {} if instances is None else instances
        self._compiled = compiled
        self._children: dict[str | int, Scope] = _BLANK  # by name, or number
        # Shutdown: closed once it begins (for good, but for the root); the services
        # taken out and not shut down yet; how many shutdowns began.
        self._closed = False
        self._closing: list[_Step] = _BLANK_LIST
        self._generation = 0
        # Keys provided with eager=True, in provide order: what start() builds.
        self._eager: dict[Key, None] = _BLANK
        # Scoped services declared above and built here: each declaration's copy, and
        # (declaration, instance, index) of those a compiled builder made, copied on need.
        self._scoped: dict[Service, Service] = _BLANK
        self._fast: list[tuple[Service, Any, int]] = []
        # What its request scopes share until a provider changes here or above.
        self._plan: _Plan | None = None
        # Bumped when a provider changes here or above, or a built instance is dropped:
        # what was compiled against this scope's view is stale then.
        self._version = 0
        self._thread = _get_ident()  # the thread that opened it
        self._labels: set[str] = _BLANK  # the reported names of the type keys provided here
        self._shutting: _Shutting | None = None  # a shutdown running its hooks now

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- introspection ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The scope's name, unique among its siblings.

        An anonymous scope is named ``"<parent's name>.<n>"`` when first asked.
        """
        name = self._name
        if name is None:
            with self._root._mutex:
                name = self._name
                if name is None:
                    parent = self._parent
                    assert parent is not None  # the root always has a name
                    # Numbers are unique in the tree, so only a name chosen by hand can
                    # be taken already.
                    name = f"{parent.name}.{self._number}"
                    while name in parent._children:
                        name = f"{parent.name}.{next(self._root._scope_numbers)}"
                    self._name = name
        return name

    @property
    def closed(self) -> bool:
        """Whether this scope is shut down, or shutting down: it builds nothing more."""
        return self._closed

    @property
    def root(self) -> Injector:
        """The injector at the root of this scope's tree (itself, for the injector)."""
        return self._root

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
            return [describe(key) for key in self._services]

    def list_invoked(self) -> list[str]:
        """The keys of this scope's built services, in invocation order."""
        return [s.label for s in self._built()]

    def scope(self, name: str | None = None, *, context: Mapping[Key, Any] | None = None) -> Scope:
        """Make a child scope; its lookups fall back to this scope and its ancestors.

        Without a name the scope gets a unique one, so each request can open its own:

        >>> async with injector.scope(context={Request: request}) as scope:
        ...     handler = await scope.ainvoke(Handler)

        ``context`` maps keys declared with :meth:`provide_context` (types or names) to
        the values this scope provides for them. Named sibling scopes must have
        different names; a shut-down child frees its name.
        """
        root = self._root
        if name is not None:
            _check_name(name, "scope()")
        plan = self._plan
        if plan is None:
            plan = self._make_plan()
        # Read the builders with the markers: a key gets its builder before its marker.
        template, compiled = plan.template, plan.builders
        if context is not None:
            if type(context) is not dict or not plan.accepted.issuperset(context):
                self._check_context(context)
            # The values live with the instances: by their keys, which nothing else
            # here can use (those keys resolve to a context declaration, see
            # _context_value).
            instances = {**template, **context}
        else:
            instances = template.copy()
        key: str | int
        if name is None:
            key = number = next(root._scope_numbers)
        else:
            key, number = name, 0
        child = _new(Scope)  # no __init__: its argument check is for callers outside
        child._fill(name, self, number, instances, compiled)
        if name is None and _GIL:
            children = self._children
            if children is not _BLANK and not self._closed:
                # Published without the lock, by one atomic store. A shutdown marks a
                # scope closed before it lists the children, and a provider change bumps
                # the version before it visits them: if neither shows yet, either will
                # find this child.
                children[key] = child
                if not self._closed and plan.version == self._version:
                    return child
        # acquire/release rather than `with`: this runs once per request.
        mutex = root._mutex
        mutex.acquire()
        try:
            if self._closed:
                child._leave()  # if published above
                raise ScopeClosedError(self.name, f"open child scope {child.name!r}")
            children = self._children
            if children is _BLANK:
                children = self._children = {}
            if name is not None and (
                name in children
                or any(other._name == name for other in list(children.values()) if other._number)
            ):
                raise ValueError(
                    f"scope {self.name!r} already has a child scope named {name!r}; "
                    "choose another name (or none) or shut that one down first"
                )
            children[key] = child
            if plan.version != self._version:
                child._forget_builders()  # a provider changed since the plan was made
        finally:
            mutex.release()
        return child

    def _make_plan(self) -> _Plan:
        """The plan of this scope's request scopes, made once per version of its view."""
        with self._root._mutex:
            nearest: dict[Key, Service] = {}
            for scope in (self, *self.ancestors()):
                for key, service in scope._services.items():
                    nearest.setdefault(key, service)
            plan = _Plan(
                self._version,
                frozenset(
                    key
                    for key, service in nearest.items()
                    if not isinstance(key, str) and service.lifetime is Lifetime.CONTEXT
                ),
            )
            self._plan = plan
            return plan

    def _check_context(self, context: Mapping[Key, Any]) -> None:
        """Refuse a scope(context=...) that is no mapping, or holds an undeclared key."""
        if not isinstance(context, Mapping):
            raise TypeError(f"scope(context=...) takes a mapping of key to value, got {context!r}")
        for key, value in context.items():
            declared = self._lookup(key)
            if declared is None or declared.lifetime is not Lifetime.CONTEXT:
                raise DIError(
                    f"scope(context=...): {describe(key)!r} is not a context key seen "
                    f"from scope {self.name!r}; declare it with "
                    f"provide_context({describe(key)}) in this scope or above"
                )
            # A named key's value is checked against the type it was declared with;
            # a type key's is not: implementations need not subclass an interface.
            expected = declared.expected
            if (
                isinstance(key, str)
                and isinstance(expected, type)
                and not isinstance(value, expected)
            ):
                raise TypeError(
                    f"scope(context=...): the value of {describe(key)!r} must be a "
                    f"{describe(expected)}, got {describe(type(value))}"
                )

    # -- providing ----------------------------------------------------------------

    def provide(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        provides: Keys = None,
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

        ``provides=`` binds the service to an interface instead of its own type: a key,
        or a tuple of keys that all reach the one instance (checked and shut down once).

        >>> def new_cache(config: Config) -> Cache:
        ...     return Cache(config.cache_url)
        >>> injector.provide(new_cache)
        >>> injector.provide(SmtpMailer, provides=Mailer)
        """
        service = self._service(factory, Lifetime.LAZY, name, provides, shutdown, health_check)
        service.critical = critical
        self._add(service)
        if eager:
            with self._root._mutex:
                if self._eager is _BLANK:
                    self._eager = {}
                self._eager[service.key] = None

    def provide_value(
        self,
        value: object,
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
        critical: bool = True,
    ) -> None:
        """Provide an instance that is already built, keyed by its type or ``name``.

        It counts as built (and gets its invocation index) now. ``critical`` is as in
        :meth:`provide`.
        """
        service = self._value_service(
            value, "provide_value", name, provides, shutdown, health_check
        )
        service.critical = critical
        self._add(service)
        resolve_sync(service, self)

    def provide_scoped(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
        critical: bool = True,
    ) -> None:
        """Provide a service built at most once per scope that invokes it.

        Declared once (usually on the injector), it is built in each child scope that
        asks for it, from that scope (so it sees the scope's context and its other
        scoped services), cached there, and shut down with that scope, generator
        factories included. Invoking it from the root injector is an error: open a
        scope. A singleton that needs it is a captive dependency (see :meth:`validate`).

        >>> injector.provide_scoped(UnitOfWork)
        >>> async with injector.scope() as request:
        ...     uow = await request.ainvoke(UnitOfWork)
        """
        service = self._service(factory, Lifetime.SCOPED, name, provides, shutdown, health_check)
        service.critical = critical
        self._add(service)

    def provide_context(self, key: Any, *, name: str | None = None) -> None:
        """Declare a key whose value each scope receives through ``scope(context=...)``.

        ``provide_context(Request)`` declares the type ``Request``;
        ``provide_context(str, name="tenant")`` the name ``"tenant"`` (checked to be a
        ``str``). Invoking it where no enclosing scope's context holds it is an error.

        >>> injector.provide_context(Request)
        >>> with injector.scope(context={Request: request}) as scope:
        ...     scope.invoke(Request) is request
        True
        """
        if name is not None:
            _check_name(name, "provide_context()")
        elif isinstance(key, str) or key is None:
            raise TypeError(
                f"provide_context({key!r}): pass the type of the value, and name= to key it "
                "by a name: provide_context(str, name='tenant')"
            )
        service = Service(
            key=name if name is not None else key,
            label=describe(name if name is not None else key),
            lifetime=Lifetime.CONTEXT,
            owner=self,
            factory=_no_factory,
            kind=Kind.PLAIN,
            expected=key,
            params=[],
            shutdown_hook=None,
            check=None,
        )
        self._add(service)

    def provide_transient(
        self, factory: Callable[..., Any], *, name: str | None = None, provides: Keys = None
    ) -> None:
        """Provide a service built anew on every invoke and never cached.

        Transients are not tracked, so they are neither shut down nor health checked;
        generator factories are refused for that reason.
        """
        service = self._service(factory, Lifetime.TRANSIENT, name, provides, None, None)
        if service.kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR):
            raise TypeError(
                f"provide_transient({service.label}): a generator factory's cleanup would "
                "never run, since transients are not tracked; use provide_scoped() (one per "
                "scope, cleaned up with it) or provide() instead"
            )
        self._add(service)

    def override(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """Replace a service this scope can see: in this scope, or shadowing an ancestor's.

        Its key (or each key of ``provides=``) must already be provided by this scope
        or an ancestor: an override never adds a service, so a fake keyed by its own
        class (``override(FakeMailer)``) is refused, pointing to ``provides=Mailer``.
        A replaced instance that was already built is shut down first. Services already
        built from the old instance keep it. Meant for tests and fakes.
        """
        service = self._service(factory, Lifetime.LAZY, name, provides, shutdown, health_check)
        self._keep_lifetime(service)
        self._override(service, "override", "aoverride")

    async def aoverride(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """:meth:`override`, awaiting the replaced instance's async shutdown hook."""
        service = self._service(factory, Lifetime.LAZY, name, provides, shutdown, health_check)
        self._keep_lifetime(service)
        await self._aoverride(service, "aoverride")

    def override_value(
        self,
        value: object,
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """:meth:`override` with an instance already built, as :meth:`provide_value`."""
        service = self._value_service(
            value, "override_value", name, provides, shutdown, health_check
        )
        self._keep_criticality(service)
        self._override(service, "override_value", "aoverride_value")
        resolve_sync(service, self)

    async def aoverride_value(
        self,
        value: object,
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """:meth:`override_value`, awaiting the replaced instance's async shutdown hook."""
        service = self._value_service(
            value, "aoverride_value", name, provides, shutdown, health_check
        )
        self._keep_criticality(service)
        await self._aoverride(service, "aoverride_value")
        resolve_sync(service, self)

    def _keep_lifetime(self, service: Service) -> None:
        """An override keeps the lifetime of a scoped or transient service it replaces,
        and whether its failures are critical."""
        old = self._lookup(service.key)
        if old is not None and old.lifetime in (Lifetime.SCOPED, Lifetime.TRANSIENT):
            service.lifetime = old.lifetime
        self._keep_criticality(service)

    def _keep_criticality(self, service: Service) -> None:
        """An override keeps whether the failures of the service it replaces are critical."""
        old = self._lookup(service.key)
        if old is not None:
            service.critical = old.critical

    def _override(self, service: Service, sync_name: str, async_name: str) -> None:
        replaced = self._replaced(service, sync_name)
        if replaced and _has_async_hook(self, replaced) and in_event_loop():
            raise AsyncRequiredError(
                f"{sync_name}() was called inside a running event loop and the replaced "
                f"{replaced[0].label!r} has an async shutdown hook; use `await {async_name}()` "
                "there"
            )
        steps = self._replace(service, sync_name)
        if any(inspect.iscoroutinefunction(step.hook()) for step in steps):
            self._conclude(*run(lambda: _run_async(_drain(steps), self), sync_name, async_name))
        else:
            self._conclude(*_run_sync(_drain(steps), self, async_name), None)

    async def _aoverride(self, service: Service, where: str) -> None:
        steps = self._replace(service, where)
        failures, fatal, cancelled = await _run_async(_drain(steps), self)
        self._conclude(failures, fatal, cancelled)

    def _replaced(self, service: Service, where: str) -> list[Service]:
        """The built services of this scope that ``service`` would replace.

        Raises ``ServiceNotFoundError`` for a key no visible scope provides.
        """
        replaced: list[Service] = []
        for key in service.keys:
            if self._lookup(key) is None:
                error = self._not_found(key)
                error.add_note(
                    f"{where}() replaces a service and never adds one; to stand in for an "
                    f"interface, pass provides=: {where}({label(service.factory)}, "
                    "provides=TheInterface)"
                )
                raise error
            old = self._services.get(key)
            if old is not None and old.index and old not in replaced:
                replaced.append(old)
        # A scoped service this scope built from a declaration above: its copy goes too.
        with self._root._mutex:
            self._materialize()
            for template, copy in self._scoped.items():
                if copy.index and copy not in replaced and set(template.keys) & set(service.keys):
                    replaced.append(copy)
        return replaced

    def _replace(self, service: Service, where: str) -> list[_Step]:
        """Swap ``service`` in; the replaced instances, taken out, are left to shut down."""
        if service.lifetime is Lifetime.TRANSIENT and service.kind in (
            Kind.GENERATOR,
            Kind.ASYNC_GENERATOR,
        ):
            raise TypeError(
                f"{where}({service.label}): the service replaced is a transient, and a "
                "generator factory's cleanup would never run for one"
            )
        replaced = self._replaced(service, where)
        with self._root._mutex:
            if self._closed:
                raise ScopeClosedError(self.name, f"override {service.label!r}")
            steps = self._take_out(replaced)
            for copy in replaced:
                if copy.template is not None and self._scoped is not _BLANK:
                    self._scoped.pop(copy.template, None)
            if self._services is _BLANK:
                self._services = {}
            self._drop_received(service.keys)
            for key in service.keys:
                old = self._services.get(key)
                if old is not None and old is not service and len(old.keys) > 1:
                    # The old service keeps the keys not overridden, as a service of its own.
                    kept = tuple(k for k in old.keys if k not in service.keys)
                    rest = old.rebound(kept)
                    for other in kept:
                        self._services[other] = rest
                self._services[key] = service
            self._forget_builders()
        return steps

    def _value_service(
        self,
        value: object,
        where: str,
        name: str | None,
        provides: Keys,
        shutdown: Callable[[Any], Any] | None,
        health_check: Callable[[Any], Any] | None,
    ) -> Service:
        if isinstance(value, type) and name is None and provides is None:
            raise TypeError(
                f"{where}({value.__qualname__}): that is a class, not an instance; "
                f"provide(...) builds a service from its class: provide({value.__qualname__})"
            )
        return self._service(
            lambda: value, Lifetime.VALUE, name, provides, shutdown, health_check, value, where
        )

    def _service(
        self,
        factory: Callable[..., Any],
        lifetime: Lifetime,
        name: str | None,
        provides: Keys,
        shutdown: Callable[[Any], Any] | None,
        health_check: Callable[[Any], Any] | None,
        value: object = MISSING,
        where: str = "",
    ) -> Service:
        where = where or {
            Lifetime.LAZY: "provide",
            Lifetime.SCOPED: "provide_scoped",
            Lifetime.TRANSIENT: "provide_transient",
        }.get(lifetime, "provide")
        if not callable(factory):
            raise TypeError(f"{where}(): the factory must be callable, got {factory!r}")
        for argument, hook in (("shutdown", shutdown), ("health_check", health_check)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{where}(): {argument}= must be callable, got {hook!r}")
        if name is not None:
            _check_name(name, f"{where}()")
        params: list[Param] | None = []
        if value is not MISSING:
            kind, provided = Kind.PLAIN, type(value)
        else:
            kind = kind_of(factory)
            try:
                provided = provided_type(factory, kind)
            except TypeError:
                if name is None and provides is None:
                    raise
                provided = _EMPTY  # keyed by name= or provides=: the annotation can wait
            params = read_params(factory, self._scope_types)
        keys = _keys(provides, where, name)
        if name is None and provided is _EMPTY and not keys:
            raise TypeError(
                f"{where}({label(factory)}): the factory has no return annotation; "
                "annotate its return type, or pass name= or provides="
            )
        if not keys:
            keys = (name if name is not None else provided,)
        service = Service(
            key=keys[0],
            label=describe(keys[0]),
            lifetime=lifetime,
            owner=self,
            factory=factory,
            kind=kind,
            expected=None if provided is _EMPTY else provided,
            params=params,
            shutdown_hook=shutdown,
            check=health_check,
        )
        service.keys = keys
        _check_binding(service, where)
        return service

    def _add(self, service: Service) -> None:
        with self._root._mutex:
            if self._closed:
                raise ScopeClosedError(self.name, f"provide {service.label!r}")
            for key in service.keys:
                # A name may not pass for a type's reported name, nor the reverse:
                # reports and errors name both the same way.
                taken = key in self._labels if isinstance(key, str) else describe(key)
                if key in self._services or taken in self._services or taken is True:
                    raise ServiceAlreadyProvidedError(describe(key), self.name)
            if self._services is _BLANK:
                self._services, self._labels = {}, set()
            self._drop_received(service.keys)
            for key in service.keys:
                self._services[key] = service
                if not isinstance(key, str):
                    self._labels.add(describe(key))
            self._forget_builders()

    def _drop_received(self, keys: tuple[Key, ...]) -> None:
        """Forget the context values this scope received for ``keys``, which it is about
        to provide itself (the caller holds the mutex): its own provider wins."""
        for key in keys:
            seen = self._lookup(key)
            if seen is not None and seen.lifetime is Lifetime.CONTEXT:
                self._instances.pop(key, None)

    # -- invoking -----------------------------------------------------------------

    @overload
    def invoke(self, service: TypeForm[T], name: str | None = None) -> T: ...
    @overload
    def invoke(self, service: str, name: None = None) -> Any: ...
    def invoke(self, service: TypeForm[T] | str, name: str | None = None) -> T | Any:
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
                return self._compiled[service](self)
        return self._invoke(service, name)

    def _invoke(self, service: Any, name: str | None) -> Any:
        """:meth:`invoke` past its fast path: find the service, compile or build it."""
        found, expected = self._find(service, name)
        if found.lifetime is Lifetime.SCOPED and expected is None:
            build = self._fast_builder(found)
            if build is not None:
                return build(self)
        if found.lifetime is Lifetime.TRANSIENT and expected is None:
            root = self._root
            version = self._version
            builder = compile_transient(self, found)
            if builder is not None:
                with root._mutex:
                    # Cached only if no provider changed while compiling.
                    if self._version == version and not self._closed:
                        self._own_compiled()[service] = builder
                        self._instances[service] = COMPILED
                return builder(self)
        instance = resolve_sync(found, self)
        if expected is not None:
            check_type(found.label, instance, expected, "invoke()")
        return instance

    @overload
    async def ainvoke(self, service: TypeForm[T], name: str | None = None) -> T: ...
    @overload
    async def ainvoke(self, service: str, name: None = None) -> Any: ...
    async def ainvoke(self, service: TypeForm[T] | str, name: str | None = None) -> T | Any:
        """:meth:`invoke` for async code: awaits async factories and other tasks' builds."""
        if name is None:
            instance = self._instances.get(service, MISSING)
            if instance is COMPILED:
                compiled = self._compiled[service]
                if type(compiled) is not _Again:  # a stale builder's stand-in: the full path
                    return compiled(self)
            elif instance is not MISSING:
                return instance
        found, expected = self._find(service, name)
        if found.lifetime is Lifetime.SCOPED and expected is None:
            build = self._fast_builder(found)
            if build is not None:
                return build(self)
        instance = await resolve_async(found, self)
        if expected is not None:
            check_type(found.label, instance, expected, "ainvoke()")
        return instance

    def _find(self, service: Any, name: str | None) -> tuple[Service, Any]:
        """The service a caller asks for, and the type to check it against (if any)."""
        if self._closed:
            raise ScopeClosedError(self.name, f"invoke {describe(service)!r}")
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
        """Every service this scope can invoke, once each, nearest provider first."""
        seen: dict[Key, Service] = {}
        for _, services in self._lineage():
            for key, service in services:
                seen.setdefault(key, service)
        return list(dict.fromkeys(seen.values()))

    def _lineage(self) -> list[tuple[Scope, list[tuple[Key, Service]]]]:
        """This scope and its ancestors, nearest first, each with its services then.

        A scope's copies of scoped services come before what it provides itself.
        """
        with self._root._mutex:
            for scope in (self, *self.ancestors()):
                scope._materialize()
            return [
                (
                    scope,
                    [(copy.key, copy) for copy in scope._scoped.values()]
                    + list(scope._services.items()),
                )
                for scope in (self, *self.ancestors())
            ]

    def _fast_builder(self, service: Service) -> Callable[[Scope], Any] | None:
        """The compiled builder of a scoped declaration for this scope, if it can have one.

        Only a scope that provides nothing itself (a request scope) shares its parent's
        builder; one is compiled per parent and kept in the parent's plan, by key, until
        a provider changes in the parent or above.
        """
        parent = self._parent
        if parent is None or self._services or service.template is not None:
            return None
        plan = parent._plan
        if plan is None:
            plan = parent._make_plan()
        builder = plan.builders.get(service.key)
        if builder is not None or service.key in plan.general:
            return builder
        builder = compile_scoped(parent, service)
        with self._root._mutex:
            if parent._plan is plan:  # no provider changed meanwhile
                # Only the keys that reach this service from here: a nearer provider
                # of another of its keys keeps that key.
                for key in [k for k in service.keys if parent._lookup(k) is service]:
                    if builder is None:
                        plan.general.add(key)
                    else:
                        plan.builders[key] = builder
                        plan.template[key] = COMPILED
        return builder

    def _own_compiled(self) -> dict[Key, Callable[[Scope], Any]]:
        """This scope's own dict of compiled builders, to write (the caller holds the mutex).

        A request scope starts with its parent's plan's, shared, or with none.
        """
        compiled = self._compiled
        parent = self._parent
        plan = parent._plan if parent is not None else None
        if compiled is _BLANK or (plan is not None and compiled is plan.builders):
            compiled = self._compiled = dict(compiled)
        return compiled

    def _keep(
        self, service: Service, instance: Any, teardown: Teardown | None, generation: int
    ) -> Landed:
        """Cache a build of ``service`` here, if it may be; the caller holds the mutex.

        Refused (CLOSED) once the scope began shutting down after the build began, and
        (REPLACED) when an override swapped the service out meanwhile.
        """
        if self._closed or self._generation != generation:
            return Landed.CLOSED
        if service.template is None and self._services.get(service.key) is not service:
            return Landed.REPLACED
        if self._instances.get(service.key, COMPILED) is not COMPILED:
            return Landed.BEATEN  # a compiled builder, in the scope's own thread, cached one first
        service.index = next(self._root._counter)
        service.teardown = teardown
        keys = service.keys if service.template is None else self._reaching(service.template)
        for key in keys:
            self._instances[key] = instance
        return Landed.KEPT

    def _reaching(self, declared: Service) -> tuple[Key, ...]:
        """The keys of scoped ``declared`` that reach it from here, under which this scope
        keeps its instance: a nearer provider of one of its bound keys keeps that key."""
        keys = declared.keys
        if len(keys) == 1:
            return keys
        return tuple(key for key in keys if self._lookup(key) is declared)

    def record_built(self, service: Service, instance: Any) -> Any:
        """Cache a scoped instance a compiled builder made here; the instance to use.

        If another thread cached one first, that one is used and this one shut down.
        """
        if service.key is not service.expected:
            check_provides(service, instance)
        instances = self._instances
        kept = instances.get(service.key, COMPILED)
        if kept is not COMPILED:
            if kept is not instance:
                _discard_unused(service, instance)
            return kept
        for key in self._reaching(service):
            instances[key] = instance
        self._fast.append((service, instance, next(self._root._counter)))
        if self._closed:
            self.refuse_built(service, instance)
        return instance

    def build_guarded(self, service: Service) -> Any:
        """Build a scoped declaration here by the general path (for compiled builders).

        Taken when the build is asked for from another thread than the scope's own:
        that path's flights make sure two threads never both build it. From then on
        the scope's own thread takes it too (no thread matches 0), so its later builds
        join those flights.
        """
        self._thread = 0
        return resolve_sync(service, self)

    def note_failed_build(self, error: Exception, service: Service) -> None:
        """Name the scoped service whose factory raised (for compiled builders)."""
        note_building(error, service, f"scope {self.name!r}")

    def refuse_built(self, service: Service, instance: Any) -> None:
        """A compiled build landed in a scope shut down meanwhile: undo it and raise."""
        with self._root._mutex:
            for key in service.keys:
                if self._instances.get(key) is instance:
                    del self._instances[key]
            self._fast = [record for record in self._fast if record[1] is not instance]
        _discard_unused(service, instance)
        raise ScopeClosedError(self.name, f"build {service.label!r}")

    def built_here(self, service: Service) -> bool:
        """Whether this scope has built its own copy of scoped declaration ``service``."""
        with self._root._mutex:
            self._materialize()
            copy = self._scoped.get(service)
            return copy is not None and bool(copy.index)

    def context_value(self, declared: Service) -> Any:
        """The value of a context key from above (for compiled builders)."""
        return self._context_value(declared)

    def _materialize(self) -> None:
        """Turn what compiled builders recorded into scoped copies (the caller holds the mutex)."""
        while self._fast:
            service, _, index = self._fast.pop(0)
            copy = self._scoped.get(service)
            if copy is None:
                if self._scoped is _BLANK:
                    self._scoped = {}
                copy = self._scoped[service] = service.copy_for(self)
            copy.index = index

    def _context_value(self, service: Service) -> Any:
        """The value of a context key, from the nearest enclosing scope that received one.

        ``service`` is the key's declaration as seen from here. A scope keeps the
        values it received among its instances; from here up to the declaring scope,
        no scope provides that key itself (or it would be the one seen), so whatever
        one holds under it is a value it received.
        """
        scope: Scope | None = self
        while scope is not None:
            value = scope._instances.get(service.key, COMPILED)
            if value is not COMPILED:
                return value
            if scope is service.owner:
                break
            scope = scope._parent
        if self._closed:  # its values went with it
            raise ScopeClosedError(self.name, f"invoke {service.label!r}")
        error = ContextNotProvidedError(service.label, self.name)
        error.missing = service.key
        raise error

    def _scoped_copy(self, service: Service) -> Service:
        """This scope's own copy of a scoped declaration, made on first use."""
        copy = self._scoped.get(service)
        if copy is not None:
            return copy
        if self._parent is None:
            error = ScopeRequiredError(service.label)
            error.missing = service.key
            raise error
        with self._root._mutex:
            if self._closed:
                raise ScopeClosedError(self.name, f"build {service.label!r}")
            self._materialize()
            if self._scoped is _BLANK:
                self._scoped = {}
            return self._scoped.setdefault(service, service.copy_for(self))

    def _not_found(self, key: Key, needed_by: str | None = None) -> ServiceNotFoundError:
        available = [describe(k) for s in self._visible() if s.label != needed_by for k in s.keys]
        return ServiceNotFoundError(describe(key), self.name, available)

    def _context_scope(self, key: Key) -> str | None:
        """The nearest scope, from here up, whose context holds ``key`` (as declared here)."""
        declared = self._lookup(key)
        if declared is None or declared.lifetime is not Lifetime.CONTEXT:
            return None
        scope: Scope | None = self
        while scope is not None:
            if scope._instances.get(key, COMPILED) is not COMPILED:
                return scope.name
            if scope is declared.owner:
                break
            scope = scope._parent
        return None

    def _built(self) -> list[Service]:
        with self._root._mutex:
            self._materialize()
            built = {s for s in (*self._services.values(), *self._scoped.values()) if s.index}
        return sorted(built, key=lambda s: s.index)

    # -- the graph ----------------------------------------------------------------

    def validate(self) -> None:
        """Check the whole graph visible from this scope, building nothing.

        Raises one :class:`~di.GraphError` listing every problem: a missing dependency
        (which service needs what), a cycle (its path), a captive dependency (a
        singleton that needs a scoped or context service, directly or through
        transients). Dependencies are looked up as invoking would: a singleton's from
        the scope that provides it, a scoped or transient service's from this scope.
        """
        _graph.validate(self)

    def explain(self, service: TypeForm[Any] | str, name: str | None = None) -> str:
        """The dependency tree of a service: each node's lifetime, scope, and whether built.

        >>> print(request.explain(Handler))
        app.Handler (scoped, provided by 'root', not built here)
        └── app.Database (lazy, provided by 'root', built)
        """
        found, _ = self._find(service, name)
        return _graph.explain(self, found)

    def graph(self) -> str:
        """Every service visible from this scope and what it needs, as a Mermaid flowchart."""
        return _graph.graph(self)

    # -- starting -----------------------------------------------------------------

    def start(self) -> None:
        """Validate the graph, then build every ``eager=True`` service, in provide order.

        Each is built as :meth:`invoke` builds it, dependencies first; one already built
        is left as it is. The first failure is raised, with a note naming the service.
        Inside a running loop, or with async factories, use :meth:`astart`.
        """
        self.validate()
        for key in list(self._eager):
            try:
                self.invoke(key)
            except AsyncRequiredError as error:
                # invoke() names ainvoke(); the caller called start().
                raise AsyncRequiredError(
                    f"start() cannot build eager service {describe(key)!r}: it or a service "
                    "it needs has an async factory; use `await scope.astart()`"
                ) from error
            except Exception as error:
                _note_start(error, self, key)
                raise

    async def astart(self) -> None:
        """:meth:`start` for async code: awaits async factories."""
        self.validate()
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
            raise ScopeClosedError(self.name, "check health")
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
        self._shutdown(None)

    def _shutdown(self, failure: BaseException | None, called: str = "shutdown") -> None:
        if self._close_plainly():
            return
        if self._has_async_hooks():
            if in_event_loop():
                raise AsyncRequiredError(
                    "a `with` block of the scope ended inside a running event loop and some "
                    "services have async shutdown hooks; use `async with` there"
                    if called == "with"
                    else "shutdown() was called inside a running event loop and some "
                    "services have async shutdown hooks; use `await ashutdown()` there"
                )
            run(lambda: self._ashutdown(failure), "shutdown", "ashutdown")
            return
        while (running := self._enter_shutdown()) is not None:
            running.wait()  # another thread is shutting it down: wait for the end
        try:
            scopes = self._close(failure)
            failures: dict[str, Exception] = {}
            fatal: BaseException | None = None
            for scope in scopes:
                found, error = _run_sync(scope._take_step, self, "ashutdown")
                failures |= found
                fatal = fatal or error
                scope._closed_out()
        finally:
            self._leave_shutdown()
        self._conclude(failures, fatal, None)

    async def ashutdown(self) -> None:
        """:meth:`shutdown` for async code, awaiting async hooks and generator cleanups.

        Cancelling it stops it between hooks: the hooks not attempted yet stay with
        their scopes, and a later :meth:`ashutdown` runs them.
        """
        await self._ashutdown(None)

    async def _ashutdown(self, failure: BaseException | None) -> None:
        if self._close_plainly():
            return
        while (running := self._enter_shutdown()) is not None:
            await running.await_end()  # another caller is shutting it down
        cancelled: BaseException | None = None
        try:
            scopes = self._close(failure)
            failures: dict[str, Exception] = {}
            fatal: BaseException | None = None
            for scope in scopes:
                found, error, cancelled = await _run_async(scope._take_step, self)
                failures |= found
                fatal = fatal or error
                if cancelled is not None:
                    break
                scope._closed_out()
        finally:
            self._leave_shutdown()
        self._conclude(failures, fatal, cancelled)

    def _enter_shutdown(self) -> _Shutting | None:
        """Claim this scope's shutdown; the one already running, if another caller has it.

        Two shutdowns at once would run hooks side by side, out of order, and the first
        to finish would reopen the root while the other still runs hooks. A caller in
        the thread already running it (a hook shutting its own scope down) goes on.
        """
        with self._root._mutex:
            running = self._shutting
            if running is None or running.thread == threading.get_ident():
                self._shutting = _Shutting()
                return None
            return running

    def _leave_shutdown(self) -> None:
        with self._root._mutex:
            running, self._shutting = self._shutting, None
        if running is not None:
            running.end()

    def _close_plainly(self) -> bool:
        """Close a child scope with no children and no hook to run at once; whether it did.

        The common end of a request scope: what it built needs no shutdown, so there is
        nothing to order, run or report.
        """
        if self._parent is None:
            return False
        if self._services and any(s.index for s in self._services.values()):
            return False
        fast = self._fast
        for record in fast:  # compiled builds: plain factories without shutdown= only
            try:
                if callable(getattr(record[1], "shutdown", None)):
                    return False
            except Exception:
                return False
        built = len(fast)
        # acquire/release rather than `with`: this runs once per request.
        mutex = self._root._mutex
        mutex.acquire()
        try:
            if self._closed:
                return False
            # Closed before looking at the children: a child being opened without the
            # lock then either sees it or is seen here (see scope()).
            self._closed = True
            if self._children or self._scoped or self._closing or len(fast) != built:
                return False  # the general path takes it from here, closed already
            self._generation += 1
            fast.clear()
            self._instances.clear()  # a scope kept by its caller keeps nothing alive
            children = self._parent._children  # _leave(), inlined
            key = self._number or self.name
            if children.get(key) is self:
                del children[key]
        finally:
            mutex.release()
        return True

    def _has_async_hooks(self) -> bool:
        with self._root._mutex:
            scopes = self._subtree()
            pending = [step for scope in scopes for step in scope._closing]
        if any(inspect.iscoroutinefunction(step.hook()) for step in pending):
            return True
        return any(_has_async_hook(scope, scope._built()) for scope in scopes)

    def _subtree(self, close: bool = False) -> list[Scope]:
        """This scope's subtree in shutdown order: children deepest first, then itself.

        ``close=True`` marks each scope closed before listing its children, as a child
        opened without the lock relies on (see scope()).
        """
        if close:
            self._closed = True
        order: list[Scope] = []
        for child in reversed(list(self._children.values())):
            order += child._subtree(close)
        order.append(self)
        return order

    def _close(self, failure: BaseException | None) -> list[Scope]:
        """Close the subtree and take its built services out, ready to shut down.

        Builds still in flight see the scope closed when they land: they shut their
        instance down and raise :class:`~di.ScopeClosedError`.
        """
        with self._root._mutex:
            scopes = self._subtree(close=True)
            for scope in scopes:
                scope._materialize()
                scope._generation += 1
                built = sorted(
                    {s for s in (*scope._services.values(), *scope._scoped.values()) if s.index},
                    key=lambda s: s.index,
                    reverse=True,
                )
                scope._closing = [*scope._closing, *scope._take_out(built, self, failure)]
                if scope._parent is not None:
                    scope._instances.clear()  # its context's values (a child never reopens)
                scope._forget_builders()
            return scopes

    def _take_out(
        self,
        services: Iterable[Service],
        shutting: Scope | None = None,
        failure: BaseException | None = None,
    ) -> list[_Step]:
        """Drop built instances from the scope (the caller holds the mutex)."""
        steps = []
        where = ""
        if shutting is not None and shutting is not self:
            names = [self.name]
            for ancestor in self.ancestors():
                if ancestor is shutting:
                    break
                names.append(ancestor.name)
            where = "/".join(reversed(names))
        for service in services:
            key = f"{service.label} (scope {where!r})" if where else service.label
            instance = self._instances.pop(service.key)
            for other in service.keys[1:]:
                self._instances.pop(other, None)
            steps.append(_Step(service, instance, key, failure))
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
            else:
                self._leave()

    def _leave(self) -> None:
        """Leave the parent's children, if still there (the caller holds the mutex)."""
        parent = self._parent
        if parent is not None:
            key = self._number or self.name
            if parent._children.get(key) is self:
                del parent._children[key]

    def _forget_builders(self) -> None:
        """Drop compiled transient builders here and below, after the providers change.

        The caller holds the root's mutex.
        """
        self._version += 1
        self._plan = None
        if self._compiled:
            # The COMPILED markers stay in the instances (a compiled builder may be
            # replacing one with its instance in another thread right now): each is
            # sent to the full path of invoke instead.
            self._compiled = {key: _Again(key) for key in self._compiled}
        for child in list(self._children.values()):
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
                group = ShutdownError(self.name, failures)
                logger.error("%s", group, exc_info=group)
                first.add_note(str(group))
            raise first
        if failures:
            raise ShutdownError(self.name, failures)

    def __enter__(self) -> Scope:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._close_plainly():
            return
        # The block's failure (any exception, cancellation and KeyboardInterrupt too) is
        # thrown into generator factories at their yield, so that a rollback there runs,
        # as with contextlib: partial work is never committed.
        self._shutdown(error, "with")

    async def __aenter__(self) -> Scope:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._close_plainly():
            return
        # Run to the end even if the block is cancelled, so it still releases what it
        # built (each hook within the shutdown timeout); the cancellation follows.
        await to_completion(lambda: self._ashutdown(error))


class _Again:
    """Stands in ``Scope._compiled`` for a builder dropped after a provider changed."""

    __slots__ = ("key",)

    def __init__(self, key: Key) -> None:
        self.key = key

    def __call__(self, scope: Scope) -> Any:
        return scope._invoke(self.key, None)


def _note_start(error: Exception, scope: Scope, key: Key) -> None:
    """Name the eager service whose start ``error`` failed, in a note on it."""
    error.add_note(f"while starting eager service {describe(key)!r} of scope {scope.name!r}")


def hook_of(
    service: Service,
    instance: Any,
    teardown: Teardown | None,
    failure: BaseException | None,
) -> Callable[[], Any] | None:
    """The zero-argument shutdown hook of a built instance, if it has one."""
    if teardown is not None:
        return functools.partial(teardown, failure)
    if service.shutdown_hook is not None:
        hook = service.shutdown_hook
        if inspect.iscoroutinefunction(hook):

            async def call_async() -> Any:
                return await hook(instance)

            return call_async
        return lambda: hook(instance)
    try:
        method = getattr(instance, "shutdown", None)
    except Exception as error:  # a proxy whose attribute lookup fails: its hook fails
        failure_of_lookup = error

        def broken() -> None:
            raise failure_of_lookup

        return broken
    return method if callable(method) else None


def _has_async_hook(scope: Scope, services: list[Service]) -> bool:
    for service in services:
        instance = scope._instances.get(service.key, MISSING)
        if instance is not MISSING and instance is not COMPILED:
            hook = hook_of(service, instance, service.teardown, None)
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

        scope._root._health.threads.submit(job)
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
            if cancelled_from_outside(baseline):
                await anyio.lowlevel.checkpoint()  # stop between hooks: raises it
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
    """Run one hook to its end (or its timeout): a cancellation waits until it is done."""
    await to_completion(lambda: _call_bounded(step, seconds, scope))


async def _call_bounded(step: _Step, seconds: float | None, scope: Scope) -> None:
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

    scope._root._health.threads.submit(job)
    await done.wait()
    ok, result = outcome[0]
    if not ok:
        raise result
    return result


# A parameter annotated Scope (or Injector, a Scope) receives the invoking scope.
Scope._scope_types = (Scope,)


def _no_factory() -> Any:
    """Stands in as the factory of a context key: its value comes from scope(context=...)."""
    raise AssertionError("a context key is never built")


def _keys(provides: Keys, where: str, name: str | None) -> tuple[Any, ...]:
    """The keys a provides= argument names; () when it is None."""
    if provides is None:
        return ()
    keys = provides if isinstance(provides, tuple) else (provides,)
    if not keys:
        raise ValueError(f"{where}(provides=()): name at least one key")
    if name is not None:
        raise TypeError(
            f"{where}(name={name!r}, provides=...): pass one or the other; a name can be "
            f"one of the keys: provides=(..., {name!r})"
        )
    for key in keys:
        if isinstance(key, str):
            _check_name(key, f"{where}()")
        elif key is None:
            raise TypeError(f"{where}(provides=...): None is not a key")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{where}(provides={provides!r}): a key is listed twice")
    return keys


def _check_binding(service: Service, where: str) -> None:
    """Refuse a class bound to an interface it does not implement, where Python can tell."""
    built = service.expected
    if not isinstance(built, type):
        return
    for key in service.keys:
        if key is built or not isinstance(key, type):
            continue
        try:
            ok = issubclass(built, key)
        except TypeError:
            continue  # a Protocol that is not runtime-checkable: checked when built, if it can be
        if not ok:
            raise TypeError(
                f"{where}({label(service.factory)}, provides={describe(key)}): "
                f"{describe(built)} is not a {describe(key)}"
            )


def _discard_unused(service: Service, instance: Any) -> None:
    """Shut down an instance built but never handed out (a lost race, a closed scope)."""
    hook = hook_of(service, instance, None, None)
    if hook is None:
        return
    result = hook()
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()  # an async hook cannot be awaited here; it never ran
