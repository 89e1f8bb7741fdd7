"""R2: an endpoint injecting a scoped service, under uvicorn, beside its peers, per framework.

FastAPI three ways: healthdi's ``Inject[T]`` (with ``install``), dishka's FastAPI
integration (``FromDishka[T]`` with ``@inject``), and plain FastAPI ``Depends`` building
the service by hand. Starlette: healthdi's ``scope_of(request).ainvoke()``, dishka's
integration, and the endpoint building it by hand (no DI). Litestar: healthdi's
``DIPlugin`` with ``provide()``, dishka's integration, and Litestar's own ``Provide``.
Flask, under gunicorn's sync worker (one worker, a connection per request): healthdi's
``@inject`` with ``install``, dishka's integration, and a plain view. grpc.aio, a unary
method: healthdi's ``ScopeInterceptor`` and ``@inject``, dishka's
``DishkaAioInterceptor``, and a plain servicer. Each request builds the scoped
``Service`` (which needs the ``Database`` singleton) and answers "ok". 50 concurrent
keep-alive HTTP clients, 20 gRPC clients.

Besides requests/s (which measure the other processes of a busy machine too), each
row's server CPU time per request (its worker processes' included): the ratios are of
that, what each server would answer per second with a core to itself.

``python -m benchmarks.web serve {healthdi|dishka|depends|...} PORT`` serves one of
them; ``python -m benchmarks.web`` measures R2 alone.
"""

# No `from __future__ import annotations`: the endpoints' annotations name local imports.
import sys
from pathlib import Path
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


def flask_app(kind: str) -> Any:
    """The Flask app of ``kind``, for gunicorn (``benchmarks.web:flask_app('...')``)."""
    from flask import Flask

    app = Flask("bench")
    if kind == "flask-healthdi":
        from di import Injector
        from di.integrations.flask import Inject, inject, install

        injector = Injector()
        injector.provide(Database)
        injector.provide_scoped(Service)

        @app.get("/")
        @inject
        def endpoint(service: Inject[Service]) -> str:
            return "ok"

        install(app, injector)
    elif kind == "flask-dishka":
        from dishka import Provider, Scope, make_container
        from dishka.integrations.flask import FlaskProvider, FromDishka, setup_dishka
        from dishka.integrations.flask import inject as dishka_inject

        provider = Provider()
        provider.provide(Database, scope=Scope.APP)
        provider.provide(Service, scope=Scope.REQUEST)

        @app.get("/")
        @dishka_inject
        def dishka_endpoint(service: FromDishka[Service]) -> str:
            return "ok"

        setup_dishka(make_container(provider, FlaskProvider()), app)
    else:
        database = Database()

        @app.get("/")
        def plain_endpoint() -> str:
            Service(database)
            return "ok"

    return app


GRPC_METHOD = "/bench.Bench/Call"


async def grpc_serve(kind: str, port: int) -> None:
    """A grpc.aio server whose unary ``GRPC_METHOD`` builds the scoped service."""
    import grpc
    from grpc_health.v1 import health_pb2

    reply = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    lifecycle: Any = None
    if kind == "grpc-healthdi":
        from di import Injector
        from di.integrations.grpc import Inject, ScopeInterceptor, inject, install

        injector = Injector()
        injector.provide(Database)
        injector.provide_scoped(Service)

        class Ours:
            @inject
            async def Call(self, request: Any, context: Any, service: Inject[Service]) -> Any:
                return reply

        server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
        method = Ours().Call
    elif kind == "grpc-dishka":
        from dishka import FromDishka, Provider, Scope, make_async_container
        from dishka.integrations.grpcio import DishkaAioInterceptor, GrpcioProvider
        from dishka.integrations.grpcio import inject as dishka_inject

        provider = Provider()
        provider.provide(Database, scope=Scope.APP)
        provider.provide(Service, scope=Scope.REQUEST)
        container = make_async_container(provider, GrpcioProvider())

        class Theirs:
            @dishka_inject
            async def Call(self, request: Any, context: Any, service: FromDishka[Service]) -> Any:
                return reply

        server = grpc.aio.server(interceptors=[DishkaAioInterceptor(container)])
        method = Theirs().Call
    else:
        database = Database()

        async def plain(request: Any, context: Any) -> Any:
            Service(database)
            return reply

        class PassThrough(grpc.aio.ServerInterceptor):
            """An interceptor that changes nothing: what grpc.aio's interceptor path costs."""

            async def intercept_service(self, continuation: Any, details: Any) -> Any:
                return await continuation(details)

        interceptors = [PassThrough()] if kind == "grpc-passthrough" else []
        server = grpc.aio.server(interceptors=interceptors)
        method = plain
    handler = grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    service, name = GRPC_METHOD[1:].split("/")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {name: handler}),)
    )
    if kind == "grpc-healthdi":
        lifecycle = install(server, injector)
    server.add_insecure_port(f"127.0.0.1:{port}")
    if lifecycle is None:
        await server.start()
        await server.wait_for_termination()
    else:
        async with lifecycle:
            await server.wait_for_termination()


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
    "Flask": (
        {
            "healthdi @inject": "flask-healthdi",
            "dishka FromDishka[T]": "flask-dishka",
            "no DI": "flask-plain",
        },
        "healthdi @inject",
        "no DI",
        0.95,
    ),
    "grpc.aio": (
        {
            "healthdi ScopeInterceptor @inject": "grpc-healthdi",
            "dishka FromDishka[T]": "grpc-dishka",
            "plain servicer": "grpc-plain",
            "plain servicer, a pass-through interceptor": "grpc-passthrough",
        },
        "healthdi ScopeInterceptor @inject",
        "plain servicer",
        0.95,
    ),
}


