"""Builds under concurrency: exactly once, no lock on the fast path, cycles never hang."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
import pytest

from di import CircularDependencyError, Injector, Scope

from ..services import Cache
from ..timing import PATIENCE, at_most, until

pytestmark = pytest.mark.anyio


class SlowFactory:
    """Counts its calls. With ``callers``, the first call runs until that many callers
    have called, and long enough for each call to reach the build in flight."""

    def __init__(self, seconds: float, fail_first: bool = False, callers: int = 0) -> None:
        self.seconds = seconds
        self.fail_first = fail_first
        self.calls = 0
        self.lock = threading.Lock()
        self.callers = callers
        self.calling = threading.Semaphore(0)

    def __call__(self) -> Cache:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == 1 and self.callers:
            for _ in range(self.callers):
                assert self.calling.acquire(timeout=PATIENCE)
            time.sleep(at_most(0))
        time.sleep(self.seconds)
        if self.fail_first and call == 1:
            raise ConnectionError("first build fails")
        return Cache()


def _invoke_from_threads(injector: Injector, count: int, factory: SlowFactory) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        factory.calling.release()
        try:
            results[i] = injector.invoke(Cache)
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PATIENCE)
    return results


def test_32_threads_build_a_slow_factory_exactly_once() -> None:
    factory = SlowFactory(0.05)
    injector = Injector()
    injector.provide(_typed(factory))
    results = _invoke_from_threads(injector, 32, factory)
    assert factory.calls == 1
    assert all(r is results[0] for r in results) and isinstance(results[0], Cache)


def test_threads_waiting_on_a_failed_build_share_its_error_and_cache_nothing() -> None:
    factory = SlowFactory(0.05, fail_first=True, callers=8)
    injector = Injector()
    injector.provide(_typed(factory))
    results = _invoke_from_threads(injector, 8, factory)
    assert factory.calls == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    assert injector.list_invoked() == []
    assert isinstance(injector.invoke(Cache), Cache)
    assert factory.calls == 2


def test_fast_path_takes_no_lock() -> None:
    injector = Injector()
    injector.provide(Cache)
    cache = injector.invoke(Cache)
    got: list[object] = []
    with injector._mutex:  # held: any path that locks would block
        thread = threading.Thread(target=lambda: got.append(injector.invoke(Cache)))
        thread.start()
        thread.join(timeout=PATIENCE)
    assert got == [cache]


async def test_100_tasks_build_an_async_factory_exactly_once() -> None:
    calls = 0

    async def new_cache() -> Cache:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return Cache()

    injector = Injector()
    injector.provide(new_cache)
    results: list[Cache] = []

    async def worker() -> None:
        results.append(await injector.ainvoke(Cache))

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(worker)
    assert calls == 1 and len(results) == 100
    assert all(r is results[0] for r in results)


async def test_task_waits_for_a_sync_build_in_another_thread() -> None:
    factory = SlowFactory(0.1)
    injector = Injector()
    injector.provide(_typed(factory))
    thread = threading.Thread(target=injector.invoke, args=(Cache,))
    thread.start()
    await until(lambda: factory.calls, "the other thread's build")
    cache = await injector.ainvoke(Cache)
    thread.join()
    assert factory.calls == 1 and injector.invoke(Cache) is cache


class A:
    def __init__(self, b: B) -> None:
        self.b = b


class B:
    def __init__(self, a: A) -> None:
        self.a = a


class Self:
    def __init__(self, me: Self) -> None:
        pass


def test_circular_dependency_shows_the_path() -> None:
    injector = Injector()
    injector.provide(A)
    injector.provide(B)
    with pytest.raises(CircularDependencyError) as caught:
        injector.invoke(A)
    a, b = f"{__name__}.A", f"{__name__}.B"
    assert str(caught.value) == f"circular dependency: {a} -> {b} -> {a}"
    assert injector.list_invoked() == []


def test_a_self_dependency_and_a_cycle_of_transients_are_circular() -> None:
    injector = Injector()
    injector.provide(Self)
    injector.provide_transient(A)
    injector.provide_transient(B)
    with pytest.raises(
        CircularDependencyError, match=r"Self -> tests\.container\.test_concurrency\.Self"
    ):
        injector.invoke(Self)
    with pytest.raises(CircularDependencyError):
        injector.invoke(B)


async def test_ainvoke_raises_circular_dependency_naming_the_cycle() -> None:
    injector = Injector()
    injector.provide(A)
    injector.provide(B)
    with pytest.raises(CircularDependencyError, match=r"A -> .*B -> .*A"):
        await injector.ainvoke(A)


def test_cycle_through_a_captured_scope_is_detected() -> None:
    def new_a(scope: Scope) -> A:
        return A(scope.invoke(B))

    def new_b(scope: Scope) -> B:
        return B(scope.invoke(A))

    injector = Injector()
    injector.provide(new_a)
    injector.provide(new_b)
    with pytest.raises(CircularDependencyError, match=r"A -> .*B -> .*A"):
        injector.invoke(A)


def test_cycle_split_across_two_threads_raises_instead_of_hanging() -> None:
    barrier = threading.Barrier(2)

    def new_a(scope: Scope) -> A:
        barrier.wait(timeout=PATIENCE)
        return A(scope.invoke(B))

    def new_b(scope: Scope) -> B:
        barrier.wait(timeout=PATIENCE)
        return B(scope.invoke(A))

    injector = Injector()
    injector.provide(new_a)
    injector.provide(new_b)
    errors: list[BaseException] = []

    def run(key: type) -> None:
        try:
            injector.invoke(key)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(k,)) for k in (A, B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PATIENCE)
    assert not any(t.is_alive() for t in threads), "the cycle hung"
    assert len(errors) == 2
    assert all(isinstance(e, CircularDependencyError) for e in errors)
    assert injector.list_invoked() == []


def _typed(factory: SlowFactory) -> Callable[[], Cache]:
    def new_cache() -> Cache:
        return factory()

    return new_cache
