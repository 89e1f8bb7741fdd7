"""`make demo`'s gRPC step: the orders service answers a real client, then stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


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
    # The server's lines print from its own thread: they may share a line with the
    # client's, so these are looked for anywhere in the output.
    out = done.stdout
    assert "[server] commit: 2 order(s) of ana" in out
    assert "-> {'placed': 2, 'user': 'ana'}" in out
    assert "-> INVALID_ARGUMENT: an item has no name" in out
    assert "[server] rollback (AbortError): 1 order(s) dropped" in out
    assert "[server] rollback (RuntimeError): 0 order(s) dropped" in out
    # The failure's text is in the server's log, never in the client's answer.
    withheld = "-> UNKNOWN: unexpected error (details withheld: see the server's log)"
    assert withheld in out
    assert "RuntimeError: the warehouse password is hunter2 (traceback omitted here)" in out
    # A first-time reader is told why before it happens, and sees no stack.
    assert "the server's log keeps the text, the client is told nothing of it)" in out
    assert "Traceback" not in out + done.stderr
    assert lines.index("{'user': 'ana', 'item': 'jam'}") > lines.index("List:")
    assert "Health Check(''): SERVING" in out
    assert lines[-2:] == ["[server] database closed", "stopped"]
