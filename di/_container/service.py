"""A provided service: its record, its lifetime, and the markers a scope's caches hold.

A scope keeps each service it provides as a :class:`Service` (one per provide call;
bound keys share it), and each built instance in ``Scope._instances`` by key, where
``COMPILED`` marks a key whose compiled builder is in ``Scope._compiled``.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from ..health import HealthPolicy
from .keys import check_name, describe, unalias
from .signature import Kind, Param, kind_of, label, provided_type, read_params

if TYPE_CHECKING:
    from ..scope import Scope
    from .resolve import _Flight

MISSING: Final[Any] = object()
# A read-only empty mapping (and tuple) standing in for a scope's unwritten containers:
# each write site makes the container the scope's own first.
BLANK: Final[Any] = MappingProxyType({})
BLANK_LIST: Final[Any] = ()
_EMPTY = inspect.Parameter.empty
# What provides= takes: a key (a type or a name), a tuple of keys, or None.
Keys = Any | tuple[Any, ...] | None
# Stands in Scope._instances for a service not built there, whose compiled builder is
# in Scope._compiled: every transient, and in a request scope each scoped service.
COMPILED: Final[Any] = object()


class Landed(enum.Enum):
    """What became of a finished build: cached, or not and why."""

    KEPT = "kept"
    CLOSED = "closed"  # its scope began shutting down meanwhile
    REPLACED = "replaced"  # an override swapped the service out meanwhile
    BEATEN = "beaten"  # a compiled builder in the scope's own thread cached one first


# What runs the code after a generator factory's yield, given the block's failure.
Teardown = Callable[[BaseException | None], Any]


class Lifetime(enum.Enum):
    """How long a built instance is kept."""

    LAZY = "lazy"
    VALUE = "value"
    TRANSIENT = "transient"
    SCOPED = "scoped"  # one per scope that invokes it
    CONTEXT = "context"  # a value each scope receives through scope(context=...)
    COLLECTION = "collection"  # list[T]: every service collected under T, never cached


class Member:
    """The key of one service collected under an interface (``provide(..., collect=True)``).

    Each collected service is a service of its own, keyed by one of these, which no
    caller holds: it is reached through its collection, ``list[interface]``. It reads
    as ``app.Plugin[app.EmailPlugin]``, in reports and health checks alike.
    """

    __slots__ = ("interface", "label")

    def __init__(self, interface: Any, label: str) -> None:
        self.interface = interface
        self.label = label

    def __repr__(self) -> str:
        return self.label


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
        "keys",
        "kind",
        "label",
        "lifetime",
        "members",
        "needs",
        "owner",
        "params",
        "policy",
        "probe",
        "shutdown_hook",
        "tags",
        "teardown",
        "template",
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
        self.key = key  # the first of keys: what messages and reports name it by
        self.keys: tuple[Any, ...] = (key,)
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
        self.teardown: Teardown | None = None
        self.flight: _Flight | None = None
        # For a scoped service's copy in the scope that built it: its declaration.
        self.template: Service | None = None
        # The health check of the built instance: (call, is_async), NO_CHECK, or None
        # when not worked out yet. Reset when the instance is released.
        self.probe: Any = None
        self.critical = True  # False: a failing check degrades, see provide(critical=)
        self.build_seconds = 0.0  # how long its latest build took, dependencies included
        # For a collection (list[T]): the services collected under T in its scope, in
        # provide order.
        self.members: list[Service] = []
        # What its latest build needed: the services its factory's parameters reached
        # (recorded as it is built; read for the ``blocked_by`` of health results).
        self.needs: list[Service] = []
        self.policy: HealthPolicy | None = None  # see provide(health_policy=)
        self.tags: frozenset[str] = frozenset()  # see provide(tags=)

    def __repr__(self) -> str:
        return f"<service {self.label!r} ({self.lifetime.value}) in scope {self.owner.name!r}>"

    def rebound(self, keys: tuple[Any, ...]) -> Service:
        """This service, unbuilt, bound to ``keys`` only (the rest were overridden)."""
        return self._like(self.owner, self.lifetime, keys)

    def copy_for(self, scope: Scope) -> Service:
        """This scoped declaration's own copy in ``scope``, which builds and caches it."""
        copy = self._like(scope, Lifetime.SCOPED, self.keys)
        copy.template = self
        return copy

    def _like(self, owner: Scope, lifetime: Lifetime, keys: tuple[Any, ...]) -> Service:
        """An unbuilt service with this one's factory and hooks."""
        like = Service(
            key=keys[0],
            label=describe(keys[0]),
            lifetime=lifetime,
            owner=owner,
            factory=self.factory,
            kind=self.kind,
            expected=self.expected,
            params=self.params,
            shutdown_hook=self.shutdown_hook,
            check=self.check,
        )
        like.keys = keys
        like.critical = self.critical
        like.policy = self.policy
        like.tags = self.tags
        return like


