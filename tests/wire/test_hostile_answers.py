"""Nothing a check returns or raises takes the answers down: real servers, the di command.

A property test serves the hostile checks of :mod:`tests.hostile` under a real uvicorn
and grpcio server and asks them with real clients (httpx, grpcio) after each round:
/health with and without details, /readyz?verbose, /metrics, gRPC Check and List. Another
runs ``di check`` (its code, in this process, for speed) on each. Then the issue's three
findings, each through a real ``di serve`` and ``di check`` process: a detail whose
str() raises, a 5,000-digit integer, a 5 MB string.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from di import HealthMonitor
from di._cli import main
from di.asgi import health_app
from di.grpc import add_health_servicer

from ..hostile import HOSTILE, Behaviour, Now, assert_plain_lines, behaviours, strict_json
from ..hostile_targets import hostile
from ..processes import Serving, di, wait_for
from ..servers import LoopThread
from ..services import Cache, Database, key
from ..timing import PATIENCE

DB = key(Database)
BODY_BOUND = 64 * 1024
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LINE = r"^(\[[+-]\]\S|readyz check (passed|failed)$)"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Server:
    """The hostile checks' monitor under uvicorn (``/`` plain, ``/details`` with details
    and metrics) and grpcio, on an asyncio loop of their own; rounds when asked."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.injector = hostile()
        self.monitor = HealthMonitor(self.injector, interval=3600, log_interval=0)
        registry = CollectorRegistry()
        monitor, injector = self.monitor, self.injector

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with monitor:
                yield
            await injector.ashutdown()

        app = Starlette(
            routes=[
                Mount(
                    "/details",
                    app=health_app(monitor, show_details=True, metrics=registry),
                ),
                Mount("/", app=health_app(monitor)),
            ],
            lifespan=lifespan,
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.uvicorn = uvicorn.Server(config)
        self.loop.run(self._start())

    async def _start(self) -> None:
        import asyncio

        self.serving = asyncio.get_running_loop().create_task(self.uvicorn.serve())
        async with asyncio.timeout(PATIENCE):
            while not (self.uvicorn.started and self.monitor.ready):
                await asyncio.sleep(0.01)
        self.http_port = self.uvicorn.servers[0].sockets[0].getsockname()[1]
        self.grpc = grpc.aio.server()
        add_health_servicer(self.grpc, self.monitor)
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        await self.grpc.start()

    def round(self) -> None:
        async def check() -> None:
            await self.monitor.check()

        self.loop.run(check())

    def close(self) -> None:
        async def stop() -> None:
            import asyncio

            await self.grpc.stop(None)
            self.uvicorn.should_exit = True
            await asyncio.wait_for(self.serving, PATIENCE)

        try:
            self.loop.run(stop())
        finally:
            self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    served = Server()
    try:
        yield served
    finally:
        served.close()


@EXAMPLES
@given(behaviour=behaviours)
def test_every_answer_survives_any_check_result(server: Server, behaviour: Behaviour) -> None:
    lines = Lines()
    logger = logging.getLogger("di")
    logger.addHandler(lines)
    try:
        Now.behaviour = behaviour
        server.round()
        Now.behaviour = Behaviour()  # a recovery, logged
        server.round()
        Now.behaviour = behaviour
        server.round()
    finally:
        logger.removeHandler(lines)
    for line in lines.lines:
        assert line.isprintable(), repr(line)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        for prefix in ("", "/details"):
            for name in ("", "/readiness", *(f"/{key}" for key in HOSTILE)):
                answer = client.get(f"{prefix}/health{name}")
                assert answer.status_code in (200, 503) and len(answer.content) < BODY_BOUND
                assert set(strict_json(answer.content)["checks"]) <= {*HOSTILE, DB}
            verbose = client.get(f"{prefix}/readyz?verbose")
            printed = assert_plain_lines(verbose.text, LINE)
            assert printed.count(f"[+]{DB} ok") == 1
            for key in HOSTILE:
                single = client.get(f"{prefix}/readyz/{key}")
                assert single.status_code in (200, 503)
                assert_plain_lines(single.text, r"^(ok$|\[[+-]\]\S|readyz check )")
            assert client.get(f"{prefix}/livez").text == "ok"
        metrics = client.get("/details/metrics")
        assert metrics.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
        current = {
            sample.labels["name"]: sample.labels["status"]
            for sample in families["healthdi_health_status"].samples
            if sample.value == 1.0
        }
        assert current[DB] == "pass" and set(HOSTILE) <= set(current)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest
        assert stub.Check(request(service=DB), timeout=10).status == 1  # SERVING
        for key in ("", "readiness", *HOSTILE):
            assert stub.Check(request(service=key), timeout=10).status in (1, 2)
        listed = stub.List(health_pb2.HealthListRequest(), timeout=10)  # type: ignore[attr-defined]
        assert {DB, *HOSTILE} <= set(listed.statuses)


def run_check(*options: str) -> tuple[int, str, str]:
    """``di check tests.hostile_targets:hostile`` in this process: exit status, out, err."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit) as exited,
    ):
        main(["check", "tests.hostile_targets:hostile", *options])
    code = exited.value.code
    assert isinstance(code, int)
    return code, out.getvalue(), err.getvalue()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(behaviour=behaviours)
def test_di_check_prints_any_check_result(behaviour: Behaviour) -> None:
    Now.behaviour = behaviour
    code, out, err = run_check("--json")
    assert code in (0, 1) and err == ""
    report = strict_json(out)
    assert {check["key"]: check["outcome"] for check in report["checks"]}[DB] == "healthy"
    assert len(out) < BODY_BOUND
    code, out, err = run_check()
    # A header, one printable line per check, the summary: nothing else, however the
    # errors were written.
    table = assert_plain_lines(out, r"^(SERVICE |tests\.|healthy: |degraded: |unhealthy: )")
    assert len(table) == 5 and table[0].startswith("SERVICE ")
    assert sorted(line.split()[0] for line in table[1:4]) == sorted([*HOSTILE, DB])


# -- the findings, through real processes --------------------------------------------


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    running: list[Serving] = []

    def start(target: str, *options: str) -> Serving:
        serving = Serving(
            f"tests.hostile_targets:{target}",
            "--interval",
            "0.2",
            "--drain",
            "0",
            "--show-details",
            *options,
            log=tmp_path / f"{target}.log",
        )
        running.append(serving)
        return serving

    yield start
    for serving in running:
        serving.close()


def rounds_later(serving: Serving, key: str, rounds: int = 5) -> None:
    """Wait until /health shows ``rounds`` rounds of ``key``'s check (its "time" changes
    each round), the process running and answering all along."""
    seen: set[str] = set()

    def answered() -> bool:
        assert serving.process.poll() is None, serving.output()
        health = strict_json(httpx.get(serving.url + "/health", timeout=10).content)
        seen.add(health["checks"][key][0]["time"])
        return len(seen) >= rounds

    wait_for(answered, f"{rounds} rounds of checks")


def test_a_detail_whose_str_raises_neither_stops_di_serve_nor_its_answers(start: Any) -> None:
    serving = start("unprintable_detail")
    key = "tests.hostile_targets.UnprintableDetail"
    wait_for_ready(serving)
    rounds_later(serving, key)
    health = httpx.get(serving.url + "/health", timeout=10)
    assert health.status_code == 200
    entry = strict_json(health.content)["checks"][key][0]
    assert entry["observedUnit"] == "pool"
    assert entry["observedValue"] == "<Unprintable: rendering it raised ValueError>"
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    done = di("check", "tests.hostile_targets:unprintable_detail", "--json")
    assert done.returncode == 0, done.stderr
    details = {c["key"]: c.get("details") for c in strict_json(done.stdout)["checks"]}
    assert details[key] == {"pool": "<Unprintable: rendering it raised ValueError>"}


def test_a_5000_digit_integer_in_details_is_named_in_valid_json(start: Any) -> None:
    serving = start("huge_int")
    key = "tests.hostile_targets.HugeInt"
    wait_for_ready(serving)
    health = httpx.get(serving.url + "/health", timeout=10)
    assert health.status_code == 200 and strict_json(health.content)["status"] == "warn"
    entry = strict_json(health.content)["checks"][key][0]
    assert entry["observedValue"] == "<int of about 5001 digits>"
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    done = di("check", "tests.hostile_targets:huge_int", "--json")
    assert done.returncode == 0, done.stderr
    checks = {c["key"]: c for c in strict_json(done.stdout)["checks"]}
    assert checks[key]["details"] == {"counter": "<int of about 5001 digits>"}


def test_a_5_mb_detail_is_cut_not_copied_into_every_answer(start: Any) -> None:
    serving = start("huge_detail")
    key = "tests.hostile_targets.HugeDetail"
    wait_for_ready(serving)
    health = httpx.get(serving.url + "/health", timeout=10)
    assert health.status_code == 200 and len(health.content) < 4096
    dump = strict_json(health.content)["checks"][key][0]["observedValue"]
    assert dump == "x" * 1000 + "... (4999000 more characters)"
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    done = di("check", "tests.hostile_targets:huge_detail", "--json")
    assert done.returncode == 0 and len(done.stdout) < 4096


def wait_for_ready(serving: Serving) -> None:
    wait_for(
        lambda: httpx.get(serving.url + "/readyz", timeout=10).status_code == 200,
        "readiness",
    )


# -- control characters: no fake lines in the table, the log or the text answers -------------

FORGING = "tests.hostile_targets.Forging"
ESCAPED = f"refused\\n\\x1b[32m{key(Cache)}  healthy  0.1 ms\\x1b[0m\\n"


def test_an_error_cannot_draw_a_line_under_di_checks_table() -> None:
    done = di("check", "tests.hostile_targets:forging")
    assert done.returncode == 1
    table = assert_plain_lines(done.stdout, r"^(SERVICE |tests\.|unhealthy: )")
    assert [line.split()[0] for line in table] == [
        "SERVICE",
        FORGING,
        DB,
        "unhealthy:",
    ]
    assert ESCAPED in table[1]


@pytest.mark.parametrize(
    "command",
    [("check",), ("graph",), ("serve", "--http", "127.0.0.1:0"), ("run", "--factory")],
)
def test_a_failing_application_factory_is_one_printable_line(command: tuple[str, ...]) -> None:
    name, *options = command
    for factory, says in (
        ("forging_factory", "failed: ConnectionRefusedError: refused\\n\\x1b[32m"),
        ("unprintable_factory", "failed: UnprintableError: <str() of the UnprintableError"),
    ):
        done = di(name, *options, f"tests.hostile_targets:{factory}")
        assert done.returncode == 1
        assert done.stderr.startswith(f"di {name}: tests.hostile_targets:{factory}() "), done.stderr
        assert says in done.stderr
        assert done.stderr.endswith("\n") and done.stderr[:-1].isprintable(), done.stderr


def test_an_error_cannot_forge_a_log_line_nor_a_probe_line(start: Any) -> None:
    serving = start("forging")
    serving.wait_output("ConnectionRefusedError")
    for path in ("/readyz?verbose", f"/readyz/{FORGING}"):
        verbose = httpx.get(serving.url + path, timeout=10)
        assert verbose.status_code == 503
        lines = assert_plain_lines(verbose.text, LINE)
        assert [line for line in lines if "refused" in line] == [
            f"[-]{FORGING} failed: ConnectionRefusedError: {ESCAPED}"
            "2024-01-01 00:00:00,000 INFO di.health: health check of 'payments' recovered"
        ]
    serving.process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=PATIENCE) == 0
    log = serving.output()
    assert "\x1b" not in log
    # Each line of the log is one the process wrote: none starts with the forged date.
    assert not [line for line in log.splitlines() if line.startswith("2024-01-01")]
    assert f"health check of {FORGING!r} failed (unhealthy): ConnectionRefusedError: " in log


def test_livez_lines_are_printable_too() -> None:
    from di import Injector

    from ..hostile_targets import Forging
    from ..servers import serve

    injector = Injector()
    injector.provide(Forging, eager=True)
    with serve(injector, show_details=True, groups={"liveness": [Forging]}) as served:
        livez = httpx.get(served.url + "/livez?verbose", timeout=10)
    assert livez.status_code == 503
    lines = assert_plain_lines(livez.text, r"^(\[[+-]\]\S|livez check failed$)")
    assert lines[0].startswith(f"[-]{FORGING} failed: ConnectionRefusedError: refused\\n")
