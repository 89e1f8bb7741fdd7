"""healthdi: dependency injection with first-class health checking.

>>> from di import Injector
>>> injector = Injector()
>>> injector.provide(Database)
>>> injector.invoke(Database)

Names load on first use, so ``di probe`` (which runs every few seconds in every
container) pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._keys import Named
    from .errors import (
        CircularDependencyError,
        DIError,
        HealthCheckError,
        HealthCheckTimeoutError,
        ScopeClosedError,
        ServiceAlreadyProvidedError,
        ServiceNotBuiltError,
        ServiceNotFoundError,
        ShutdownError,
        ShutdownTimeoutError,
    )
    from .health import Degraded, HealthCheckResult, HealthReport, Outcome
    from .injector import Injector
    from .monitor import HealthMonitor, ServingStatus
    from .protocols import AsyncShutdowner, Healthchecker, HealthcheckerWithContext, Shutdowner
    from .scope import Scope

_WHERE = {
    "AsyncShutdowner": ".protocols",
    "CircularDependencyError": ".errors",
    "DIError": ".errors",
    "Degraded": ".health",
    "HealthCheckError": ".errors",
    "HealthCheckResult": ".health",
    "HealthCheckTimeoutError": ".errors",
    "HealthMonitor": ".monitor",
    "HealthReport": ".health",
    "Healthchecker": ".protocols",
    "HealthcheckerWithContext": ".protocols",
    "Injector": ".injector",
    "Named": "._keys",
    "Outcome": ".health",
    "Scope": ".scope",
    "ScopeClosedError": ".errors",
    "ServiceAlreadyProvidedError": ".errors",
    "ServiceNotBuiltError": ".errors",
    "ServiceNotFoundError": ".errors",
    "ServingStatus": ".monitor",
    "ShutdownError": ".errors",
    "ShutdownTimeoutError": ".errors",
    "Shutdowner": ".protocols",
}

__all__ = [
    "AsyncShutdowner",
    "CircularDependencyError",
    "DIError",
    "Degraded",
    "HealthCheckError",
    "HealthCheckResult",
    "HealthCheckTimeoutError",
    "HealthMonitor",
    "HealthReport",
    "Healthchecker",
    "HealthcheckerWithContext",
    "Injector",
    "Named",
    "Outcome",
    "Scope",
    "ScopeClosedError",
    "ServiceAlreadyProvidedError",
    "ServiceNotBuiltError",
    "ServiceNotFoundError",
    "ServingStatus",
    "ShutdownError",
    "ShutdownTimeoutError",
    "Shutdowner",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'di' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
