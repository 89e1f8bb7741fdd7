"""R2 beyond FastAPI: an aiohttp handler and a Django view injecting a scoped service.

Each row serves ``GET /`` building the scoped ``Service`` (which needs the ``Database``
singleton) and answering "ok", 50 concurrent keep-alive clients, as R2's FastAPI rows:

- aiohttp, under its own server (``web.run_app``): healthdi's ``install`` and
  ``@inject``; dishka's aiohttp integration (``setup_dishka``, ``@inject``,
  ``FromDishka[T]``); and a plain handler building the service by hand.
- Django, as an ASGI app under uvicorn (httptools), async views: healthdi's app,
  ``RequestScopeMiddleware`` and ``@inject``; and a plain view building the service by
  hand, with no middleware at all. dishka has no Django integration.

``python -m benchmarks.web_frameworks serve KIND PORT`` serves one of them (the Django
kinds read their URLconf from this module, so it is their ``ROOT_URLCONF`` too).
"""

# No `from __future__ import annotations`: the handlers' annotations name local imports.
import os
import sys
from typing import Any

MODULE = "benchmarks.web_frameworks"  # not __name__, which is "__main__" when served
ROWS = {
    "aiohttp": {
        "aiohttp: healthdi Inject[T]": "aiohttp-healthdi",
        "aiohttp: dishka FromDishka[T]": "aiohttp-dishka",
        "aiohttp: plain handler": "aiohttp-plain",
    },
    "django": {
        "Django (ASGI): healthdi Inject[T]": "django-healthdi",
        "Django (ASGI): plain view": "django-plain",
    },
}
BASELINES = {"aiohttp": "aiohttp: plain handler", "django": "Django (ASGI): plain view"}
DISHKA = {"aiohttp": "aiohttp: dishka FromDishka[T]"}


class Database:
    pass


class Service:
    def __init__(self, db: Database) -> None:
        self.db = db


# -- aiohttp -------------------------------------------------------------------------------


def aiohttp_healthdi() -> Any:
    from aiohttp import web

    from di import Injector
    from di.integrations.aiohttp import Inject, inject, install

    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(Service)
    app = web.Application()
    install(app, injector)

    @inject
    async def endpoint(request: web.Request, service: Inject[Service]) -> web.Response:
        return web.Response(body=b"ok")

    app.router.add_get("/", endpoint)
    return app


def aiohttp_dishka() -> Any:
    from aiohttp import web
    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.aiohttp import AiohttpProvider, FromDishka, inject, setup_dishka

    provider = Provider()
    provider.provide(Database, scope=Scope.APP)
    provider.provide(Service, scope=Scope.REQUEST)
    app = web.Application()
    setup_dishka(make_async_container(provider, AiohttpProvider()), app)

    @inject
    async def endpoint(request: web.Request, service: FromDishka[Service]) -> web.Response:
        return web.Response(body=b"ok")

    app.router.add_get("/", endpoint)
    return app


def aiohttp_plain() -> Any:
    from aiohttp import web

    database = Database()

    async def endpoint(request: web.Request) -> web.Response:
        Service(database)
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_get("/", endpoint)
    return app


# -- Django --------------------------------------------------------------------------------


def make_injector() -> Any:
    """``HEALTHDI["INJECTOR"]`` of the healthdi Django row."""
    from di import Injector

    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(Service)
    return injector


def _django_urls(kind: str) -> list[Any]:
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    if kind == "django-healthdi":
        from di.integrations.django import Inject, inject

        @inject
        async def view(request: HttpRequest, service: Inject[Service]) -> HttpResponse:
            return HttpResponse(b"ok")

    else:
        database = Database()

        async def view(request: HttpRequest) -> HttpResponse:
            Service(database)
            return HttpResponse(b"ok")

    return [path("", view)]


