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
    assert done.stdout.strip() == "{'__main__.Database': None}"


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

# Runs a page's Python blocks in order in one namespace, as a reader would paste them
# into ``python -m asyncio``: statements that await run on one event loop, the others
# while it is not running (the sync API refuses a running loop).
RUNNER = """
import ast, asyncio, json, sys
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)  # for clients made outside a coroutine (grpc.aio)
for index, source in enumerate(blocks):
    for statement in ast.parse(source).body:
        module = ast.Module(body=[statement], type_ignores=[])
        code = compile(module, f"<block {index}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            loop.run_until_complete(result)
"""


def page_blocks(text: str) -> tuple[list[str], list[str]]:
    """A page's Python to run, in page order, and the languages of blocks not run.

    ``<!-- setup ... -->`` comments (hidden on the site) run where they stand: they
    define what a snippet assumes, such as the classes it provides.
    """
    import re

    run, skipped = [], []
    pattern = r"<!-- setup\n(.*?)-->|" + _FENCE
    for setup, marker, language, body in re.findall(pattern, text, flags=re.DOTALL):
        if setup:
            run.append(setup)
        elif marker:
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


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_code_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    import json
    import os

    blocks, skipped = page_blocks(page.read_text())
    assert len(skipped) <= 6, "mark only shell and configuration blocks as not run"
    with servers_for(page, tmp_path) as environment:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER],
            input=json.dumps(blocks),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, **environment},
        )
    assert done.returncode == 0, done.stderr


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
