"""Scopes: where services are provided, invoked, and shut down.

:class:`Scope` is the container's public face. It keeps the tree (parent, children,
the root's lock), the registry (``provide*``, ``override*``) and the paths callers
take every time (``invoke``, ``ainvoke``, ``scope()``: their fast paths here, the rest
in ``request``); the rest is in :mod:`di._container`: resolution and flights
(``resolve``), the request path (``request``), compiled builders (``compile``),
shutdown (``shutdown``), lifecycle hooks (``hooks``), overrides that restore
(``overrides``), ``@inject`` (``injection``) and the graph (``graph``), each a module of
functions taking the scope. Health checks are the engine's (:mod:`di._health`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from typing_extensions import TypeForm

from . import _health
from ._container import graph as _graph
from ._container import registry
from ._container import shutdown as _shutdown
from ._container.hooks import Listeners
from ._container.hooks import add as add_hook
from ._container.hooks import check as check_hook
from ._container.hooks import remove as remove_hook
from ._container.injection import Injected, decorate
from ._container.inline import arun_inline, run_inline, take
from ._container.keys import Key, check_name, describe
from ._container.overrides import Overriding, overriding
from ._container.request import (
    Again,
    Awaited,
    Plan,
    adopt,
    check_context,
    close_plainly,
    make_plan,
    name_anonymous,
)
from ._container.request import ainvoke as ainvoke_general
from ._container.request import invoke as invoke_general
from ._container.resolve import resolve_sync
from ._container.runner import run_blocking, to_completion
from ._container.service import (
    BLANK,
    BLANK_LIST,
    COMPILED,
    MISSING,
    Keys,
    Lifetime,
    Service,
    context_key,
    from_factory,
    from_value,
    set_health_options,
)
from ._container.shutdown import (
    PendingHook,
    Shutting,
)
from ._container.signature import Kind
from .errors import (
    ScopeClosedError,
)
from .health import HealthPolicy, HealthReport
from .lifecycle import EventName, HookEvent, ShutdownReport

if TYPE_CHECKING:
    from ._container.hooks import Hook
    from .injector import Injector

T = TypeVar("T")
R = TypeVar("R")
_get_ident = threading.get_ident
_new = object.__new__
# Whether the GIL makes single dict and attribute operations atomic and ordered, as the
# lock-free opening of a request scope relies on; without it, scope() takes the lock.
_GIL: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


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
        "_borrowed",
        "_children",
        "_closed",
        "_closing",
        "_compiled",
        "_eager",
        "_fast",
        "_generation",
        "_hooks",
        "_injected",
        "_instances",
        "_labels",
        "_listeners",
        "_name",
        "_number",
        "_overrides",
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
    _hooks: dict[str, tuple[Hook, ...]]
    _borrowed: list[Key]  # ancestors' singletons kept in _instances (request.borrow)
    _overrides: dict[Key, list[Overriding]]
    _injected: list[Injected]
    # Parameter annotations that receive the invoking scope rather than a service.
    _scope_types: tuple[type, ...] = ()

    def __init__(
        self,
        name: str | None,
        parent: Scope,
        number: int = 0,
        instances: dict[Key, Any] | None = None,
        compiled: dict[Key, Callable[[Scope], Any]] = BLANK,
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
        # Containers most request scopes never write start as the shared BLANK, which
        # refuses writes: each write site makes the scope its own first (_own).
        self._services: dict[Key, Service] = BLANK
        # The fast path of invoke: every built singleton of this scope, by key, and
        # COMPILED for each transient with a compiled builder in _compiled.
        self._instances: dict[Key, Any] = {} if instances is None else instances
        self._compiled = compiled
        self._children: dict[str | int, Scope] = BLANK  # by name, or number
        # Shutdown: closed once it begins (for good, but for the root); the services
        # taken out and not shut down yet; how many shutdowns began.
        self._closed = False
        self._closing: list[PendingHook] = BLANK_LIST
        self._generation = 0
        # Keys provided with eager=True, in provide order: what start() builds.
        self._eager: dict[Key, None] = BLANK
        # Scoped services declared above and built here: each declaration's copy, and
        # (declaration, instance, index) of those a compiled builder made, copied on need.
        self._scoped: dict[Service, Service] = BLANK
        self._fast: list[tuple[Service, Any, int, Any]] = []
        # What its request scopes share until a provider changes here or above.
        self._plan: Plan | None = None
        # Bumped when a provider changes here or above, or a built instance is dropped:
        # what was compiled against this scope's view is stale then.
        self._version = 0
        self._thread = _get_ident()  # the thread that opened it
        self._labels: set[str] = BLANK  # the reported names of the type keys provided here
        self._shutting: Shutting | None = None  # a shutdown running its hooks now
        # Each event's hooks, here and above (see hooks.py); its own hooks (_hooks), active
        # overrides (_overrides) and @inject functions (_injected) are set on first use.
        self._listeners: Listeners = parent._listeners

    def _lock(self) -> threading.RLock:
        """The tree's lock, kept by its root: the structure changes under it."""
        return self._root._mutex  # noqa: SLF001 - the tree's lock lives on its root

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- introspection ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The scope's name, unique among its siblings.

        An anonymous scope is named ``"<parent's name>.<n>"`` when first asked.
        """
        name = self._name
        return name if name is not None else name_anonymous(self)

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
            scope = scope._parent  # noqa: SLF001 - a scope walks up its ancestors
        return found

    def children(self) -> list[Scope]:
        """The child scopes, in the order they were made."""
        with self._lock():
            return list(self._children.values())

    def list_provided(self) -> list[str]:
        """The keys this scope provides (not its ancestors'), in the order provided."""
        with self._lock():
            return [describe(key) for key in self._services]

    def list_invoked(self) -> list[str]:
        """The keys of this scope's built services, in invocation order."""
        return [s.label for s in registry.built_services(self)]

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
            check_name(name, "scope()")
        plan = self._plan
        if plan is None:
            plan = make_plan(self)
        # Read the builders with the markers: a key gets its builder before its marker.
        template, compiled = plan.template, plan.builders
        if context is not None:
            if type(context) is not dict or not plan.accepted.issuperset(context):
                check_context(self, context)
            # The values live with the instances: by their keys, which nothing else
            # here can use (those keys resolve to a context declaration, see
            # _context_value).
            instances = {**template, **context}
        else:
            instances = template.copy()
        key: str | int
        if name is None:
            key = number = next(root._scope_numbers)  # noqa: SLF001 - the tree's counters live on its root
        else:
            key, number = name, 0
        child = _new(Scope)  # no __init__: its argument check is for callers outside
        child._fill(name, self, number, instances, compiled)  # noqa: SLF001 - a scope fills the child it made
        if name is None and _GIL:
            children = self._children
            if children is not BLANK and not self._closed:
                # Published without the lock, by one atomic store. A shutdown marks a
                # scope closed before it lists the children, and a provider change bumps
                # the version before it visits them: if neither shows yet, either will
                # find this child.
                children[key] = child
                if not self._closed and plan.version == self._version:
                    return child
        adopt(self, child, name, key, plan)
        return child

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
        collect: bool = False,
        health_policy: HealthPolicy | None = None,
        tags: Sequence[str] = (),
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
        ``health_policy``: how its check is run and read (:class:`~di.HealthPolicy`);
        ``tags`` name it for selection (``"tag:db"`` groups, ``/health?tag=db``).

        ``provides=`` binds the service to an interface instead of its own type: a key,
        or a tuple of keys that all reach the one instance (checked and shut down once).
        ``collect=True`` (any ``provide*``) adds it to the collection of each key
        instead: ``invoke(list[Plugin])``, or a ``list[Plugin]`` parameter, gets every
        service collected under ``Plugin``, in provide order (an ancestor's first),
        each a service of its own, checked and shut down on its own.

        >>> def new_cache(config: Config) -> Cache:
        ...     return Cache(config.cache_url)
        >>> injector.provide(new_cache)
        >>> injector.provide(SmtpMailer, provides=Mailer)
        """
        service = self._service(factory, Lifetime.LAZY, name, provides, shutdown, health_check)
        _register(self, service, collect, name, "provide", critical, health_policy, tags, eager)

    def provide_value(
        self,
        value: object,
        *,
        name: str | None = None,
        provides: Keys = None,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
        critical: bool = True,
        collect: bool = False,
        health_policy: HealthPolicy | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        """Provide an instance that is already built, keyed by its type or ``name``.

        It counts as built (and gets its invocation index) now. ``critical``,
        ``collect``, ``health_policy`` and ``tags`` are as in :meth:`provide`.
        """
        service = from_value(self, value, "provide_value", name, provides, shutdown, health_check)
        _register(self, service, collect, name, "provide_value", critical, health_policy, tags)
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
        collect: bool = False,
        health_policy: HealthPolicy | None = None,
        tags: Sequence[str] = (),
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
        _register(self, service, collect, name, "provide_scoped", critical, health_policy, tags)

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
        service = context_key(self, key, name)
        registry.add(self, service, "provide_context")

    def provide_transient(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        provides: Keys = None,
        collect: bool = False,
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
        _register(self, service, collect, name, "provide_transient")

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
        registry.keep_lifetime(self, service)
        registry.override(self, service, "override", "aoverride")

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
        registry.keep_lifetime(self, service)
        await registry.aoverride(self, service, "aoverride")

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
        service = from_value(self, value, "override_value", name, provides, shutdown, health_check)
        registry.keep_criticality(self, service)
        registry.override(self, service, "override_value", "aoverride_value")
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
        service = from_value(self, value, "aoverride_value", name, provides, shutdown, health_check)
        registry.keep_criticality(self, service)
        await registry.aoverride(self, service, "aoverride_value")
        resolve_sync(service, self)

    def overridden(
        self,
        key: TypeForm[T] | str,
        factory: Callable[..., T] | None = None,
        *,
        value: T = MISSING,
        shutdown: Callable[[Any], Any] | None = None,
        health_check: Callable[[Any], Any] | None = None,
    ) -> Overriding:
        """Replace ``key`` for the length of a ``with`` (or ``async with``) block: tests.

        ``overridden(Key, Factory)`` or ``overridden(Key, value=obj)``. Inside, ``key``
        resolves to the replacement here and in descendants; on leaving, the provider
        it replaced and its built instance, if any, come back untouched, and the
        replacement is shut down if it was built (a value counts as built). Overrides
        nest and unwind in order, from any thread or task. Services built meanwhile
        from the replacement keep it.

        >>> with injector.overridden(Mailer, value=fake_mailer):
        ...     injector.invoke(Mailer) is fake_mailer
        True
        """
        return overriding(self, key, factory, value, shutdown, health_check)

    def _service(
        self,
        factory: Callable[..., Any],
        lifetime: Lifetime,
        name: str | None,
        provides: Keys,
        shutdown: Callable[[Any], Any] | None,
        health_check: Callable[[Any], Any] | None,
    ) -> Service:
        return from_factory(
            self,
            factory,
            lifetime,
            name,
            provides,
            shutdown,
            health_check,
            scope_types=self._scope_types,
        )

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
        """:meth:`invoke` past its fast path (see :func:`~di._container.request.invoke`)."""
        return invoke_general(self, service, name)

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
                # A stale builder's stand-in, or built from another thread: the full path.
                if self._thread and (kind := type(compiled)) is not Again:
                    if kind is Awaited:
                        return await compiled.build(self)  # type: ignore[attr-defined]
                    return compiled(self)
            elif instance is not MISSING:
                return instance
        return await ainvoke_general(self, service, name)

    def inject(self, func: Callable[..., R]) -> Callable[..., R]:
        """Decorate ``func`` to fill its :data:`~di.Inject` parameters at each call.

        Each call runs in a child scope of its own (scoped services work, generator
        factories see the call's exception), closed when it returns; sync or ``async
        def`` functions and generators alike. Other parameters pass through, and an
        argument passed for an injected one wins. :meth:`validate` and :meth:`start`
        check the keys of the functions decorated before them.

        >>> @injector.inject
        ... def main(db: Inject[Database], verbose: bool = False) -> None: ...
        >>> main(verbose=True)
        """
        return decorate(self, func)

    # -- lifecycle hooks ----------------------------------------------------------

    def add_hook(self, event: EventName, fn: Callable[[HookEvent], object]) -> None:
        """Call ``fn(HookEvent)`` on each ``event`` here or in a descendant scope.

        Events: ``"provided"``, ``"building"``, ``"built"``, ``"build_failed"``,
        ``"shutting_down"``, ``"shut_down"`` (see :class:`~di.HookEvent`). Hooks run in
        the thread or task doing the work, in the order added (an ancestor's first);
        one that raises is logged and changes nothing. Paths no hook listens to cost
        what they cost without hooks.
        """
        add_hook(self, check_hook(event, fn, "add_hook"), fn)

    def remove_hook(self, event: EventName, fn: Callable[[HookEvent], object]) -> None:
        """Remove a hook added with :meth:`add_hook`; ``ValueError`` if it was not."""
        remove_hook(self, check_hook(event, fn, "remove_hook"), fn)

    # -- the graph ----------------------------------------------------------------

    def validate(self) -> None:
        """Check the whole graph visible from this scope, building nothing.

        Raises one :class:`~di.GraphError` listing every problem: a missing dependency
        (which service needs what), a cycle (its path), a captive dependency (a
        singleton that needs a scoped or context service, directly or through
        transients), a key that a function decorated with :meth:`inject` asks for and
        nothing provides. Dependencies are looked up as invoking would: a singleton's from
        the scope that provides it, a scoped or transient service's from this scope.
        """
        _graph.validate(self)

    def explain(self, service: TypeForm[Any] | str, name: str | None = None) -> str:
        """The dependency tree of a service, then what needs it (its dependents, and the
        ``@inject`` functions asking for it): each node's lifetime, scope, and state.

        >>> print(request.explain(Database))
        app.Database (eager, provided by 'root', built)
        └── app.Settings (value, provided by 'root', built)
        needed by:
        └── app.Handler (scoped, provided by 'root', not built here)
        """
        found, _ = registry.find(self, service, name)
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
        registry.build_eager(self)

    async def astart(self) -> None:
        """:meth:`start` for async code: awaits async factories."""
        self.validate()
        await registry.abuild_eager(self)

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
        return run_blocking(self.ahealth_check, "health_check", "ahealth_check")

    async def ahealth_check(self) -> dict[str, Exception | None]:
        """:meth:`health_check` for async code (asyncio or trio)."""
        return (await self.ahealth_report()).as_map()

    def health_report(self) -> HealthReport:
        """:meth:`health_check` with each check's outcome, scope, start and duration."""
        return run_blocking(self.ahealth_report, "health_report", "ahealth_report")

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
        return run_blocking(
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
        found, _ = registry.find(self, service, name)
        return await _health.check_one(self, found)

    # -- shutting down ------------------------------------------------------------

    def shutdown(self) -> ShutdownReport:
        """Shut down child scopes (deepest first), then this scope's built services.

        Services go in reverse invocation order, so each is shut down before what it
        depends on. Every hook is attempted, once, whatever the others raise: failures
        are raised together afterwards as :class:`~di.ShutdownError`, and a
        ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``) is re-raised after every
        hook was attempted. Each hook gets at most ``shutdown_timeout`` seconds; sync
        hooks then run in a worker thread, and one that overruns is abandoned and
        reported as :class:`~di.ShutdownTimeoutError`. Returns the
        :class:`~di.ShutdownReport` (a ``ShutdownError`` carries it as ``.report``):
        each service shut down, in order, its outcome and duration.

        Built instances are dropped: the root injector builds anew on a later invoke,
        while a child scope is closed for good (invoking it raises
        :class:`~di.ScopeClosedError`) and leaves its parent. Async hooks need an event
        loop: from plain code one is run for them; inside a running loop use
        :meth:`ashutdown`.
        """
        if not self._fast and close_plainly(self):
            return ShutdownReport(self.name)
        return _shutdown.shutdown(self, None)

    async def ashutdown(self) -> ShutdownReport:
        """:meth:`shutdown` for async code, awaiting async hooks and generator cleanups.

        Cancelling it stops it between hooks: the hooks not attempted yet stay with
        their scopes, and a later :meth:`ashutdown` runs them.
        """
        if not self._fast and close_plainly(self):
            return ShutdownReport(self.name)
        return await _shutdown.ashutdown(self, None)

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        # The block's failure (any exception, cancellation, KeyboardInterrupt) is thrown
        # into generator factories at their yield, as contextlib does: they roll back.
        if not close_plainly(self):  # nothing to run: closed at once
            if steps := take(self, asynchronous=False):
                run_inline(self, steps, error)
            elif steps is None:
                _shutdown.shutdown(self, error, "with")

    async def __aenter__(self) -> Scope:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Runs to the end even if the block is cancelled; the cancellation follows.
        if not close_plainly(self):
            if steps := take(self, asynchronous=True):
                await arun_inline(self, steps, error)
            elif steps is None:
                await to_completion(lambda: _shutdown.ashutdown(self, error))


def _register(
    scope: Scope,
    service: Service,
    collect: bool,
    name: str | None,
    where: str,
    critical: bool = True,
    policy: object = None,
    tags: object = (),
    eager: bool = False,
) -> None:
    """Provide ``service`` in ``scope``: bound to its keys, or collected under them, with
    its health options; ``eager`` has :meth:`Scope.start` build it."""
    set_health_options(service, where, critical, policy, tags)
    if not collect:
        registry.add(scope, service, where)
    elif name is not None:
        raise TypeError(
            f"{where}(name={name!r}, collect=True): a collection gathers services by type; "
            "collect under a class or a Protocol with provides="
        )
    else:
        registry.add_member(scope, service, where)
    if eager:
        with scope._lock():  # noqa: SLF001 - the tree's lock, from the class's own module
            eager_keys = scope._eager  # noqa: SLF001 - the scope's own, from its module
            if eager_keys is BLANK:
                eager_keys = scope._eager = {}  # noqa: SLF001 - made the scope's own first
            eager_keys[service.key] = None


# A parameter annotated Scope (or Injector, a Scope) receives the invoking scope.
Scope._scope_types = (Scope,)  # noqa: SLF001 - set once the class exists
