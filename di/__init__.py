"""healthdi: dependency injection with first-class health checking.

>>> from di import Injector
>>> injector = Injector()
>>> injector.provide(Database)
>>> injector.invoke(Database)

Names load on first use, so ``di probe`` (which runs every few seconds in every
container) pays only for what it uses. ``di.__version__`` is read from the installed
package's metadata, on first use too.

The package in layers, bottom to top; each imports only from below (``make lint``
checks it):

- ``di.lifecycle``: hook events and shutdown reports, plain values;
- ``di.health``, ``di.errors``, ``di.protocols``: the values and errors every layer speaks;
- ``di._container``: declare, build, cache and tear down (keys, signatures, service
  records, the registry, resolution, the request path, compiled builders, shutdown,
  hooks, overrides, injection into functions, the graph, the one runner of threads and
  loops); other layers read it through ``views``;
- ``di._health``: the engine that runs checks (settings, one call, its workers);
  ``di.inject``: the ``Inject[T]`` marker;
- ``di.scope``, ``di.injector``: the container's public face, joining both;
- ``di.monitor``: checks in the background, one published snapshot per round;
- ``di._answers``, ``di.metrics``, then ``di.asgi``, ``di.grpc``: health on the wire;
- ``di._serving`` (the listeners, TLS and the one start/stop sequence), then
  ``di.health_server``: :class:`HealthServer`, the sidecar inside any process;
- ``di._cli`` (the ``di`` command) and ``di.integrations`` (frameworks and workers);
  beside them ``di.checks`` (ready-made checks), which imports only ``di.health``.
"""

# ``di probe`` loads this module: nothing here may cost it more than its own work. So
# TYPE_CHECKING is not typing's (type checkers know the name), and without
# ``from __future__ import annotations`` (a module to load) what only type checkers
# import is quoted in annotations; so in the modules of the probe's path.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    __version__: str
    from ._container.keys import Named
    from .errors import (
        AsyncRequiredError,
        CircularDependencyError,
        ContextNotProvidedError,
        DIError,
        GraphError,
        HealthCheckError,
        HealthCheckTimeoutError,
        NoHealthCheckError,
        ScopeClosedError,
        ScopeRequiredError,
        ServiceAlreadyProvidedError,
        ServiceNotBuiltError,
        ServiceNotFoundError,
        ShutdownError,
        ShutdownTimeoutError,
    )
    from .health import Degraded, HealthCheckResult, HealthPolicy, HealthReport, Outcome
    from .health_server import HealthServer
    from .inject import Inject
    from .injector import Injector
    from .lifecycle import HookEvent, ServiceShutdown, ShutdownReport
    from .monitor import HealthMonitor, ServingStatus
    from .protocols import (
        AsyncHealthChecker,
        AsyncShutdowner,
        HealthChecker,
        Healthchecker,
        HealthcheckerWithContext,
        Shutdowner,
    )
    from .scope import Scope

_WHERE = {
    "AsyncHealthChecker": ".protocols",
    "AsyncRequiredError": ".errors",
    "AsyncShutdowner": ".protocols",
    "CircularDependencyError": ".errors",
    "ContextNotProvidedError": ".errors",
    "GraphError": ".errors",
    "NoHealthCheckError": ".errors",
    "DIError": ".errors",
    "Degraded": ".health",
    "HealthCheckError": ".errors",
    "HealthCheckResult": ".health",
    "HealthPolicy": ".health",
    "HealthCheckTimeoutError": ".errors",
    "HealthMonitor": ".monitor",
    "HealthServer": ".health_server",
    "HealthReport": ".health",
    "HealthChecker": ".protocols",
    "Healthchecker": ".protocols",
    "HealthcheckerWithContext": ".protocols",
    "HookEvent": ".lifecycle",
    "Inject": ".inject",
    "Injector": ".injector",
    "Named": "._container.keys",
    "Outcome": ".health",
    "Scope": ".scope",
    "ScopeClosedError": ".errors",
    "ScopeRequiredError": ".errors",
    "ServiceAlreadyProvidedError": ".errors",
    "ServiceNotBuiltError": ".errors",
    "ServiceNotFoundError": ".errors",
    "ServiceShutdown": ".lifecycle",
    "ServingStatus": ".monitor",
    "ShutdownError": ".errors",
    "ShutdownReport": ".lifecycle",
    "ShutdownTimeoutError": ".errors",
    "Shutdowner": ".protocols",
}

__all__ = [
    "AsyncHealthChecker",
    "AsyncRequiredError",
    "AsyncShutdowner",
    "CircularDependencyError",
    "ContextNotProvidedError",
    "DIError",
    "Degraded",
    "GraphError",
    "HealthCheckError",
    "HealthCheckResult",
    "HealthPolicy",
    "HealthCheckTimeoutError",
    "HealthMonitor",
    "HealthServer",
    "HealthChecker",
    "HealthReport",
    "Healthchecker",
    "HealthcheckerWithContext",
    "HookEvent",
    "Inject",
    "Injector",
    "Named",
    "NoHealthCheckError",
    "Outcome",
    "Scope",
    "ScopeClosedError",
    "ScopeRequiredError",
    "ServiceAlreadyProvidedError",
    "ServiceNotBuiltError",
    "ServiceNotFoundError",
    "ServiceShutdown",
    "ServingStatus",
    "ShutdownError",
    "ShutdownReport",
    "ShutdownTimeoutError",
    "Shutdowner",
]


def _load(name: str) -> "Any":
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'di' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


# Hidden from type checkers: a module __getattr__ would make any name of di, a typo
# included, type as Any. They see the names imported above instead.
if not TYPE_CHECKING:
    __getattr__ = _load


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


def _version() -> str:
    """The installed distribution's version; "0+unknown" when run from a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("healthdi")
    except PackageNotFoundError:
        return "0+unknown"
