"""Providing and invoking: keys, lifetimes, scopes, parameters, and bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

import pytest

from di import (
    DIError,
    Injector,
    Named,
    Scope,
    ServiceAlreadyProvidedError,
    ServiceNotFoundError,
)

from .. import services as s
from ..services import Cache, Config, Database, Repo, key

pytestmark = pytest.mark.anyio


def test_type_key_is_reported_as_module_qualname() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(s.new_cache)
    injector.provide(Database, name="replica")
    assert injector.list_provided() == ["tests.services.Config", "tests.services.Cache", "replica"]


def test_invoke_by_type_by_name_and_by_reported_name() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide(Database, name="replica")
    db = injector.invoke(Database)
    replica = injector.invoke(Database, name="replica")
    assert isinstance(db, Database) and isinstance(replica, Database)
    assert db is not replica
    assert injector.invoke("replica") is replica
    assert injector.invoke(key(Database)) is db


def test_lazy_is_built_once_and_cached_in_the_providing_scope() -> None:
    built: list[Config] = []

    def new_config() -> Config:
        built.append(Config())
        return built[-1]

    injector = Injector()
    injector.provide(new_config)
    child = injector.scope("child")
    assert built == []
    assert child.invoke(Config) is injector.invoke(Config) is built[0]
    assert len(built) == 1
    assert injector.list_invoked() == [key(Config)]
    assert child.list_invoked() == []


def test_transient_is_built_on_every_invoke_and_never_cached() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(Repo)
    first, second = injector.invoke(Repo), injector.invoke(Repo)
    assert first is not second
    assert first.db is second.db
    assert key(Repo) not in injector.list_invoked()


def test_provide_value_counts_as_built_at_provide_time() -> None:
    injector = Injector()
    config = Config()
    injector.provide(Database)
    injector.provide_value(config)
    assert injector.list_invoked() == [key(Config)]
    assert injector.invoke(Config) is config
    injector.invoke(Database)
    assert injector.list_invoked() == [key(Config), key(Database)]


def test_nearest_provider_wins_and_child_may_shadow() -> None:
    injector = Injector()
    root_config, child_config = Config(), Config()
    injector.provide_value(root_config)
    child = injector.scope("child")
    grandchild = child.scope("grandchild")
    child.provide_value(child_config)
    assert injector.invoke(Config) is root_config
    assert child.invoke(Config) is child_config
    assert grandchild.invoke(Config) is child_config


def test_lazy_singleton_resolves_its_dependencies_in_its_own_scope() -> None:
    # A root singleton must not capture a child's service: it outlives the child.
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    child = injector.scope("child")
    child.provide(Config)
    db = child.invoke(Database)
    assert db.config is injector.invoke(Config)


def test_transient_resolves_its_dependencies_in_the_invoking_scope() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(Repo)
    request = injector.scope("request")
    request.provide(Database)
    assert request.invoke(Repo).db is request.invoke(Database)
    assert injector.invoke(Repo).db is injector.invoke(Database)


def test_invocation_counter_is_shared_by_the_whole_tree() -> None:
    injector = Injector()
    child = injector.scope("child")
    injector.provide(Config)
    child.provide(Database)
    child.invoke(Database)
    config = injector._services[Config]
    db = child._services[Database]
    assert 0 < config.index < db.index


def test_scope_and_injector_parameters_receive_the_invoking_scope() -> None:
    seen: list[Scope] = []

    def needs_scope(scope: Scope) -> Cache:
        seen.append(scope)
        return Cache()

    def needs_injector(injector: Injector) -> Config:
        seen.append(injector)
        return Config()

    injector = Injector()
    child = injector.scope("child")
    child.provide(needs_scope)
    injector.provide_transient(needs_injector)
    child.invoke(Cache)
    child.invoke(Config)
    assert seen == [child, child]


def test_a_named_parameter_receives_the_named_service() -> None:
    def new_repo(db: Annotated[Database, Named("replica")]) -> Repo:
        return Repo(db)

    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide(Database, name="replica")
    injector.provide(new_repo)
    assert injector.invoke(Repo).db is injector.invoke("replica")
    assert injector.invoke(Repo).db is not injector.invoke(Database)


def test_parameter_with_default_uses_it_when_nothing_is_provided() -> None:
    def new_cache(size: int = 128, *, config: Config) -> Cache:
        cache = Cache()
        cache.size = size  # type: ignore[attr-defined]
        cache.config = config  # type: ignore[attr-defined]
        return cache

    injector = Injector()
    injector.provide(Config)
    injector.provide(new_cache)
    assert injector.invoke(Cache).size == 128  # type: ignore[attr-defined]


def test_annotations_are_read_once_not_on_every_invoke(monkeypatch: pytest.MonkeyPatch) -> None:
    import typing

    calls = 0
    real = typing.get_type_hints

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(Repo)
    monkeypatch.setattr(typing, "get_type_hints", counting)
    for _ in range(5):
        injector.invoke(Repo)
    assert calls == 0


def test_generator_factory_is_keyed_by_what_it_yields() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(s.new_database_gen)
    s.events.clear()
    assert isinstance(injector.invoke(Database), Database)
    assert s.events == ["open"]
    injector.shutdown()
    assert s.events == ["open", "close"]


async def test_async_factory_needs_ainvoke_then_invoke_returns_it() -> None:
    injector = Injector()
    injector.provide(s.new_async_cache)
    with pytest.raises(DIError, match="ainvoke"):
        injector.invoke(Cache)
    cache = await injector.ainvoke(Cache)
    assert injector.invoke(Cache) is cache
    assert await injector.ainvoke(Cache) is cache


async def test_ainvoke_builds_sync_and_async_dependencies() -> None:
    async def new_repo(db: Database, cache: Cache) -> Repo:
        return Repo(db)

    injector = Injector()
    injector.provide(Config)
    injector.provide(s.new_database_agen)
    injector.provide(s.new_async_cache)
    injector.provide(new_repo)
    s.events.clear()
    repo = await injector.ainvoke(Repo)
    assert repo.db is injector.invoke(Database)
    await injector.ashutdown()
    assert s.events == ["aopen", "aclose"]


async def test_an_async_transient_is_built_anew_on_every_ainvoke() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(s.new_async_cache)
    assert await injector.ainvoke(Cache) is not await injector.ainvoke(Cache)


def test_a_scope_knows_its_name_parent_ancestors_and_children() -> None:
    injector = Injector()
    assert injector.name == "root" and injector.parent is None and injector.ancestors() == []
    child = injector.scope("child")
    grandchild = child.scope("grandchild")
    assert grandchild.parent is child
    assert grandchild.ancestors() == [child, injector]
    assert injector.children() == [child] and child.children() == [grandchild]
    assert repr(child) == "<Scope 'child'>"


# -- bad input ----------------------------------------------------------------------


def test_not_found_names_key_scope_available_and_closest() -> None:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database, name="replica")
    child = injector.scope("request")
    with pytest.raises(ServiceNotFoundError) as caught:
        child.invoke("replca")
    message = str(caught.value)
    assert "'replca'" in message and "'request'" in message
    assert "did you mean 'replica'?" in message
    assert key(Config) in message
    assert isinstance(caught.value, LookupError)
    assert caught.value.available == ["replica", key(Config)]


def test_not_found_dependency_names_the_parameter_and_factory() -> None:
    injector = Injector()
    injector.provide(s.NeedsMissing)
    with pytest.raises(ServiceNotFoundError) as caught:
        injector.invoke(s.NeedsMissing)
    assert key(Cache) in str(caught.value)
    assert f"parameter 'nothing' of factory '{key(s.NeedsMissing)}'" in str(caught.value.__notes__)
    assert injector.list_invoked() == []


def test_providing_twice_in_one_scope_is_refused() -> None:
    injector = Injector()
    injector.provide(Config)
    with pytest.raises(ServiceAlreadyProvidedError, match="override"):
        injector.provide(Config)
    injector.scope("child").provide(Config)  # another scope may shadow


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda i: i.provide(42), TypeError, "callable"),
        (lambda i: i.provide(lambda: 1), TypeError, "no return annotation"),
        (lambda i: i.provide(Config, name=""), ValueError, "non-empty string"),
        (lambda i: i.provide(Config, name=7), TypeError, "non-empty string"),
        (lambda i: i.provide(Config, shutdown="close"), TypeError, "shutdown="),
        (lambda i: i.provide(Config, health_check=1), TypeError, "health_check="),
        (lambda i: i.provide_transient(s.new_database_gen), TypeError, "never run"),
        (lambda i: i.scope(""), ValueError, "non-empty"),
        (lambda i: i.invoke(Database, name=""), ValueError, "non-empty"),
        (lambda i: i.invoke("x", name="y"), TypeError, "pass a type"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(
    call: object, error: type[Exception], match: str
) -> None:
    injector = Injector()
    with pytest.raises(error, match=match):
        call(injector)  # type: ignore[operator]
    assert injector.list_provided() == [] and injector.children() == []


def test_unannotated_parameter_without_default_fails_at_provide_time() -> None:
    def new_cache(size) -> Cache:  # type: ignore[no-untyped-def]
        return Cache()

    injector = Injector()
    with pytest.raises(TypeError, match="parameter 'size' has no type annotation"):
        injector.provide(new_cache)
    assert injector.list_provided() == []


def test_unresolvable_annotation_fails_at_invoke_naming_factory_and_parameter() -> None:
    injector = Injector()
    injector.provide(s.Later)
    with pytest.raises(TypeError, match=r"Later.*'Undefined'.*parameter 'thing'"):
        injector.invoke(s.Later)


def test_generator_factory_must_be_annotated_with_its_yield_type() -> None:
    def bad() -> Database:  # type: ignore[misc]
        yield Database(Config())

    with pytest.raises(TypeError, match=r"Iterator\[T\]"):
        Injector().provide(bad)


def test_a_second_child_scope_of_the_same_name_is_refused() -> None:
    injector = Injector()
    injector.scope("request")
    with pytest.raises(ValueError, match="already has a child scope named 'request'"):
        injector.scope("request")


def test_named_service_of_another_type_names_both_types() -> None:
    injector = Injector()
    injector.provide(s.new_cache, name="x")
    with pytest.raises(TypeError, match=rf"{re.escape(key(Database))}.*{re.escape(key(Cache))}"):
        injector.invoke(Database, name="x")


def test_named_parameter_of_another_type_is_refused() -> None:
    def new_repo(db: Annotated[Database, Named("x")]) -> Repo:
        return Repo(db)

    injector = Injector()
    injector.provide(s.new_cache, name="x")
    injector.provide(new_repo)
    with pytest.raises(TypeError, match="parameter 'db'"):
        injector.invoke(Repo)


def test_named_marker_refuses_bad_names() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Named("")


def test_scope_cannot_be_made_directly() -> None:
    with pytest.raises(TypeError, match=r"injector\.scope"):
        Scope("x", None)  # type: ignore[arg-type]


def test_failed_factory_caches_nothing_and_next_invoke_retries() -> None:
    attempts = 0

    def flaky() -> Cache:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("first try fails")
        return Cache()

    injector = Injector()
    injector.provide(flaky)
    with pytest.raises(ConnectionError):
        injector.invoke(Cache)
    assert injector.list_invoked() == []
    assert isinstance(injector.invoke(Cache), Cache)
    assert attempts == 2


def test_failed_generator_factory_caches_nothing() -> None:
    def broken(config: Config) -> Iterator[Database]:
        raise OSError("cannot open")
        yield Database(config)

    injector = Injector()
    injector.provide(Config)
    injector.provide(broken)
    with pytest.raises(OSError, match="cannot open"):
        injector.invoke(Database)
    assert injector.list_invoked() == [key(Config)]
    injector.shutdown()


# -- compiled transients never serve stale instances ---------------------------------


def _transient_graph() -> Injector:
    injector = Injector()
    injector.provide(Config)
    injector.provide(Database)
    injector.provide_transient(Repo)
    injector.provide_transient(s.Service)
    return injector


def test_compiled_transient_sees_an_overridden_singleton() -> None:
    injector = _transient_graph()
    before = injector.invoke(s.Service)
    replacement = Database(Config())
    injector.override(_returning(replacement))
    after = injector.invoke(s.Service)
    assert before.repo.db is not after.repo.db
    assert after.repo.db is replacement


def test_compiled_transient_sees_singletons_rebuilt_after_shutdown() -> None:
    injector = _transient_graph()
    before = injector.invoke(s.Service)
    injector.shutdown()
    after = injector.invoke(s.Service)
    assert before.repo.db.closed and not after.repo.db.closed
    assert after.repo.db is injector.invoke(Database)


def test_compiled_transient_sees_a_child_shadowing_later() -> None:
    injector = _transient_graph()
    child = injector.scope("child")
    child.invoke(s.Service)
    child.provide(Database)
    assert child.invoke(s.Service).repo.db is child.invoke(Database)
    assert injector.invoke(s.Service).repo.db is injector.invoke(Database)


def test_transient_with_async_dependency_takes_the_general_path() -> None:
    injector = Injector()
    injector.provide(s.new_async_cache)
    injector.provide_transient(s.NeedsMissing)
    with pytest.raises(DIError, match="ainvoke"):
        injector.invoke(s.NeedsMissing)


async def test_ainvoke_uses_a_compiled_transient() -> None:
    injector = _transient_graph()
    first = injector.invoke(s.Service)
    second = await injector.ainvoke(s.Service)
    assert first is not second and first.repo.db is second.repo.db


def _returning(db: Database) -> object:
    def fake_database() -> Database:
        return db

    return fake_database


def test_optional_parameter_asks_for_the_type_and_defaults_when_absent() -> None:
    def new_repo(db: Database | None = None) -> Repo:
        return Repo(db)  # type: ignore[arg-type]

    injector = Injector()
    injector.provide(new_repo)
    assert injector.invoke(Repo).db is None
    child = injector.scope("with-db")
    child.provide(Config)
    child.provide(Database)
    child.provide_transient(new_repo)
    assert child.invoke(Repo).db is child.invoke(Database)
