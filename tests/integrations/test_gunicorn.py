"""A Flask app installed before gunicorn forks its workers (``--preload``).

A real gunicorn with two workers, serving :func:`tests.fork_targets.create_flask_app`,
which the master loads (and so installs, starting the injector and its monitor)
before forking. Each worker must run its own monitor: its /readyz follows the database
check when it starts failing and when it recovers. (Without that, a worker answers
from the parent's last snapshot, which falls overdue: 503 "health checks overdue".)
Every answer says which worker gave it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..processes import ROOT, port_said
from ..timing import PATIENCE, wait_until

LISTENING = r"Listening at: http://127\.0\.0\.1:(\d+)"


def workers_answering(url: str, status: int, workers: set[str]) -> bool:
    """Ask /readyz a few times; whether each worker in ``workers`` has now answered
    ``status`` (a worker's other answers, before, are forgotten)."""
    for _ in range(8):
        answer = httpx.get(url, timeout=PATIENCE)
        worker = answer.headers["X-Worker"]
        if answer.status_code == status:
            workers.add(worker)
        else:
            workers.discard(worker)
    return len(workers) >= 2


def test_each_preloaded_worker_serves_fresh_health(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    down = tmp_path / "down"
    log = tmp_path / "gunicorn.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--preload",
                "--workers",
                "2",
                "--bind",
                "127.0.0.1:0",
                "--no-control-socket",
                "tests.fork_targets:create_flask_app()",
            ],
            cwd=ROOT,
            env={**os.environ, "DOWN_FILE": str(down)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        port = port_said(log.read_text, LISTENING, server)
        url = f"http://127.0.0.1:{port}/readyz"
        for status, what in ((200, "ready"), (503, "failing"), (200, "recovered")):
            if status == 503:
                down.touch()
            elif what == "recovered":
                down.unlink()
            seen: set[str] = set()
            wait_until(
                lambda status=status, seen=seen: workers_answering(url, status, seen),
                f"both workers to answer /readyz {status} ({what})",
                # Which worker takes a connection is the kernel's choice: on a loaded
                # machine one of them may go unasked for a while.
                timeout=2 * PATIENCE,
            )
            assert len(seen) == 2 and str(server.pid) not in seen
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(PATIENCE)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(10)
