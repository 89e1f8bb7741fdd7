"""S1 (invoke a built singleton) and S2 (a transient with a transient and singletons).

Each setup returns, per scenario, a statement and the names it uses; a library that
cannot express a scenario returns None for it. Every setup checks once that its
statement really builds what the scenario asks, so no row times a no-op.

healthdi is also measured with one lifecycle hook registered (``add_hook``): on
``"shut_down"``, an event S1 and S2 never fire (what having hooks costs paths no hook
listens to), and on ``"built"``, which S2 fires twice a call, one per transient built
(what the event itself costs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .scenario import Config, Database, Repo, Service

Row = tuple[str, dict[str, Any]] | None


def _check(env: dict[str, Any], s1: str | None, s2: str | None) -> dict[str, Row]:
    if s1 is not None:
        assert eval(s1, env) is eval(s1, env)
        assert isinstance(eval(s1, env), Database)
    if s2 is not None:
        a, b = eval(s2, env), eval(s2, env)
        assert isinstance(a, Service) and a is not b and a.repo is not b.repo
        assert a.config is b.config and a.repo.db is b.repo.db
    return {"S1": (s1, env) if s1 else None, "S2": (s2, env) if s2 else None}


def floor() -> dict[str, Row]:
    config = Config()
    db = Database(config)
    env = {"d": {Database: db}, "Database": Database, "Service": Service, "Repo": Repo}
    env |= {"db": db, "config": config}
    return _check(env, "d[Database]", "Service(Repo(db), config)")


def healthdi() -> dict[str, Row]:
    from di import Injector

    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(Repo)
    injector.provide_transient(Service)
    env = {"injector": injector, "Database": Database, "Service": Service}
    return _check(env, "injector.invoke(Database)", "injector.invoke(Service)")


def _with_hook(event: str) -> dict[str, Row]:
    """healthdi's rows, with one hook on ``event`` that counts its calls (a list that
    keeps growing would time the list)."""
    rows = healthdi()
    s1 = rows["S1"]
    assert s1 is not None
    injector = s1[1]["injector"]
    calls = [0]

    def count(event: Any) -> None:
        calls[0] += 1

    injector.add_hook(event, count)
    injector.invoke(Service)
    assert calls[0] == (2 if event == "built" else 0), "S2 builds two transients"
    return rows


def healthdi_idle_hook() -> dict[str, Row]:
    return _with_hook("shut_down")


def healthdi_built_hook() -> dict[str, Row]:
    return _with_hook("built")


def dishka() -> dict[str, Row]:
    from dishka import Provider, Scope, make_container

    provider = Provider(scope=Scope.APP)
    provider.provide(Config)
    provider.provide(Database)
    provider.provide(Repo, cache=False)
    provider.provide(Service, cache=False)
    container = make_container(provider)
    env = {"container": container, "Database": Database, "Service": Service}
    return _check(env, "container.get(Database)", "container.get(Service)")


def svcs() -> dict[str, Row]:
    import svcs

    registry = svcs.Registry()
    registry.register_factory(Config, Config)

    def new_database(svcs_container: svcs.Container) -> Database:
        return Database(svcs_container.get(Config))

    registry.register_factory(Database, new_database)
    container = svcs.Container(registry)
    env = {"container": container, "Database": Database}
    # svcs caches per container and has no transients: S2 does not apply.
    return _check(env, "container.get(Database)", None)


def dependency_injector() -> dict[str, Row]:
    from dependency_injector import containers, providers

    class Container(containers.DeclarativeContainer):
        config = providers.Singleton(Config)
        database = providers.Singleton(Database, config=config)
        repo = providers.Factory(Repo, db=database)
        service = providers.Factory(Service, repo=repo, config=config)

    container = Container()
    env = {"container": container}
    return _check(env, "container.database()", "container.service()")


def wireup() -> dict[str, Row]:
    import wireup

    container = wireup.create_sync_container(
        injectables=[
            wireup.injectable(Config),
            wireup.injectable(Database),
        ]
    )
    env = {"container": container, "Database": Database}
    # wireup's transients are only available inside a scope: S2 does not apply.
    return _check(env, "container.get(Database)", None)


def lagom() -> dict[str, Row]:
    from lagom import Container, Singleton

    container = Container()
    container[Config] = Singleton(Config)
    container[Database] = Singleton(Database)
    env = {"container": container, "Database": Database, "Service": Service}
    return _check(env, "container[Database]", "container[Service]")


def that_depends() -> dict[str, Row]:
    from that_depends import BaseContainer, providers

    class Container(BaseContainer):
        config = providers.Singleton(Config)
        database = providers.Singleton(Database, config=config.cast)
        repo = providers.Factory(Repo, db=database.cast)
        service = providers.Factory(Service, repo=repo.cast, config=config.cast)

    env = {"Container": Container}
    return _check(env, "Container.database.resolve_sync()", "Container.service.resolve_sync()")


def punq() -> dict[str, Row]:
    import punq

    container = punq.Container()
    container.register(Config, scope=punq.Scope.singleton)
    container.register(Database, scope=punq.Scope.singleton)
    container.register(Repo)
    container.register(Service)
    env = {"container": container, "Database": Database, "Service": Service}
    return _check(env, "container.resolve(Database)", "container.resolve(Service)")


SETUPS: dict[str, Callable[[], dict[str, Row]]] = {
    "floor (dict lookup / hand-written)": floor,
    "healthdi": healthdi,
    "healthdi, a hook on 'shut_down'": healthdi_idle_hook,
    "healthdi, a hook on 'built'": healthdi_built_hook,
    "dependency-injector": dependency_injector,
    "wireup": wireup,
    "lagom": lagom,
    "that-depends": that_depends,
    "svcs": svcs,
    "dishka": dishka,
    "punq": punq,
}
