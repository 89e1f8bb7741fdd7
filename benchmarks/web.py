"""R2: an endpoint injecting a scoped service, under uvicorn, beside its peers, per framework.

FastAPI three ways: healthdi's ``Inject[T]`` (with ``install``), dishka's FastAPI
integration (``FromDishka[T]`` with ``@inject``), and plain FastAPI ``Depends`` building
the service by hand. Starlette: healthdi's ``scope_of(request).ainvoke()``, dishka's
integration, and the endpoint building it by hand (no DI). Litestar: healthdi's
``DIPlugin`` with ``provide()``, dishka's integration, and Litestar's own ``Provide``.
Each request builds the scoped ``Service`` (which needs the ``Database`` singleton) and
answers "ok". 50 concurrent keep-alive clients.

``python -m benchmarks.web serve {healthdi|dishka|depends} PORT`` serves one of them;
``python -m benchmarks.web`` measures R2 alone.
"""

# No `from __future__ import annotations`: the endpoints' annotations name local imports.
import sys
from typing import Annotated, Any

SERVERS = {
    "healthdi Inject[T]": "healthdi",
    "dishka FromDishka[T]": "dishka",
    "plain FastAPI Depends": "depends",
}


class Database:
    pass


class Service:
    def __init__(self, db: Database) -> None:
        self.db = db


def healthdi_app() -> Any:
    from fastapi import FastAPI, Response

    from di import Injector
    from di.integrations.fastapi import Inject, install

    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(Service)
    app = FastAPI()
    install(app, injector)

    @app.get("/")
    async def endpoint(service: Inject[Service]) -> Response:
        return Response(b"ok")

    return app


def dishka_app() -> Any:
    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.fastapi import FastapiProvider, FromDishka, inject, setup_dishka
    from fastapi import FastAPI, Response

    provider = Provider()
    provider.provide(Database, scope=Scope.APP)
    provider.provide(Service, scope=Scope.REQUEST)
    container = make_async_container(provider, FastapiProvider())
    app = FastAPI()
    setup_dishka(container, app)

    @app.get("/")
    @inject
    async def endpoint(service: FromDishka[Service]) -> Response:
        return Response(b"ok")

    return app


def depends_app() -> Any:
    from fastapi import Depends, FastAPI, Response

    database = Database()

    async def get_service() -> Service:
        return Service(database)

    app = FastAPI()

    @app.get("/")
    async def endpoint(service: Annotated[Service, Depends(get_service)]) -> Response:
        return Response(b"ok")

    return app


def starlette_healthdi_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from di import Injector
    from di.integrations.starlette import install, scope_of

    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(Service)

    async def endpoint(request: Request) -> Response:
        await scope_of(request).ainvoke(Service)
        return Response(b"ok")

    app = Starlette(routes=[Route("/", endpoint)])
    install(app, injector)
    return app


def starlette_dishka_app() -> Any:
    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.starlette import FromDishka, inject, setup_dishka
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    provider = Provider()
    provider.provide(Database, scope=Scope.APP)
    provider.provide(Service, scope=Scope.REQUEST)
    container = make_async_container(provider)

    @inject
    async def endpoint(request: Request, service: FromDishka[Service]) -> Response:
        return Response(b"ok")

    app = Starlette(routes=[Route("/", endpoint)])
    setup_dishka(container, app)
    return app


def starlette_plain_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    database = Database()

    async def endpoint(request: Request) -> Response:
        Service(database)
        return Response(b"ok")

    return Starlette(routes=[Route("/", endpoint)])


def litestar_healthdi_app() -> Any:
    from litestar import Litestar, MediaType, get

    from di import Injector
    from di.integrations.litestar import DIPlugin, provide

    injector = Injector()
    injector.provide(Database)
    injector.provide_scoped(Service)

    @get("/", dependencies={"service": provide(Service)}, media_type=MediaType.TEXT)
    async def endpoint(service: Service) -> str:
        return "ok"

    return Litestar([endpoint], plugins=[DIPlugin(injector)], logging_config=None)


