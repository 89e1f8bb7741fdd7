"""The documentation's runnable examples run, and say what the docs say they print."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_health_doc_quotes_the_example_verbatim() -> None:
    example = (ROOT / "examples" / "health_check.py").read_text()
    assert example in (ROOT / "docs" / "health.md").read_text()


def run_example(name: str) -> str:
    """Run an example script as a user would; its standard output."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_health_example_runs_and_reports_one_failure_and_one_timeout() -> None:
    output = run_example("health_check.py")
    lines = output.splitlines()
    assert lines[0].startswith("healthy: False")
    assert [line.split()[:2] for line in lines[1:]] == [
        ["__main__.Search", "timeout"],
        ["__main__.PaymentGateway", "unhealthy"],
        ["__main__.Database", "healthy"],
    ]


def test_the_demo_reports_each_services_outcome() -> None:
    output = run_example("demo.py")
    assert "built, in invocation order:" in output
    outcomes = {
        line.split()[0]: line.split()[1]
        for line in output.splitlines()
        if line.startswith("  __main__.") and len(line.split()) > 2
    }
    assert outcomes == {
        "__main__.Search": "timeout",
        "__main__.PaymentGateway": "unhealthy",
        "__main__.Orders": "healthy",
    }


def _blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a Markdown text."""
    import re

    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_health_example_builds_and_checks_a_service() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Health, in and out") :]
    example = _blocks(section, "python")[0]
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'database': None}"


@pytest.mark.parametrize(
    ("page", "files"),
    [
        (
            "django.md",
            [
                f"django_shop/{name}.py"
                for name in ("settings", "container", "views", "urls", "asgi")
            ],
        ),
        ("aiohttp.md", ["aiohttp_shop.py"]),
        ("celery.md", ["celery_worker.py"]),
        ("taskiq.md", ["taskiq_worker.py"]),
    ],
)
def test_integration_pages_quote_the_examples_their_tests_serve_verbatim(
    page: str, files: list[str]
) -> None:
    """Each integration's page shows the example that its tests run under the real
    server or worker (tests/integrations/test_<framework>.py)."""
    text = (ROOT / "docs" / page).read_text()
    for name in files:
        assert (ROOT / "examples" / name).read_text() in text, name


def test_exposure_doc_quotes_the_mounted_example_verbatim() -> None:
    example = (ROOT / "examples" / "mounted.py").read_text()
    assert example in (ROOT / "docs" / "exposure.md").read_text()


def test_mounted_example_runs_its_monitor_in_the_lifespan() -> None:
    import importlib

    import anyio
    import httpx

    module = importlib.import_module("examples.mounted")

    async def run() -> None:
        transport = httpx.ASGITransport(app=module.app)
        with anyio.fail_after(10):
            async with (
                module.lifespan(module.app),  # what the ASGI server runs at startup
                httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
            ):
                assert (await client.get("/ops/livez")).text == "ok"
                await module.monitor.wait_ready()
                verbose = await client.get("/ops/readyz?verbose")
                assert verbose.status_code == 200
                assert "[+]examples.mounted.Database ok" in verbose.text
        assert not module.monitor.running

    anyio.run(run)


def test_kubernetes_pod_spec_fits_drain_grace_and_probes_together() -> None:
    """The numbers of the documented pod spec agree with each other."""
    import re

    doc = (ROOT / "docs" / "exposure.md").read_text()
    spec = _blocks(doc, "yaml")[0]

    def number(pattern: str, text: str = spec) -> float:
        found = re.search(pattern, text)
        assert found is not None, pattern
        return float(found.group(1))

    drain = number(r'"--drain", "([\d.]+)"')
    grace = number(r'"--grace", "([\d.]+)"')
    interval = number(r'"--interval", "([\d.]+)"')
    termination = number(r"terminationGracePeriodSeconds: (\d+)")
    readiness = spec[spec.index("readinessProbe:") :]
    period = number(r"periodSeconds: (\d+)", readiness)
    threshold = number(r"failureThreshold: (\d+)", readiness)
    timeout = number(r"timeoutSeconds: (\d+)", readiness)
    startup = spec[spec.index("startupProbe:") : spec.index("livenessProbe:")]
    # Readiness fails where it is read before the drain ends...
    assert period * threshold + timeout < drain
    # ...and drain, grace and a few seconds of shutdown hooks fit before SIGKILL.
    assert drain + grace + 5 <= termination
    # The startup probe allows the start and a first round (bounded by the interval).
    assert (
        number(r"periodSeconds: (\d+)", startup) * number(r"failureThreshold: (\d+)", startup)
        > 2 * interval
    )


def test_kubernetes_probes_name_what_di_serve_answers(tmp_path: Path) -> None:
    """The probes of the documented manifests ask for paths and names that `di serve`,
    given the same options, answers SERVING once started."""
    import re

    import grpc
    import httpx
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ..processes import Serving, wait_for

    doc = (ROOT / "docs" / "exposure.md").read_text()
    http_spec, grpc_spec = _blocks(doc, "yaml")[1].split("\n---\n")

    def options(spec: str) -> list[str]:
        found = re.search(r"command: \[(.*?)\]", spec, flags=re.DOTALL)
        assert found is not None
        words = re.findall(r'"([^"]*)"', found.group(1))
        assert words[:3] == ["di", "serve", "shop.app:create_app"]
        # Served on any free port, the documented application's stand-in.
        rest = words[3:]
        for flag in ("--http", "--grpc"):
            if flag in rest:
                del rest[rest.index(flag) : rest.index(flag) + 2]
        return [item.replace("shop.app.Repo", "tests.semantics_targets.Repo") for item in rest]

    paths = re.findall(r"path: (/\w+)", http_spec)
    services = re.findall(r"service: ([\w.]+)", grpc_spec)
    assert paths == ["/startupz", "/livez", "/readyz"]
    assert services == ["startup", "liveness", "shop.Orders"]
    serving = Serving(
        "tests.semantics_targets:app",
        *options(http_spec),
        *options(grpc_spec),
        log=tmp_path / "serve.log",
    )
    try:
        for path in paths:
            url = serving.url + path
            wait_for(lambda url=url: httpx.get(url, timeout=5).status_code == 200, url)
        with grpc.insecure_channel(f"127.0.0.1:{serving.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for name in services:
                request = health_pb2.HealthCheckRequest(service=name)
                status = stub.Check(request, timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING, name
        assert httpx.get(serving.url + "/health", timeout=5).json()["version"] == "1.4.2"
    finally:
        serving.close()


def test_di_run_pod_spec_drains_longer_than_readiness_takes_to_fail() -> None:
    """The numbers of the FastAPI guide's pod spec for `di run` agree with each other."""
    import re

    doc = (ROOT / "docs" / "fastapi.md").read_text()
    spec = _blocks(doc, "yaml")[0]

    def number(pattern: str, text: str = spec) -> float:
        found = re.search(pattern, text)
        assert found is not None, pattern
        return float(found.group(1))

    assert '"di", "run"' in spec
    drain = number(r'"--drain", "([\d.]+)"')
    grace = number(r'"--grace", "([\d.]+)"')
    termination = number(r"terminationGracePeriodSeconds: (\d+)")
    # Drain, grace and a few seconds of shutdown hooks fit before SIGKILL.
    assert drain + grace + 5 <= termination
    readiness = spec[spec.index("readinessProbe:") :]
    period = number(r"periodSeconds: (\d+)", readiness)
    threshold = number(r"failureThreshold: (\d+)", readiness)
    timeout = number(r"timeoutSeconds: (\d+)", readiness)
    liveness = spec[spec.index("livenessProbe:") : spec.index("readinessProbe:")]
    # Readiness fails where it is read before the drain ends (it fails at SIGTERM)...
    assert period * threshold + timeout < drain
    # ...liveness is not judged failed meanwhile (it stays 200; this is a margin)...
    assert (
        number(r"periodSeconds: (\d+)", liveness) * number(r"failureThreshold: (\d+)", liveness)
        > drain
    )
    # ...and drain, the longest request (5 s) and the hooks fit before SIGKILL.
    assert drain + 5 + 5 <= termination


