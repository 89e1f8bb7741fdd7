"""An aiohttp app: a unit of work per request, a web.View, and health routes under /ops.

python -m aiohttp.web -H 0.0.0.0 -P 8080 examples.aiohttp_shop:create_app
"""

from collections.abc import Iterator

from aiohttp import web

from di import Injector
from di.integrations.aiohttp import Inject, inject, install


class Orders:
    """The store: built at startup, checked every few seconds, closed at exit."""

    def __init__(self) -> None:
        self.placed: list[str] = []

    def health_check(self) -> None:
        pass

    def shutdown(self) -> None:
        print("orders closed", flush=True)


class UnitOfWork:
    """What one request writes: committed after the handler, unless it failed."""

    def __init__(self, request: web.Request) -> None:
        self.item = request.query.get("item", "")
        self.pending: list[str] = []


def unit_of_work(orders: Orders, request: web.Request) -> Iterator[UnitOfWork]:
    work = UnitOfWork(request)
    yield work  # an exception of the handler is raised here: nothing is committed
    orders.placed.extend(work.pending)


@inject
async def place(request: web.Request, work: Inject[UnitOfWork]) -> web.Response:
    if not work.item:
        raise ValueError("no item")  # a 500, and the unit of work rolls back
    work.pending.append(work.item)
    return web.json_response({"placed": work.item})


class OrderList(web.View):
    @inject
    async def get(self, orders: Inject[Orders]) -> web.Response:
        return web.json_response({"orders": orders.placed})


def create_app(argv: list[str] | None = None) -> web.Application:
    injector = Injector()
    injector.provide(Orders, eager=True)
    injector.provide_scoped(unit_of_work)

    app = web.Application()
    install(app, injector, health_prefix="/ops")
    app.router.add_post("/orders", place)
    app.router.add_view("/orders", OrderList)
    return app


if __name__ == "__main__":  # python aiohttp_shop.py: a few requests, served in this process
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    async def main() -> None:
        async with TestClient(TestServer(create_app())) as client:  # starts and stops it
            placed = await client.post("/orders?item=tea")
            assert await placed.json() == {"placed": "tea"}
            assert (await client.post("/orders")).status == 500  # rolled back
            assert await (await client.get("/orders")).json() == {"orders": ["tea"]}
            assert await (await client.get("/ops/livez")).text() == "ok"
        # prints "orders closed": the app stopped, the container shut down

    asyncio.run(main())
