"""Types of di.integrations.grpc, pinned: `mypy --strict tests/typing` checks this file.

It is never run: every line is a claim about what a type checker infers.
"""

from __future__ import annotations

from typing import Annotated, assert_type

import grpc
import grpc.aio

from di import Injector, Named, Scope
from di.integrations.grpc import Inject, Lifecycle, ScopeInterceptor, current_scope, inject, install


class Database:
    def query(self) -> int:
        return 1


class Orders:
    @inject
    async def Place(
        self,
        request: bytes,
        context: grpc.aio.ServicerContext[bytes, bytes],
        db: Inject[Database],
        replica: Inject[Annotated[Database, Named("replica")]],
    ) -> bytes:
        assert_type(db, Database)  # Inject[T] is T to the checker
        assert_type(replica, Database)
        assert_type(current_scope(), Scope)
        return bytes(db.query())


async def serve(injector: Injector) -> None:
    server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
    lifecycle = install(server, injector, grace=2.0)
    assert_type(lifecycle, Lifecycle)
    async with lifecycle:
        await server.wait_for_termination()
    await lifecycle.stop(None, drain=1.0)
    # Decorated, a method is called with the RPC's arguments only; its result is kept.
    assert_type(await Orders().Place(b"", None), bytes)
