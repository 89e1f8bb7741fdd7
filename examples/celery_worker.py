"""A Celery worker with a unit of work per task, whose readiness follows its broker.

celery -A examples.celery_worker worker   # health on :8081, /livez and /readyz
"""

import os
from collections.abc import Iterator

import redis
from celery import Celery

from di import HealthServer, Injector, checks
from di.integrations.celery import Inject, inject, install

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")


def connect() -> Iterator[redis.Redis]:
    """The broker's Redis: checked every interval, so readiness follows the broker."""
    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
    yield client
    client.close()
    print("redis closed", flush=True)


class UnitOfWork:
    """What one task writes to Redis: committed when the task succeeds, else dropped."""

    def __init__(self, client: redis.Redis) -> None:
        self.writes = client.pipeline()


def unit_of_work(client: redis.Redis) -> Iterator[UnitOfWork]:
    client.incr("work:opened")
    work = UnitOfWork(client)
    try:
        yield work  # the task runs here
    except Exception:
        client.incr("work:rolled-back")  # the task failed: its writes are dropped
        raise
    work.writes.incr("work:committed")
    work.writes.execute()


injector = Injector()
injector.provide(connect, eager=True, health_check=lambda client: checks.redis(client)())
injector.provide_scoped(unit_of_work)

app = Celery("shop", broker=BROKER_URL)
health = HealthServer(
    injector,
    http=os.environ.get("HEALTH_HTTP", "0.0.0.0:8081"),
    interval=float(os.environ.get("HEALTH_INTERVAL", "5")),
)
install(app, injector, health_server=health)


@app.task
@inject
def place(item: str, work: Inject[UnitOfWork]) -> None:
    if not item:
        raise ValueError("an order needs an item")  # rolled back
    work.writes.rpush("orders", item)
