"""postgres and sqlalchemy against a real PostgreSQL: answering, hung (SIGSTOP), stopped.

Each test has a server of its own (a new cluster starts in well under a second), since
each ends by stopping it. asyncpg, psycopg's async connection and SQLAlchemy's asyncio
engine run on asyncio only; the sync clients' checks run from sync tests, in a worker
thread as every sync check does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from di import checks

from .running import TIMEOUT, alive_hung_stopped, alive_hung_stopped_sync
from .servers import Postgres

pytestmark = pytest.mark.anyio
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the clients' loop


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


def assert_postgres_details(details: object, *, pool: bool) -> None:
    assert isinstance(details, dict)
    assert details["in_recovery"] is False  # a primary
    assert details["server_version"].split(".")[0].isdigit()
    assert details["latency_ms"] > 0
    if pool:
        assert details["pool_size"] >= 1 and 0 <= details["pool_idle"] <= details["pool_size"]


@ASYNCIO_ONLY
async def test_postgres_check_of_an_asyncpg_pool_passes_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    import asyncpg

    pool = await asyncpg.create_pool(postgres.url, min_size=1, max_size=2)
    try:
        healthy = await alive_hung_stopped(postgres, checks.postgres(pool))
    finally:
        pool.terminate()
    assert_postgres_details(healthy.details, pool=True)


@ASYNCIO_ONLY
async def test_postgres_check_of_an_asyncpg_connection_passes_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    import asyncpg

    connection = await asyncpg.connect(postgres.url)
    try:
        healthy = await alive_hung_stopped(postgres, checks.postgres(connection))
    finally:
        connection.terminate()
    assert_postgres_details(healthy.details, pool=False)


@ASYNCIO_ONLY
async def test_postgres_check_of_a_psycopg_async_connection_passes_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    import psycopg

    connection = await psycopg.AsyncConnection.connect(postgres.url)
    try:
        check = checks.postgres(connection)
        healthy = await alive_hung_stopped(postgres, check)
    finally:
        await connection.close()
    assert_postgres_details(healthy.details, pool=False)


@ASYNCIO_ONLY
async def test_postgres_check_of_a_psycopg_async_pool_passes_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    from psycopg_pool import AsyncConnectionPool

    # A pool waits for a connection up to its timeout: below the check's, a database
    # that is down fails with the pool's own error instead of timing the check out.
    pool = AsyncConnectionPool(
        postgres.url, min_size=1, max_size=2, timeout=TIMEOUT / 3, open=False
    )
    await pool.open(wait=True)
    try:
        healthy = await alive_hung_stopped(postgres, checks.postgres(pool))
    finally:
        await pool.close(timeout=0)
    assert_postgres_details(healthy.details, pool=True)


def test_psycopg_connection_leaves_no_transaction_open(postgres: Postgres) -> None:
    import psycopg
    from psycopg.pq import TransactionStatus

    with psycopg.connect(postgres.url) as connection:
        check = checks.postgres(connection)
        details = check()
        assert connection.info.transaction_status is TransactionStatus.IDLE
        assert_postgres_details(details, pool=False)
        healthy = alive_hung_stopped_sync(postgres, check)
    assert_postgres_details(healthy.details, pool=False)


def test_postgres_check_of_a_psycopg_pool_passes_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(postgres.url, min_size=1, max_size=2, timeout=TIMEOUT / 3, open=False)
    pool.open(wait=True)
    try:
        healthy = alive_hung_stopped_sync(postgres, checks.postgres(pool))
    finally:
        pool.close(timeout=0)
    assert_postgres_details(healthy.details, pool=True)


def test_sqlalchemy_engine_check_passes_gives_back_its_connection_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres.url.replace("postgresql:", "postgresql+psycopg:"))
    try:
        healthy = alive_hung_stopped_sync(postgres, checks.sqlalchemy(engine))
    finally:
        engine.dispose()
    assert healthy.details is not None
    assert healthy.details["dialect"] == "postgresql"
    assert healthy.details["pool_checked_out"] == 0  # the check's connection went back
    assert healthy.details["latency_ms"] > 0


@ASYNCIO_ONLY
async def test_sqlalchemy_check_of_an_async_engine_passes_times_out_hung_fails_stopped(
    postgres: Postgres,
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(postgres.url.replace("postgresql:", "postgresql+asyncpg:"))
    try:
        healthy = await alive_hung_stopped(postgres, checks.sqlalchemy(engine))
    finally:
        await engine.dispose(close=False)
    assert healthy.details is not None and healthy.details["dialect"] == "postgresql"


def test_postgres_names_what_it_takes() -> None:
    with pytest.raises(TypeError, match=r"postgres\(\): expected an asyncpg Pool or Connection"):
        checks.postgres("postgresql://db")
