"""A taskiq worker with a unit of work per task, whose readiness follows its Redis.

taskiq worker examples.taskiq_worker:broker --workers 1   # health on :8081
"""

import os
from collections.abc import AsyncIterator

import redis.asyncio as redis
from taskiq_redis import ListQueueBroker

from di import HealthServer, Injector, checks
from di.integrations.taskiq import Inject, inject, install

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def connect() -> AsyncIterator[redis.Redis]:
    """The broker's Redis: checked every interval, so readiness follows the broker."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    yield client
    await client.aclose()
    print("redis closed", flush=True)


class UnitOfWork:
    """What one task writes to Redis: committed when the task succeeds, else dropped."""

    def __init__(self, client: redis.Redis) -> None:
        self.writes = client.pipeline()


async def unit_of_work(client: redis.Redis) -> AsyncIterator[UnitOfWork]:
    await client.incr("work:opened")
    work = UnitOfWork(client)
    try:
        yield work  # the task runs here
    except Exception:
        await client.incr("work:rolled-back")  # the task failed: its writes are dropped
        raise
    work.writes.incr("work:committed")
    await work.writes.execute()


injector = Injector()
injector.provide(connect, eager=True, health_check=lambda client: checks.redis(client)())
injector.provide_scoped(unit_of_work)

# BRPOP waits for the next task as long as the queue is empty: no read timeout.
broker = ListQueueBroker(REDIS_URL, socket_timeout=None)
health = HealthServer(
    injector,
    http=os.environ.get("HEALTH_HTTP", "0.0.0.0:8081"),
    interval=float(os.environ.get("HEALTH_INTERVAL", "5")),
)
install(broker, injector, health_server=health)


@broker.task
@inject
async def place(item: str, work: Inject[UnitOfWork]) -> None:
    if not item:
        raise ValueError("an order needs an item")  # rolled back
    work.writes.rpush("orders", item)
