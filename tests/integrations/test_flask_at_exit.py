"""A Flask app's container shuts down when the process exits, on every Python version.

The shutdown runs in an ``atexit`` callback, where Python 3.12.0 and 3.12.1 start no
new thread: a sync hook then runs on the monitor's loop thread (see ``Threads.submit``)
rather than in a worker thread of the container's.
"""

from __future__ import annotations

import subprocess
import sys

from ..processes import ROOT

APP = """
import threading
from collections.abc import Iterator

from flask import Flask

from di import Injector
from di.integrations.flask import Inject, inject, install


class Database:
    pass


def open_database() -> Iterator[Database]:
    yield Database()
    print("closed the database in", threading.current_thread().name)


injector = Injector()
injector.provide(open_database, eager=True)
app = Flask(__name__)
install(app, injector)


@app.get("/")
@inject
def index(db: Inject[Database]) -> str:
    return type(db).__name__


assert app.test_client().get("/").text == "Database"
assert app.test_client().get("/readyz").status_code in (200, 503)
print("served", flush=True)
"""


def test_a_flask_apps_container_shuts_down_at_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", APP], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # No thread ran a check or a hook before: the shutdown asks for a new one.
    refused = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 2)
    thread = "healthdi-monitor" if refused else "di-root"
    assert done.stdout == f"served\nclosed the database in {thread}\n"
