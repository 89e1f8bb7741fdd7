"""Fault injection: every way a check can misbehave, beside healthy sync and async checks.

For each misbehaviour, at parallelism 0, 1 and 4, on asyncio and trio, the call returns
within its limits, every built checkable service is in the report exactly once, each
healthy check is reported healthy and the misbehaving one is reported unhealthy or
timed out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from di import Injector, Outcome

from ..timing import PATIENCE, Stopwatch, at_most

pytestmark = pytest.mark.anyio

# The healthy checks share the per-check timeout with the faulty one: it is as long as
# they may take here. A check that holds the loop (or its thread) overruns it.
PER_CHECK = at_most(0.01)
OVERRUN = PER_CHECK + 0.2
# The whole call, when the faulty check holds the loop and the healthy ones run after it.
GLOBAL = at_most(OVERRUN + 4 * 0.01)

# The running test's release, set when it ends, so that hung sync checks' threads
# return.
_release = [threading.Event()]


@pytest.fixture(autouse=True)
def release_hung_threads() -> Iterator[None]:
    release = _release[0] = threading.Event()
    yield
    release.set()


def _busy_across_the_deadline() -> None:
    """Hold the caller's thread past the per-check deadline, the last 0.4 s of it
    spinning on a core: the deadline falls in a busy loop, which only burns 0.4 s."""
    time.sleep(OVERRUN - 0.4)
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        pass


async def _raise_async(error: BaseException) -> None:
    await anyio.sleep(0)
    raise error


def _raise_sync(error: BaseException) -> None:
    raise error


async def _hang_async() -> None:
    await anyio.sleep_forever()


def _hang_sync() -> None:
    _release[0].wait(PATIENCE)


async def _block_the_loop() -> None:
    await anyio.sleep(0)
    time.sleep(OVERRUN)


async def _busy_loop_async() -> None:
    _busy_across_the_deadline()


def _busy_loop_sync() -> None:
    _busy_across_the_deadline()


async def _swallow_cancellation() -> None:
    try:
        await anyio.sleep(PATIENCE)
    except anyio.get_cancelled_exc_class():
        return  # reports success after its deadline fired


async def _convert_cancellation() -> None:
    try:
        await anyio.sleep(PATIENCE)
    except BaseException as error:
        raise ConnectionError("connection lost") from error


async def _return_false_async() -> bool:
    await anyio.sleep(0)
    return False


def _return_false_sync() -> bool:
    return False


def _never_called() -> None:
    raise AssertionError("a check returned by a check is never called")


async def _return_a_check_async() -> Callable[[], None]:
    await anyio.sleep(0)
    return _never_called


def _return_a_check_sync() -> Callable[[], None]:
    return _never_called  # health_check=checks.redis where checks.redis(client) was meant


MISBEHAVIOURS: dict[str, tuple[Callable[[], Any], bool]] = {
    # name: (the check, whether it is async)
    "async raises CancelledError": (lambda: _raise_async(asyncio.CancelledError()), True),
    "async raises KeyboardInterrupt": (lambda: _raise_async(KeyboardInterrupt()), True),
    "async raises SystemExit": (lambda: _raise_async(SystemExit(0)), True),
    "async raises GeneratorExit": (lambda: _raise_async(GeneratorExit()), True),
    "async raises Exception": (lambda: _raise_async(RuntimeError("broken")), True),
    "sync raises CancelledError": (lambda: _raise_sync(asyncio.CancelledError()), False),
    "sync raises KeyboardInterrupt": (lambda: _raise_sync(KeyboardInterrupt()), False),
    "sync raises SystemExit": (lambda: _raise_sync(SystemExit(0)), False),
    "sync raises GeneratorExit": (lambda: _raise_sync(GeneratorExit()), False),
    "sync raises Exception": (lambda: _raise_sync(RuntimeError("broken")), False),
    "async hangs": (_hang_async, True),
    "sync hangs": (_hang_sync, False),
    "async blocks the loop": (_block_the_loop, True),
    "async busy-loops": (_busy_loop_async, True),
    "sync busy-loops": (_busy_loop_sync, False),
    "async swallows its cancellation": (_swallow_cancellation, True),
    "async converts its cancellation": (_convert_cancellation, True),
    "async returns False": (_return_false_async, True),
    "sync returns False": (_return_false_sync, False),
    "async returns a check without calling it": (_return_a_check_async, True),
    "sync returns a check without calling it": (_return_a_check_sync, False),
}


class HealthySync:
    def health_check(self) -> None:
        time.sleep(0.01)


class HealthyAsync:
    async def health_check(self) -> None:
        await anyio.sleep(0.01)


class QuickSync:
    def health_check(self) -> None:
        pass


class QuickAsync:
    async def health_check(self) -> None:
        pass


def _faulty(check: Callable[[], Any], is_async: bool) -> type:
    if is_async:

        async def health_check_async(self: object) -> Any:
            return await check()

        return type("Faulty", (), {"health_check": health_check_async, "__module__": "faults"})

    def health_check_sync(self: object) -> Any:
        return check()

    return type("Faulty", (), {"health_check": health_check_sync, "__module__": "faults"})


@pytest.mark.parametrize("parallelism", [0, 1, 4])
@pytest.mark.parametrize("name", list(MISBEHAVIOURS))
async def test_a_misbehaving_check_is_reported_and_nothing_else_suffers(
    name: str, parallelism: int
) -> None:
    check, is_async = MISBEHAVIOURS[name]
    faulty = _faulty(check, is_async)
    injector = Injector(
        health_check_parallelism=parallelism,
        health_check_timeout=PER_CHECK,
        health_check_global_timeout=GLOBAL,
    )
    # Healthy checks before and after the faulty one in the queue (last built first).
    order = [HealthySync, QuickAsync, faulty, HealthyAsync, QuickSync]
    for cls in order:
        injector.provide(cls)
        injector.invoke(cls)

    with Stopwatch() as watch:
        report = await injector.ahealth_report()

    assert watch.seconds < at_most(GLOBAL), f"{name}: took {watch.seconds:.3f} s"
    keys = [check.key for check in report.checks]
    expected = [f"{cls.__module__}.{cls.__qualname__}" for cls in reversed(order)]
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys)), keys
    for result in report.checks:
        if result.key == "faults.Faulty":
            assert result.outcome in (Outcome.UNHEALTHY, Outcome.TIMEOUT), result
            assert isinstance(result.error, Exception)
        else:
            assert result.outcome is Outcome.HEALTHY, result
    assert not report.healthy


async def test_a_check_that_returns_a_check_uncalled_fails_and_says_to_call_it() -> None:
    injector = Injector()
    injector.provide_value(object(), name="cache", health_check=lambda cache: _never_called)
    report = await injector.ahealth_report()
    (check,) = report.checks
    assert check.outcome is Outcome.UNHEALTHY
    assert "without calling it" in str(check.error)
    assert "health_check=checks.redis(client)" in str(check.error)


class MockedClient:
    """A service whose client is a test double, as a test suite gives it: its ``ping()``
    answers a mock, callable like every mock, which is no function left uncalled."""

    def __init__(self) -> None:
        from unittest.mock import AsyncMock, MagicMock

        self.client = MagicMock()
        self.aclient = AsyncMock()

    def health_check(self) -> Any:
        return self.client.ping()


class AsyncMockedClient(MockedClient):
    async def health_check(self) -> Any:  # type: ignore[override]
        return await self.aclient.ping()


async def test_a_check_returning_what_a_mocked_client_answers_passes() -> None:
    injector = Injector()
    injector.provide(MockedClient, eager=True)
    injector.provide(AsyncMockedClient, eager=True)
    await injector.astart()
    report = await injector.ahealth_report()
    assert [check.outcome for check in report.checks] == [Outcome.HEALTHY] * 2, report
    await injector.ashutdown()
