"""``di run``: serve an ASGI application under uvicorn, draining it on SIGTERM.

An application behind a load balancer must go NOT_SERVING *before* it stops taking
requests: the balancer only moves away once its health checks have seen readiness
fail. uvicorn closes its listener at once on SIGTERM; ``di run`` puts the drain first.

The order of a run:

1. The application is loaded (``MODULE:APP``, or ``--factory``'s call), and the
   monitor it installed is found (:func:`installed_monitor`: the integrations'
   ``install()`` records it as ``app.state.healthdi_monitor``). Without one, only
   ``--drain 0`` may serve it.
2. uvicorn serves it through its public ``Server``/``Config`` API, the lifespan on:
   the integrations start the container and the monitor there.
3. On SIGTERM the monitor enters graceful shutdown at once (readiness, and every
   name but liveness, read NOT_SERVING); for ``--drain`` seconds the application
   still serves every route, its health routes included; then uvicorn stops
   accepting, gives the requests in flight ``--grace`` seconds to finish (then cancels
   them: a stream without end would hold the process until SIGKILL, its hooks never
   run), and runs the lifespan's shutdown (the container's hooks).
4. SIGINT (Ctrl-C) skips the drain, and so does a second signal during it; a further
   SIGINT once uvicorn is stopping stops waiting for the requests in flight.

:class:`DrainingServer` is uvicorn's ``Server`` with its one signal handler
(``handle_exit``) replaced by that sequence. Needs the ``http`` extra (uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from ..monitor import HealthMonitor

logger = logging.getLogger("di.run")

# Where the integrations' install() records the monitor it runs (see installed_monitor).
MONITOR_STATE = "healthdi_monitor"
# How many ASGI middleware wrappers (each keeping the app it wraps as ``.app``) are
# looked through for the application's state.
WRAPPERS = 16


@dataclass
class Options:
    """What ``di run`` was asked to do."""

    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    drain: float = 5.0
    grace: float = 5.0


def installed_monitor(app: object) -> HealthMonitor | None:
    """The :class:`~di.HealthMonitor` the application's integration runs, if any.

    ``install()`` (FastAPI, Starlette) and ``DIPlugin`` (Litestar) record it as
    ``app.state.healthdi_monitor``; an application of your own can set it there too.
    ASGI middleware that keeps the application it wraps as ``.app`` is looked through.
    """
    from ..monitor import HealthMonitor

    for _ in range(WRAPPERS):
        found = getattr(getattr(app, "state", None), MONITOR_STATE, None)
        if isinstance(found, HealthMonitor):
            return found
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining on SIGTERM before it stops (see the module)."""

    def __init__(self, config: uvicorn.Config, monitor: HealthMonitor | None, drain: float):
        super().__init__(config)
        self.monitor = monitor
        self.drain = drain
        self.signals: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's signal handler: act on the signal on the server's loop."""
        loop = self._loop
        if loop is None:  # before serving: nothing to drain
            self.should_exit = True
            return
        loop.call_soon_threadsafe(self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self.signals.append(sig)
        name = signal.Signals(sig).name
        if self.should_exit:
            if sig == signal.SIGINT:
                logger.info("received %s again: not waiting for the requests in flight", name)
                self.force_exit = True
            return
        draining = self._draining
        if draining is not None:
            logger.info("received %s during the drain: stopping now", name)
            draining.cancel()
            return
        # Nothing was served before the startup completed: nothing to drain.
        drains = sig == signal.SIGTERM and self.started and self.monitor is not None
        drain = self.drain if drains else 0.0
        if drain > 0:
            logger.info(
                "received SIGTERM: NOT_SERVING, serving for %g s more before stopping", drain
            )
        else:
            logger.info("received %s: NOT_SERVING, stopping", name)
        assert self._loop is not None
        self._draining = self._loop.create_task(self._drain(drain))

    async def _drain(self, drain: float) -> None:
        """NOT_SERVING now; then ``drain`` seconds of serving; then uvicorn stops."""
        try:
            if self.monitor is not None:
                await self.monitor.enter_graceful_shutdown()
            if drain > 0:
                await asyncio.sleep(drain)
        finally:
            self.should_exit = True  # cancelled by a second signal: at once


def serve(app: Any, options: Options, monitor: HealthMonitor | None) -> int:
    """Serve ``app`` until a signal stops it; the exit status (uvicorn's on a failed
    startup, 3)."""
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        uds=options.uds,
        lifespan="on",
        # Seconds; uvicorn's annotation says int, and any number works (asyncio.timeout).
        timeout_graceful_shutdown=options.grace,  # type: ignore[arg-type]
    )
    server = DrainingServer(config, monitor, options.drain)
    try:
        server.run()
    except SystemExit as exiting:  # uvicorn's way out of a failed startup
        code = exiting.code
        return code if isinstance(code, int) else 1
    return 0