def django_app(kind: str) -> Any:
    from django.conf import settings

    ours = kind == "django-healthdi"
    settings.configure(
        SECRET_KEY="bench",
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        TIME_ZONE="UTC",
        ROOT_URLCONF=MODULE,
        INSTALLED_APPS=["di.integrations.django"] if ours else [],
        MIDDLEWARE=["di.integrations.django.RequestScopeMiddleware"] if ours else [],
        HEALTHDI={"INJECTOR": f"{MODULE}:make_injector"},
    )
    if ours:
        from di.integrations.django import get_asgi_application

        return get_asgi_application()
    from django.core.asgi import get_asgi_application as plain

    return plain()


def __getattr__(name: str) -> Any:
    """``urlpatterns``, when Django reads this module as the URLconf."""
    if name == "urlpatterns":
        return _django_urls(os.environ["BENCH_KIND"])
    raise AttributeError(name)


def serve(kind: str, port: int) -> None:
    if kind.startswith("aiohttp"):
        from aiohttp import web

        apps = {
            "aiohttp-healthdi": aiohttp_healthdi,
            "aiohttp-dishka": aiohttp_dishka,
            "aiohttp-plain": aiohttp_plain,
        }
        web.run_app(
            apps[kind](), host="127.0.0.1", port=port, access_log=None, print=lambda *_: None
        )
        return
    import uvicorn

    os.environ["BENCH_KIND"] = kind
    uvicorn.run(
        django_app(kind),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        lifespan="on" if kind == "django-healthdi" else "off",
    )


def measure() -> dict[str, dict[str, dict[str, float]]]:
    """Each row's requests/s and median latency (best of the turns), and its server's
    CPU time per request (the least of the turns), measured in turns.

    The machine may be busy: requests/s then measure the other processes too, while a
    server's CPU time per request counts only its own work. The ratios are of the
    latter: what each server would answer per second with a core to itself.
    """
    from contextlib import ExitStack

    from .compare import _loaded
    from .serving import SECONDS, TURNS, _best, _free_port, _process

    results: dict[str, dict[str, dict[str, float]]] = {}
    for framework, rows in ROWS.items():
        servers: dict[str, tuple[int, int]] = {}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in rows}
        with ExitStack() as stack:
            for name, kind in rows.items():
                port = _free_port()
                command = [sys.executable, "-m", MODULE, "serve", kind, str(port)]
                servers[name] = stack.enter_context(_process(command, port)).pid, port
            for _ in range(TURNS):
                for name in rows:
                    runs[name].append(_loaded(servers[name], "http", "/", "50", f"{SECONDS}"))
        results[framework] = {
            name: {
                **_best(turns),
                "cpu_us": min(turn.get("cpu_us", float("nan")) for turn in turns),
            }
            for name, turns in runs.items()
        }
    return results


def report(results: dict[str, dict[str, dict[str, float]]]) -> str:
    from .serving import SECONDS, TURNS

    lines = [
        "R2, aiohttp and Django: a handler or view injecting a scoped service, 50 keep-alive "
        f"clients ({SECONDS:g} s per turn, best of {TURNS})",
        "",
        f"{'row':<40}{'req/s':>10}{'p50 ms':>10}{'CPU us/req':>12}",
    ]
    for rows in results.values():
        for name, row in rows.items():
            lines.append(
                f"{name:<40}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}{row['cpu_us']:>12.1f}"
            )
    lines.append("")
    lines.append("Ratios of requests per CPU second (the inverse of CPU us/req):")
    for framework, rows in results.items():
        ours = next(row for name, row in rows.items() if "healthdi" in name)["cpu_us"]
        baseline = BASELINES[framework]
        lines.append(
            f"R2 {framework}: healthdi / {baseline.split(': ')[1]} = "
            f"{rows[baseline]['cpu_us'] / ours:.2f}x (goal >= 0.95x)"
        )
        if framework in DISHKA:
            ratio = rows[DISHKA[framework]]["cpu_us"] / ours
            lines.append(f"R2 {framework}: healthdi / dishka = {ratio:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        print(report(measure()))
