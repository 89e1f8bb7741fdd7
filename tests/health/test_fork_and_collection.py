"""A process's life around the engine: forks, and injectors dropped after a check.

- After ``os.fork()`` the child's engine works: a sync check running in a parent's
  thread at the fork, and the call waiting on it, do not exist in the child, whose
  checks run afresh (they used to read TIMEOUT for good, or hang); a Flask app installed
  before the fork runs its own monitor in the child, which follows the child's checks.
  The fork happens in a process of its own (``python -m tests.fork_targets``), not in
  the test runner. Nor does a fork while another thread holds the monitor (publishing,
  its log line slow), builds a singleton or compiles a builder leave the child hanging
  on what that thread held: it does not exist in the child.
- An injector dropped after one ``health_check()`` is collected, and so are its worker
  threads: an idle thread holds neither the job it ran nor its pool.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import tracemalloc

from di import Injector

from ..processes import ROOT
from ..timing import PATIENCE, wait_until


def test_a_forked_child_checks_and_monitors_afresh() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.fork_targets"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=4 * PATIENCE,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["child_status"] == 0, done.stderr
    child = seen["child"]
    # Both checks ran in the child, the one in flight in the parent at the fork included.
    assert child["checks"] == [["healthy", "healthy"], ["healthy", "healthy"]]
    # The Flask app's monitor runs its rounds in the child, and follows the child's
    # own copy of the database; the parent's copy never failed.
    assert child["readyz"] == 200
    assert child["failing"] == 503
    assert seen["parent_readyz"] == 200


def forked(what: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.fork_targets", what],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=4 * PATIENCE,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_a_child_forked_while_the_monitor_publishes_can_publish() -> None:
    child = forked("publishing")
    assert child == {"status": 0, "seen": {"readiness": "SERVING"}}


def test_a_child_forked_while_a_singleton_is_built_elsewhere_builds_its_own() -> None:
    outcomes = forked("building")
    for waiter in ("sync", "asyncio", "trio"):
        assert outcomes[waiter] == {"status": 0, "seen": {"built here": True}}, waiter


def test_a_child_forked_while_a_builder_compiles_elsewhere_compiles_its_own() -> None:
    assert forked("compiling") == {"status": 0, "seen": {"built": True}}


MIB = 2**20


class Big:
    """An instance holding 10 MiB, with a sync check (it runs in a worker thread)."""

    def __init__(self) -> None:
        self.payload = bytearray(10 * MIB)

    def health_check(self) -> None:
        pass


def test_dropped_injectors_release_their_threads_and_memory() -> None:
    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("di-dropped-")]

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for n in range(20):
            injector = Injector(name=f"dropped-{n}")
            injector.provide(Big, eager=True)
            injector.start()
            assert list(injector.health_check().values()) == [None]  # its check ran, in a thread
            del injector
        peak = tracemalloc.get_traced_memory()[1] - baseline
        # The injectors are garbage now (a tree refers to itself: the cycle collector
        # frees it), and their pools' idle threads exit when the pools go.
        wait_until(
            lambda: (
                gc.collect() >= 0
                and not ours()
                and tracemalloc.get_traced_memory()[0] - baseline < 5 * MIB
            ),
            "the dropped injectors' threads and memory to be released",
            timeout=10,
        )
    finally:
        tracemalloc.stop()
    assert peak >= 10 * MIB  # what was measured: the instances did take their memory
