"""A provided service: its record, its lifetime, and the markers a scope's caches hold.

A scope keeps each service it provides as a :class:`Service` (one per provide call;
bound keys share it), and each built instance in ``Scope._instances`` by key, where
``COMPILED`` marks a key whose compiled builder is in ``Scope._compiled``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .keys import describe
from .signature import Kind, Param

if TYPE_CHECKING:
    from ..scope import Scope
    from .resolve import _Flight

MISSING: Final[Any] = object()
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
        "owner",
        "params",
        "probe",
        "shutdown_hook",
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
        return like
