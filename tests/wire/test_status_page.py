"""The status page and /health/history over HTTP: health_app(ui=True), in-process through
httpx's ASGI transport (on asyncio and on trio); a round runs when the test asks.

What a browser makes of the page is tests/wire/test_status_page_browser.py's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from di import HealthMonitor, Injector
from di._ui import CSP, wants_page
from di._ui import render as ui_render
from di.asgi import health_app
from di.monitor import HistoryEntry

from ..services import Cache, Database, key

pytestmark = pytest.mark.anyio

DB, CACHE = key(Database), key(Cache)
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def make(**options: Any) -> tuple[Injector, HealthMonitor, Database]:
    injector = Injector()
    injector.provide(Database)
    injector.provide(Cache)
    db = injector.invoke(Database)
    injector.invoke(Cache)
    return injector, HealthMonitor(injector, interval=3600, **options), db


@asynccontextmanager
async def client_of(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


async def test_the_page_lists_each_service_with_its_rounds_and_the_graph() -> None:
    _, monitor, db = make()
    await monitor.check()
    db.fail()
    await monitor.check()
    async with client_of(health_app(monitor, ui=True)) as client:
        page = await client.get("/health/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    html = page.text
    assert f'<tr class="row fail" data-name="{DB}" data-status="fail">' in html
    assert f'<tr class="row pass" data-name="{CACHE}" data-status="pass">' in html
    assert f'<g class="node fail root" data-name="{DB}" data-status="fail">' in html
    assert 'data-rounds="2" data-last="fail"' in html  # the strip of the Db's rounds
    assert "<script>" not in html and "style=" not in html  # nothing inline for the CSP
    assert "secret-host" not in html  # errors can carry secrets: only with show_details
    async with client_of(health_app(monitor, ui=True, show_details=True)) as client:
        shown = (await client.get("/health/ui")).text
    assert "ConnectionError: Database is down (secret-host:5432)" in shown


async def test_the_script_and_style_are_the_packages_own() -> None:
    _, monitor, _ = make()
    async with client_of(health_app(monitor, ui=True)) as client:
        script = await client.get("/health/ui/page.js")
        style = await client.get("/health/ui/page.css")
        live = await client.get("/health/ui/live")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert 'fetch("ui/live"' in script.text and "http" not in script.text.split("fetch")[0]
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert "url(http" not in style.text and "@import" not in style.text
    assert live.status_code == 200 and live.text.startswith('<section class="summary"')
    for answer in (script, style, live):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("application/health+json", False),
        ("*/*", False),
        ("", False),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.1, text/html;q=0.9", True),
        ("text/html;q=abc", False),
        ("text/html;q=7", False),
        ("text/html;;;q=,,,", False),  # a weight that does not parse is 0
        (";;;,,,==", False),
        ("text/html" + ", x/y" * 10_000, True),
        ("\u00e9t\u00e9/html", False),
    ],
)
async def test_a_browser_asking_for_health_is_sent_to_the_page_and_tools_keep_json(
    accept: str, page: bool
) -> None:
    assert wants_page(accept) is page
    _, monitor, _ = make()
    await monitor.check()
    async with client_of(health_app(monitor, ui=True)) as client:
        answer = await client.get("/health", headers={"accept": accept.encode("utf-8")})
    if page:
        assert answer.status_code == 303
        assert answer.headers["location"] == "health/ui"
        assert answer.headers["cache-control"] == "no-store"
    else:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/health+json"


async def test_without_ui_a_browser_gets_json_and_there_is_no_page() -> None:
    _, monitor, _ = make()
    await monitor.check()
    async with client_of(health_app(monitor)) as client:
        answer = await client.get("/health", headers={"accept": BROWSER})
        page = await client.get("/health/ui")
        script = await client.get("/health/ui/page.js")
    assert answer.status_code == 200 and answer.json()["status"] == "pass"
    assert "html" not in page.headers["content-type"]  # a name, unknown
    assert page.status_code == 404 and script.status_code == 404


async def test_history_answers_each_names_rounds_withholding_reasons() -> None:
    _, monitor, db = make(history=2)
    await monitor.check()
    db.fail()
    await monitor.check()
    await monitor.check()
    async with client_of(health_app(monitor)) as client:
        answer = await client.get("/health/history")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    history = answer.json()["history"]
    assert [entry["status"] for entry in history[DB]] == ["fail", "fail"]  # the last 2
    assert history[DB][0]["reason"] == "reason withheld"
    assert history[DB][0]["time"].endswith("+00:00") and history[DB][0]["duration"] >= 0
    assert [entry["status"] for entry in history[CACHE]] == ["pass", "pass"]
    assert "reason" not in history[CACHE][0]
    async with client_of(health_app(monitor, show_details=True)) as client:
        shown = (await client.get("/health/history")).json()["history"]
    assert shown[DB][0]["reason"] == f"{DB}: ConnectionError: Database is down (secret-host:5432)"


@pytest.mark.parametrize(
    "path",
    ["/health/ui", "/health/ui/live", "/health/ui/page.js", "/health/history", "/health"],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_the_new_routes_are_read_only(path: str, method: str) -> None:
    _, monitor, _ = make()
    await monitor.check()
    async with client_of(health_app(monitor, ui=True)) as client:
        answer = await client.request(method, path, headers={"accept": BROWSER}, content=b"{}")
        head = await client.head(path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD"
    assert head.content == b"" and head.status_code in (200, 303)


async def test_names_and_errors_on_the_page_are_escaped() -> None:
    injector = Injector()

    class Hostile:
        def health_check(self) -> None:
            raise ValueError("<script>alert(1)</script>")

    injector.provide(Hostile, name="<img src=x onerror=alert(1)>")
    injector.invoke(Hostile, "<img src=x onerror=alert(1)>")
    monitor = HealthMonitor(injector, interval=3600)
    await monitor.check()
    async with client_of(health_app(monitor, ui=True, show_details=True)) as client:
        html = (await client.get("/health/ui")).text
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_a_full_history_of_many_services_weighs_under_100_kb() -> None:
    """The page's weight promise, at its heaviest default: 100 rounds of 12 services."""
    injector = Injector()
    classes = [type(f"Service{i}", (Database,), {}) for i in range(12)]
    for number, cls in enumerate(classes):
        injector.provide(cls, name=f"service-{number}")
        injector.invoke(cls, f"service-{number}")
    monitor = HealthMonitor(injector, interval=3600)
    for _ in range(100):
        await monitor.check()
    async with client_of(health_app(monitor, ui=True)) as client:
        weight = 0
        for path in ("/health/ui", "/health/ui/page.js", "/health/ui/page.css"):
            weight += len((await client.get(path)).content)
    assert weight < 100 * 1024, weight


