"""The gRPC health protocol (``grpc.health.v1.Health``) served from a HealthMonitor.

Needs the ``grpc`` extra (grpcio and grpcio-health-checking) and grpcio's asyncio server.
Check, Watch and List (which grpcio-health-checking's own servicer lacks) all read what
the monitor last published (its :class:`~di.monitor.HealthSnapshot`), so no call waits
for a check, and a manual status or a graceful shutdown shows here as everywhere else. A
degraded check (:class:`~di.Degraded`, or a failing one with ``critical=False``) reads
SERVING. The monitor must be running (``async with monitor``, or ``di serve``, which
runs it).

>>> server = grpc.aio.server()
>>> di.grpc.add_health_servicer(server, monitor)
>>> server.add_insecure_port("[::]:50051")
>>> await server.start()

TLS belongs to the server's port, not to a servicer: the health service speaks TLS on a
port added with ``server.add_secure_port(address, server_credentials(cert, key))``, and
requires client certificates with ``client_ca_file`` (mutual TLS), as ``di serve
--tls-cert/--tls-key/--tls-client-ca`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ._answers import short
from ._container import views
from ._extras import needs_extra
from ._monitor import groups as grouping
from ._monitor.snapshot import STARTUP
from .monitor import HealthMonitor, ServingStatus

with needs_extra("di.grpc", "grpc"):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["MAX_LIST_NAMES", "HealthServicer", "add_health_servicer", "server_credentials"]

# grpc-go answers RESOURCE_EXHAUSTED above this many names; so does this servicer.
MAX_LIST_NAMES = 100
"""The most names ``List`` answers with; above it, ``RESOURCE_EXHAUSTED`` (as grpc-go)."""


# One response per status, made once: answering is a lookup.
_RESPONSES = {
    status: health_pb2.HealthCheckResponse(status=int(status)) for status in ServingStatus
}


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health`` backed by a :class:`~di.HealthMonitor`."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The published status of one name; NOT_FOUND if unknown."""
        status = self.monitor.snapshot.statuses.get(request.service)
        if status is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service {short(request.service)}"
            )
        return _RESPONSES[status]

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """The status now, then on every change; SERVICE_UNKNOWN while the name is unknown.

        The stream ends when the client cancels (grpcio cancels this generator's task),
        or when the server is stopping (:meth:`HealthMonitor.close_watches`).
        """
        async for status in self.monitor.watch(request.service):
            yield _RESPONSES[status]

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Every name and its status (gRFC A90); RESOURCE_EXHAUSTED above 100 names."""
        statuses = self.monitor.snapshot.statuses
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


# What services= takes: gRPC service names, or each name with the members it reads.
Services = Sequence[str] | Mapping[str, Sequence[type[Any] | str]]


def add_health_servicer(
    server: grpc.aio.Server, monitor: HealthMonitor, *, services: Services | None = None
) -> HealthServicer:
    """Serve ``grpc.health.v1.Health`` from ``monitor`` on ``server``; returns the servicer.

    ``services`` names the server's own gRPC services, fully qualified
    (``"shop.Orders"``), so that Check, Watch and List answer for them, as clients
    whose ``healthCheckConfig.serviceName`` names their service ask: a sequence of
    names, each reading the whole application's status, or a mapping from each name to
    the members it reads (service keys, ``"tag:db"`` selectors, or ``["*"]``), as a
    monitor group (see :meth:`~di.HealthMonitor.add_group`).
    """
    groups = service_groups(services)
    for name, members in groups.items():  # all checked first: a refused call adds none
        _check_group(monitor, name, members)
    for name, members in groups.items():
        monitor.add_group(name, members)
    servicer = HealthServicer(monitor)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def service_groups(services: object) -> dict[str, Sequence[Any]]:
    """``services=`` as monitor groups: each gRPC service name and its members."""
    if services is None:
        return {}
    if isinstance(services, str) or not isinstance(services, Sequence | Mapping):
        raise TypeError(
            "services=... takes gRPC service names, such as services=['shop.Orders'], or a "
            f"mapping of name to members, such as {{'shop.Orders': [Database]}}; got {services!r}"
        )
    found: dict[str, Sequence[Any]] = {}
    for name in services:
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"services=...: a gRPC service name is non-empty text, such as 'shop.Orders'; "
                f"got {name!r}"
            )
        found[name] = services[name] if isinstance(services, Mapping) else ["*"]
    return found


def _check_group(monitor: HealthMonitor, name: str, members: Sequence[Any]) -> None:
    """Raise what ``monitor.add_group(name, members)`` would, without adding it."""
    where = f"HealthMonitor.add_group({name!r}, ...)"
    grouping.members(monitor.injector, name, members, where)
    taken = name in monitor.statuses() and views.lookup(monitor.injector, name) is None
    if taken or name == STARTUP:
        raise ValueError(f"{where}: the monitor answers for {name!r} already; pick another name")


def server_credentials(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> grpc.ServerCredentials:
    """TLS for a gRPC server's port, from PEM files: ``server.add_secure_port(address,
    server_credentials("tls.crt", "tls.key"))``.

    ``cert_file`` holds the certificate (and any intermediates after it), ``key_file``
    its private key. With ``client_ca_file``, clients must present a certificate signed
    by one of its CAs (mutual TLS). The files are read once: a renewed certificate is
    served after a restart. They are checked here (grpcio takes any bytes, and fails
    later with "Failed to bind to address"): a file that does not load, a key that does
    not match the certificate or needs a passphrase, raise ValueError naming the file.
    """
    _check_pem(cert_file, key_file, client_ca_file)
    with open(cert_file, "rb") as file:
        cert = file.read()
    with open(key_file, "rb") as file:
        key = file.read()
    client_ca = None
    if client_ca_file is not None:
        with open(client_ca_file, "rb") as file:
            client_ca = file.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _check_pem(cert_file: str, key_file: str, client_ca_file: str | None) -> None:
    """Load the files as the standard library's TLS would; ValueError naming what fails."""
    import ssl

    encrypted = False

    def no_passphrase() -> bytes:  # OpenSSL would prompt for it on the terminal
        nonlocal encrypted
        encrypted = True
        raise ValueError("encrypted")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=no_passphrase)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        reason = (
            f"the key is encrypted; give it without a passphrase (openssl pkey -in {key_file} "
            "-out tls.key)"
            if encrypted
            else _reason(error)
        )
        raise ValueError(
            f"server_credentials(): cannot load {cert_file} with {key_file}: {reason}"
        ) from None
    if client_ca_file is not None:
        try:
            context.load_verify_locations(client_ca_file)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"server_credentials(): cannot load the client CA file {client_ca_file}: "
                f"{_reason(error)}"
            ) from None


def _reason(error: BaseException) -> str:
    return str(getattr(error, "strerror", None) or getattr(error, "reason", None) or error)
