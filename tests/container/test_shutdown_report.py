"""Shutdown reports, and shutting down on a signal: real signals to a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from di import AsyncRequiredError, Injector, ShutdownError, ShutdownTimeoutError

from ..services import Database, UnclosableQueue
from ..signal_targets import ReportingDatabase
from ..timing import PATIENCE, at_most, wait_until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[2]


class Hanging:
    def __init__(self) -> None:
        self.release = threading.Event()

    def shutdown(self) -> None:
        self.release.wait(PATIENCE)


def test_the_report_lists_every_service_in_shutdown_order_with_its_outcome() -> None:
    injector = Injector(shutdown_timeout=at_most(0))
    injector.provide(Database)
    injector.provide(UnclosableQueue)
    injector.provide(Hanging)
    injector.provide_value("a value", name="dsn")
    injector.invoke(UnclosableQueue)
    hanging = injector.invoke(Hanging)
    request = injector.scope("request")
    request.provide(Database)
    request.invoke(Database)
    with pytest.raises(ShutdownError) as raised:
        injector.shutdown()
    hanging.release.set()
    report = raised.value.report
    assert report.scope == "root" and not report.ok and len(report) == 5
    assert [(s.name.rsplit(".", 1)[-1], s.scope, s.outcome) for s in report] == [
        ("Database", "request", "ok"),  # children first, then in reverse build order
        ("Hanging", "root", "timed_out"),
        ("UnclosableQueue", "root", "failed"),
        ("Database", "root", "ok"),
        ("dsn", "root", "ok"),  # a value: built when provided, first
    ]
    timed_out, failed = report.failed
    assert isinstance(timed_out.error, ShutdownTimeoutError)
    assert isinstance(failed.error, OSError) and failed.error is raised.value.errors[failed.name]
    assert timed_out.duration >= at_most(0) > failed.duration >= 0
    assert report.duration >= timed_out.duration
    text = str(report)
    assert "5 services, 2 failed" in text and "(scope 'request')" in text


async def test_ashutdown_returns_the_report_and_an_empty_scope_reports_nothing() -> None:
    async def close() -> None:
        await anyio.sleep(0)

    injector = Injector()
    injector.provide(Database, shutdown=lambda db: close())
    await injector.ainvoke(Database)
    report = await injector.ashutdown()
    assert report.ok and [s.outcome for s in report] == ["ok"]
    assert len(await injector.ashutdown()) == 0  # nothing built any more
    with injector.scope() as request:
        pass
    assert len(request.shutdown()) == 0  # closed already: an empty report
    assert str(injector.shutdown()) == "shutdown of scope 'root': nothing to shut down"


def test_a_request_scope_shut_down_explicitly_reports_what_it_built() -> None:
    injector = Injector()

    class Session:
        pass

    injector.provide_scoped(Session)
    request = injector.scope()
    request.invoke(Session)  # by a compiled builder: nothing to run at shutdown
    report = request.shutdown()
    assert [(s.name.rsplit(".", 1)[-1], s.outcome) for s in report] == [("Session", "ok")]


async def test_shutdown_on_signals_refuses_a_running_loop_and_another_thread() -> None:
    injector = Injector()
    with pytest.raises(AsyncRequiredError, match="ashutdown_on_signals"):
        injector.shutdown_on_signals()
    failure: list[BaseException] = []

    def other() -> None:
        try:
            injector.shutdown_on_signals()
        except RuntimeError as error:
            failure.append(error)

    await anyio.to_thread.run_sync(other)
    assert "must be called from the main thread" in str(failure[0])


def test_signals_no_program_can_catch_are_refused_and_no_handler_is_left_behind() -> None:
    injector = Injector()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match=r"SIGKILL.*no program can catch it"):
        injector.shutdown_on_signals(signal.SIGTERM, signal.SIGKILL)
    with pytest.raises(ValueError, match="99999 is not a signal"):
        injector.shutdown_on_signals(signal.SIGTERM, 99999)
    assert signal.getsignal(signal.SIGTERM) is before  # SIGTERM still stops the program


def test_a_signal_named_twice_gets_its_former_handler_back() -> None:
    injector = Injector()
    before = signal.getsignal(signal.SIGUSR1)

    def send() -> None:
        wait_until(lambda: signal.getsignal(signal.SIGUSR1) is not before, "the handler")
        os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=send)
    sender.start()
    report = injector.shutdown_on_signals(signal.SIGUSR1, signal.SIGUSR1)
    sender.join()
    assert report.ok and signal.getsignal(signal.SIGUSR1) is before


async def test_ashutdown_on_signals_refuses_what_it_cannot_wait_for() -> None:
    injector = Injector()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match=r"SIGSTOP.*no program can catch it"):
        await injector.ashutdown_on_signals(signal.SIGTERM, signal.SIGSTOP)
    assert signal.getsignal(signal.SIGTERM) is before
    failure: list[BaseException] = []

    def other() -> None:
        try:
            anyio.run(injector.ashutdown_on_signals)
        except RuntimeError as error:
            failure.append(error)

    await anyio.to_thread.run_sync(other)
    assert "must be called from the main thread" in str(failure[0])


def _caught(pid: int) -> int:
    """The mask of signals process ``pid`` has a handler for (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


@pytest.mark.parametrize("mode", ["sync", "asyncio", "trio"])
@pytest.mark.parametrize(
    ("chosen", "sent"),
    [("default", signal.SIGTERM), ("default", signal.SIGINT), ("SIGUSR1", signal.SIGUSR1)],
)
def test_a_real_signal_to_a_real_process_shuts_it_down_and_reports(
    mode: str, chosen: str, sent: signal.Signals
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.signal_targets", mode, chosen],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"started": True}
        bit = 1 << (sent - 1)
        wait_until(
            lambda: process.poll() is not None or _caught(process.pid) & bit,
            f"the worker to handle {sent.name}",
        )
        assert process.poll() is None, process.communicate()
        began = time.monotonic()
        process.send_signal(sent)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert time.monotonic() - began < at_most(1.0)  # a shutdown and an exit, no waiting
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[:3] == [
        {"closed": "database"},  # its hook ran, after the queue's, which failed
        {"name": UnclosableQueue.__name__, "outcome": "failed", "error": "OSError"},
        {"name": ReportingDatabase.__name__, "outcome": "ok", "error": None},
    ]
    assert lines[-1]["ok"] is False
    if mode != "sync":
        assert lines[-1]["ticks"] > 0  # the loop kept running its other task meanwhile
    assert "the broker went away" in err  # the failed hook is logged, not raised