# -- making a service from what a provide call was given ---------------------------------------

_WHERE = {
    Lifetime.LAZY: "provide",
    Lifetime.SCOPED: "provide_scoped",
    Lifetime.TRANSIENT: "provide_transient",
}


def from_factory(
    owner: Scope,
    factory: Callable[..., Any],
    lifetime: Lifetime,
    name: str | None,
    provides: Keys,
    shutdown: Callable[[Any], Any] | None,
    health_check: Callable[[Any], Any] | None,
    *,
    value: object = MISSING,
    where: str = "",
    scope_types: tuple[type, ...] = (),
) -> Service:
    """The service a ``provide*``/``override*`` call describes, its arguments checked.

    ``where`` names the call in error messages; ``scope_types`` are the parameter
    annotations that receive the invoking scope.
    """
    where = where or _WHERE.get(lifetime, "provide")
    if not callable(factory):
        raise TypeError(f"{where}(): the factory must be callable, got {factory!r}")
    for argument, hook in (("shutdown", shutdown), ("health_check", health_check)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{where}(): {argument}= must be callable, got {hook!r}")
    if name is not None:
        check_name(name, f"{where}()")
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
        params = read_params(factory, scope_types)
    keys = keys_of(provides, where, name)
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
        owner=owner,
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


def from_value(
    owner: Scope,
    value: object,
    where: str,
    name: str | None,
    provides: Keys,
    shutdown: Callable[[Any], Any] | None,
    health_check: Callable[[Any], Any] | None,
) -> Service:
    """The service of an instance already built (``provide_value``, ``override_value``)."""
    if isinstance(value, type) and name is None and provides is None:
        raise TypeError(
            f"{where}({value.__qualname__}): that is a class, not an instance; "
            f"provide(...) builds a service from its class: provide({value.__qualname__})"
        )
    return from_factory(
        owner,
        lambda: value,
        Lifetime.VALUE,
        name,
        provides,
        shutdown,
        health_check,
        value=value,
        where=where,
    )


def context_key(owner: Scope, key: Any, name: str | None) -> Service:
    """The declaration of a context key (``provide_context``)."""
    if name is not None:
        check_name(name, "provide_context()")
    elif isinstance(key, str) or key is None:
        raise TypeError(
            f"provide_context({key!r}): pass the type of the value, and name= to key it "
            "by a name: provide_context(str, name='tenant')"
        )
    return Service(
        key=name if name is not None else key,
        label=describe(name if name is not None else key),
        lifetime=Lifetime.CONTEXT,
        owner=owner,
        factory=_no_factory,
        kind=Kind.PLAIN,
        expected=key,
        params=[],
        shutdown_hook=None,
        check=None,
    )


def _no_factory() -> Any:
    """Stands in as the factory of a context key: its value comes from scope(context=...)."""
    raise AssertionError("a context key is never built")


def keys_of(provides: Keys, where: str, name: str | None) -> tuple[Any, ...]:
    """The keys a provides= argument names; () when it is None."""
    if provides is None:
        return ()
    keys = provides if isinstance(provides, tuple) else (provides,)
    if not keys:
        raise ValueError(f"{where}(provides=()): name at least one key")
    keys = tuple(unalias(key) for key in keys)
    if name is not None:
        raise TypeError(
            f"{where}(name={name!r}, provides=...): pass one or the other; a name can be "
            f"one of the keys: provides=(..., {name!r})"
        )
    for key in keys:
        if isinstance(key, str):
            check_name(key, f"{where}()")
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


def set_health_options(
    service: Service, where: str, critical: bool, policy: object, tags: object
) -> None:
    """Give ``service`` the ``critical=``, ``health_policy=`` and ``tags=`` of a
    ``provide*`` call, refusing what they cannot be."""
    if policy is not None and not isinstance(policy, HealthPolicy):
        raise TypeError(
            f"{where}({service.label}, health_policy=...) takes a di.HealthPolicy, such as "
            f"health_policy=di.HealthPolicy(failure_threshold=3); got {policy!r}"
        )
    if isinstance(tags, str) or not isinstance(tags, tuple | list | set | frozenset):
        raise TypeError(
            f"{where}({service.label}, tags=...) takes a sequence of tag names, such as "
            f"tags=('db', 'external'); got {tags!r}"
        )
    for tag in tags:
        if not isinstance(tag, str) or not tag or tag != tag.strip() or "," in tag:
            raise ValueError(
                f"{where}({service.label}, tags=...): each tag must be a non-empty name "
                f"without commas or surrounding spaces, such as 'db'; got {tag!r}"
            )
    service.critical = critical
    service.policy = policy
    service.tags = frozenset(tags)
