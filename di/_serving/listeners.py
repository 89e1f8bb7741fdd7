"""Addresses, TLS and the gRPC health server: what ``di serve`` and HealthServer share.

- :func:`parse_address` reads ``"HOST:PORT"`` (``"[::1]:8080"`` too), as ``--http``
  and ``--grpc`` take it;
- :class:`TlsFiles` are the PEM files of ``--tls-cert``, ``--tls-key`` and
  ``--tls-client-ca``; :func:`server_context` makes the HTTPS context from them and
  ``di.grpc.server_credentials`` the gRPC credentials;
- :func:`start_grpc` binds and starts a grpcio asyncio server holding only the health
  service (:data:`GRPC_OPTIONS`), or raises one clear ``OSError`` for a taken port.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..monitor import HealthMonitor

if TYPE_CHECKING:
    import ssl

    import grpc

logger = logging.getLogger("di.serve")


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``(host, port)`` from ``"HOST:PORT"``; ValueError naming ``option`` otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"{option} must be a 'HOST:PORT' string, got {text!r}")
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad {option} address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of ``--tls-cert``, ``--tls-key`` and ``--tls-client-ca``."""

    cert: str
    key: str
    client_ca: str | None = None


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server side TLS context of the HTTP port: TLS 1.2 at least, HTTP/1.1 by ALPN,
    client certificates required when a client CA is given.

    Raises ValueError naming the option whose file does not load.
    """
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert, tls.key, password=no_passphrase)
    except (OSError, ssl.SSLError, EncryptedKeyError) as error:
        raise ValueError(
            f"cannot load --tls-cert {tls.cert} with --tls-key {tls.key}: "
            f"{encrypted_key(tls.key) if isinstance(error, EncryptedKeyError) else _reason(error)}"
        ) from None
    if tls.client_ca is not None:
        try:
            context.load_verify_locations(tls.client_ca)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                f"cannot load --tls-client-ca {tls.client_ca}: {_reason(error)}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


class EncryptedKeyError(Exception):
    """A private key needs a passphrase: there is nobody to type it."""


def no_passphrase() -> bytes:
    """``load_cert_chain``'s password callback: OpenSSL would otherwise prompt on the
    terminal (or read stdin) for an encrypted key, and wait there for ever."""
    raise EncryptedKeyError


def encrypted_key(path: str) -> str:
    """What to say of an encrypted key, and how to write it without its passphrase."""
    return (
        f"the key is encrypted; give it without a passphrase (openssl pkey -in {path} -out tls.key)"
    )


def _reason(error: BaseException) -> str:
    return str(getattr(error, "strerror", None) or getattr(error, "reason", None) or error)


def tls_said(tls: TlsFiles | None) -> str:
    """How the log line of a listener says its TLS: ``""``, over TLS, over mutual TLS."""
    if tls is None:
        return ""
    return " over mutual TLS" if tls.client_ca is not None else " over TLS"


def show(host: str) -> str:
    """A host as it is written before ``:PORT``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


GRPC_OPTIONS = (
    # Bound exclusively: with SO_REUSEPORT (grpcio's default) a second server on the
    # same port would start silently and split the traffic.
    ("grpc.so_reuseport", 0),
    # Connections that never finish their handshake, or sit idle, are closed.
    ("grpc.server_handshake_timeout_ms", 5_000),
    ("grpc.max_connection_idle_ms", 30_000),
    # Peers that vanished without closing are found by keepalive pings.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


async def start_grpc(
    monitor: HealthMonitor, address: tuple[str, int], tls: TlsFiles | None = None
) -> tuple[grpc.aio.Server, int]:
    """A started grpcio server answering ``grpc.health.v1`` from ``monitor``, and the
    port it listens on (the one the kernel picked for port 0)."""
    import grpc

    from ..grpc import add_health_servicer, server_credentials

    host, port = address
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    probe_bind(host, port, "gRPC")
    server = grpc.aio.server(options=GRPC_OPTIONS)
    add_health_servicer(server, monitor)
    try:
        if tls is None:
            bound = server.add_insecure_port(target)
        else:
            credentials = server_credentials(tls.cert, tls.key, tls.client_ca)
            bound = server.add_secure_port(target, credentials)
    except RuntimeError:
        bound = 0
    if not bound:
        await server.stop(None)
        raise OSError(f"cannot listen for gRPC on {target}: address in use or not available")
    await server.start()
    logger.info("gRPC health on %s:%s (grpc.health.v1.Health)%s", show(host), bound, tls_said(tls))
    return server, bound


def probe_bind(host: str, port: int, what: str) -> None:
    """Bind ``host:port`` briefly, for the OS's own words when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            text = (error.strerror or str(error)).lower()
            raise OSError(f"cannot listen for {what} on {host}:{port}: {text}") from None