def litestar_dishka_app() -> Any:
    from dishka import Provider, Scope, make_async_container
    from dishka.integrations.litestar import FromDishka, inject, setup_dishka
    from litestar import Litestar, MediaType, get

    provider = Provider()
    provider.provide(Database, scope=Scope.APP)
    provider.provide(Service, scope=Scope.REQUEST)
    container = make_async_container(provider)

    @get("/", media_type=MediaType.TEXT)
    @inject
    async def endpoint(service: FromDishka[Service]) -> str:
        return "ok"

    app = Litestar([endpoint], logging_config=None)
    setup_dishka(container, app)
    return app


def litestar_provide_app() -> Any:
    from litestar import Litestar, MediaType, get
    from litestar.di import Provide

    database = Database()

    async def get_service() -> Service:
        return Service(database)

    @get("/", dependencies={"service": Provide(get_service)}, media_type=MediaType.TEXT)
    async def endpoint(service: Service) -> str:
        return "ok"

    return Litestar([endpoint], logging_config=None)


APPS = {
    "healthdi": healthdi_app,
    "dishka": dishka_app,
    "depends": depends_app,
    "starlette-healthdi": starlette_healthdi_app,
    "starlette-dishka": starlette_dishka_app,
    "starlette-plain": starlette_plain_app,
    "litestar-healthdi": litestar_healthdi_app,
    "litestar-dishka": litestar_dishka_app,
    "litestar-provide": litestar_provide_app,
}
# Per framework: its rows (title -> app), the healthdi row, the baseline and its goal.
FRAMEWORKS: dict[str, tuple[dict[str, str], str, str, float]] = {
    "FastAPI": (SERVERS, "healthdi Inject[T]", "plain FastAPI Depends", 1.0),
    "Starlette": (
        {
            "healthdi scope_of()": "starlette-healthdi",
            "dishka FromDishka[T]": "starlette-dishka",
            "no DI": "starlette-plain",
        },
        "healthdi scope_of()",
        "no DI",
        0.95,
    ),
    "Litestar": (
        {
            "healthdi DIPlugin provide()": "litestar-healthdi",
            "dishka FromDishka[T]": "litestar-dishka",
            "Litestar's own Provide": "litestar-provide",
        },
        "healthdi DIPlugin provide()",
        "Litestar's own Provide",
        0.95,
    ),
}


def serve(kind: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        APPS[kind](),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        lifespan="on",
    )


def measure(framework: str = "FastAPI") -> dict[str, dict[str, float]]:
    """Requests/s and median latency of each server, best of the turns, measured in turns."""
    from .serving import SECONDS, TURNS, _best, _free_port, _load, _process

    servers = FRAMEWORKS[framework][0]
    ports = {name: _free_port() for name in servers}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    from contextlib import ExitStack

    with ExitStack() as stack:
        for name, kind in servers.items():
            command = [sys.executable, "-m", "benchmarks.web", "serve", kind, str(ports[name])]
            stack.enter_context(_process(command, ports[name]))
        for _ in range(TURNS):
            for name in servers:
                runs[name].append(_load("http", str(ports[name]), "/", "50", f"{SECONDS}"))
    return {name: _best(turns) for name, turns in runs.items()}


def report(rows: dict[str, dict[str, float]], framework: str = "FastAPI") -> str:
    from .serving import SECONDS, TURNS

    _, ours_row, baseline, goal = FRAMEWORKS[framework]
    lines = [
        f"R2 {framework}: an endpoint injecting a scoped service, uvicorn, 50 keep-alive "
        f"clients ({SECONDS:g} s per turn, best of {TURNS})",
        "",
        f"{'row':<40}{'req/s':>10}{'p50 ms':>10}",
    ]
    for name, row in rows.items():
        lines.append(f"{name:<40}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}")
    ours = rows[ours_row]["rps"]
    lines.append("")
    if "dishka FromDishka[T]" in rows:
        ratio = ours / rows["dishka FromDishka[T]"]["rps"]
        lines.append(f"R2 {framework}: healthdi / dishka = {ratio:.2f}x")
    ratio = ours / rows[baseline]["rps"]
    lines.append(f"R2 {framework}: healthdi / {baseline} = {ratio:.2f}x (goal >= {goal:.2f}x)")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        for framework in FRAMEWORKS:
            print(report(measure(framework), framework))
            print()
