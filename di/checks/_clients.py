"""Checks of the clients a service holds: SQL databases, Redis, PostgreSQL, RabbitMQ, Celery.

Each function takes the client and returns a check of the kind the client is: an
``async def`` check for an asyncio client (cancelled by the per-check timeout), a sync
check for a blocking one (run in a worker thread; on timeout it is reported timed out
and, stuck, is not started again until it returns). Each imports its client library
when it is called, never when :mod:`di.checks` is imported, and only to tell the
client's kind.

Each asks the cheapest question that needs the server to answer: ``SELECT 1``, PING,
opening a channel, a worker's ping, and returns what it observed (``latency_ms``, and
the server's or the pool's state where the client has it).
"""

from __future__ import annotations

from typing import Any

from ._common import AsyncCheck, Check, CheckFailed, latency_ms, since

__all__ = ["celery", "postgres", "rabbitmq", "redis", "sqlalchemy"]

POSTGRES_QUERY = "SELECT pg_is_in_recovery(), current_setting('server_version')"


def sqlalchemy(engine: Any) -> Check | AsyncCheck:
    """A check that runs ``SELECT 1`` on a connection from a SQLAlchemy engine's pool.

    A sync ``Engine`` gets a sync check; an ``AsyncEngine`` an async one. Details:
    ``latency_ms``, ``dialect``, and ``pool_checked_out`` (connections in use) when the
    pool counts them.
    """
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncEngine

    query = sa.text("SELECT 1")

    def observed(sync_engine: sa.Engine, started: float) -> dict[str, Any]:
        details: dict[str, Any] = {
            "latency_ms": latency_ms(started),
            "dialect": sync_engine.dialect.name,
        }
        checked_out = getattr(sync_engine.pool, "checkedout", None)
        if callable(checked_out):
            details["pool_checked_out"] = checked_out()
        return details

    if isinstance(engine, AsyncEngine):
        async_engine = engine

        async def check_async(instance: object = None, /) -> dict[str, Any]:
            started = since()
            async with async_engine.connect() as connection:
                await connection.execute(query)
            return observed(async_engine.sync_engine, started)

        return check_async
    if isinstance(engine, sa.Engine):
        sync_engine = engine

        def check(instance: object = None, /) -> dict[str, Any]:
            started = since()
            with sync_engine.connect() as connection:
                connection.execute(query)
            return observed(sync_engine, started)

        return check
    raise _not_a(engine, "sqlalchemy", "a SQLAlchemy Engine or AsyncEngine")


