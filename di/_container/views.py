"""The container as the layers above may read it: named functions, no private reaches.

The health engine, the monitor, the metrics collector and the integrations look at a
scope only through these: what is built and visible from it (:func:`built`), what has
a health check and is not built (:func:`unbuilt_checks`), which service a key reaches
(:func:`lookup`, :func:`find`, :func:`service_labels`), which have a tag
(:func:`tagged`, :func:`tags`), what each service needs (:func:`dependencies`, for the
status page's graph), and declaring the keys a
framework puts in each request scope's context (:func:`declare_context`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_origin

from ..errors import DIError
from . import registry
from .keys import Key, describe
from .service import COMPILED, MISSING, Lifetime, Service

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .._health.settings import HealthSettings
    from ..scope import Scope


# One built service as a scope sees it: the name of the scope holding the instance,
# its record, its instance. A plain tuple: a health check makes one per service.
Built = tuple[str, Service, Any]


def built(scope: Scope) -> Iterator[Built]:
    """Every built service visible from ``scope``, each once, in no particular order.

    A key is taken from the nearest scope that provides it, so an ancestor's service
    shadowed by a child is left out; a service bound to several keys appears once.
    Transients (never cached) and services not built yet are left out.

    A generator: each triple is gone once read, so a health check of 10,000 services
    leaves no 10,000 tuples for the garbage collector to walk while the checks run.
    """
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
            yield name, service, instance


def unbuilt_checks(scope: Scope) -> list[Service]:
    """Every lazy singleton visible from ``scope`` that has a health check but is not
    built (so no health check sees it), each once, nearest provider first.

    A service has a health check when it was provided with ``health_check=``, or when
    the type its factory declares (the class itself, or the return annotation) defines
    a callable ``health_check``: before it is built, that is what it will be.
    """
    found: list[Service] = []
    seen: set[Any] = set()
    services: set[Service] = set()
    for owner, entries in registry.lineage(scope):
        instances = owner._instances
        for key, service in entries:
            if key in seen:
                continue
            seen.add(key)
            if service in services or service.lifetime is not Lifetime.LAZY:
                continue
            services.add(service)
            if service.index and instances.get(key, MISSING) is not MISSING:
                continue  # built
            if has_check(service):
                found.append(service)
    return found


def has_check(service: Service) -> bool:
    """Whether ``service`` has a health check, judged without building it."""
    if service.check is not None:
        return True
    provided = service.expected
    provided = get_origin(provided) or provided  # Pool[int] is a Pool
    if not isinstance(provided, type):
        return False
    try:
        return callable(getattr(provided, "health_check", None))
    except Exception:  # a class whose attribute lookup fails: it cannot be told
        return False


def tagged(scope: Scope, tag: str) -> list[Service]:
    """Every service visible from ``scope`` provided with ``tag``, nearest provider
    first, each once (``provide(..., tags=...)``)."""
    found: list[Service] = []
    seen: set[Any] = set()
    for _, entries in registry.lineage(scope):
        for key, service in entries:
            if key in seen:
                continue
            seen.add(key)
            if tag in service.tags and service not in found:
                found.append(service)
    return found


def tags(scope: Scope) -> dict[str, frozenset[str]]:
    """The tags of every service visible from ``scope`` that has some, by label."""
    found: dict[str, frozenset[str]] = {}
    seen: set[Any] = set()
    for _, entries in registry.lineage(scope):
        for key, service in entries:
            if key in seen:
                continue
            seen.add(key)
            if service.tags:
                found.setdefault(service.label, service.tags)
    return found


def service_labels(scope: Scope) -> set[str]:
    """The label (the name the monitor knows it by) of every service visible from ``scope``."""
    return {service.label for _, entries in registry.lineage(scope) for _, service in entries}


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


def dependencies(scope: Scope) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each service visible from ``scope``: ``(label, kind, labels of what it needs)``."""
    from . import graph

    return graph.dependencies(scope)