# -- every code block of every page of the site runs -----------------------------------

PAGES = sorted((ROOT / "docs").glob("*.md"))
NOT_RUN = "<!-- not run -->"
_FENCE = r"(<!-- not run -->\n)?```(\w*)\n(.*?)```"

# How a page's examples run, said in words at its top (before its first example): each
# block alone, in a fresh interpreter, with nothing hidden before it.
AS_FILE = "Each example on this page is a whole program: save it as a file and run it."
IN_ASYNCIO = (
    "Each example on this page runs on its own in `python -m asyncio`, the asyncio "
    "REPL, where `await` works at the top level."
)

# Runs one block as `python -m asyncio` runs what is typed into it: each top-level
# statement in turn, on the REPL's running event loop (sync calls included), awaited
# when it is a coroutine; `asyncio` is imported, as the REPL imports it.
ASYNCIO_REPL = """
import ast, asyncio, inspect, sys, types
source = sys.stdin.read()
namespace = {"__name__": "__main__", "__builtins__": __builtins__, "asyncio": asyncio}

async def repl() -> None:
    for statement in ast.parse(source).body:
        module = ast.Module(body=[statement], type_ignores=[])
        code = compile(module, "<stdin>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = types.FunctionType(code, namespace)()
        if inspect.iscoroutine(result):
            await result

asyncio.run(repl())
"""


