"""R2: a FastAPI endpoint injecting a scoped service, under uvicorn, beside its peers.

The same endpoint three ways: healthdi's ``Inject[T]`` (with ``install``), dishka's
FastAPI integration (``FromDishka[T]`` with ``@inject``), and plain FastAPI ``Depends``
building the service by hand. Each request builds the scoped ``Service`` (which needs
the ``Database`` singleton) and answers "ok". 50 concurrent keep-alive clients.

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


APPS = {"healthdi": healthdi_app, "dishka": dishka_app, "depends": depends_app}


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


def measure() -> dict[str, dict[str, float]]:
    """Requests/s and median latency of each server, best of the turns, measured in turns."""
    from .serving import SECONDS, TURNS, _best, _free_port, _load, _process

    ports = {name: _free_port() for name in SERVERS}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SERVERS}
    from contextlib import ExitStack

    with ExitStack() as stack:
        for name, kind in SERVERS.items():
            command = [sys.executable, "-m", "benchmarks.web", "serve", kind, str(ports[name])]
            stack.enter_context(_process(command, ports[name]))
        for _ in range(TURNS):
            for name in SERVERS:
                runs[name].append(_load("http", str(ports[name]), "/", "50", f"{SECONDS}"))
    return {name: _best(turns) for name, turns in runs.items()}


def report(rows: dict[str, dict[str, float]]) -> str:
    from .serving import SECONDS, TURNS

    lines = [
        "R2: a FastAPI endpoint injecting a scoped service, uvicorn, 50 keep-alive clients "
        f"({SECONDS:g} s per turn, best of {TURNS})",
        "",
        f"{'row':<40}{'req/s':>10}{'p50 ms':>10}",
    ]
    for name, row in rows.items():
        lines.append(f"{name:<40}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}")
    ours = rows["healthdi Inject[T]"]["rps"]
    lines.append("")
    if "dishka FromDishka[T]" in rows:
        ratio = ours / rows["dishka FromDishka[T]"]["rps"]
        lines.append(f"R2: healthdi / dishka = {ratio:.2f}x (goal >= 1.00x)")
    ratio = ours / rows["plain FastAPI Depends"]["rps"]
    lines.append(f"R2: healthdi / plain Depends = {ratio:.2f}x (goal >= 0.90x)")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        print(report(measure()))
