"""The shop as a FastAPI app, with its container, health routes and a scope per request.

    uvicorn --factory examples.shop.api:create_api --port 8080

Settings as in :mod:`examples.shop.app` (``SHOP_DATA_DIR``, ``SHOP_REDIS_URL``), and
``SHOP_HEALTH_INTERVAL``: seconds between rounds of checks (default 5).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from fastapi import FastAPI, HTTPException, Request

from di import HealthMonitor
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


def create_api() -> FastAPI:
    """The shop's FastAPI app; uvicorn calls this (``--factory``)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    injector = create_app()
    injector.provide_scoped(checkout)
    interval = float(os.environ.get("SHOP_HEALTH_INTERVAL") or 5.0)
    app = FastAPI(title="shop")
    install(app, injector, monitor=HealthMonitor(injector, interval=interval))

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
