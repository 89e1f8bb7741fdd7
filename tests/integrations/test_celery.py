"""Celery: a scope per task, ``@inject`` tasks, startup checks, and a real worker.

In-process, tasks run through Celery's own tracer (``task.apply()``: the signals a
worker sends, in the test's process). The documented example
(``examples/celery_worker.py``) runs under a real ``celery worker`` (prefork, two pool
processes) with a real redis-server as its broker: its tasks commit or roll back, its
HealthServer's readiness follows the broker down and up as a Kubernetes probe reads it,
and its shutdown closes every process's connection.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("celery")

from celery import Celery

from di import HealthServer, Injector
from di.errors import GraphError
from di.integrations.celery import Context, Inject, current_scope, inject, install

from ..processes import Child, Redis, probe, steady_port
from ..timing import PATIENCE, Stopwatch, at_most, wait_until
from .units import Ledger, Work, unit_of_work


class Unprovided:
    """Provided by nothing."""


class TaskId:
    """A scoped service that reads the task's request from the scope's context."""

    def __init__(self, request: Context) -> None:
        self.value = request.id


def make_app(*, start: bool = True) -> tuple[Celery, Injector]:
    app = Celery("tests", broker="memory://", set_as_current=False)
    injector = Injector()
    injector.provide(Ledger)
    injector.provide_scoped(unit_of_work)
    injector.provide_scoped(TaskId)
    install(app, injector)
    if start:
        injector.start()
    return app, injector


def test_each_task_commits_on_success_and_rolls_back_on_error_over_10000_tasks() -> None:
    app, injector = make_app()

    @app.task
    @inject
    def place(fail: bool, work: Inject[Work]) -> str:
        if fail:
            raise ValueError("no item")
        return "placed"

    try:
        for number in range(10_000):
            place.apply(args=(number % 4 == 0,))
        ledger = injector.invoke(Ledger)
        assert ledger.opened == 10_000
        assert (ledger.committed, ledger.rolled_back) == (7_500, 2_500)
    finally:
        injector.shutdown()


def test_a_task_scope_has_the_task_request_in_its_context() -> None:
    app, injector = make_app()

    @app.task
    @inject
    def which(task_id: Inject[TaskId]) -> tuple[str, bool]:
        return task_id.value, current_scope().invoke(TaskId) is task_id

    try:
        result = which.apply(task_id="the-task")
        assert result.get() == ("the-task", True)
    finally:
        injector.shutdown()


def test_a_task_that_injects_nothing_opens_no_scope() -> None:
    app, injector = make_app()

    @app.task
    def plain() -> int:
        return 1

    try:
        assert plain.apply().get() == 1
        assert injector.invoke(Ledger).opened == 0
    finally:
        injector.shutdown()


def test_inject_above_app_task_or_on_async_def_is_refused_by_name() -> None:
    app, _ = make_app(start=False)

    @app.task(name="tests.refused")
    def refused(work: Inject[Work]) -> None:
        pass

    with pytest.raises(TypeError, match=r"@app.task above @inject"):
        inject(refused)

    async def coroutine(work: Inject[Work]) -> None:
        pass

    with pytest.raises(TypeError, match="is async; Celery runs sync tasks"):
        inject(coroutine)


def test_install_refuses_what_is_not_a_celery_app_or_a_foreign_health_server() -> None:
    with pytest.raises(TypeError, match="needs a Celery app"):
        install(object(), Injector())  # type: ignore[arg-type]
    app = Celery("tests", broker="memory://", set_as_current=False)
    with pytest.raises(ValueError, match="runs another injector"):
        install(app, Injector(), health_server=HealthServer(Injector(), http="127.0.0.1:0"))
    install(app, Injector())
    with pytest.raises(RuntimeError, match="already called on this Celery app"):
        install(app, Injector())


def test_worker_init_names_a_forgotten_inject_and_an_unknown_key() -> None:
    """What a worker's start checks, called as the worker calls it (its signal)."""
    app, _ = make_app(start=False)

    @app.task
    def forgot(work: Inject[Work]) -> None:
        pass

    @app.task
    @inject
    def unknown(thing: Inject[Unprovided]) -> None:
        pass

    class FakeWorker:  # what worker_init passes: the worker, whose .app is the app
        def __init__(self) -> None:
            self.app = app
            self.pool_cls = "solo"

    from celery import signals

    with pytest.raises(SystemExit) as stopped:
        signals.worker_init.send(sender=FakeWorker())
    message = str(stopped.value)
    assert "forgot" in message and "no @inject" in message
    assert "unknown" in message and "'thing' injects what is not provided" in message
    assert isinstance(stopped.value.__cause__, GraphError)


