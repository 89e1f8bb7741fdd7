"""Types of di.checks, pinned: `mypy --strict tests/typing` checks this file; never run."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, assert_type

import redis
import sqlalchemy

from di import Injector, checks


class Payments:
    pass


def wiring(injector: Injector, engine: sqlalchemy.Engine, client: redis.Redis) -> None:
    # A check made from an address is what health_check= takes.
    injector.provide(Payments, health_check=checks.http("https://payments.internal/readyz"))
    injector.provide(Payments, health_check=checks.tcp("db.internal", 5432))
    injector.provide(Payments, health_check=checks.disk("/var/lib/app", min_free_ratio=0.05))
    # A check made from a client: its kind (sync or async) follows the client.
    assert_type(checks.sqlalchemy(engine), checks.Check | checks.AsyncCheck)
    injector.provide_value(client, health_check=checks.redis(client))
    injector.provide(sqlalchemy.Engine, health_check=lambda e: checks.sqlalchemy(e)())
    sync = checks.memory(max_rss_bytes=1 << 30)
    assert_type(sync(), dict[str, Any])
    asynchronous = checks.dns("localhost")
    assert_type(asynchronous(None), Awaitable[dict[str, Any]])
