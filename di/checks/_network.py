"""Checks of what the network answers: a TCP port, an HTTP endpoint, a name, a certificate.

Each function returns an ``async def`` check built on anyio (asyncio and trio alike),
with the standard library only: the per-check timeout cancels it wherever it waits
(name lookup, connect, TLS handshake, the answer). A name that does not resolve, and a
TLS handshake that fails, are raised naming the host (:func:`_connect`).

- :func:`tcp` connects and closes;
- :func:`http` sends one ``GET`` (TLS for ``https://``, Basic credentials from the
  URL's ``user:password@``) and reads the status line; its errors show the URL with the
  password replaced by ``***``;
- :func:`dns` resolves a name through the system resolver, or asks one DNS server
  directly over UDP;
- :func:`tls_certificate` completes a verified TLS handshake and reads how many days
  the server's certificate has left.
"""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Container
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from ..health import Degraded
from ._common import AsyncCheck, CheckFailed, latency_ms, since

__all__ = ["dns", "http", "tcp", "tls_certificate"]

MAX_STATUS_LINE = 8192  # bytes read at most for an HTTP answer's first line
DAY = 86400.0


def tcp(host: str, port: int) -> AsyncCheck:
    """A check that opens a TCP connection to ``host:port`` and closes it.

    Details: ``latency_ms`` (name lookup and connect). It proves the port accepts
    connections, which the kernel does even for a process that is stopped or stuck:
    check what the server answers (:func:`http`, a client's check) to tell that.
    """
    _port(port, "tcp")

    async def check(instance: object = None, /) -> dict[str, Any]:
        started = since()
        stream = await _connect(host, port)
        await anyio.aclose_forcefully(stream)
        return {"latency_ms": latency_ms(started)}

    return check