def redis(client: Any) -> Check | AsyncCheck:
    """A check that sends PING with a redis-py client.

    ``redis.Redis`` (and ``RedisCluster``) gets a sync check; ``redis.asyncio.Redis``
    (and its ``RedisCluster``) an async one. Details: ``latency_ms``.
    """
    import redis as redis_py
    import redis.asyncio

    if isinstance(client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
        async_client = client

        async def check_async(instance: object = None, /) -> dict[str, Any]:
            started = since()
            await async_client.ping()
            return {"latency_ms": latency_ms(started)}

        return check_async
    if isinstance(client, redis_py.Redis | redis_py.RedisCluster):
        sync_client = client

        def check(instance: object = None, /) -> dict[str, Any]:
            started = since()
            sync_client.ping()
            return {"latency_ms": latency_ms(started)}

        return check
    raise _not_a(client, "redis", "a redis.Redis or redis.asyncio.Redis client")


def postgres(pool_or_connection: Any) -> Check | AsyncCheck:
    """A check that asks PostgreSQL whether it is a replica, and its version.

    Takes an asyncpg ``Pool`` or ``Connection`` (async check), or a psycopg 3
    ``AsyncConnection`` or psycopg_pool ``AsyncConnectionPool`` (async check), or a
    psycopg ``Connection`` or ``ConnectionPool`` (sync check). A pool lends the check a
    connection; a lone connection is shared with the application, so prefer a pool (an
    asyncpg connection runs one query at a time). On a psycopg connection outside a
    transaction, the transaction the query opens is rolled back.

    Details: ``latency_ms``, ``in_recovery`` (a standby), ``server_version``, and for a
    pool ``pool_size`` and ``pool_idle``.
    """
    target = pool_or_connection
    libraries = {kind.__module__.partition(".")[0] for kind in type(target).__mro__}
    if "asyncpg" in libraries:
        return _asyncpg(target)
    if "psycopg_pool" in libraries:
        return _psycopg_pool(target)
    if "psycopg" in libraries:
        return _psycopg(target)
    raise _not_a(
        target,
        "postgres",
        "an asyncpg Pool or Connection, or a psycopg Connection, AsyncConnection, "
        "ConnectionPool or AsyncConnectionPool",
    )


def _row(row: Any, started: float) -> dict[str, Any]:
    in_recovery, version = row
    return {
        "latency_ms": latency_ms(started),
        "in_recovery": bool(in_recovery),
        "server_version": str(version),
    }


def _asyncpg(target: Any) -> AsyncCheck:
    if hasattr(target, "acquire"):  # a Pool
        pool = target

        async def check_pool(instance: object = None, /) -> dict[str, Any]:
            started = since()
            async with pool.acquire() as connection:
                row = await connection.fetchrow(POSTGRES_QUERY)
            details = _row(row, started)
            details["pool_size"] = pool.get_size()
            details["pool_idle"] = pool.get_idle_size()
            return details

        return check_pool
    connection = target

    async def check(instance: object = None, /) -> dict[str, Any]:
        started = since()
        return _row(await connection.fetchrow(POSTGRES_QUERY), started)

    return check


def _psycopg(target: Any) -> Check | AsyncCheck:
    import psycopg
    from psycopg.pq import TransactionStatus

    if isinstance(target, psycopg.AsyncConnection):
        async_connection = target

        async def check_async(instance: object = None, /) -> dict[str, Any]:
            started = since()
            idle = async_connection.info.transaction_status is TransactionStatus.IDLE
            cursor = await async_connection.execute(POSTGRES_QUERY)
            row = await cursor.fetchone()
            if idle and not async_connection.autocommit:
                await async_connection.rollback()
            return _row(row, started)

        return check_async
    if isinstance(target, psycopg.Connection):
        sync_connection = target

        def check(instance: object = None, /) -> dict[str, Any]:
            started = since()
            idle = sync_connection.info.transaction_status is TransactionStatus.IDLE
            row = sync_connection.execute(POSTGRES_QUERY).fetchone()
            if idle and not sync_connection.autocommit:
                sync_connection.rollback()
            return _row(row, started)

        return check
    raise _not_a(target, "postgres", "a psycopg Connection or AsyncConnection")


def _psycopg_pool(target: Any) -> Check | AsyncCheck:
    import psycopg_pool

    def sized(details: dict[str, Any], stats: dict[str, int]) -> dict[str, Any]:
        details["pool_size"] = stats.get("pool_size", 0)
        details["pool_idle"] = stats.get("pool_available", 0)
        return details

    if isinstance(target, psycopg_pool.AsyncConnectionPool):
        async_pool = target

        async def check_async(instance: object = None, /) -> dict[str, Any]:
            started = since()
            async with async_pool.connection() as connection:
                cursor = await connection.execute(POSTGRES_QUERY)
                row = await cursor.fetchone()
            return sized(_row(row, started), async_pool.get_stats())

        return check_async
    if isinstance(target, psycopg_pool.ConnectionPool):
        sync_pool = target

        def check(instance: object = None, /) -> dict[str, Any]:
            started = since()
            with sync_pool.connection() as connection:
                row = connection.execute(POSTGRES_QUERY).fetchone()
            return sized(_row(row, started), sync_pool.get_stats())

        return check
    raise _not_a(target, "postgres", "a psycopg_pool ConnectionPool or AsyncConnectionPool")


def rabbitmq(connection: Any) -> AsyncCheck:
    """A check that opens a channel on an aio-pika connection and closes it.

    Opening a channel is a round trip to the broker. A closed connection fails at once
    (a robust connection that is reconnecting reads closed). Details: ``latency_ms``,
    and ``product`` and ``version`` as the broker announced them.
    """
    libraries = {kind.__module__.partition(".")[0] for kind in type(connection).__mro__}
    if "aio_pika" not in libraries or not hasattr(connection, "channel"):
        raise _not_a(connection, "rabbitmq", "an aio-pika Connection (aio_pika.connect_robust)")

    async def check(instance: object = None, /) -> dict[str, Any]:
        started = since()
        if connection.is_closed:
            raise ConnectionError("the connection to RabbitMQ is closed")
        channel = await connection.channel()
        await channel.close()
        details: dict[str, Any] = {"latency_ms": latency_ms(started)}
        transport = getattr(connection, "transport", None)
        announced = getattr(getattr(transport, "connection", None), "server_properties", None)
        if isinstance(announced, dict):
            for key in ("product", "version"):
                value = announced.get(key)
                if value is not None:
                    details[key] = value.decode() if isinstance(value, bytes) else str(value)
        return details

    return check


def celery(app: Any, *, timeout: float = 1.0, min_workers: int = 1) -> Check:
    """A check that pings the Celery workers of ``app``; it passes once ``min_workers``
    answer.

    The ping is broadcast through the broker, and the check returns as soon as
    ``min_workers`` workers replied; fewer replies within ``timeout`` seconds (keep it
    below the per-check timeout) raise :class:`CheckFailed`: too few workers run, or
    they cannot reach the broker. The check connects to the broker once per run,
    without kombu's retries (which wait for a broker that is down for ever): a broker
    that is down or refuses the credentials fails the check at once, with kombu's
    ``OperationalError``. Details: ``workers`` (how many answered), ``names`` (sorted)
    and ``latency_ms``.
    """
    if not callable(getattr(getattr(app, "control", None), "ping", None)):
        raise _not_a(app, "celery", "a Celery application")
    if not timeout > 0:
        raise ValueError(f"celery(): timeout must be > 0 seconds, got {timeout!r}")
    if min_workers < 1:
        raise ValueError(f"celery(): min_workers must be >= 1, got {min_workers!r}")

    def check(instance: object = None, /) -> dict[str, Any]:
        started = since()
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0, timeout=timeout)  # once, no retry
            replies = app.control.ping(timeout=timeout, limit=min_workers, connection=connection)
        names = sorted(name for reply in replies for name in reply)
        details = {"workers": len(names), "names": names, "latency_ms": latency_ms(started)}
        if len(names) < min_workers:
            wanted = (
                "no Celery worker" if not names else f"{len(names)} of {min_workers} Celery workers"
            )
            raise CheckFailed(f"{wanted} answered a ping within {timeout:g} s", details=details)
        return details

    return check


def _not_a(value: Any, where: str, expected: str) -> TypeError:
    kind = type(value)
    return TypeError(f"{where}(): expected {expected}, got {kind.__module__}.{kind.__qualname__}")
