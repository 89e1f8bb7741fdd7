"""install(..., ui=True) in every integration serves the status page the health app renders
(tests/wire/test_status_page.py), under the health prefix, and sends a browser asking for
/health there; without it, no page.

FastAPI and Starlette go through their lifespan and httpx's ASGI transport (asyncio and
trio); Litestar's test client, Flask's, aiohttp's own server (asyncio only) and a real
HealthServer. Django's is tests/integrations/test_django.py's (``"UI": True`` in the
test project's HEALTHDI setting).
"""

# No `from __future__ import annotations`: the frameworks read the annotations.
import asyncio
import importlib
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from di import Injector
from di._ui import CSP

from ..services import Cache
from ..timing import wait_until
from .test_integrations import fast_monitor, served

BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


def injector_with_a_check() -> Injector:
    injector = Injector()
    injector.provide(Cache, eager=True)
    return injector


# An answer as the test reads it, whatever the framework's client: status, headers, text.
Seen = tuple[int, Mapping[str, str], str]


def seen(answer: Any) -> Seen:
    return answer.status_code, answer.headers, answer.text


def assert_page(page: Seen, redirect: Seen, plain: Seen) -> None:
    assert page[0] == 200
    assert page[1]["content-security-policy"] == CSP
    assert page[1]["x-content-type-options"] == "nosniff"
    assert 'data-name="tests.services.Cache"' in page[2]
    assert redirect[0] == 303 and redirect[1]["location"] == "health/ui"
    assert plain[0] == 200
    assert plain[1]["content-type"] == "application/health+json"


@pytest.mark.anyio
@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
async def test_asgi_frameworks_serve_the_page_under_their_prefix(framework: str) -> None:
    from fastapi import FastAPI
    from starlette.applications import Starlette

    module = importlib.import_module(f"di.integrations.{framework}")
    app_type: Any = FastAPI if framework == "fastapi" else Starlette
    app = app_type()
    injector = injector_with_a_check()
    monitor = module.install(
        app, injector, monitor=fast_monitor(injector), health_prefix="/ops", ui=True
    )
    bare = app_type()
    module.install(bare, Injector())
    async with served(app) as client, served(bare) as plain:
        await monitor.wait_ready()
        page = await client.get("/ops/health/ui")
        redirect = await client.get("/ops/health", headers={"accept": BROWSER})
        json_answer = await client.get("/ops/health")
        assert_page(seen(page), seen(redirect), seen(json_answer))
        assert (await client.get("/ops/health/ui/page.js")).status_code == 200
        assert (await plain.get("/health/ui")).status_code == 404
        assert (await plain.get("/health", headers={"accept": BROWSER})).status_code == 200


def test_litestar_serves_the_page() -> None:
    from litestar import Litestar
    from litestar.testing import TestClient

    from di.integrations.litestar import DIPlugin

    injector = injector_with_a_check()
    plugin = DIPlugin(injector, monitor=fast_monitor(injector), ui=True)
    with TestClient(Litestar([], plugins=[plugin], logging_config=None)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, "readiness")
        assert_page(
            seen(client.get("/health/ui")),
            seen(client.get("/health", headers={"accept": BROWSER}, follow_redirects=False)),
            seen(client.get("/health")),
        )


def test_flask_serves_the_page() -> None:
    from flask import Flask

    from di.integrations.flask import install, shutdown

    app = Flask(__name__)
    injector = injector_with_a_check()
    install(app, injector, monitor=fast_monitor(injector), ui=True)
    try:
        client = app.test_client()
        assert_page(
            seen(client.get("/health/ui")),
            seen(client.get("/health", headers={"accept": BROWSER})),
            seen(client.get("/health")),
        )
        assert client.post("/health/ui").status_code == 405
        history = client.get("/health/history").get_json()["history"]
        assert history["tests.services.Cache"][-1]["status"] == "pass"
    finally:
        shutdown(app)


def test_aiohttp_serves_the_page() -> None:
    pytest.importorskip("aiohttp")
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from di.integrations.aiohttp import install

    app = web.Application()
    injector = injector_with_a_check()
    monitor = install(app, injector, monitor=fast_monitor(injector), ui=True)

    async def talk() -> None:
        async with TestClient(TestServer(app)) as client:
            await monitor.wait_ready()
            answers: list[Seen] = []
            for path, headers in (
                ("/health/ui", {}),
                ("/health", {"accept": BROWSER}),
                ("/health", {}),
            ):
                answer = await client.get(path, headers=headers, allow_redirects=False)
                answers.append((answer.status, answer.headers, await answer.text()))
            assert_page(*answers)

    asyncio.run(talk())


def test_health_server_serves_the_page() -> None:
    from di import HealthServer

    injector = injector_with_a_check()
    with HealthServer(injector, http="127.0.0.1:0", interval=0.05, ui=True) as server:
        assert server.http_address is not None
        base = f"http://127.0.0.1:{server.http_address[1]}"
        wait_until(lambda: httpx.get(base + "/readyz").status_code == 200, "readiness")
        assert_page(
            seen(httpx.get(base + "/health/ui")),
            seen(httpx.get(base + "/health", headers={"accept": BROWSER})),
            seen(httpx.get(base + "/health")),
        )
    with pytest.raises(ValueError, match=r"ui=True\) serves /health/ui on the HTTP port"):
        HealthServer(injector, grpc="127.0.0.1:0", ui=True)
