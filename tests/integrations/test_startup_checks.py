"""What routes inject is checked when the app starts, not at their first request.

A FastAPI ``Inject[T]`` (in an endpoint, sync or async, in a dependency, in a router's
route), a Litestar ``provide()``, a Flask ``@inject`` view and a gRPC ``@inject``
servicer method asking for what the container cannot build fail the app's startup with
one ``GraphError`` naming each route or handler, and nothing is built. Starlette's
``scope_of(request).ainvoke(T)`` runs inside the handler's body, where nothing can be
seen before it runs: it is not checked.

The frameworks' own lifespans run (as their servers run them); FastAPI once more under
a real uvicorn, whose startup fails; gRPC on a real grpc.aio server.
"""

# No `from __future__ import annotations`: the frameworks read the annotations of
# endpoints defined inside functions, which name local imports.
import asyncio
import json
import logging
import threading
from typing import Annotated, Any

import anyio
import pytest

from di import Injector, Named
from di.errors import GraphError

from ..timing import PATIENCE, wait_until

pytestmark = pytest.mark.anyio


class Store:
    """Provided."""


class Missing:
    """Never provided."""


class Built:
    """Eager: built by a start that gets that far."""

    count = 0

    def __init__(self) -> None:
        Built.count += 1


def make_injector() -> Injector:
    Built.count = 0
    injector = Injector()
    injector.provide(Store)
    injector.provide(Built, eager=True)
    return injector


def fastapi_app(injector: Injector) -> Any:
    from fastapi import APIRouter, Depends, FastAPI

    from di.integrations.fastapi import Inject, install

    app = FastAPI()
    install(app, injector)

    @app.get("/fine")
    async def fine(store: Inject[Store]) -> str:
        return "fine"

    @app.get("/orders")
    async def orders(store: Inject[Store], missing: Inject[Missing]) -> str:
        return "never"

    @app.get("/sync")
    def sync_orders(missing: Inject[Annotated[Store, Named("archive")]]) -> str:
        return "never"

    def needs_missing(missing: Inject[Missing]) -> str:
        return "never"

    @app.get("/through")
    async def through(value: Annotated[str, Depends(needs_missing)]) -> str:
        return value

    router = APIRouter()

    @router.websocket("/socket")
    async def socket(missing: Inject[Missing]) -> None: ...

    app.include_router(router)
    return app


async def test_fastapi_startup_names_every_route_injecting_what_is_not_provided() -> None:
    injector = make_injector()
    app = fastapi_app(injector)
    with pytest.raises(GraphError) as failed:
        async with app.router.lifespan_context(app):
            pass
    problems = failed.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("route GET /orders (fastapi_app.<locals>.orders): parameter ")
    assert "'missing' injects what is not provided: service " in problems[0]
    assert "test_startup_checks.Missing' is not provided" in problems[0]
    assert problems[1].startswith("route GET /sync (fastapi_app.<locals>.sync_orders): ")
    assert "service 'archive' is not provided" in problems[1]
    assert problems[2].startswith("route GET /through (fastapi_app.<locals>.through): ")
    assert "parameter 'missing'" in problems[2]
    assert problems[3].startswith("route WebSocket /socket (fastapi_app.<locals>.socket): ")
    assert Built.count == 0  # checked before the start built anything


async def test_fastapi_app_injecting_what_is_provided_starts() -> None:
    from fastapi import FastAPI

    from di.integrations.fastapi import Inject, install

    injector = make_injector()
    app = FastAPI()
    install(app, injector)

    @app.get("/fine")
    async def fine(store: Inject[Store]) -> str:
        return "fine"

    async with app.router.lifespan_context(app):
        assert Built.count == 1


def test_fastapi_under_uvicorn_fails_its_startup(caplog: pytest.LogCaptureFixture) -> None:
    import uvicorn

    app = fastapi_app(make_injector())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None)
    )
    exits: list[object] = []

    def run() -> None:
        try:
            server.run()
        except SystemExit as exiting:  # uvicorn's way out of a failed startup
            exits.append(exiting.code)

    with caplog.at_level(logging.ERROR):
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(PATIENCE)
    assert not thread.is_alive() and not server.started
    assert exits == [3]  # uvicorn's STARTUP_FAILURE
    assert "GraphError" in caplog.text and "route GET /orders" in caplog.text
    assert "Application startup failed" in caplog.text


async def test_starlette_handlers_reach_their_scope_in_their_body_unchecked() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from di.integrations.starlette import install, scope_of

    async def orders(request: Request) -> PlainTextResponse:
        await scope_of(request).ainvoke(Missing)  # seen only when it runs
        return PlainTextResponse("never")

    app = Starlette(routes=[Route("/orders", orders)])
    install(app, make_injector())
    async with app.router.lifespan_context(app):
        assert Built.count == 1


