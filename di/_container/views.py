"""The container as the layers above may read it: named functions, no private reaches.

The health engine, the monitor, the metrics collector and the integrations look at a
scope only through these: what is built and visible from it (:func:`built`), which
service a key reaches (:func:`lookup`, :func:`find`), and declaring the keys a
framework puts in each request scope's context (:func:`declare_context`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DIError
from . import registry
from .keys import Key, describe
from .service import COMPILED, MISSING, Lifetime, Service

if TYPE_CHECKING:
    from .._health.settings import HealthSettings
    from ..scope import Scope


# One built service as a scope sees it: the name of the scope holding the instance,
# its record, its instance. A plain tuple: a health check makes one per service.
Built = tuple[str, Service, Any]


def built(scope: Scope) -> list[Built]:
    """Every built service visible from ``scope``, each once, in no particular order.

    A key is taken from the nearest scope that provides it, so an ancestor's service
    shadowed by a child is left out; a service bound to several keys appears once.
    Transients (never cached) and services not built yet are left out.
    """
    found: list[Built] = []
    seen: set[Any] = set()
    services: set[Service] = set()
    for owner, entries in registry.lineage(scope):
        instances = owner._instances
        name = owner.name
        for key, service in entries:
            if key in seen:
                continue
            seen.add(key)
            if service in services:
                continue
            services.add(service)
            instance = instances.get(key, MISSING)
            if not service.index or instance is MISSING or instance is COMPILED:
                continue
            found.append((name, service, instance))
    return found


def instance_of(service: Service) -> Any:
    """The built instance of ``service`` in its scope; MISSING when it has none."""
    instance = service.owner._instances.get(service.key, MISSING)
    if not service.index or instance is COMPILED:
        return MISSING
    return instance


def lookup(scope: Scope, key: Key) -> Service | None:
    """The service ``key`` reaches from ``scope`` (nearest provider), or None."""
    return registry.lookup(scope, key)


def find(scope: Scope, key: Any, name: str | None = None) -> Service:
    """The service invoking ``key`` (or ``name``) from ``scope`` would build, building
    nothing: ``ServiceNotFoundError`` when none is in reach."""
    return registry.find(scope, key, name)[0]


def engine_settings(scope: Scope) -> HealthSettings:
    """The health engine's settings and state for ``scope``'s tree, which its root keeps."""
    settings: HealthSettings = scope.root._health
    return settings


def declare_context(scope: Scope, key: type[Any], framework: str) -> None:
    """Declare ``key`` a context key of ``scope`` (each request scope gets its value),
    unless it already is one; a service provided under that key is an error."""
    found = registry.lookup(scope, key)
    if found is None:
        scope.provide_context(key)
    elif found.lifetime is not Lifetime.CONTEXT:
        raise DIError(
            f"{found.label} is provided as a service of scope {found.owner.name!r}, but the "
            f"{framework} integration gives each request scope its own: remove that "
            f"provider, or declare it with provide_context({describe(key)})"
        )
