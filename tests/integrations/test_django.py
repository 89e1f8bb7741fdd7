"""Django: the app, a scope per request, ``@inject`` views, health, and real servers.

In-process, Django's test clients (sync and async) go through the test project's
(``tests/integrations/django_project``) middleware and views: the project is set up
once per test process, and its injector starts at ``AppConfig.ready()`` as in any
Django process. The documented example (``examples/django_shop``) runs under gunicorn
(WSGI) and uvicorn (ASGI, with the lifespan).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("django")

from di import Injector

from ..processes import UVICORN_SAYS, Child
from ..timing import PATIENCE, Stopwatch, wait_until
from .units import Ledger

SETTINGS = "tests.integrations.django_project.settings"


@pytest.fixture(scope="module")
def project() -> Iterator[None]:
    """The test project, set up in this process (once: Django's setup is the process's)."""
    import django
    from django.conf import settings

    if not settings.configured:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
        django.setup()
    yield


@pytest.fixture
def ledger(project: None) -> Ledger:
    from .django_project.container import LEDGER

    with LEDGER.lock:
        LEDGER.opened = LEDGER.committed = LEDGER.rolled_back = 0
    return LEDGER


def client() -> Any:
    from django.test import Client

    return Client(raise_request_exception=False)


def test_each_request_commits_on_success_and_rolls_back_on_error_over_10000_requests(
    ledger: Ledger,
) -> None:
    web = client()
    for number in range(10_000):
        failing = number % 4 == 0
        answer = web.get("/place?fail=1" if failing else "/place")
        assert answer.status_code == (500 if failing else 200)
    assert ledger.opened == 10_000
    assert (ledger.committed, ledger.rolled_back) == (7_500, 2_500)


def test_async_views_commit_and_roll_back_under_asgi(ledger: Ledger) -> None:
    from django.test import AsyncClient

    async def run() -> None:
        web = AsyncClient(raise_request_exception=False)
        assert (await web.get("/aplace")).status_code == 200
        assert (await web.get("/aplace?fail=1")).status_code == 500
        answer = await web.get("/astream")
        assert b"".join([chunk async for chunk in answer.streaming_content]) == b"one,two"

    asyncio.run(run())
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (3, 2, 1)


def test_an_http404_is_an_answer_and_commits(ledger: Ledger) -> None:
    assert client().get("/place?missing=1").status_code == 404
    assert (ledger.committed, ledger.rolled_back) == (1, 0)


def test_a_streamed_body_closes_its_scope_after_its_end_or_with_its_failure(
    ledger: Ledger,
) -> None:
    answer = client().get("/stream")
    assert answer.getvalue() == b"one,two"
    assert (ledger.committed, ledger.rolled_back) == (1, 0)
    failing = client().get("/stream?fail=1")
    with pytest.raises(ValueError, match="failed part-way"):
        failing.getvalue()
    assert (ledger.committed, ledger.rolled_back) == (1, 1)


def test_a_client_that_leaves_mid_stream_rolls_back(ledger: Ledger) -> None:
    for _ in range(3):
        answer = client().get("/stream")
        assert next(iter(answer)) == b"one,"
        answer.close()  # as a WSGI server does when the client went away
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (3, 0, 3)


def test_a_body_that_opens_the_scope_while_it_is_sent_closes_it_after_its_end(
    ledger: Ledger,
) -> None:
    from django.test import AsyncClient

    assert client().get("/lazystream").getvalue() == b"one,two"
    failing = client().get("/lazystream?fail=1")
    with pytest.raises(ValueError, match="failed part-way"):
        failing.getvalue()
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (2, 1, 1)

    async def run() -> bytes:
        answer = await AsyncClient().get("/lazystream")
        return b"".join([chunk async for chunk in answer])

    assert asyncio.run(run()) == b"one,two"
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (3, 2, 1)


def test_a_sync_views_body_under_asgi_runs_off_the_event_loop(ledger: Ledger) -> None:
    """As Django sends a sync body under ASGI: in a thread, never blocking the loop
    (where the ORM refuses to run)."""
    from django.test import AsyncClient

    async def run() -> bytes:
        answer = await AsyncClient().get("/streamthread")
        return b"".join([chunk async for chunk in answer])

    assert asyncio.run(run()) == b"no loop"
    assert (ledger.opened, ledger.committed, ledger.rolled_back) == (1, 1, 0)


def test_class_based_views_inject_and_the_request_is_in_the_context(project: None) -> None:
    assert client().get("/where").json() == {"path": "/where", "same": True}


def test_health_urls_answer_under_their_prefix(project: None) -> None:
    from django.apps import apps

    process: Any = apps.get_app_config("healthdi").process  # type: ignore[attr-defined]
    web = client()
    assert web.get("/ops/livez").content == b"ok"
    wait_until(lambda: web.get("/ops/readyz").status_code == 200, "readiness")
    assert "[+]tests.integrations.units.Ledger" not in web.get("/ops/readyz?verbose").text
    assert web.get("/ops/health").status_code == 200
    assert process.started and not process.done


def test_health_urls_serve_the_status_page_with_ui_on(project: None) -> None:
    from di._ui import CSP

    web = client()
    wait_until(lambda: web.get("/ops/readyz").status_code == 200, "readiness")
    page = web.get("/ops/health/ui")
    assert page.status_code == 200
    assert page["content-security-policy"] == CSP
    assert 'data-name="tests.integrations.units.Ledger"' in page.content.decode()
    browser = web.get("/ops/health", HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert browser.status_code == 303 and browser["location"] == "health/ui"
    assert web.get("/ops/health")["content-type"] == "application/health+json"


def test_the_middleware_names_a_forgotten_inject_and_an_unknown_key(project: None) -> None:
    from django.test import override_settings

    from di.errors import GraphError
    from di.integrations.django import RequestScopeMiddleware

    broken = "tests.integrations.django_project.broken_urls"
    with override_settings(ROOT_URLCONF=broken), pytest.raises(GraphError) as failed:
        RequestScopeMiddleware(lambda request: None)
    message = str(failed.value)
    assert "forgot" in message and "no @inject" in message
    assert "unknown" in message and "'thing' injects what is not provided" in message


def test_inject_on_a_class_is_refused_by_name(project: None) -> None:
    from django.views import View

    from di.integrations.django import inject

    class Orders(View):
        pass

    with pytest.raises(TypeError, match="decorate its methods"):
        inject(Orders)


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("project.container:create_injector", "needs 'INJECTOR'"),
        ({"INJECTOR": "no_colon"}, "must be 'module:attribute'"),
        ({"INJECTOR": "no_such_module:x"}, "cannot import 'no_such_module'"),
        ({"INJECTOR": "tests.integrations.units:missing"}, "has no 'missing'"),
        ({"INJECTOR": "tests.integrations.units:Ledger"}, "is not an Injector"),
        ({"INJECTOR": Injector(), "INTERVL": 5}, "unknown keys ['INTERVL']"),
        ({"INJECTOR": Injector(), "INTERVAL": 0}, "number of seconds > 0"),
    ],
)
def test_a_wrong_healthdi_setting_is_named_with_its_fix(
    project: None, setting: object, says: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from di.integrations.django.apps import Settings

    if setting == "project.container:create_injector":
        setting = {}
    with pytest.raises(ImproperlyConfigured) as failed:
        Settings(setting)
    assert says in str(failed.value)


# -- the documented example under real servers -------------------------------------------

EXAMPLE = "examples.django_shop.settings"  # this process's own setting is the test project's
LISTENING = r"Listening at: http://127\.0\.0\.1:(\d+)"


def use_the_shop(base: str) -> None:
    with httpx.Client(base_url=base, timeout=PATIENCE) as web:
        assert web.get("/orders/place?item=tea").json() == {"placed": "tea"}
        assert web.get("/orders/place").status_code == 500  # rolled back
        assert web.get("/orders/place?item=jam").json() == {"placed": "jam"}
        assert web.get("/orders").json() == {"orders": ["tea", "jam"]}
        assert web.get("/orders/count").json() == {"count": 2}  # an async view
        wait_until(lambda: web.get("/ops/readyz").status_code == 200, "readiness")
        assert "Orders ok" in web.get("/ops/readyz?verbose").text


def test_the_example_under_gunicorn_wsgi(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    server = Child(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "1",
            "--bind",
            "127.0.0.1:0",
            "--no-control-socket",
            "examples.django_shop.wsgi",
        ],
        log=tmp_path / "gunicorn.log",
        DJANGO_SETTINGS_MODULE=EXAMPLE,
    )
    try:
        port = server.port(LISTENING)
        use_the_shop(f"http://127.0.0.1:{port}")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.output()
        assert "orders closed" in server.output(), server.output()
    finally:
        server.close()


def test_the_example_under_uvicorn_asgi_with_its_lifespan(tmp_path: Path) -> None:
    server = Child(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--lifespan",
            "on",
            "examples.django_shop.asgi:application",
        ],
        log=tmp_path / "uvicorn.log",
        DJANGO_SETTINGS_MODULE=EXAMPLE,
    )
    try:
        port = server.port(UVICORN_SAYS)
        use_the_shop(f"http://127.0.0.1:{port}")
        server.signal(signal.SIGTERM)
        # uvicorn leaves by the signal it stopped on, once its lifespan has shut down.
        assert server.wait() in (0, -signal.SIGTERM), server.output()
        output = server.output()
        assert output.index("orders closed") < output.index("Application shutdown complete")
    finally:
        server.close()


def test_each_preloaded_gunicorn_worker_runs_its_own_monitor(tmp_path: Path) -> None:
    """With --preload, the master starts the injector at ready(), then forks: each
    worker's readiness still comes from rounds of its own monitor. Without them, a
    worker's snapshot falls overdue after 2 * (interval + timeout) = 2 s, and its
    /readyz answers 503."""
    pytest.importorskip("gunicorn")
    server = Child(
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
            "django.core.wsgi:get_wsgi_application()",
        ],
        log=tmp_path / "gunicorn.log",
        DJANGO_SETTINGS_MODULE=SETTINGS,
        HEALTH_INTERVAL="0.5",
    )
    try:
        port = server.port(LISTENING)
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=PATIENCE) as web,
        ):
            wait_until(lambda: web.get("/ops/readyz").status_code == 200, "a first round")
            elapsed = Stopwatch()
            while elapsed.seconds < 6.0:  # three times as long as a snapshot stays fresh
                answer = web.get("/ops/readyz?verbose", headers={"Connection": "close"})
                assert answer.status_code == 200, answer.text
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.output()
    finally:
        server.close()


def test_a_request_that_injects_nothing_opens_nothing_and_a_late_scope_is_refused(
    ledger: Ledger,
) -> None:
    from django.test import AsyncClient

    from di.errors import ScopeClosedError
    from di.integrations.django import scope_of

    answer = client().get("/ops/livez")
    assert answer.status_code == 200
    asyncio.run(AsyncClient().get("/ops/livez"))
    assert (ledger.opened, ledger.closed) == (0, 0)
    with pytest.raises(ScopeClosedError, match="after the request ended: reach it while"):
        scope_of(answer.wsgi_request)


def test_a_file_response_is_left_for_the_server_to_send_as_a_file(ledger: Ledger) -> None:
    """A view that injects nothing and answers a file: the server's ``wsgi.file_wrapper``
    (its sendfile) gets the file (Django's test client would wrap it: a WSGI call)."""
    import io

    from django.core.handlers.wsgi import WSGIHandler

    class FileWrapper:
        def __init__(self, file: Any, block_size: int = 8192) -> None:
            self.file = file

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/download",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.file_wrapper": FileWrapper,
    }
    answer = WSGIHandler()(environ, lambda status, headers: None)
    assert isinstance(answer, FileWrapper)
    assert answer.file.read() == b"the file"
    assert (ledger.opened, ledger.closed) == (0, 0)