def convention(text: str, page: str) -> str:
    """How the page says its examples run: ``"file"`` or ``"asyncio"``."""
    top = " ".join(text[: text.find("```")].split())
    said = [name for name, words in (("file", AS_FILE), ("asyncio", IN_ASYNCIO)) if words in top]
    assert len(said) == 1, (
        f"{page} must say at its top how its examples run: {AS_FILE!r} or {IN_ASYNCIO!r}"
    )
    return said[0]


def page_blocks(text: str) -> tuple[list[str], list[str]]:
    """A page's Python blocks, in page order, and the languages of blocks not run."""
    import re

    run, skipped = [], []
    for marker, language, body in re.findall(_FENCE, text, flags=re.DOTALL):
        if marker:
            skipped.append(language)
        elif language == "python":
            run.append(body)
        else:
            assert language == "text", f"a ```{language} block must be Python or marked"
    return run, skipped


def test_the_site_has_the_pages_of_its_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert page.name in nav, page.name


@contextmanager
def servers_for(page: Path, folder: Path) -> Iterator[dict[str, str]]:
    """The real servers a page's examples talk to, named in environment variables.

    docs/checks.md checks PostgreSQL, Redis, RabbitMQ, a Celery worker, a name server
    and an HTTPS service with a certificate of its own CA: each is started here.
    """
    if page.name != "checks.md":
        yield {}
        return
    from ..checks.running import Certificates
    from ..checks.servers import CeleryWorker, Dnsmasq, HttpServer, Postgres, RabbitMQ
    from ..processes import Redis, free_port

    with ExitStack() as stack:
        certificates = Certificates(folder)
        https = HttpServer(*certificates.issue("payments"))
        dns = Dnsmasq({"db.example.test": "10.1.2.3"})
        postgres = Postgres()
        rabbitmq = RabbitMQ()
        for server in (https, dns, postgres, rabbitmq):
            stack.callback(server.close)
            server.start()
        redis = Redis(free_port())
        stack.callback(redis.kill)
        redis.start()
        worker = CeleryWorker(f"{redis.url}/1")
        stack.callback(worker.close)
        worker.start()
        yield {
            "PAYMENTS_URL": f"https://localhost:{https.port}",
            "TLS_CA_FILE": str(certificates.ca_file),
            "DNS_SERVER": dns.server,
            "DATABASE_URL": postgres.url,
            "REDIS_URL": f"{redis.url}/0",
            "AMQP_URL": rabbitmq.url,
            "CELERY_BROKER_URL": f"{redis.url}/1",
        }


DOCUMENTS = [*PAGES, ROOT / "README.md"]


@pytest.mark.parametrize("page", DOCUMENTS, ids=[page.name for page in DOCUMENTS])
def test_each_page_says_how_its_examples_run_and_hides_nothing(page: Path) -> None:
    text = page.read_text()
    assert "<!-- setup" not in text, "no hidden setup: each example defines what it uses"
    blocks, skipped = page_blocks(text)
    assert len(skipped) <= 7, "mark only shell and configuration blocks as not run"
    if blocks:
        convention(text, page.name)