def litestar_app(injector: Injector, plugin_missing: bool = False) -> Any:
    from litestar import Litestar, get
    from litestar.di import NamedDependency, Provide

    from di.integrations.litestar import DIPlugin, provide

    @get("/orders", dependencies={"missing": provide(Missing)})
    async def orders(missing: NamedDependency[Missing]) -> str:
        return "never"

    def summary(archive: NamedDependency[Store]) -> str:
        return "never"

    @get(
        "/summary",
        dependencies={
            "archive": provide(Annotated[Store, Named("archive")]),
            "summary": Provide(summary, sync_to_thread=False),
        },
    )
    async def read_summary(summary: NamedDependency[str]) -> str:
        return summary

    @get("/fine", dependencies={"store": provide(Store)})
    async def fine(store: NamedDependency[Store]) -> str:
        return "fine"

    dependencies = {"spare": Missing} if plugin_missing else {}
    plugin = DIPlugin(injector, dependencies=dependencies)
    return Litestar([orders, read_summary, fine], plugins=[plugin], logging_config=None)


def test_litestar_startup_names_every_handler_providing_what_is_not_provided() -> None:
    app = litestar_app(make_injector(), plugin_missing=True)

    async def start() -> None:
        async with app.lifespan():
            pass

    with pytest.raises(BaseException) as raised:
        anyio.run(start, backend="asyncio")  # Litestar runs on asyncio
    failed = raised.value
    while isinstance(failed, BaseExceptionGroup):  # Litestar's lifespan runs in a task group
        (failed,) = failed.exceptions
    assert isinstance(failed, GraphError)
    problems = sorted(failed.problems)
    assert len(problems) == 3, problems
    assert problems[0].startswith("DIPlugin(dependencies={'spare': ...}): parameter 'spare' ")
    assert problems[1].startswith("handler GET /orders (orders): parameter 'missing' ")
    # Through another dependency: summary() takes archive, which provide() gives.
    assert problems[2].startswith("handler GET /summary (read_summary): parameter 'archive' ")
    assert "service 'archive' is not provided" in problems[2]
    assert Built.count == 0


def test_flask_refuses_a_view_injecting_what_is_not_provided_where_it_is_added() -> None:
    from flask import Flask

    from di.integrations.flask import Inject, inject, install, shutdown

    app = Flask(__name__)

    @app.get("/early")
    @inject
    def early(missing: Inject[Missing]) -> str:
        return "never"

    with pytest.raises(GraphError, match=r"view 'early' \(.*early, at /early\): parameter"):
        install(app, make_injector())  # a view registered before install()
    assert Built.count == 0

    app = Flask(__name__)
    install(app, make_injector())
    try:

        @app.get("/fine")
        @inject
        def fine(store: Inject[Store]) -> str:
            return "fine"

        with pytest.raises(GraphError) as failed:

            @app.get("/orders")
            @inject
            def orders(missing: Inject[Annotated[Store, Named("archive")]]) -> str:
                return "never"

        (problem,) = failed.value.problems
        assert problem.startswith("view 'orders' (")
        assert "orders, at /orders): parameter 'missing' injects what is not provided" in problem
        assert app.test_client().get("/fine").text == "fine"
    finally:
        shutdown(app)


def test_grpc_start_fails_naming_the_servicer_method() -> None:
    asyncio.run(grpc_start_fails_naming_the_servicer_method())  # grpc.aio runs on asyncio


async def grpc_start_fails_naming_the_servicer_method() -> None:
    import grpc
    import grpc.aio

    from di.integrations.grpc import Inject, ScopeInterceptor, inject, install

    class Orders:
        @inject
        async def Place(self, request: Any, context: Any, store: Inject[Store]) -> Any:
            return {}

        @inject
        def Count(self, request: Any, context: Any, missing: Inject[Missing]) -> Any:
            return {}

    def handler(behavior: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=json.loads, response_serializer=str.encode
        )

    injector = make_injector()
    server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
    orders = Orders()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "shop.Orders", {"Place": handler(orders.Place), "Count": handler(orders.Count)}
            )
        ]
    )
    lifecycle = install(server, injector)
    server.add_insecure_port("127.0.0.1:0")
    with pytest.raises(GraphError) as failed:
        async with lifecycle:
            pass
    (problem,) = failed.value.problems
    assert problem.startswith(
        "servicer method grpc_start_fails_naming_the_servicer_method.<locals>.Orders.Count:"
        " parameter 'missing' injects what is not provided"
    ), problem
    assert Built.count == 0
    await lifecycle.stop()  # nothing started: nothing to stop


