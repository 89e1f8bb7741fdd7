"""Ready-made health checks for the dependencies every service has.

Each function returns a check to pass as ``health_check=`` (or to call from a
service's own ``health_check``): a sync check for a blocking client, an ``async def``
one for an asyncio client or a network call. A check returns what it observed as its
details (``latency_ms``, free bytes, days left...), raises :class:`~di.Degraded` past a
warning threshold, and fails by raising: :class:`CheckFailed` when the dependency
answered and the answer is a failure, the client's own error otherwise.

>>> injector.provide(open_engine, health_check=lambda engine: checks.sqlalchemy(engine)())
>>> injector.provide_value(disk_space, health_check=checks.disk("/var/lib/app",
...     min_free_ratio=0.05))

``import di.checks`` imports no client library: :func:`sqlalchemy`, :func:`redis`,
:func:`postgres`, :func:`rabbitmq` and :func:`celery` import theirs when called;
:func:`tcp`, :func:`http`, :func:`dns` and :func:`tls_certificate` need only the
standard library and anyio (asyncio and trio alike); :func:`disk` and :func:`memory`
only the standard library.
"""

from __future__ import annotations

from ._clients import celery, postgres, rabbitmq, redis, sqlalchemy
from ._common import AsyncCheck, Check, CheckFailed
from ._network import dns, http, tcp, tls_certificate
from ._system import disk, memory

__all__ = [
    "AsyncCheck",
    "Check",
    "CheckFailed",
    "celery",
    "disk",
    "dns",
    "http",
    "memory",
    "postgres",
    "rabbitmq",
    "redis",
    "sqlalchemy",
    "tcp",
    "tls_certificate",
]
