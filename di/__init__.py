"""healthdi: dependency injection with first-class health checking.

>>> from di import Injector
>>> injector = Injector()
>>> injector.provide(Database)
>>> injector.invoke(Database)
"""

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
from .health import HealthCheckResult, HealthReport, Outcome
from .injector import Injector
from .monitor import HealthMonitor, ServingStatus
from .protocols import AsyncShutdowner, Healthchecker, HealthcheckerWithContext, Shutdowner
from .scope import Scope

__all__ = [
    "AsyncShutdowner",
    "CircularDependencyError",
    "DIError",
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
