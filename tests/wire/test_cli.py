"""The di command: check, probe, and serve's bad input; one clear line, no traceback."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ..processes import ROOT, STARTUP, closed_port, di, probe
from ..services import Cache, Database, key
from ..timing import Stopwatch, at_most


def test_check_prints_a_table_and_exits_0_when_healthy() -> None:
    done = di("check", "tests.cli_targets:healthy")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "OUTCOME", "DURATION", "ERROR"]
    assert lines[1].startswith(key(Cache)) and "healthy" in lines[1]
    assert lines[-1] == "healthy: 2 checks, 0 failed"


def test_a_long_service_name_has_a_line_of_its_own_and_the_columns_stay() -> None:
    done = di("check", "tests.cli_targets:long_names")
    assert done.returncode == 1, done.stderr
    duration = r"\d+\.\d ms"
    assert re.fullmatch(
        "\n".join(
            [
                "SERVICE  OUTCOME    DURATION ERROR",
                f"cache    healthy    {duration}",
                "sqlalchemy.ext.asyncio.engine.AsyncEngine",
                f"         unhealthy  {duration} *Database is down \\(secret-host:5432\\)",
                "unhealthy: 2 checks, 1 failed",
            ]
        ),
        done.stdout.strip(),
    ), done.stdout


@pytest.mark.parametrize(
    ("target", "code", "summary"),
    [
        ("single", 0, "healthy: 1 check, 0 failed"),
        ("three_one_failing", 1, "unhealthy: 3 checks, 1 failed"),
        ("unhealthy", 1, "unhealthy: 2 checks, 1 failed"),
        ("nothing_built", 1, "unhealthy: no checks ran"),
    ],
)
def test_check_counts_its_checks_and_failures(target: str, code: int, summary: str) -> None:
    done = di("check", f"tests.cli_targets:{target}")
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines()[-1] == summary


def test_check_json_and_exit_1_when_unhealthy_with_an_async_factory() -> None:
    done = di("check", "tests.cli_targets:unhealthy", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["healthy"] is False
    assert {c["key"]: c["outcome"] for c in report["checks"]} == {
        key(Cache): "healthy",
        key(Database): "unhealthy",
    }


def test_check_accepts_an_injector_object() -> None:
    assert di("check", "tests.cli_targets:module_level").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "no_such_module:app"], "cannot import module 'no_such_module'"),
        (["check", "tests.cli_targets:missing"], "has no attribute 'missing'"),
        (
            ["check", "tests.cli_targets:not_an_injector"],
            "tests.cli_targets:not_an_injector is not an Injector, nor a function returning "
            "one (got int)",
        ),
        (
            ["check", "tests.cli_targets:Database"],
            "tests.cli_targets:Database is the class Database, not an injector factory: name "
            "the Injector (MODULE:injector) or a function that builds and returns it "
            "(MODULE:create_app)",
        ),
        (
            ["graph", "tests.cli_targets:returns_a_number"],
            "tests.cli_targets:returns_a_number() returned int, not an Injector: the factory "
            "must return the Injector it builds",
        ),
        (["check", "tests.cli_targets"], "expected MODULE:ATTR"),
        (["check", "tests.cli_targets:broken"], "broken() failed: RuntimeError"),
        (["serve", "tests.cli_targets:healthy", "--http", "nowhere"], "bad --http address"),
        (["serve", "tests.cli_targets:healthy", "--grpc", "h:99999"], "bad --grpc address"),
        (["serve", "tests.cli_targets:healthy", "--interval", "0"], "--interval must be a"),
        (["serve", "tests.cli_targets:healthy", "--drain", "-1"], "--drain must be a"),
        (["serve", "tests.cli_targets:healthy", "--grace", "nan"], "--grace must be a"),
        (
            ["serve", "tests.cli_targets:healthy", "--limit-concurrency", "0"],
            "--limit-concurrency must be >= 1",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(args: list[str], message: str) -> None:
    done = di(*args)
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_serve_on_a_taken_port_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = di("serve", "tests.cli_targets:healthy", "--http", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"cannot listen for HTTP on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2_for_check_and_serve() -> None:
    assert di("check").returncode == 2
    assert di("serve", "x:y", "--interval", "soon").returncode == 2
    assert di("frobnicate").returncode == 2


@pytest.mark.parametrize(
    "args",
    [["probe"], ["probe", "http://x", "--timeout", "soon"], ["probe", "http://x", "--bogus"]],
)
def test_probe_never_exits_2(args: list[str]) -> None:
    done = di(*args)
    assert done.returncode == 1
    assert done.stderr.startswith("di probe:")


def test_probe_of_a_closed_port_is_unhealthy_in_one_line() -> None:
    with closed_port() as port:
        done = probe(f"http://127.0.0.1:{port}/health")
        assert done.returncode == 1
        assert done.stdout.startswith("unhealthy: ConnectionRefusedError")
        assert len(done.stdout.splitlines()) == 1
        assert di("probe", f"grpc://127.0.0.1:{port}", "--timeout", "0.2").returncode == 1
    assert di("probe", "ftp://example/").stdout.startswith("unhealthy: unsupported URL")


@pytest.mark.parametrize("url", ["http://[::1/", "grpc://[::1", "https://h]:1/"])
@pytest.mark.parametrize("extra", [[], ["--tls"]])
def test_probe_of_a_url_that_does_not_split_is_unhealthy_in_one_line(
    url: str, extra: list[str]
) -> None:
    if extra and not url.startswith("grpc"):
        extra = ["--tls-no-verify"]
    for arguments in ([url, *extra], [url, "--tim", "1", *extra]):  # both parsers
        done = di("probe", *arguments)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == "unhealthy: ValueError: Invalid IPv6 URL\n"


def test_probe_timeout_bounds_a_server_that_never_answers() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with Stopwatch() as watch:
            done = di("probe", f"http://127.0.0.1:{port}/health", "--timeout", "0.3")
    assert done.returncode == 1 and "TimeoutError" in done.stdout
    assert watch.seconds < at_most(STARTUP + 0.3)  # a hang would take until di()'s 30 s


# What a probe may load beyond what the interpreter has loaded before it starts: the
# probe's own modules and the C module of sockets, nothing else of the standard library
# (not argparse, typing, socket, signal, urllib.parse, enum, re) and nothing of anyio,
# grpc or the container.
PROBE_LOADS = ["_socket", "di", "di._cli", "di._cli.probe"]

LOADED_AT_EXIT = (
    "import atexit, sys\n"
    "before = set(sys.modules)\n"
    "atexit.register(lambda: print(sorted(set(sys.modules) - before)))\n"
)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_probing_http_or_a_closed_grpc_port_loads_only_the_probe(scheme: str) -> None:
    with closed_port() as port:
        code = (
            LOADED_AT_EXIT + "from di._cli import main\n"
            f"main(['probe', '{scheme}://127.0.0.1:{port}/', '--timeout', '5'])\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
        )
    assert done.stdout.startswith("unhealthy: ConnectionRefusedError"), done
    loaded = done.stdout.splitlines()[-1]
    assert loaded == str(PROBE_LOADS), loaded


def test_python_dash_m_and_console_script_agree() -> None:
    script = ROOT / ".venv" / "bin" / "di"
    if not script.exists():
        pytest.skip("console script not installed in .venv")
    with closed_port() as port:
        done = subprocess.run(
            [str(script), "probe", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1 and done.stdout.startswith("unhealthy:")


# -- version and help -------------------------------------------------------------------


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    done = di("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"healthdi {version('healthdi')}\n"
    code = "import di; print(di.__version__)"
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert imported.stdout == f"{version('healthdi')}\n"


@pytest.mark.parametrize("command", [[], ["check"], ["probe"], ["serve"]])
def test_help_is_plain_text_with_a_description(command: list[str]) -> None:
    done = di(*command, "--help")
    assert done.returncode == 0, done.stderr
    usage, description = done.stdout.split("\n\n")[:2]
    assert usage.startswith(" ".join(["usage: di", *command]))
    assert len(description) > 60 and not description.startswith("positional arguments")
    for markup in ("``", ":meth:", ":func:", ":class:", "**", ".. "):
        assert markup not in done.stdout, markup


def test_serve_help_says_it_is_a_health_sidecar_and_points_to_the_integrations() -> None:
    import importlib.util

    text = " ".join(di("serve", "--help").stdout.split())  # unwrapped
    assert "Serve the health endpoints of an application, beside it: a health sidecar." in text
    assert "di serve does not serve the application itself." in text
    assert "mount di.asgi.health_app in your ASGI application" in text
    assert "add di.grpc.add_health_servicer to your gRPC server" in text
    assert "https://github.com/healthdi/healthdi/blob/main/docs/exposure.md" in text
    integrations = (
        "Integrations for FastAPI, Starlette, Litestar, grpc.aio, Flask, Django and aiohttp"
    )
    assert integrations in text
    # The package exists: the help points to it rather than saying it is coming.
    assert importlib.util.find_spec("di.integrations") is not None
    assert f"{integrations} (di.integrations) do both in one call" in text
    assert "runs these servers inside itself with di.HealthServer" in text
    assert "are coming" not in text


# -- probe against the wrong kind of server ---------------------------------------------


@pytest.fixture
def grpc_port() -> Iterator[int]:
    """A real grpcio server with the stock health servicer: SERVING."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


