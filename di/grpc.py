"""The gRPC health protocol (``grpc.health.v1.Health``) served from a HealthMonitor.

Needs the ``grpc`` extra (grpcio and grpcio-health-checking) and grpcio's asyncio server.
Check, Watch and List (which grpcio-health-checking's own servicer lacks) all read the
monitor, so a manual status or a graceful shutdown shows here as everywhere else.

>>> server = grpc.aio.server()
>>> di.grpc.add_health_servicer(server, monitor)
>>> server.add_insecure_port("[::]:50051")
>>> await server.start()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .monitor import HealthMonitor

__all__ = ["MAX_LIST_NAMES", "HealthServicer", "add_health_servicer"]

# grpc-go answers RESOURCE_EXHAUSTED above this many names; so does this servicer.
MAX_LIST_NAMES = 100


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health`` backed by a :class:`~di.HealthMonitor`."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The status of one name, fresh within the monitor's TTL; NOT_FOUND if unknown."""
        await self.monitor.refresh()
        status = self.monitor.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=int(status))

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """The status now, then on every change; SERVICE_UNKNOWN while the name is unknown.

        The stream ends when the client cancels: grpcio cancels this generator's task.
        """
        async for status in self.monitor.watch(request.service):
            yield health_pb2.HealthCheckResponse(status=int(status))

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Every name and its status (gRFC A90); RESOURCE_EXHAUSTED above 100 names."""
        await self.monitor.refresh()
        statuses = self.monitor.statuses()
        if len(statuses) > MAX_LIST_NAMES:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(statuses)} names exceed the limit of {MAX_LIST_NAMES}",
            )
        # The typing stubs predate List (gRFC A90); the generated module has it.
        response = health_pb2.HealthListResponse()  # type: ignore[attr-defined]
        for name, status in statuses.items():
            response.statuses[name].status = int(status)
        return response


def add_health_servicer(server: grpc.aio.Server, monitor: HealthMonitor) -> HealthServicer:
    """Serve ``grpc.health.v1.Health`` from ``monitor`` on ``server``; returns the servicer."""
    servicer = HealthServicer(monitor)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer
