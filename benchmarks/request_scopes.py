"""R1: one request through a request scope, beside dishka, svcs and hand-written code.

One request: open a scope with the request object in its context, build a scoped
``Handler`` (which needs a scoped ``RequestCtx``, which needs the ``Request`` and the
app's ``Database`` singleton), close the scope. Each setup checks once that its
statement builds exactly that, so no row times a no-op. R1 at 5,000 is healthdi with
5,000 other scopes alive beside the request's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, dict[str, Any]]


class Request:
    pass


class Database:
    pass


class RequestCtx:
    def __init__(self, request: Request, db: Database) -> None:
        self.request = request
        self.db = db


class Handler:
    def __init__(self, ctx: RequestCtx) -> None:
        self.ctx = ctx


def _checked(one: Callable[[], Handler], env: dict[str, Any]) -> Row:
    first, second = one(), one()
    assert isinstance(first, Handler) and first is not second
    assert first.ctx.db is second.ctx.db and first.ctx.request is env["request"]
    env["one"] = one
    return "one()", env


def hand_written() -> Row:
    db, request = Database(), Request()

    def one() -> Handler:
        return Handler(RequestCtx(request, db))

    return _checked(one, {"request": request})


def _healthdi(siblings: int) -> Row:
    from di import Injector

    injector = Injector()
    injector.provide(Database)
    injector.provide_context(Request)
    injector.provide_scoped(RequestCtx)
    injector.provide_scoped(Handler)
    injector.invoke(Database)
    alive = [injector.scope() for _ in range(siblings)]
    request = Request()

    def one() -> Handler:
        with injector.scope(context={Request: request}) as scope:
            return scope.invoke(Handler)

    return _checked(one, {"request": request, "alive": alive})


def healthdi() -> Row:
    return _healthdi(0)


def healthdi_5000_live() -> Row:
    return _healthdi(5_000)


def dishka() -> Row:
    from dishka import Provider, Scope, make_container

    provider = Provider()
    provider.from_context(provides=Request, scope=Scope.REQUEST)
    provider.provide(Database, scope=Scope.APP)
    provider.provide(RequestCtx, scope=Scope.REQUEST)
    provider.provide(Handler, scope=Scope.REQUEST)
    container = make_container(provider)
    request = Request()

    def one() -> Handler:
        with container(context={Request: request}) as scope:
            handler: Handler = scope.get(Handler)
            return handler

    return _checked(one, {"request": request})


def svcs() -> Row:
    import svcs

    registry = svcs.Registry()
    db = Database()
    registry.register_value(Database, db)

    def new_ctx(container: svcs.Container) -> RequestCtx:
        return RequestCtx(container.get(Request), container.get(Database))

    def new_handler(container: svcs.Container) -> Handler:
        return Handler(container.get(RequestCtx))

    registry.register_factory(RequestCtx, new_ctx)
    registry.register_factory(Handler, new_handler)
    request = Request()

    def one() -> Handler:
        with svcs.Container(registry) as container:
            container.register_local_value(Request, request)
            handler: Handler = container.get(Handler)
            return handler

    return _checked(one, {"request": request})


SETUPS: dict[str, Callable[[], Row]] = {
    "hand-written": hand_written,
    "healthdi": healthdi,
    "healthdi, 5,000 live scopes": healthdi_5000_live,
    "dishka": dishka,
    "svcs": svcs,
}