def _command(kind: str, port: int) -> list[str]:
    if kind.startswith("flask"):
        return [
            sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
            f"benchmarks.web:flask_app({kind!r})",
        ]  # fmt: skip
    return [sys.executable, "-m", "benchmarks.web", "serve", kind, str(port)]


def _load_args(kind: str) -> list[str]:
    """What the load generator is given after the port: path or method, clients."""
    if kind.startswith("grpc"):
        return ["grpc-call", GRPC_METHOD, "20"]
    return ["http", "/", "50"]


def _tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` and its live children (a gunicorn master's worker)."""
    from .compare import _cpu_seconds

    total = _cpu_seconds(pid)
    if total is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += _cpu_seconds(int(child)) or 0.0
    return total


def serve(kind: str, port: int) -> None:
    if kind.startswith("grpc"):
        import asyncio

        asyncio.run(grpc_serve(kind, port))
        return
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
    """Requests/s and median latency of each server (best of the turns), and its CPU
    time per request (the least of the turns), measured in turns."""
    from contextlib import ExitStack

    from .serving import SECONDS, TURNS, _best, _free_port, _load, _process

    servers = FRAMEWORKS[framework][0]
    ports = {name: _free_port() for name in servers}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    with ExitStack() as stack:
        pids = {
            name: stack.enter_context(_process(_command(kind, ports[name]), ports[name])).pid
            for name, kind in servers.items()
        }
        for _ in range(TURNS):
            for name, kind in servers.items():
                kind_of_load, *rest = _load_args(kind)
                before = _tree_cpu_seconds(pids[name])
                turn = _load(kind_of_load, str(ports[name]), *rest, f"{SECONDS}")
                after = _tree_cpu_seconds(pids[name])
                if before is not None and after is not None and turn["requests"]:
                    turn["cpu_us"] = (after - before) * 1e6 / turn["requests"]
                runs[name].append(turn)
    return {
        name: {
            **_best(turns),
            "cpu_us": min(turn.get("cpu_us", float("nan")) for turn in turns),
        }
        for name, turns in runs.items()
    }


def report(rows: dict[str, dict[str, float]], framework: str = "FastAPI") -> str:
    from .serving import SECONDS, TURNS

    _, ours_row, baseline, goal = FRAMEWORKS[framework]
    clients = "20 gRPC clients" if framework == "grpc.aio" else "50 keep-alive clients"
    server = {"Flask": "gunicorn sync, 1 worker", "grpc.aio": "grpc.aio"}.get(framework, "uvicorn")
    lines = [
        f"R2 {framework}: an endpoint injecting a scoped service, {server}, {clients} "
        f"({SECONDS:g} s per turn, best of {TURNS})",
        "",
        f"{'row':<40}{'req/s':>10}{'p50 ms':>10}{'CPU us/req':>12}",
    ]
    for name, row in rows.items():
        cpu = row.get("cpu_us", float("nan"))
        lines.append(f"{name:<40}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}{cpu:>12.1f}")
    ours = rows[ours_row]
    lines.append("")
    lines.append("Ratios of requests/s, then of requests per CPU second (1 / CPU us/req):")
    others = [("dishka FromDishka[T]", None), (baseline, goal)]
    for other, aim in others:
        if other not in rows:
            continue
        wall = ours["rps"] / rows[other]["rps"]
        cpu = rows[other].get("cpu_us", float("nan")) / ours.get("cpu_us", float("nan"))
        label = "dishka" if other.startswith("dishka") else other
        goal_text = f" (goal >= {aim:.2f}x)" if aim is not None else ""
        lines.append(
            f"R2 {framework}: healthdi / {label} = {wall:.2f}x req/s, {cpu:.2f}x CPU{goal_text}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        for framework in FRAMEWORKS:
            print(report(measure(framework), framework))
            print()