def test_fastapi_app_under_uvicorn_starts_once_fixed() -> None:
    """The same check passes an app whose routes inject only what is provided."""
    import uvicorn
    from fastapi import FastAPI

    from di.integrations.fastapi import Inject, install

    app = FastAPI()
    install(app, make_injector())

    @app.get("/fine")
    async def fine(store: Inject[Store]) -> str:
        return "fine"

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert server.started
    finally:
        server.should_exit = True
        thread.join(PATIENCE)


# -- the frameworks' own idioms, mistaken: named where they are made, with the fix -------


def test_flask_names_a_view_with_inject_parameters_but_no_inject_decorator() -> None:
    from flask import Flask

    from di.integrations.flask import Inject, install, shutdown

    fix = (
        "its parameters 'store' are Inject[...], but the view is not decorated with "
        "@inject, so Flask would call it without them: add @inject (from "
        "di.integrations.flask import inject) below the @app.route decorator"
    )
    app = Flask(__name__)

    @app.get("/early")
    def early(store: Inject[Store]) -> str:
        return "never"

    with pytest.raises(GraphError) as failed:
        install(app, make_injector())  # a view registered before install()
    (problem,) = failed.value.problems
    assert problem.startswith("view 'early' (")
    assert problem.endswith(f"early, at /early): {fix}")

    app = Flask(__name__)
    install(app, make_injector())
    try:
        with pytest.raises(GraphError) as failed:

            @app.get("/orders")
            def orders(store: Inject[Store]) -> str:
                return "never"

        (problem,) = failed.value.problems
        assert problem.endswith(f"orders, at /orders): {fix}")
    finally:
        shutdown(app)


# The mistake itself is what Litestar warns of: a query parameter of the inferred style.
@pytest.mark.filterwarnings("ignore:.*declared using deprecated inferred style")
def test_litestar_names_a_service_parameter_no_dependency_provides() -> None:
    from litestar import Litestar, Request, get
    from litestar.di import NamedDependency

    from di.integrations.litestar import DIPlugin, provide

    @get("/orders")
    async def orders(store: Store, request: Request) -> str:
        return "never"  # store would be read from the query string

    @get("/fine", dependencies={"store": provide(Store)})
    async def fine(store: NamedDependency[Store]) -> str:
        return "fine"

    app = Litestar([orders, fine], plugins=[DIPlugin(make_injector())], logging_config=None)

    async def start() -> None:
        async with app.lifespan():
            pass

    with pytest.raises(BaseException) as raised:
        anyio.run(start, backend="asyncio")  # Litestar runs on asyncio
    failed = raised.value
    while isinstance(failed, BaseExceptionGroup):  # Litestar's lifespan runs in a task group
        (failed,) = failed.exceptions
    assert isinstance(failed, GraphError)
    assert failed.problems == [
        "handler GET /orders (orders): parameter 'store' is typed Store, a service of the "
        "container, but no dependency provides 'store', so Litestar would read it from the "
        'query string: add dependencies={"store": provide(Store)} to the handler (or its '
        'controller or router), or DIPlugin(injector, dependencies={"store": Store})'
    ]
    assert Built.count == 0


def test_fastapi_names_inject_written_as_annotated_metadata() -> None:
    from fastapi import FastAPI
    from fastapi.exceptions import FastAPIError

    from di.integrations.fastapi import Inject, install

    app = FastAPI()
    install(app, make_injector())
    with pytest.raises(FastAPIError) as failed:

        @app.get("/orders")
        async def orders(store: Annotated[Store, Inject]) -> str:
            return "never"

    assert str(failed.value) == (
        "route GET /orders (test_fastapi_names_inject_written_as_annotated_metadata"
        ".<locals>.orders): parameter 'store' is annotated Annotated["
        f"{__name__}.Store, Inject], which marks nothing: write store: "
        f"Inject[{__name__}.Store]"
    )


def test_fastapi_names_a_parameter_typed_as_a_service_without_inject() -> None:
    from fastapi import FastAPI
    from fastapi.exceptions import FastAPIError

    from di.integrations.fastapi import install

    app = FastAPI()
    install(app, make_injector())
    with pytest.raises(FastAPIError) as failed:

        @app.post("/orders")
        async def orders(store: Store) -> str:
            return "never"

    assert str(failed.value) == (
        "route POST /orders (test_fastapi_names_a_parameter_typed_as_a_service_without_inject"
        ".<locals>.orders): parameter 'store' is typed Store, which FastAPI cannot read from "
        "a request: to have the container inject it, write store: Inject[Store] (from "
        "di.integrations.fastapi import Inject)"
    )