def http(
    url: str, *, expect: Container[int] = range(200, 400), ca_file: str | None = None
) -> AsyncCheck:
    """A check that sends ``GET url`` and passes when the status is in ``expect``.

    2xx and 3xx pass by default, as the kubelet counts them; redirects are not
    followed. An ``https://`` URL is verified against ``ca_file`` (a PEM bundle), else
    the system's trust store. Credentials in the URL (``https://user:password@host/``)
    are sent as HTTP Basic authentication, as curl sends them; the errors show the URL
    with its password as ``***``. Details: ``status`` and ``latency_ms`` (to the status
    line). Another status raises :class:`CheckFailed`.
    """
    parts = urlsplit(url)
    shown = _without_password(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"http(): expected an http:// or https:// URL, got {shown!r}")
    if not isinstance(expect, Container) or isinstance(expect, str | bytes):
        raise TypeError(
            f"http(): expect is the statuses that pass (range(200, 300), {{200, 204}}), "
            f"got {expect!r}"
        )
    secure = parts.scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    authorization = ""
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = f"Authorization: Basic {base64.b64encode(pair.encode()).decode()}\r\n"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: healthdi\r\n"
        f"{authorization}Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    context = _client_context(ca_file, "http") if secure else None

    async def check(instance: object = None, /) -> dict[str, Any]:
        started = since()
        stream: anyio.abc.ByteStream
        if context is not None:
            stream = await _connect(host, port, ssl_context=context, tls_hostname=host)
        else:
            stream = await _connect(host, port)
        try:
            await stream.send(request)
            head = b""
            while b"\r\n" not in head and len(head) < MAX_STATUS_LINE:
                try:
                    head += await stream.receive()
                except anyio.EndOfStream:
                    break
        finally:  # the status line is all the check reads: no TLS close_notify exchange
            await anyio.aclose_forcefully(stream)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        version, _, rest = line.partition(" ")
        if not version.startswith("HTTP/") or not rest[:3].isdigit():
            raise CheckFailed(f"not an HTTP answer from {shown}: {line[:80]!r}")
        status = int(rest[:3])
        details = {"status": status, "latency_ms": latency_ms(started)}
        if status not in expect:
            raise CheckFailed(f"HTTP {status} from {shown}", details=details)
        return details

    return check


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` as ``***``, to be shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _client_context(ca_file: str | None, where: str) -> ssl.SSLContext:
    """A verifying TLS client context; ValueError naming ``ca_file`` if it does not load."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise ValueError(f"{where}(): cannot load ca_file {ca_file}: {reason}") from None


def dns(name: str, *, server: str | None = None) -> AsyncCheck:
    """A check that resolves ``name``; it fails when the name has no address.

    Without ``server``, through the system's resolver (``getaddrinfo``: hosts file,
    search domains, as the application resolves). With ``server`` (``"HOST"`` or
    ``"HOST:PORT"``, port 53 by default), one recursive ``A`` query is sent to that
    server over UDP, for a check of the name server itself. Details: ``addresses``
    (sorted) and ``latency_ms``.
    """
    if not name:
        raise ValueError("dns(): the name to resolve is empty")
    if server is None:

        async def resolve(instance: object = None, /) -> dict[str, Any]:
            started = since()
            try:
                found = await anyio.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                raise CheckFailed(f"cannot resolve {name!r}: {error.strerror}") from error
            addresses = sorted({str(entry[4][0]) for entry in found})
            return {"addresses": addresses, "latency_ms": latency_ms(started)}

        return resolve

    address, port = _server(server)
    query_name = _encode_name(name)

    async def ask(instance: object = None, /) -> dict[str, Any]:
        started = since()
        ident = secrets.randbits(16)
        query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + query_name + b"\0\1\0\1"
        family, _, _, _, target = (await anyio.getaddrinfo(address, port, type=socket.SOCK_DGRAM))[
            0
        ]
        # A plain socket: a "port unreachable" answer fails its next read, on any loop.
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            try:
                udp.connect(target)
                udp.send(query)
                while True:  # answers to other queries (a late one) are not this one's
                    await _readable(udp)
                    answer = udp.recv(4096)
                    if len(answer) >= 12 and struct.unpack("!H", answer[:2])[0] == ident:
                        break
            except OSError as error:
                reason = error.strerror or str(error)
                raise type(error)(error.errno, f"no answer from {server}: {reason}") from None
        try:
            addresses = _addresses(answer, name, server)
        except (IndexError, struct.error):
            raise CheckFailed(
                f"{server} sent a malformed answer for {name!r} ({len(answer)} bytes)"
            ) from None
        return {"addresses": addresses, "server": server, "latency_ms": latency_ms(started)}

    return ask


def tls_certificate(
    host: str,
    port: int,
    *,
    warn_days: float = 14,
    fail_days: float = 3,
    ca_file: str | None = None,
    server_name: str | None = None,
) -> AsyncCheck:
    """A check that completes a verified TLS handshake and reads the certificate's expiry.

    The certificate must be trusted by ``ca_file`` (a PEM bundle), else by the system's
    trust store, and valid for ``server_name`` (default: ``host``); otherwise the check
    fails (:class:`CheckFailed`, with the TLS library's reason). Within ``warn_days`` of
    its expiry it is :class:`~di.Degraded`, within ``fail_days`` it fails. Details:
    ``days_left``, ``not_after`` (ISO 8601, UTC), ``subject`` and ``issuer`` (their
    common names), ``server_name`` and ``latency_ms``.
    """
    _port(port, "tls_certificate")
    if not 0 <= fail_days <= warn_days:
        raise ValueError(
            f"tls_certificate(): expected 0 <= fail_days <= warn_days, got fail_days="
            f"{fail_days:g} and warn_days={warn_days:g}"
        )
    context = _client_context(ca_file, "tls_certificate")
    name = server_name or host
    where = f"{host}:{port}" + (f" (as {name})" if name != host else "")

    async def check(instance: object = None, /) -> dict[str, Any]:
        started = since()
        try:
            stream = await _connect(host, port, ssl_context=context, tls_hostname=name)
        except ssl.SSLCertVerificationError as error:
            reason = error.verify_message or error.reason or str(error.__cause__ or error)
            raise CheckFailed(f"the TLS certificate of {where} is invalid: {reason}") from error
        certificate = stream.extra(TLSAttribute.peer_certificate)
        await anyio.aclose_forcefully(stream)  # the handshake is all the check needs
        assert certificate is not None  # verified, so the server sent one
        expires = ssl.cert_time_to_seconds(str(certificate["notAfter"]))
        days_left = round((expires - time.time()) / DAY, 2)
        details = {
            "days_left": days_left,
            "not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            "subject": _common_name(certificate.get("subject")),
            "issuer": _common_name(certificate.get("issuer")),
            "server_name": name,
            "latency_ms": latency_ms(started),
        }
        if days_left <= fail_days:
            raise CheckFailed(
                f"the TLS certificate of {where} expires in {days_left:g} days "
                f"(fail_days={fail_days:g})",
                details=details,
            )
        if days_left <= warn_days:
            raise Degraded(
                f"the TLS certificate of {where} expires in {days_left:g} days "
                f"(warn_days={warn_days:g})",
                details=details,
            )
        return details

    return check


async def _connect(host: str, port: int, **tls: Any) -> Any:
    """``anyio.connect_tcp``, its failure named: the name that does not resolve, the
    address that refused, the TLS handshake that failed (and why)."""
    where = f"{host}:{port}"
    try:
        return await anyio.connect_tcp(host, port, **tls)
    except socket.gaierror as error:
        reason = error.strerror or str(error)
        raise socket.gaierror(error.errno, f"cannot resolve {host!r}: {reason}") from error
    except ssl.SSLCertVerificationError as error:
        named = ssl.SSLCertVerificationError(
            error.errno, f"TLS with {where}: certificate verify failed: {error.verify_message}"
        )
        named.verify_message, named.verify_code = error.verify_message, error.verify_code
        named.reason, named.library = error.reason, error.library
        raise named from error
    except ssl.SSLError as error:
        reason = (error.reason or str(error)).lower().replace("_", " ")
        if error.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
            reason += " (a plaintext port?)"
        raise ssl.SSLError(error.errno, f"TLS with {where} failed: {reason}") from error
    except OSError as error:
        cause = error.__cause__
        if isinstance(cause, BaseExceptionGroup):  # one per address tried: the first
            cause = next((e for e in cause.exceptions if isinstance(e, OSError)), None)
        if not isinstance(cause, OSError):
            raise
        reason = cause.strerror or str(cause)
        raise type(cause)(cause.errno, f"cannot connect to {where}: {reason}") from error


async def _readable(sock: socket.socket) -> None:
    wait = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable  # anyio < 4.7
    await wait(sock)


def _server(server: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address: its host and port."""
    host, text = server, "53"
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        text = rest[1:] if rest.startswith(":") else "" if rest else "53"
    elif server.count(":") == 1:
        host, _, text = server.partition(":")
    if not host or not text.isdigit() or not 0 < int(text) <= 65535:
        raise ValueError(f"dns(): expected server='HOST' or 'HOST:PORT', got {server!r}")
    return host, int(text)


def _port(port: int, where: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"{where}(): expected a port number from 1 to 65535, got {port!r}")


def _common_name(name: Any) -> str | None:
    """The common name of a certificate's subject or issuer, as ``getpeercert()`` gives it."""
    for rdn in name or ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


# -- DNS on the wire (RFC 1035): one A query, its answer's addresses ----------------------

_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _encode_name(name: str) -> bytes:
    try:
        labels = name.rstrip(".").encode("idna").split(b".")
    except UnicodeError:  # an empty label, or one over 63 characters
        labels = [b""]
    if any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"dns(): {name!r} is not a domain name")
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def _skip_name(message: bytes, offset: int) -> int:
    """The offset past the (possibly compressed) name at ``offset``."""
    while True:
        length = message[offset]
        if length >= 0xC0:  # a pointer ends the name
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def _addresses(answer: bytes, name: str, server: str) -> list[str]:
    """The A records of a DNS answer; a failure code or no address raises CheckFailed."""
    flags, questions, records = struct.unpack("!HHH", answer[2:8])
    code = flags & 0xF
    if code:
        what = _RCODES.get(code, f"RCODE {code}")
        raise CheckFailed(f"{server} answered {what} for {name!r}")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(answer, offset) + 4
    found: set[str] = set()
    for _ in range(records):
        offset = _skip_name(answer, offset)
        kind, _class, _ttl, length = struct.unpack("!HHIH", answer[offset : offset + 10])
        offset += 10
        if kind == 1 and length == 4:
            found.add(socket.inet_ntoa(answer[offset : offset + 4]))
        offset += length
    if not found:
        raise CheckFailed(f"{server} has no address (A record) for {name!r}")
    return sorted(found)
