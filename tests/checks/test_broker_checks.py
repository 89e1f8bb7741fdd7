"""redis, rabbitmq and celery against real servers: answering, hung (SIGSTOP), stopped.

redis-server and RabbitMQ come from Debian; the Celery worker is a real worker on a
redis-server broker. aio-pika and redis.asyncio run on asyncio only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from di import checks
from di.health import Outcome

from ..processes import Redis, free_port
from ..timing import Stopwatch, at_most
from .running import alive_hung_stopped, alive_hung_stopped_sync, check_sync
from .servers import CeleryWorker, Daemon, RabbitMQ

pytestmark = pytest.mark.anyio
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the clients' loop


class RedisServer(Daemon):
    """tests.processes.Redis, hung and stopped as the other servers are."""

    name = "redis-server"

    def __init__(self) -> None:
        self.redis = Redis(free_port())
        self.redis.start()
        self.process = self.redis.process
        self.url = self.redis.url

    def kill(self) -> None:
        super().kill()
        self.redis.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.kill()


def test_redis_check_of_a_sync_client_passes_times_out_hung_fails_stopped(
    redis_server: RedisServer,
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        healthy = alive_hung_stopped_sync(redis_server, checks.redis(client))
    finally:
        client.close()
    assert healthy.details is not None and healthy.details["latency_ms"] > 0


@ASYNCIO_ONLY
async def test_redis_check_of_an_asyncio_client_passes_times_out_hung_fails_stopped(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        healthy = await alive_hung_stopped(redis_server, checks.redis(client))
    finally:
        await client.aclose()
    assert healthy.details is not None and healthy.details["latency_ms"] > 0


@ASYNCIO_ONLY
async def test_rabbitmq_check_passes_naming_the_broker_times_out_hung_fails_stopped() -> None:
    import aio_pika

    server = RabbitMQ()
    try:
        server.start()
        connection = await aio_pika.connect_robust(server.url)
        try:
            healthy = await alive_hung_stopped(server, checks.rabbitmq(connection))
        finally:
            await connection.close()
    finally:
        server.close()
    assert healthy.details is not None
    assert healthy.details["product"] == "RabbitMQ"
    assert healthy.details["version"].split(".")[0].isdigit()


@pytest.fixture
def worker(redis_server: RedisServer) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(redis_server.url + "/0")
    try:
        worker.start()
        yield worker
    finally:
        worker.close()


def test_celery_passes_once_a_worker_answers_then_fails(
    worker: CeleryWorker, redis_server: RedisServer
) -> None:
    """A ping's first round trip sets up the reply queue: it gets the time of a slow step
    (its timeout), and the check the time of a slower one."""
    from .celery_app import make_app

    app = make_app(redis_server.url + "/0")
    ping, timeout = at_most(0.5), at_most(1.0)
    check = checks.celery(app, timeout=ping)
    try:
        healthy = check_sync(check, timeout)
        assert healthy.outcome is Outcome.HEALTHY, healthy
        assert healthy.details is not None
        assert healthy.details["workers"] == 1 and healthy.details["names"] == [worker.node]
        two = check_sync(checks.celery(app, timeout=ping, min_workers=2), timeout)
        assert two.outcome is Outcome.UNHEALTHY
        assert str(two.error) == f"1 of 2 Celery workers answered a ping within {ping:g} s"
        with worker.hung(), Stopwatch() as watch:  # no reply within the ping's timeout
            hung = check_sync(check, timeout)
        assert hung.outcome is Outcome.UNHEALTHY, hung
        assert str(hung.error) == f"no Celery worker answered a ping within {ping:g} s"
        assert ping <= watch.seconds < at_most(ping)
        with redis_server.hung(), Stopwatch() as watch:  # the broker takes no ping
            broker_hung = check_sync(check, timeout)
        assert broker_hung.outcome in (Outcome.TIMEOUT, Outcome.UNHEALTHY), broker_hung
        assert watch.seconds < at_most(timeout)
        worker.kill()
        stopped = check_sync(check, timeout)
        assert stopped.outcome is Outcome.UNHEALTHY, stopped
        assert "no Celery worker answered" in str(stopped.error)
    finally:
        app.close()


def test_celery_fails_at_once_when_its_broker_is_down_or_refuses_it(
    redis_server: RedisServer,
) -> None:
    """The check asks its broker once: kombu's own retries would wait for a broker that
    is down, or refuses the password, for ever, the check's thread stuck meanwhile."""
    import redis

    from .celery_app import make_app

    with redis.Redis.from_url(redis_server.url) as admin:
        admin.config_set("requirepass", "s3cret")
    ping, timeout = at_most(0.5), at_most(1.0)
    refused = make_app(redis_server.url.replace("redis://", "redis://:wrong-s3cret@") + "/0")
    try:
        with Stopwatch() as watch:
            result = check_sync(checks.celery(refused, timeout=ping), timeout)
    finally:
        refused.close()
    assert result.outcome is Outcome.UNHEALTHY, result
    assert "invalid username-password pair" in str(result.error)
    assert "s3cret" not in str(result.error)
    assert watch.seconds < at_most(ping)
    redis_server.kill()
    down = make_app(redis_server.url.replace("redis://", "redis://:s3cret@") + "/0")
    try:
        with Stopwatch() as watch:
            result = check_sync(checks.celery(down, timeout=ping), timeout)
    finally:
        down.close()
    assert result.outcome is Outcome.UNHEALTHY, result
    assert "Connection refused" in str(result.error)
    assert "s3cret" not in str(result.error)
    assert watch.seconds < at_most(ping)


def test_celery_refuses_what_is_not_an_app() -> None:
    with pytest.raises(TypeError, match=r"celery\(\): expected a Celery application"):
        checks.celery(object())
