"""The status page in a real browser: headless Chromium (Debian's, which .ci/run installs)
driven by Playwright against a real `di serve --ui`.

The target is Db <- Repo <- Api (tests.semantics_targets), the Db down while a file the
test touches exists. Every request the page makes is recorded, to show none leaves the
page's origin. The screenshot it saves (build/screenshots/health-ui.png) is the one in
docs/images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ..processes import ROOT, Serving
from ..semantics_targets import Api, Db, Repo
from ..services import key
from ..timing import PATIENCE, at_most, wait_until

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: .ci/run installs Debian's chromium"
)

INTERVAL = 0.5  # seconds between rounds of `di serve`
DB, REPO, API = key(Db), key(Repo), key(Api)
SERVICES = {DB, REPO, API}
# Flags that work in a container as root: no sandbox, no GPU, nothing phoning home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "build" / "screenshots" / "health-ui.png"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Serving, Path]]:
    flag = tmp_path / "db-down"
    process = Serving(
        "tests.semantics_targets:app",
        "--interval",
        str(INTERVAL),
        "--ui",
        log=tmp_path / "serve.log",
        DI_TEST_DB_DOWN=str(flag),
    )
    try:
        yield process, flag
    finally:
        process.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright gives each launch a fresh profile of its own (a new user data dir).
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def status_of(page: Any, selector: str) -> str:
    return str(page.get_attribute(selector, "data-status"))


def wait_status(page: Any, name: str, status: str, timeout: float) -> None:
    """Wait until the row and the graph node of ``name`` both read ``status``."""
    page.wait_for_function(
        """([name, status]) => {
            const row = document.querySelector(`tr.row[data-name="${name}"]`);
            const node = document.querySelector(`g.node[data-name="${name}"]`);
            return row && node && row.dataset.status === status && node.dataset.status === status;
        }""",
        arg=[name, status],
        timeout=timeout * 1000,
    )


def test_the_page_follows_a_failure_and_its_recovery_and_stays_on_its_origin(
    served: tuple[Serving, Path], browser: Any
) -> None:
    process, flag = served
    origin = urlsplit(process.url)
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.set_default_timeout(PATIENCE * 1000)

    # The local server sends the page within 200 ms of being asked. The whole load
    # (Chromium's parsing and drawing included) is a figure of `make bench`, not a bound
    # here: on a busy machine the browser's own share is what grows.
    page.goto(process.url + "/health/ui")
    sent = page.evaluate(
        "() => { const t = performance.getEntriesByType('navigation')[0];"
        " return t.responseEnd - t.requestStart; }"
    )
    assert 0 < sent / 1000 < at_most(0.2), sent
    # A browser asking for /health is sent to the page.
    page.goto(process.url + "/health")
    assert urlsplit(page.url).path == "/health/ui"
    rows = page.eval_on_selector_all("tr.row", "rows => rows.map(r => r.dataset.name)")
    nodes = page.eval_on_selector_all("g.node", "nodes => nodes.map(n => n.dataset.name)")
    assert set(rows) == SERVICES and set(nodes) == SERVICES
    wait_status(page, DB, "pass", PATIENCE)
    page.wait_for_selector("body.js")  # the script runs: live from here on

    def rounds() -> int:
        return int(page.get_attribute(f'tr.row[data-name="{DB}"] svg.history', "data-rounds"))

    seen = rounds()
    page.wait_for_function(
        f"""() => Number(document.querySelector(
            'tr.row[data-name="{DB}"] svg.history').dataset.rounds) > {seen}"""
    )  # the history strip grows with each round

    flag.touch()
    # Red within two intervals, row and graph node; the Db is the root cause.
    wait_status(page, DB, "fail", at_most(2 * INTERVAL))
    assert "root" in str(page.get_attribute(f'g.node[data-name="{DB}"]', "class"))
    wait_status(page, API, "fail", PATIENCE)
    assert "blocked" in str(page.get_attribute(f'g.node[data-name="{API}"]', "class"))
    fill = page.eval_on_selector(
        f'g.node[data-name="{DB}"] rect', "rect => getComputedStyle(rect).stroke"
    )
    assert fill == "rgb(207, 34, 46)"  # red
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    flag.unlink()
    for name in SERVICES:  # and back after recovery
        wait_status(page, name, "pass", at_most(2 * INTERVAL))
    assert status_of(page, "section.summary") == "pass"

    # Nothing the page asked for left its origin (a data: URL is no request).
    assert requests
    outside = [url for url in requests if urlsplit(url)[:2] != origin[:2]]
    assert outside == [], outside
    weight = sum(
        len(httpx.get(process.url + path, timeout=5).content)
        for path in ("/health/ui", "/health/ui/page.js", "/health/ui/page.css")
    )
    assert weight < 100 * 1024

    # The server goes away: the page says its view is stale.
    process.close()
    page.wait_for_selector("#stale", state="visible")
    assert "Stale" in page.inner_text("#stale")
    context.close()


def test_the_page_shows_the_static_status_with_javascript_off(
    served: tuple[Serving, Path], browser: Any
) -> None:
    process, flag = served
    flag.touch()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(PATIENCE * 1000)

    def failing() -> bool:
        page.goto(process.url + "/health/ui")
        return status_of(page, f'tr.row[data-name="{DB}"]') == "fail"

    wait_until(failing, "the page to show the Db failing")
    assert status_of(page, f'g.node[data-name="{DB}"]') == "fail"
    assert page.get_attribute("body", "class") is None  # no script ran
    assert page.is_hidden("#stale")
    assert "Static view" in page.inner_text("#freshness")
    context.close()