@pytest.mark.parametrize("page", DOCUMENTS, ids=[page.name for page in DOCUMENTS])
def test_each_code_block_runs_alone_as_shown(page: Path, tmp_path: Path) -> None:
    """Each block alone, in a fresh interpreter of its own, in a folder of its own, as
    the page says its examples run (the servers a page talks to start once for it)."""

    text = page.read_text()
    blocks = page_blocks(text)[0]
    if not blocks:
        return
    how = convention(text, page.name)
    with servers_for(page, tmp_path) as environment:
        for index, block in enumerate(blocks):
            folder = tmp_path / f"example-{index + 1}"
            folder.mkdir()
            if how == "file":
                (folder / "example.py").write_text(block)
                command, given = [sys.executable, "example.py"], None
            else:
                command, given = [sys.executable, "-c", ASYNCIO_REPL], block
            code, output = run_as_a_reader(command, given, folder, environment)
            assert code == 0, f"{page.name}, example {index + 1}:\n{block}\n{output}"


# A program that serves until Ctrl-C says so on a line of its own; the reader presses it.
CTRL_C = "Ctrl-C stops it"


def run_as_a_reader(
    command: list[str], given: str | None, folder: Path, environment: dict[str, str]
) -> tuple[int, str]:
    """Run an example as a reader would: its exit status and output (stderr with it).

    A server it starts listens on ``PORT`` where it reads one (a free port here); when
    it says ``CTRL_C``, the reader presses Ctrl-C (SIGINT).
    """
    import os
    import signal
    import threading

    from ..processes import free_port

    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=folder,
        env={**os.environ, "PORT": str(free_port()), **environment},
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if CTRL_C in line:
                process.send_signal(signal.SIGINT)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert process.stdin is not None
    process.stdin.write(given or "")
    process.stdin.close()
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    reader.join(10)
    return code, "".join(lines)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_a_page_s_install_lines_install_what_its_examples_import(page: Path) -> None:
    """Starlette's and FastAPI's test clients need httpx, which neither framework
    installs: a page whose examples use one says to install it, beside its extra."""
    import re

    text = page.read_text()
    blocks = page_blocks(text)[0]
    installs = " ".join(re.findall(r"^pip install .*$", text, flags=re.MULTILINE))
    uses = re.compile(r"from (fastapi|starlette)\.testclient import")
    if any(uses.search(block) for block in blocks):
        assert re.search(r"\bhttpx\b", installs), (
            f"{page.name}: its examples use a test client that needs httpx; add "
            "`pip install httpx` to its install lines"
        )


def test_the_testing_guide_s_fixtures_pass_under_pytest(tmp_path: Path) -> None:
    """The "Testing with healthdi" section, its setup included, is a test module that
    pytest runs and passes: its fixtures clone and override as the text says."""
    doc = (ROOT / "docs" / "container.md").read_text()
    section = doc[doc.index("## Testing with healthdi") :]
    section = section[: section.index("\n## ", 1)]
    blocks, _ = page_blocks(section)
    module = tmp_path / "test_guide.py"
    module.write_text("\n".join(blocks))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


# -- the API reference -------------------------------------------------------------------


def test_the_reference_renders_roles_as_code_and_doctests_as_code_blocks() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from docs_reference import rendered
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    docstring = (
        "Runs a :class:`~di.HealthMonitor` (see :meth:`start`, :mod:`di.metrics`).\n"
        "\n"
        ">>> monitor = HealthMonitor(injector)\n"
        ">>> async with monitor:\n"
        "...     await monitor.wait_ready()\n"
        "True\n"
        "\n"
        "After."
    )
    assert rendered(docstring) == (
        "Runs a `HealthMonitor` (see `start`, `di.metrics`).\n"
        "\n"
        "```python\n"
        ">>> monitor = HealthMonitor(injector)\n"
        ">>> async with monitor:\n"
        "...     await monitor.wait_ready()\n"
        "True\n"
        "```\n"
        "\n"
        "After."
    )


def test_the_docs_build_fails_on_a_public_name_the_reference_lacks(tmp_path: Path) -> None:
    """The site as `make docs` builds it, its reference without di.metrics: refused."""
    import os
    import shutil

    import yaml

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    reference = docs / "reference.md"
    text = reference.read_text()
    assert "::: di.metrics\n" in text
    reference.write_text(text.replace("::: di.metrics\n", ""))
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    script = str(ROOT / "scripts" / "docs_reference.py")
    config["docs_dir"] = str(docs)
    config["hooks"] = [script]
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    handler["paths"] = [str(ROOT)]
    handler["options"]["extensions"] = [f"{script}:Docstrings"]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode != 0
    assert (
        "docs/reference.md has no entry for 3 public name(s): di.metrics.HealthCollector, "
        "di.metrics.STATUSES, di.metrics.register; add a `::: module` block"
    ) in done.stderr, done.stderr