@pytest.fixture
def http1_port() -> Iterator[int]:
    """A plain HTTP/1 server: the standard library's."""
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def binary_port() -> Iterator[int]:
    """A server that answers any connection with bytes that are neither HTTP/1 nor HTTP/2."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()

    def babble() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.sendall(b"\xff\x00\xfe\x01\x1b[2J\r\n")

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def printable(text: str) -> bool:
    return all(32 <= ord(c) < 127 or c == "\n" for c in text) and "\\x" not in text


def test_probe_grpc_of_a_grpc_server_is_healthy(grpc_port: int) -> None:
    done = probe(f"grpc://127.0.0.1:{grpc_port}")
    assert done.returncode == 0, done.stdout
    assert done.stdout == f"healthy: SERVING from 127.0.0.1:{grpc_port} for ''\n"


def test_probe_grpc_of_an_http1_port_says_the_server_did_not_answer_grpc(
    http1_port: int,
) -> None:
    done = di("probe", f"grpc://127.0.0.1:{http1_port}", "--timeout", "5")
    assert done.returncode == 1
    address = f"127.0.0.1:{http1_port}"
    assert done.stdout == (
        f"unhealthy: the server at {address} did not answer gRPC: it speaks HTTP/1 "
        f"(an HTTP port? Probe it with http://{address}/readyz)\n"
    )


def test_probe_grpc_of_a_closed_port_fails_at_once_like_http() -> None:
    with closed_port() as port:
        with Stopwatch() as watch:
            done = di("probe", f"grpc://127.0.0.1:{port}", "--timeout", "20")
        assert done.returncode == 1
        assert watch.seconds < at_most(STARTUP) < 20  # not the --timeout
        assert done.stdout == probe(f"http://127.0.0.1:{port}/readyz").stdout
    assert done.stdout == "unhealthy: ConnectionRefusedError: [Errno 111] Connection refused\n"


def test_probe_http_of_a_grpc_port_prints_no_raw_bytes(grpc_port: int) -> None:
    done = probe(f"http://127.0.0.1:{grpc_port}/readyz")
    assert done.returncode == 1
    assert printable(done.stdout), repr(done.stdout)
    address = f"127.0.0.1:{grpc_port}"
    assert done.stdout == (
        f"unhealthy: the server at {address} answered HTTP/2, not HTTP/1 "
        f"(a gRPC port? Probe it with grpc://{address})\n"
    )


def test_probe_of_a_server_answering_binary_prints_its_size_not_its_bytes(
    binary_port: int,
) -> None:
    url = f"http://127.0.0.1:{binary_port}/readyz"
    over_http = probe(url)
    assert over_http.returncode == 1
    assert (
        over_http.stdout
        == f"unhealthy: not an HTTP answer from {url}: 10 bytes that are not text\n"
    )
    over_grpc = di("probe", f"grpc://127.0.0.1:{binary_port}", "--timeout", "5")
    assert over_grpc.returncode == 1
    assert printable(over_grpc.stdout), repr(over_grpc.stdout)
    assert over_grpc.stdout == (
        f"unhealthy: the server at 127.0.0.1:{binary_port} did not answer gRPC: "
        "it answered 10 bytes that are not text\n"
    )


def test_probe_grpc_needs_no_grpc_extra(grpc_port: int) -> None:
    """The probe speaks HTTP/2 itself: with grpc and protobuf unimportable, it still
    passes, and loads nothing of them."""
    code = (
        "import sys\n"
        "sys.modules['grpc'] = sys.modules['google'] = None\n"
        + LOADED_AT_EXIT
        + "from di._cli import main\n"
        f"main(['probe', 'grpc://127.0.0.1:{grpc_port}'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"healthy: SERVING from 127.0.0.1:{grpc_port} for ''",
        str(sorted([*PROBE_LOADS, "di._cli.h2"])),
    ]


def test_graph_prints_a_mermaid_flowchart() -> None:
    done = di("graph", "tests.cli_targets:graph")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = {
        line.split('"')[1].split("<br/>")[0]: line.split("[")[0].strip()
        for line in lines
        if "[" in line
    }
    needs = nodes["tests.cli_targets.Needs"]
    assert f"    {needs} --> {nodes[key(Database)]}" in lines
    assert f"    {needs} --> {nodes[key(Cache)]}" in lines
    labels = {line.split('"')[1] for line in lines if "[" in line}
    assert f"{key(Database)}<br/>eager in root" in labels  # eager=True
    assert f"{key(Cache)}<br/>lazy in root" in labels


def test_graph_validate_exits_1_naming_every_problem() -> None:
    done = di("graph", "tests.cli_targets:broken_graph", "--validate")
    assert done.returncode == 1
    assert "tests.cli_targets.Orphan needs tests.cli_targets.Missing (parameter 'missing')" in (
        done.stderr
    )
    assert "MISSING" in done.stdout
    assert di("graph", "tests.cli_targets:graph", "--validate").returncode == 0


def test_probe_sends_a_urls_credentials_and_never_prints_the_password() -> None:
    """``http://user:password@host/`` authenticates as curl does; what the probe prints
    (kept by Docker in ``docker inspect``) shows ``***`` for the password."""
    from ..checks.servers import HttpServer

    server = HttpServer()  # /private takes admin:s3cret only
    server.start()
    try:
        where = f"127.0.0.1:{server.port}"
        allowed = probe(f"http://admin:s3cret@{where}/private")
        assert allowed.returncode == 0, allowed
        assert allowed.stdout == f"healthy: HTTP 200 from http://admin:***@{where}/private\n"
        refused = probe(f"http://admin:wrong-s3cret@{where}/private")
        assert refused.returncode == 1
        assert refused.stdout == f"unhealthy: HTTP 401 from http://admin:***@{where}/private\n"
        server.kill()
        down = probe(f"http://admin:s3cret@{where}/private")
        assert down.returncode == 1
        for done in (allowed, refused, down):
            assert "s3cret" not in done.stdout + done.stderr
    finally:
        server.close()


def test_probe_grpc_prints_no_password_of_its_url(grpc_port: int) -> None:
    """gRPC has no use for ``user:password@``: it is dropped, never printed."""
    done = probe(f"grpc://probe:s3cret@127.0.0.1:{grpc_port}")
    assert done.returncode == 0, done
    assert done.stdout == f"healthy: SERVING from 127.0.0.1:{grpc_port} for ''\n"
