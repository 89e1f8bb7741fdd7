"""Applications for the fork tests: what a forking server loads before it forks.

- :func:`create_flask_app` is a Flask app installed at import, as gunicorn ``--preload``
  loads it in its master before forking the workers. Its database check fails while
  the file named by ``DOWN_FILE`` exists, and every answer says which process gave it
  (``X-Worker``).
- ``python -m tests.fork_targets`` forks this process while a sync check and a Flask
  app's monitor are running, and prints what the child saw, as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import threading
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


if __name__ == "__main__":
    json.dump(fork_while_checking(), sys.stdout)
