"""`make demo`'s gRPC step: the orders service answers a real client, then stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_grpc_demo_commits_rolls_back_withholds_and_shuts_down() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.orders_grpc.demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert "[server] commit: 2 order(s) of ana" in lines
    assert "-> {'placed': 2, 'user': 'ana'}" in lines
    assert "-> INVALID_ARGUMENT: an item has no name" in lines
    assert "[server] rollback (AbortError): 1 order(s) dropped" in lines
    assert "[server] rollback (RuntimeError): 0 order(s) dropped" in lines
    # The failure's text is in the server's log, never in the client's answer.
    withheld = "-> UNKNOWN: unexpected error (details withheld: see the server's log)"
    assert withheld in lines
    assert "RuntimeError: the warehouse password is hunter2" in lines
    assert lines.index("{'user': 'ana', 'item': 'jam'}") > lines.index("List:")
    assert "Health Check(''): SERVING" in lines
    assert lines[-2:] == ["[server] database closed", "stopped"]
