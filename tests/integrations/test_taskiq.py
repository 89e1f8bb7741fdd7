"""taskiq: a middleware for the container's life, a scope per task, ``@inject``, a real worker.

In-process, tasks run on taskiq's ``InMemoryBroker`` as a worker process runs them (its
receiver and middlewares). taskiq runs on asyncio only, so these tests run their own
asyncio loop rather than both anyio backends. The documented example
(``examples/taskiq_worker.py``) runs under a real ``taskiq worker`` with a real
redis-server: its tasks commit or roll back, its readiness follows Redis, and its
shutdown closes the connection.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("taskiq")

from taskiq import Context, InMemoryBroker, TaskiqDepends, TaskiqMessage

from di import HealthServer, Injector
from di.errors import GraphError
from di.integrations.taskiq import ContainerMiddleware, Inject, current_scope, inject, install

from ..processes import Child, Redis, probe, steady_port
from ..timing import PATIENCE, at_most, wait_until
from .units import Ledger, Work, async_unit_of_work, unit_of_work


class Unprovided:
    """Provided by nothing."""


class TaskName:
    """A scoped service that reads the task's message from the scope's context."""

    def __init__(self, message: TaskiqMessage) -> None:
        self.value = message.task_name


def make_broker(factory: object = async_unit_of_work) -> tuple[InMemoryBroker, Injector]:
    broker = InMemoryBroker(await_inplace=True)
    broker.is_worker_process = True  # as `taskiq worker` sets it: the middleware starts
    injector = Injector()
    injector.provide(Ledger)
    injector.provide_scoped(factory)  # type: ignore[arg-type]
    injector.provide_scoped(TaskName)
    install(broker, injector)
    return broker, injector


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_each_task_commits_on_success_and_rolls_back_on_error_over_10000_tasks(
    kind: str,
) -> None:
    broker, injector = make_broker(async_unit_of_work if kind == "async" else unit_of_work)

    if kind == "async":

        @broker.task
        @inject
        async def place(fail: bool, work: Inject[Work]) -> str:
            if fail:
                raise ValueError("no item")
            return "placed"

    else:

        @broker.task
        @inject
        def place(fail: bool, work: Inject[Work]) -> str:  # taskiq runs it in a thread
            if fail:
                raise ValueError("no item")
            return "placed"

    async def run() -> Ledger:
        await broker.startup()
        try:
            for number in range(10_000):
                task = await place.kiq(number % 4 == 0)
                await task.wait_result(timeout=PATIENCE)
            return injector.invoke(Ledger)
        finally:
            await broker.shutdown()

    ledger = asyncio.run(run())
    assert ledger.opened == 10_000
    assert (ledger.committed, ledger.rolled_back) == (7_500, 2_500)
    assert injector.list_invoked() == []  # the middleware's shutdown emptied it


def test_a_task_scope_has_the_task_message_in_its_context() -> None:
    broker, _ = make_broker()

    @broker.task(task_name="tests.which")
    @inject
    async def which(name: Inject[TaskName]) -> tuple[str, bool]:
        return name.value, (await current_scope().ainvoke(TaskName)) is name

    async def run() -> tuple[str, bool]:
        await broker.startup()
        try:
            task = await which.kiq()
            result = await task.wait_result(timeout=PATIENCE)
            return result.return_value  # type: ignore[no-any-return]
        finally:
            await broker.shutdown()

    assert asyncio.run(run()) == ("tests.which", True)


def test_the_worker_start_names_a_forgotten_inject_and_an_unknown_key() -> None:
    broker, injector = make_broker()

    @broker.task
    async def forgot(work: Inject[Work]) -> None:
        pass

    @broker.task
    @inject
    async def unknown(thing: Inject[Unprovided]) -> None:
        pass

    with pytest.raises(GraphError) as failed:
        asyncio.run(broker.startup())
    message = str(failed.value)
    assert "forgot" in message and "no @inject" in message
    assert "unknown" in message and "'thing' injects what is not provided" in message
    assert injector.list_invoked() == []  # nothing started


def test_install_refuses_what_is_not_a_broker_or_a_foreign_health_server() -> None:
    with pytest.raises(TypeError, match="needs a taskiq broker"):
        install(object(), Injector())  # type: ignore[arg-type]
    broker = InMemoryBroker()
    with pytest.raises(ValueError, match="runs another injector"):
        install(broker, Injector(), health_server=HealthServer(Injector(), http="127.0.0.1:0"))
    assert isinstance(install(broker, Injector()), ContainerMiddleware)
    with pytest.raises(RuntimeError, match="already called on this broker"):
        install(broker, Injector())


# -- the documented example under a real worker ------------------------------------------


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis(steady_port())
    server.start()
    yield server
    server.kill()


def readiness(url: str) -> int:
    try:
        return httpx.get(url, timeout=at_most(1)).status_code
    except httpx.TransportError:
        return 0


def test_the_example_worker_commits_rolls_back_follows_redis_and_stops_cleanly(
    tmp_path: Path, redis: Redis
) -> None:
    import redis as redis_client

    health_port = steady_port()
    readyz = f"http://127.0.0.1:{health_port}/readyz"
    url = f"{redis.url}/0"
    worker = Child(
        [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "examples.taskiq_worker:broker",
            "--workers",
            "1",
        ],
        log=tmp_path / "worker.log",
        REDIS_URL=url,
        HEALTH_HTTP=f"127.0.0.1:{health_port}",
        HEALTH_INTERVAL="1",
    )
    client = redis_client.Redis(port=redis.port)
    try:
        worker.wait_output("Listening started.")
        wait_until(lambda: readiness(readyz) == 200, "the worker's readiness to be SERVING")
        assert probe(readyz).returncode == 0

        items = ["tea", "", "cake", "jam", ""]
        kick = (
            "import asyncio, sys\n"
            "from examples.taskiq_worker import broker, place\n"
            "async def main():\n"
            "    await broker.startup()\n"
            "    for item in sys.argv[1:]:\n"
            "        await place.kiq(item)\n"
            "    await broker.shutdown()\n"
            "asyncio.run(main())\n"
        )
        sender = Child(
            [sys.executable, "-c", kick, *items], log=tmp_path / "sender.log", REDIS_URL=url
        )
        assert sender.wait() == 0, sender.output()
        sender.close()

        def counts() -> tuple[int, ...]:
            return tuple(
                int(client.get(f"work:{what}") or 0)
                for what in ("opened", "committed", "rolled-back")
            )

        wait_until(
            lambda: counts()[0] == len(items) and sum(counts()[1:]) == len(items),
            "every task's unit of work to close",
        )
        assert counts() == (5, 3, 2)
        assert sorted(client.lrange("orders", 0, -1)) == [b"cake", b"jam", b"tea"]

        client.close()
        redis.kill()
        wait_until(lambda: readiness(readyz) == 503, "readiness NOT_SERVING, Redis down")
        redis.start()
        wait_until(lambda: readiness(readyz) == 200, "readiness SERVING, Redis back")

        worker.signal(signal.SIGTERM)
        assert worker.wait(PATIENCE) == 0, worker.output()
        # taskiq restarts a worker process whose broker connection broke: each process
        # it ran closed its connection, the last one on this SIGTERM.
        output = worker.output()
        assert output.rstrip().endswith("redis closed"), output
        assert output.count("redis closed") == output.count("Listening started."), output
    finally:
        worker.close()


def test_a_worker_with_a_forgotten_inject_does_not_start_and_says_why(
    tmp_path: Path, redis: Redis
) -> None:
    worker = Child(
        [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "tests.integrations.worker_targets:taskiq_broker",
            "--workers",
            "1",
            "--max-fails",
            "1",
        ],
        log=tmp_path / "worker.log",
        REDIS_URL=f"{redis.url}/0",
    )
    try:
        worker.wait_output("no @inject")
        output = worker.output()
        assert "forgot_inject" in output and "has Inject[...] parameters" in output, output
    finally:
        worker.close()


def region() -> str:
    return "eu"


def test_taskiq_s_own_dependencies_work_beside_inject() -> None:
    broker, _ = make_broker()

    @broker.task(task_name="tests.both")
    @inject
    async def both(
        number: int,
        work: Inject[Work],
        context: Context = TaskiqDepends(),  # noqa: B008 - how taskiq declares them
        where: str = TaskiqDepends(region),
    ) -> str:
        return f"{number} {context.message.task_name} {where} {type(work).__name__}"

    async def run() -> str:
        await broker.startup()
        try:
            result = await (await both.kiq(3)).wait_result(timeout=PATIENCE)
            return result.return_value  # type: ignore[no-any-return]
        finally:
            await broker.shutdown()

    assert asyncio.run(run()) == "3 tests.both eu Work"
