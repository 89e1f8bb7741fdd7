"""Applications for the fork tests: what a forking server loads before it forks.

- :func:`create_flask_app` is a Flask app installed at import, as gunicorn ``--preload``
  loads it in its master before forking the workers. Its database check fails while
  the file named by ``DOWN_FILE`` exists, and every answer says which process gave it
  (``X-Worker``).
- ``python -m tests.fork_targets`` forks this process while a sync check and a Flask
  app's monitor are running, and prints what the child saw, as JSON;
  ``python -m tests.fork_targets publishing`` forks while another thread is publishing
  a monitor's status, ``... building`` while another thread builds a singleton (sync
  and async waiters in the child), ``... compiling`` while another thread compiles a
  builder. The child reports ``"hung"`` for what never returns.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from di import HealthMonitor, Injector

from .timing import PATIENCE, at_most, wait_until


class Database:
    """Fails its check while the file ``down`` names exists (each process sees it)."""

    def __init__(self, down: Path | None = None) -> None:
        self.down = down
        self.failing = False  # this process's own switch

    def health_check(self) -> None:
        if self.failing or (self.down is not None and self.down.exists()):
            raise ConnectionError("the database is down")


def create_flask_app() -> Any:
    """gunicorn's factory (``tests.fork_targets:create_flask_app()``)."""
    from flask import Flask, Response

    from di.integrations.flask import install

    injector = Injector()
    injector.provide_value(Database(Path(os.environ["DOWN_FILE"])))
    app = Flask(__name__)
    # A round every 0.5 s, each with a timeout a healthy check meets on a loaded machine.
    install(app, injector, monitor=HealthMonitor(injector, interval=0.5, timeout=at_most(0)))

    @app.after_request
    def say_who(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    return app


# -- os.fork() with checks running -------------------------------------------------------------


class Blocking:
    """A sync check that, in the process that made it, waits until released."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.started = threading.Event()
        self.release = threading.Event()

    def health_check(self) -> None:
        if os.getpid() == self.parent:
            self.started.set()
            self.release.wait(PATIENCE)


def fork_while_checking() -> dict[str, Any]:
    """Fork while a sync check runs in a worker thread and a Flask app's monitor runs.

    The child reports its sync checks' outcomes (two calls), then its Flask app's
    /readyz before and after its own copy of the database starts failing.
    """
    from flask import Flask

    from di.integrations.flask import install, shutdown

    injector = Injector(health_check_timeout=PATIENCE)
    blocking = Blocking()
    injector.provide_value(blocking)
    injector.provide(Database, eager=True)
    injector.start()
    in_flight = threading.Thread(target=injector.health_report)
    in_flight.start()
    assert blocking.started.wait(PATIENCE)  # a check and a call are in flight: fork now

    app_injector = Injector()
    app_injector.provide(Database, eager=True)
    app = Flask(__name__)
    monitor = HealthMonitor(app_injector, interval=0.05, timeout=at_most(0))
    install(app, app_injector, monitor=monitor)
    wait_until(lambda: app.test_client().get("/readyz").status_code == 200, "readiness")

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's exit hooks
        code = 1
        try:
            os.close(read)
            seen: dict[str, Any] = {}
            seen["checks"] = [
                [check.outcome.value for check in injector.health_report().checks] for _ in range(2)
            ]
            client = app.test_client()
            version = monitor.snapshot.version
            wait_until(lambda: monitor.snapshot.version > version + 1, "rounds in the child")
            seen["readyz"] = client.get("/readyz").status_code
            app_injector.invoke(Database).failing = True  # the child's copy only
            wait_until(lambda: client.get("/readyz").status_code == 503, "readiness to fail")
            seen["failing"] = client.get("/readyz").status_code
            shutdown(app)
            os.write(write, json.dumps(seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    blocking.release.set()
    in_flight.join(PATIENCE)
    with os.fdopen(read, "rb") as reading:
        child = json.loads(reading.read() or b"null")
    _, status = os.waitpid(pid, 0)
    parent_readyz = app.test_client().get("/readyz").status_code
    shutdown(app)
    return {"child": child, "child_status": status, "parent_readyz": parent_readyz}


# -- os.fork() while another thread holds the container or the monitor -------------------


def _fork_and_run(steps: dict[str, Callable[[], Any]], release: threading.Event) -> Any:
    """Fork; in the child run each step with a watchdog and report what each returned,
    or ``"hung"``; in the parent release the thread that was busy at the fork, and
    return the child's report."""
    import signal

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: leave without running the parent's exit hooks
        code = 1
        try:
            os.close(read)
            seen: dict[str, Any] = {}
            for name, step in steps.items():

                def hung(signum: int, frame: object, name: str = name) -> None:
                    raise TimeoutError(name)

                signal.signal(signal.SIGALRM, hung)
                signal.alarm(int(at_most(2)))
                try:
                    seen[name] = step()
                except TimeoutError:
                    seen[name] = "hung"
                finally:
                    signal.alarm(0)
            os.write(write, json.dumps(seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    release.set()
    with os.fdopen(read, "rb") as reading:
        output = reading.read()
    _, status = os.waitpid(pid, 0)
    return {"status": status, "seen": json.loads(output or b"null")}


def fork_while_publishing() -> dict[str, Any]:
    """Fork while another thread publishes a monitor's status, its log line slow (a log
    handler that blocks, as one writing to a full pipe does). The child then sets a
    status and reads readiness, as a worker forked by gunicorn --preload would."""
    import logging

    from di.monitor import ServingStatus

    parent = os.getpid()
    injector = Injector()
    injector.provide(Database, eager=True)
    injector.start()
    monitor = HealthMonitor(injector)
    logging_now, release = threading.Event(), threading.Event()

    class SlowHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if os.getpid() == parent and threading.current_thread().name == "publisher":
                logging_now.set()
                release.wait(PATIENCE)

    log = logging.getLogger("di.health")
    log.addHandler(SlowHandler())
    log.setLevel(logging.INFO)
    publisher = threading.Thread(
        target=monitor.set_status, args=("", ServingStatus.SERVING), name="publisher"
    )
    publisher.start()
    assert logging_now.wait(PATIENCE)

    def set_and_read() -> str:
        monitor.set_status("readiness", ServingStatus.SERVING)
        status = monitor.status("readiness")
        return "unknown" if status is None else status.name

    child = _fork_and_run({"readiness": set_and_read}, release)
    publisher.join(PATIENCE)
    return child


def fork_while_building() -> dict[str, Any]:
    """Fork while another thread builds a singleton (its factory takes a while); the
    child then asks for it, sync and async (on asyncio and on trio)."""
    import anyio

    parent = os.getpid()
    building, release = threading.Event(), threading.Event()

    class Slow:
        def __init__(self) -> None:
            self.pid = os.getpid()
            if self.pid == parent:
                building.set()
                release.wait(PATIENCE)

    outcomes: dict[str, Any] = {}
    for waiter in ("sync", "asyncio", "trio"):
        injector = Injector()
        injector.provide(Slow)

        def built_here(waiter: str = waiter, injector: Injector = injector) -> bool:
            if waiter == "sync":
                return bool(injector.invoke(Slow).pid == os.getpid())

            async def build() -> bool:
                return bool((await injector.ainvoke(Slow)).pid == os.getpid())

            return bool(anyio.run(build, backend=waiter))

        building.clear()
        release.clear()
        builder = threading.Thread(target=injector.invoke, args=(Slow,))
        builder.start()
        assert building.wait(PATIENCE)
        outcomes[waiter] = _fork_and_run({"built here": built_here}, release)
        builder.join(PATIENCE)
    return outcomes


def fork_while_compiling() -> dict[str, Any]:
    """Fork while another thread compiles a builder (it holds the lock of the compiled
    builders' source lines); the child then builds a transient, which compiles one."""
    from di._container.compile import _LINES

    class Part:
        pass

    holding, release = threading.Event(), threading.Event()

    def compile_slowly() -> None:
        with _LINES.lock:  # where a compile is, between two of its steps
            holding.set()
            release.wait(PATIENCE)

    compiler = threading.Thread(target=compile_slowly)
    compiler.start()
    assert holding.wait(PATIENCE)

    def build_transient() -> bool:
        injector = Injector()
        injector.provide_transient(Part)
        return isinstance(injector.invoke(Part), Part)

    child = _fork_and_run({"built": build_transient}, release)
    compiler.join(PATIENCE)
    return child


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "checking"
    if what == "publishing":
        json.dump(fork_while_publishing(), sys.stdout)
    elif what == "building":
        json.dump(fork_while_building(), sys.stdout)
    elif what == "compiling":
        json.dump(fork_while_compiling(), sys.stdout)
    else:
        json.dump(fork_while_checking(), sys.stdout)
