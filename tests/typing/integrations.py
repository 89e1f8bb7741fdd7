"""Types of the integrations, pinned: `mypy --strict tests/typing` checks this file.

It is never run: every line is a claim about what a type checker infers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, assert_type

import flask
from fastapi import FastAPI, Request
from litestar.di import Provide

from di import HealthMonitor, Injector, Named, Scope
from di.integrations import fastapi as di_fastapi
from di.integrations import flask as di_flask
from di.integrations import litestar as di_litestar
from di.integrations import starlette as di_starlette


class Database: ...


def fastapi_endpoint(
    database: di_fastapi.Inject[Database],
    replica: di_fastapi.Inject[Annotated[Database, Named("replica")]],
) -> None:
    # For a type checker, Inject[T] is T.
    assert_type(database, Database)
    assert_type(replica, Database)


def flask_view(database: di_flask.Inject[Database]) -> None:
    assert_type(database, Database)


def installs(injector: Injector, request: Request) -> None:
    assert_type(di_fastapi.install(FastAPI(), injector), HealthMonitor)
    assert_type(di_starlette.install(FastAPI(), injector, health_prefix="/ops"), HealthMonitor)
    assert_type(di_starlette.scope_of(request), Scope)
    assert_type(di_flask.install(flask.Flask(__name__), injector), HealthMonitor)
    assert_type(di_litestar.provide(Database), Provide)
    assert_type(di_litestar.DIPlugin(injector).monitor, HealthMonitor)
    assert_type(di_fastapi.install(FastAPI(), injector, unbuilt="fail"), HealthMonitor)
    assert_type(di_flask.install(flask.Flask(__name__), injector, unbuilt="ignore"), HealthMonitor)
    assert_type(di_litestar.DIPlugin(injector, unbuilt="warn").monitor, HealthMonitor)


@di_flask.inject
def decorated(database: di_flask.Inject[Database]) -> str:
    return "ok"


view: Callable[[Database], str] = decorated  # @inject keeps the view's type