# -- the documented example under a real worker ------------------------------------------


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis(steady_port())
    server.start()
    yield server
    server.kill()


def start_worker(tmp_path: Path, redis: Redis, health_port: int, interval: float) -> Child:
    worker = Child(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "examples.celery_worker",
            "worker",
            "--loglevel",
            "info",
            "--concurrency",
            "2",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ],
        log=tmp_path / "worker.log",
        CELERY_BROKER_URL=f"{redis.url}/0",
        HEALTH_HTTP=f"127.0.0.1:{health_port}",
        HEALTH_INTERVAL=str(interval),
    )
    worker.wait_output(" ready.")
    return worker


def readiness(url: str) -> int:
    try:
        return httpx.get(url, timeout=at_most(1)).status_code
    except httpx.TransportError:
        return 0


def test_the_example_worker_commits_rolls_back_follows_its_broker_and_stops_cleanly(
    tmp_path: Path, redis: Redis
) -> None:
    import redis as redis_client

    interval = 1.0
    health_port = steady_port()
    readyz = f"http://127.0.0.1:{health_port}/readyz"
    worker = start_worker(tmp_path, redis, health_port, interval)
    client = redis_client.Redis(port=redis.port)
    try:
        wait_until(lambda: readiness(readyz) == 200, "the worker's readiness to be SERVING")
        assert probe(readyz).returncode == 0

        # Tasks: each commits on success and rolls back on error, in either pool process.
        sender = Celery("shop", broker=f"{redis.url}/0", set_as_current=False)
        items = ["tea", "", "cake", "", "jam", "bread"]
        for item in items:
            sender.send_task("examples.celery_worker.place", args=(item,))

        def counts() -> tuple[int, int, int]:
            return tuple(  # type: ignore[return-value]
                int(client.get(f"work:{what}") or 0)
                for what in ("opened", "committed", "rolled-back")
            )

        wait_until(
            lambda: counts()[0] == len(items) and sum(counts()[1:]) == len(items),
            "every task's unit of work to close",
        )
        assert counts() == (6, 4, 2)
        assert sorted(client.lrange("orders", 0, -1)) == [b"bread", b"cake", b"jam", b"tea"]

        # The broker stops: readiness turns NOT_SERVING within one round.
        client.close()
        redis.kill()
        with Stopwatch() as down:
            wait_until(lambda: readiness(readyz) == 503, "readiness NOT_SERVING, broker down")
        assert down.seconds <= at_most(interval), down.seconds
        unready = probe(readyz)
        assert unready.returncode == 1 and "503" in unready.stdout, unready.stdout
        assert httpx.get(readyz.replace("readyz", "livez"), timeout=PATIENCE).status_code == 200

        # ...and SERVING once it is back.
        redis.start()
        with Stopwatch() as up:
            wait_until(lambda: readiness(readyz) == 200, "readiness SERVING, broker back")
        assert up.seconds <= at_most(interval), up.seconds
        assert probe(readyz).returncode == 0

        worker.signal(signal.SIGTERM)
        assert worker.wait(PATIENCE) == 0, worker.output()
        # The main process (the health server's injector) and both pool processes.
        assert worker.output().count("redis closed") == 3, worker.output()
    finally:
        worker.close()


def test_a_worker_with_a_forgotten_inject_does_not_start_and_says_why(
    tmp_path: Path, redis: Redis
) -> None:
    worker = Child(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integrations.worker_targets:celery_app",
            "worker",
            "--pool",
            "solo",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ],
        log=tmp_path / "worker.log",
        CELERY_BROKER_URL=f"{redis.url}/0",
    )
    try:
        assert worker.wait(PATIENCE) != 0
        output = worker.output()
        assert "the worker cannot start" in output, output
        assert "forgot_inject" in output and "no @inject" in output, output
    finally:
        worker.close()
