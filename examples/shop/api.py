"""The shop as a FastAPI app, with its container, health routes and a scope per request.

    uvicorn --factory examples.shop.api:create_api --port 8080

Settings as in :mod:`examples.shop.app` (``SHOP_DATA_DIR``, ``SHOP_REDIS_URL``),
``SHOP_HEALTH_INTERVAL``: seconds between rounds of checks (default 5), and
``SHOP_GRPC``: a ``host:port`` where the app also serves the gRPC health service from
the same monitor, while it runs (unset: HTTP only).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import grpc.aio
from fastapi import FastAPI, HTTPException, Request

from di import HealthMonitor
from di.grpc import add_health_servicer
from di.integrations.fastapi import Inject, install

from .app import OrderStore, Shop, create_app

log = logging.getLogger("shop")


class Checkout:
    """One per request: the orders it placed, logged if the request fails."""

    def __init__(self, orders: OrderStore, request: Request) -> None:
        self.orders = orders
        self.client = request.client.host if request.client else "unknown"
        self.placed: list[int] = []

    def place(self, item: str) -> int:
        number = self.orders.place(item)
        self.placed.append(number)
        return number


def checkout(orders: OrderStore, request: Request) -> Iterator[Checkout]:
    session = Checkout(orders, request)
    try:
        yield session
    except Exception:
        log.warning("checkout for %s failed after %d orders", session.client, len(session.placed))
        raise


def grpc_health(
    monitor: HealthMonitor, address: str | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's own lifespan: the gRPC health service on ``address`` while it runs.

    It runs inside the container's lifespan (see ``install``): the monitor is running
    when it starts, and at shutdown every status but liveness is already NOT_SERVING.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not address:
            yield
            return
        server = grpc.aio.server()
        add_health_servicer(server, monitor)
        server.add_insecure_port(address)
        await server.start()
        log.info("gRPC health on %s", address)
        try:
            yield
        finally:
            await server.stop(grace=1.0)

    return lifespan


def create_api() -> FastAPI:
    """The shop's FastAPI app; uvicorn calls this (``--factory``)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    injector = create_app()
    injector.provide_scoped(checkout)
    interval = float(os.environ.get("SHOP_HEALTH_INTERVAL") or 5.0)
    monitor = HealthMonitor(injector, interval=interval)
    app = FastAPI(title="shop", lifespan=grpc_health(monitor, os.environ.get("SHOP_GRPC")))
    install(app, injector, monitor=monitor)

    @app.post("/orders/{item}", status_code=201)
    async def place(item: str, session: Inject[Checkout]) -> dict[str, object]:
        if not item.isprintable() or len(item) > 100:
            raise HTTPException(422, "an item is a short printable name")
        return {"order": session.place(item), "item": item}

    @app.get("/orders/count")
    async def count(shop: Inject[Shop]) -> dict[str, object]:
        cached = await shop.cache.client.get("shop:orders") if shop.cache else None
        return {"orders": shop.orders.count(), "cached": None if cached is None else int(cached)}

    return app
