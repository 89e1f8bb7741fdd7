"""Applications for the tests of health policies, root causes, tags and gRPC service
names under `di serve` and `di check`: Db <- Repo <- Api, each with a check.

The Db is down while the file named by ``$DI_TEST_DB_DOWN`` exists (a test creates and
removes it), and its dependents fail with it, as real ones would.
"""

from __future__ import annotations

import os

from di import HealthPolicy, Injector


def _down() -> bool:
    flag = os.environ.get("DI_TEST_DB_DOWN")
    return bool(flag) and os.path.exists(flag)


class Db:
    def health_check(self) -> None:
        if _down():
            raise ConnectionError("db unreachable")


class Repo:
    def __init__(self, db: Db) -> None:
        self.db = db

    def health_check(self) -> None:
        if _down():
            raise ConnectionError("repo cannot query")


class Api:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def health_check(self) -> None:
        if _down():
            raise ConnectionError("api cannot serve")


def make(skip: bool = False) -> Injector:
    injector = Injector()
    policy = HealthPolicy(skip_when_blocked=True) if skip else None
    injector.provide(Db, eager=True, tags=("db",))
    injector.provide(Repo, eager=True, health_policy=policy)
    injector.provide(Api, eager=True, health_policy=policy, tags=("edge",))
    return injector


app = make()
