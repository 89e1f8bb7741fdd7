"""Health endpoints mounted in a Starlette app; the app's lifespan runs the monitor."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount

from di import HealthMonitor, Injector
from di.asgi import health_app


class Database:
    def health_check(self) -> None:
        pass  # e.g. SELECT 1


injector = Injector(health_check_timeout=1.0)
injector.provide(Database, eager=True)  # built at start, so it is checked
monitor = HealthMonitor(injector, interval=5.0)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Starts the eager services, checks every 5 s; on exit, stops and shuts down.
    async with injector, monitor:
        yield


app = Starlette(routes=[Mount("/ops", app=health_app(monitor))], lifespan=lifespan)
