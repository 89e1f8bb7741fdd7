"""``di probe URL``: ask a running server whether it is healthy, in one line, exit 0 or 1.

The path of a probe: :func:`probe` arms a SIGALRM timer for the whole ``--timeout``
(name lookup, connect, request and every read also get what is left of it as their
socket timeout), then by the URL's scheme:

- ``http://`` and ``https://``: :func:`_probe_http` sends one ``GET`` with
  ``Connection: close`` on a plain socket (TLS for https) and reads up to the status
  line; 2xx and 3xx pass, as the kubelet counts them. An answer that opens with an
  HTTP/2 SETTINGS frame is named as a gRPC port.
- ``grpc://``: :func:`_probe_grpc` connects a plain socket first (a closed port fails
  at once, and grpc is not imported), then calls ``grpc.health.v1.Health/Check``;
  SERVING passes. UNAVAILABLE is followed by one HTTP/1 request to say whether the
  port speaks HTTP/1 rather than gRPC.

It prints ``healthy: ...`` or ``unhealthy: ...`` and returns 0 or 1, never 2 (Docker
reserves it). Docker runs it every few seconds in every container, so it must start
fast: this module imports only the standard library, and grpc only for a grpc:// URL.
"""

from __future__ import annotations

import signal
import socket
import time
from urllib.parse import SplitResult, urlsplit


def probe(url: str, service: str, timeout: float) -> int:
    """Exit code 0 when the endpoint answers healthy, 1 for anything else.

    ``timeout`` bounds the whole probe: name lookup, connect, request and every read.
    """
    deadline = time.monotonic() + timeout
    armed = False

    def expired(signum: int, frame: object) -> None:
        if armed:  # never once the probe is over
            raise TimeoutError(f"no answer within {timeout:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    try:
        try:
            armed = True
            # Below a microsecond setitimer would read 0, which disarms it.
            signal.setitimer(signal.ITIMER_REAL, max(timeout, 1e-6))
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                healthy, detail = _probe_http(parts, deadline)
            elif parts.scheme == "grpc":
                healthy, detail = _probe_grpc(parts, service, deadline)
            else:
                healthy = False
                detail = f"unsupported URL {url!r}: use http://, https:// or grpc://"
        finally:
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Exception as error:  # any failure to get an answer is unhealthy
        healthy, detail = False, f"{type(error).__name__}: {error}"
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(f"{'healthy' if healthy else 'unhealthy'}: {detail}")
    return 0 if healthy else 1


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the probe's --timeout ran out")
    return left


def _probe_http(parts: SplitResult, deadline: float) -> tuple[bool, str]:
    """GET the URL and read its status line; 2xx and 3xx pass, as kubelet counts them."""
    if not parts.hostname:
        return False, f"no host in {parts.geturl()!r}"
    secure = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    head = _first_line(
        parts.hostname, parts.port or (443 if secure else 80), _get(path, host), deadline, secure
    )
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        if _is_http2(head):
            return False, (
                f"the server at {host} answered HTTP/2, not HTTP/1 "
                f"(a gRPC port? Probe it with grpc://{host})"
            )
        return False, f"not an HTTP answer from {parts.geturl()}: {_shown(head)}"
    status = int(code)
    return 200 <= status < 400, f"HTTP {status} from {parts.geturl()}"


def _get(path: str, host: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: di-probe\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def _first_line(
    hostname: str, port: int, request: bytes, deadline: float, secure: bool = False
) -> bytes:
    """Send ``request``; what came back up to the first line end, the close, or 8 KiB."""
    connection = socket.create_connection((hostname, port), timeout=_left(deadline))
    try:
        if secure:
            import ssl

            context = ssl.create_default_context()
            connection = context.wrap_socket(connection, server_hostname=hostname)
        connection.settimeout(_left(deadline))
        connection.sendall(request)
        head = b""
        while b"\r\n" not in head and len(head) < 8192:
            connection.settimeout(_left(deadline))  # every read within the deadline
            chunk = connection.recv(1024)
            if not chunk:
                break
            head += chunk
    finally:
        connection.close()
    return head


def _is_http2(data: bytes) -> bool:
    """Whether ``data`` opens with an HTTP/2 SETTINGS frame, as an HTTP/2 server's do."""
    return len(data) >= 9 and data[3] == 0x4 and not data.startswith(b"HTTP/")


def _shown(data: bytes) -> str:
    """The first line of an answer if it is text, else its size: no raw bytes on a terminal."""
    if not data:
        return "the connection closed without an answer"
    line = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0][:80]
    if line and all(32 <= byte < 127 for byte in line):
        return repr(line.decode("ascii"))
    return f"{len(data)} bytes that are not text"


def _probe_grpc(parts: SplitResult, service: str, deadline: float) -> tuple[bool, str]:
    """Call grpc.health.v1.Health/Check; SERVING passes."""
    if not parts.hostname:
        return False, f"no host in {parts.geturl()!r}"
    address = parts.netloc
    port = parts.port or 443  # grpc's own default
    # Connect first: a closed port fails at once, as over HTTP, and grpc is not loaded.
    socket.create_connection((parts.hostname, port), timeout=_left(deadline)).close()
    try:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError as error:
        return False, (
            f"probing gRPC needs the grpc extra ({error.name} is not installed): "
            "pip install 'healthdi[grpc]'"
        )

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            response = stub.Check(request, timeout=_left(deadline))  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            code = error.code()
            if code is grpc.StatusCode.UNAVAILABLE:  # no HTTP/2 connection, or shutting down
                other = _not_http2(parts.hostname, port, address, deadline)
                if other is not None:
                    return False, f"the server at {address} did not answer gRPC: {other}"
            return False, f"{code.name} from {address} for {service!r}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return status == "SERVING", f"{status} from {address} for {service!r}"


def _not_http2(hostname: str, port: int, address: str, deadline: float) -> str | None:
    """What the server speaks if not HTTP/2, found with an HTTP/1 request; None if HTTP/2.

    An HTTP/1 server answers the request with a status line; an HTTP/2 server (gRPC)
    opens with a SETTINGS frame whatever it was sent.
    """
    try:
        head = _first_line(hostname, port, _get("/", address), deadline)
    except OSError:  # TimeoutError included: the gRPC status says enough
        return None
    if _is_http2(head):
        return None
    if head.startswith(b"HTTP/1"):
        return f"it speaks HTTP/1 (an HTTP port? Probe it with http://{address}/readyz)"
    return f"it answered {_shown(head)}"
