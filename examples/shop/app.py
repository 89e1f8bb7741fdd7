"""The shop's container. The shop itself is a FastAPI app (examples.shop.api):

    uvicorn --factory examples.shop.api:create_api --port 8080

Its health alone, beside it, from a sidecar:

    di serve examples.shop.app:create_app --http 127.0.0.1:8080 --grpc 127.0.0.1:50051

Settings come from the environment: ``SHOP_DATA_DIR`` (a folder for the SQLite file;
a temporary one when unset) and ``SHOP_REDIS_URL`` (``redis://host:port``; when unset
the shop runs on SQLite alone).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as redis

from di import Injector

log = logging.getLogger("shop")


@dataclass
class Settings:
    data_dir: Path
    redis_url: str | None

    @classmethod
    def from_env(cls) -> Settings:
        folder = os.environ.get("SHOP_DATA_DIR") or tempfile.mkdtemp(prefix="shop-")
        return cls(Path(folder), os.environ.get("SHOP_REDIS_URL") or None)


class OrderStore:
    """Orders in a SQLite file. Its check runs a real query (in a worker thread)."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.data_dir / "orders.sqlite3"
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
        log.info("order store opened at %s", self.path)

    def place(self, item: str) -> int:
        with self.db:
            return int(
                self.db.execute("INSERT INTO orders (item) VALUES (?)", (item,)).lastrowid or 0
            )

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM orders").fetchone()[0])

    def health_check(self) -> None:
        self.count()

    def shutdown(self) -> None:
        self.db.close()
        log.info("order store closed")


class Cache:
    """A Redis client. Its check is a PING, bounded by the client's own timeouts too."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def health_check(self) -> None:
        await self.client.ping()


async def open_cache(settings: Settings) -> AsyncIterator[Cache]:
    assert settings.redis_url is not None
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
    )
    log.info("cache connecting to %s", settings.redis_url)
    yield Cache(client)
    await client.aclose()
    log.info("cache closed")


class Shop:
    """Takes orders into SQLite and keeps a running count in Redis, when there is one."""

    def __init__(self, orders: OrderStore, cache: Cache | None = None) -> None:
        self.orders = orders
        self.cache = cache

    async def health_check(self) -> None:
        # Both halves must agree: the store answers, and the cache takes a write.
        count = self.orders.count()
        if self.cache is not None:
            await self.cache.client.set("shop:orders", count)


def create_app() -> Injector:
    """Build the shop's container; ``di serve`` and ``di check`` call this."""
    settings = Settings.from_env()
    injector = Injector(health_check_timeout=1.0, health_check_global_timeout=3.0)
    injector.provide_value(settings)
    injector.provide(OrderStore)
    if settings.redis_url:
        injector.provide(open_cache)
    else:
        log.warning("SHOP_REDIS_URL is not set: running on SQLite alone")
    # Built by the start (di serve, di check), with what it needs: checks only cover
    # what was built.
    injector.provide(Shop, eager=True)
    return injector
