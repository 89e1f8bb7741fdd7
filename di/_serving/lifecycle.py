"""Starting and stopping an injector with its app: the one sequence every integration runs.

``async with Running(injector, monitor):`` is an app's life, whatever the framework:

- **start:** the monitor is entered: the injector's ``astart()`` (validation, then the
  eager services), then a round of checks every interval in the background. A failed
  start shuts down what it built and raises the start's error.
- **stop:** every status but liveness turns NOT_SERVING for good; for ``drain`` seconds the app
  still serves, so that clients watching health move away; ``stopping()`` (if given)
  runs once the monitor's round in progress is its last (a server stops taking
  requests there); the monitor stops after that round; then the injector's
  ``ashutdown()`` runs, whatever happened before, and its failure is raised.

Starlette, FastAPI, Litestar and aiohttp run it in the app's lifespan, gRPC's
``Lifecycle`` in a task of its own, Flask and Django on an event loop in a thread of its
own (:class:`~di.integrations._lifecycle.AppLifetime`, on the container's
:class:`~di._container.runner.LoopThread`), and
:class:`di.HealthServer` around its listeners. :func:`monitor_for` checks the monitor an
``install()`` is given, :func:`registry_for` registers its metrics where asked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio

from .._answers import metrics_registry
from .._container.runner import to_completion
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope

logger = logging.getLogger("di.integrations")


class Running:
    """The start/stop sequence of ``injector`` and its ``monitor``; see the module.

    When the monitor already runs (someone else entered it), entering only waits for
    its start, and leaving does not stop it. Enter it once.
    """

    __slots__ = ("_entered", "_rounds", "drain", "injector", "monitor", "stopping")

    def __init__(
        self,
        injector: Scope,
        monitor: HealthMonitor,
        *,
        drain: float = 0.0,
        stopping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.injector = injector
        self.monitor = monitor
        self.drain = drain  # may change until the sequence is left
        self.stopping = stopping
        self._entered = False
        self._rounds = False  # whether the monitor's rounds are ours to stop

    async def __aenter__(self) -> Running:
        if self._entered:
            raise RuntimeError("this Running sequence has already been entered; enter it once")
        self._entered = True
        monitor = self.monitor
        self._rounds = not monitor.running
        try:
            if self._rounds:
                await monitor.__aenter__()  # astart(), then a round every interval
            else:
                await monitor.start()
        except BaseException:
            try:
                await to_completion(self.injector.ashutdown)  # what the start built
            except Exception:
                logger.exception("shutting down after a failed start failed too")
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        monitor = self.monitor
        try:
            try:
                await monitor.enter_graceful_shutdown()
                if self.drain > 0:
                    await anyio.sleep(self.drain)
                if self._rounds:
                    monitor.stop()  # the round in progress is the last
                if self.stopping is not None:
                    await self.stopping()
            finally:
                if self._rounds:
                    # The last round finishes (bounded by the round timeout) before the
                    # hooks shut down what it checks.
                    await monitor.__aexit__(None, None, None)
        finally:
            await to_completion(self.injector.ashutdown)


def monitor_for(
    injector: Scope, monitor: HealthMonitor | None, unbuilt: Unbuilt | None = None
) -> HealthMonitor:
    """The monitor ``install(injector, monitor=..., unbuilt=...)`` runs: ``monitor``, or
    a new one (``unbuilt`` is the new one's; a monitor given has its own)."""
    if not isinstance(injector, Scope):
        raise TypeError(f"install() needs an Injector or Scope, got {injector!r}")
    if monitor is None:
        return HealthMonitor(injector, unbuilt="warn" if unbuilt is None else unbuilt)
    if unbuilt is not None and unbuilt != monitor.unbuilt:
        raise ValueError(
            f"install(unbuilt={unbuilt!r}, monitor=...): the monitor given has "
            f"unbuilt={monitor.unbuilt!r}; pass unbuilt= to HealthMonitor() instead"
        )
    if monitor.injector is not injector:
        raise ValueError(
            "install(monitor=...): the monitor checks another injector; make it with "
            "HealthMonitor(injector) for the injector given to install()"
        )
    return monitor


def registry_for(monitor: HealthMonitor, metrics: Any) -> Any:
    """The Prometheus registry ``install(metrics=...)`` names, ``monitor``'s collector
    registered on it (:func:`di.metrics.register`); None for no metrics."""
    registry = metrics_registry(metrics, "install")
    if registry is not None:
        from ..metrics import register

        register(monitor, registry)
    return registry