def test_a_strip_draws_the_last_rounds_only_however_many_the_history_keeps() -> None:
    rounds = [
        HistoryEntry("fail" if n == 999 else "pass", 0.01, float(n), None) for n in range(1000)
    ]
    drawn = ui_render.strip(rounds)
    assert f'data-rounds="{ui_render.STRIP_ROUNDS}" data-last="fail"' in drawn
    assert len(drawn) < 2048  # a thousand rounds kept weigh what fifty do on the page


def test_the_graph_lays_services_out_by_longest_path_and_survives_a_cycle() -> None:
    graph = [
        ("api", "lazy", ("repo", "db")),
        ("repo", "lazy", ("db",)),
        ("db", "lazy", ()),
        ("a", "lazy", ("b",)),
        ("b", "lazy", ("a",)),
    ]
    depth = ui_render.layers(graph)
    assert (depth["db"], depth["repo"], depth["api"]) == (0, 1, 2)
    assert {depth["a"], depth["b"]} == {0, 1}
    assert json.dumps(depth)  # plain numbers


def test_di_serve_ui_needs_the_http_port() -> None:
    from ..processes import di

    done = di("serve", "tests.semantics_targets:app", "--grpc", "127.0.0.1:0", "--ui", timeout=60)
    assert done.returncode == 1
    assert "--ui serves /health/ui on the HTTP port: give --http too" in done.stderr
