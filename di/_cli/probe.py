"""``di probe URL``: ask a running server whether it is healthy, in one line, exit 0 or 1.

The path of a probe: :func:`probe` arms a SIGALRM timer for the whole ``--timeout``
(name lookup, connect, request and every read also get what is left of it as their
socket timeout), then by the URL's scheme:

- ``http://`` and ``https://``: :func:`_probe_http` sends one ``GET`` with
  ``Connection: close`` on a plain socket (TLS for https) and reads up to the status
  line; 2xx and 3xx pass, as the kubelet counts them. An answer that opens with an
  HTTP/2 SETTINGS frame is named as a gRPC port; a plaintext request closed without an
  answer as a TLS port, and a TLS handshake answered by what is not TLS as a plaintext
  port (for gRPC too).
- ``grpc://``: :func:`_probe_grpc` connects (a closed port fails at once), then calls
  ``grpc.health.v1.Health/Check`` over that socket with :mod:`di._cli.h2`, HTTP/2
  spoken with the standard library (grpcio takes longer to import than Python to
  start); SERVING passes. A server that does not answer HTTP/2 gets one HTTP/1 request
  to say what it speaks instead; one that breaks HTTP/2 is named for what it broke.

TLS (:class:`Tls`, grpc_health_probe's flags) is the standard library's ``ssl`` for
both: :func:`tls_context` makes the one client context (CA, client certificate,
verification, server name), :func:`_connect` opens a verified TLS socket. An
``https://`` URL always uses it; ``grpc://`` with ``--tls`` (ALPN ``h2``): the
certificate checks are the same for HTTP and gRPC, ``--tls-no-verify`` included.

It prints ``healthy: ...`` or ``unhealthy: ...`` and returns 0 or 1, never 2 (Docker
reserves it). Docker runs it every few seconds in every container, so it must start
fast: this module and :mod:`di._cli.h2` import only the standard library.
"""

import _socket
import sys
import time

# Importing signal (its enums), socket or urllib.parse would cost a probe more than its
# own work: the C modules beneath are all it needs. TYPE_CHECKING is not typing's, and
# there is no __future__ import, for the same reason (see di/__init__.py).
TYPE_CHECKING = False

if TYPE_CHECKING:
    import signal as _signal  # the same functions, with stubs
    import ssl
else:
    import _signal


class Tls:
    """How to speak TLS to the server: grpc_health_probe's ``-tls*`` flags.

    ``enabled`` is ``--tls`` (gRPC over TLS; an https:// URL needs nothing more).
    ``ca_cert`` verifies the server instead of the system's trust store; ``client_cert``
    and ``client_key`` authenticate this probe (mutual TLS); ``no_verify`` skips the
    server's verification; ``server_name`` is the name to verify and to send as SNI
    (default: the URL's host).
    """

    __slots__ = ("ca_cert", "client_cert", "client_key", "enabled", "no_verify", "server_name")

    def __init__(
        self,
        enabled: bool = False,
        ca_cert: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        no_verify: bool = False,
        server_name: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.no_verify = no_verify
        self.server_name = server_name

    @property
    def flags(self) -> list[str]:
        """The TLS flags given, as typed (for the messages that name them)."""
        named = [
            ("--tls-ca-cert", self.ca_cert),
            ("--tls-client-cert", self.client_cert),
            ("--tls-client-key", self.client_key),
            ("--tls-no-verify", self.no_verify),
            ("--tls-server-name", self.server_name),
        ]
        return [flag for flag, value in named if value]


class _Url:
    """A URL's parts as :func:`urllib.parse.urlsplit` splits them, and what the probe
    reads of them (importing urllib.parse would cost a probe more than its own work).

    Unlike urlsplit, a bracketed host is not checked to be an IP address, nor a non-ASCII
    host for characters that normalize to a delimiter: connecting to it says enough.
    """

    __slots__ = ("fragment", "netloc", "path", "query", "scheme")

    # The schemes urlunsplit writes "//" for even without a host (urllib.parse.uses_netloc).
    USES_NETLOC = frozenset(
        (
            "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https",
            "shttp", "snews", "prospero", "rtsp", "rtspu", "rsync", "svn", "svn+ssh", "sftp",
            "nfs", "git", "git+ssh", "ws", "wss", "itms-services",
        )
    )  # fmt: skip

    def __init__(self, scheme: str, netloc: str, path: str, query: str, fragment: str) -> None:
        self.scheme = scheme
        self.netloc = netloc
        self.path = path
        self.query = query
        self.fragment = fragment

    @classmethod
    def split(cls, url: str) -> "_Url":
        """``scheme://netloc/path?query#fragment``, as urlsplit splits it."""
        url = url.lstrip("".join(map(chr, range(33))))  # C0 controls and space
        url = url.replace("\t", "").replace("\r", "").replace("\n", "")
        scheme = netloc = query = fragment = ""
        colon = url.find(":")
        if (
            colon > 0
            and url[0].isascii()
            and url[0].isalpha()
            and all(c.isascii() and (c.isalnum() or c in "+-.") for c in url[:colon])
        ):
            scheme, url = url[:colon].lower(), url[colon + 1 :]
        if url[:2] == "//":
            end = len(url)
            for delimiter in "/?#":
                found = url.find(delimiter, 2)
                end = found if 0 <= found < end else end
            netloc, url = url[2:end], url[end:]
            if ("[" in netloc) != ("]" in netloc):
                raise ValueError("Invalid IPv6 URL")
        url, _, fragment = url.partition("#")
        url, _, query = url.partition("?")
        return cls(scheme, netloc, url, query, fragment)

    @property
    def username(self) -> str | None:
        userinfo, at, _ = self.netloc.rpartition("@")
        return userinfo.partition(":")[0] if at else None

    @property
    def password(self) -> str | None:
        userinfo, at, _ = self.netloc.rpartition("@")
        _, colon, password = userinfo.partition(":")
        return password if at and colon else None

    @property
    def hostname(self) -> str | None:
        """The host, lowercased (an IPv6 zone aside), without brackets; None if empty."""
        hostname = self._host_port()[0]
        if not hostname:
            return None
        hostname, percent, zone = hostname.partition("%")
        return hostname.lower() + percent + zone

    @property
    def port(self) -> int | None:
        """The port, if the URL has one; ValueError with urllib.parse's words if it is
        not a port number."""
        port = self._host_port()[1]
        if not port:
            return None
        if not (port.isdigit() and port.isascii()):
            raise ValueError(f"Port could not be cast to integer value as {port!r}")
        if not 0 <= int(port) <= 65535:
            raise ValueError("Port out of range 0-65535")
        return int(port)

    def _host_port(self) -> tuple[str, str]:
        hostinfo = self.netloc.rpartition("@")[2]
        _, bracket, bracketed = hostinfo.partition("[")
        if bracket:
            hostname, _, rest = bracketed.partition("]")
            return hostname, rest.partition(":")[2]
        hostname, _, port = hostinfo.partition(":")
        return hostname, port

    def replace(self, scheme: str | None = None, netloc: str | None = None) -> "_Url":
        return _Url(
            self.scheme if scheme is None else scheme,
            self.netloc if netloc is None else netloc,
            self.path,
            self.query,
            self.fragment,
        )

    def geturl(self) -> str:
        """The URL again, as urlunsplit writes it (on Python 3.13 and later it adds no
        ``//`` before a path that does not start with ``/``)."""
        url = self.path
        if self.netloc:
            if url and url[:1] != "/":
                url = "/" + url
            url = "//" + self.netloc + url
        elif sys.version_info < (3, 13):
            if self.scheme in self.USES_NETLOC and url[:2] != "//":
                url = "//" + (url if not url or url[:1] == "/" else "/" + url)
        elif url[:2] == "//" or (self.scheme in self.USES_NETLOC and url[:1] in ("", "/")):
            url = "//" + url
        if self.scheme:
            url = self.scheme + ":" + url
        if self.query:
            url += "?" + self.query
        if self.fragment:
            url += "#" + self.fragment
        return url


class TlsError(Exception):
    """The TLS options cannot be used: a file that does not load, flags that conflict."""


def tls_problem(url: str, tls: Tls) -> str | None:
    """What is wrong with using ``tls`` for ``url``, in one line; None when nothing is
    (and for a URL that does not split: :func:`probe` says it is unhealthy, and why)."""
    try:
        scheme = _Url.split(url).scheme
    except ValueError:
        return None
    if scheme == "http" and (tls.enabled or tls.flags):
        return "http:// is plaintext: use https:// for TLS (the --tls-* flags apply to it)"
    if scheme == "grpc" and tls.flags and not tls.enabled:
        return f"{tls.flags[0]} needs --tls (gRPC over TLS), as with grpc_health_probe"
    if tls.no_verify and tls.ca_cert:
        return "--tls-ca-cert is not used with --tls-no-verify: give one of them"
    if bool(tls.client_cert) != bool(tls.client_key):
        return "--tls-client-cert and --tls-client-key go together: give both"
    return None


def tls_context(tls: Tls, protocol: str) -> "ssl.SSLContext":
    """The client TLS context for ``tls``, offering ALPN ``protocol`` (h2, http/1.1).

    Raises :class:`TlsError` naming the flag whose file does not load.
    """
    import ssl

    try:
        context = ssl.create_default_context(cafile=tls.ca_cert)
    except (OSError, ssl.SSLError) as error:
        raise TlsError(f"cannot load --tls-ca-cert {tls.ca_cert}: {_reason(error)}") from None
    if tls.no_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        encrypted = False

        def no_passphrase() -> bytes:  # OpenSSL would prompt for it, and wait for ever
            nonlocal encrypted
            encrypted = True
            raise TlsError("encrypted")

        try:
            context.load_cert_chain(tls.client_cert, tls.client_key, password=no_passphrase)
        except (OSError, ssl.SSLError, TlsError) as error:
            reason = (
                f"the key is encrypted; give it without a passphrase (openssl pkey -in "
                f"{tls.client_key} -out tls.key)"
                if encrypted
                else _reason(error)
            )
            raise TlsError(
                f"cannot load --tls-client-cert {tls.client_cert} with --tls-client-key "
                f"{tls.client_key}: {reason}"
            ) from None
    context.set_alpn_protocols([protocol])
    return context


def _reason(error: BaseException) -> str:
    return str(getattr(error, "strerror", None) or getattr(error, "reason", None) or error)


def probe(url: str, service: str, timeout: float, tls: Tls | None = None) -> int:
    """Exit code 0 when the endpoint answers healthy, 1 for anything else.

    ``timeout`` bounds the whole probe: name lookup, connect, TLS handshake, request
    and every read.
    """
    tls = tls or Tls()
    deadline = time.monotonic() + timeout
    armed = False

    def expired(signum: int, frame: object) -> None:
        if armed:  # never once the probe is over
            raise TimeoutError(f"no answer within {timeout:g} s")

    previous = _signal.signal(_signal.SIGALRM, expired)
    try:
        try:
            armed = True
            # Below a microsecond setitimer would read 0, which disarms it.
            _signal.setitimer(_signal.ITIMER_REAL, max(timeout, 1e-6))
            parts = _Url.split(url)
            if parts.scheme in ("http", "https"):
                healthy, detail = _probe_http(parts, deadline, tls)
            elif parts.scheme == "grpc":
                healthy, detail = _probe_grpc(parts, service, deadline, tls)
            else:
                healthy = False
                shown = _without_password(parts).geturl()
                detail = f"unsupported URL {shown!r}: use http://, https:// or grpc://"
        finally:
            armed = False
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except Exception as error:  # any failure to get an answer is unhealthy
        healthy, detail = False, _failure(error)
    finally:
        _signal.signal(_signal.SIGALRM, previous)
    print(f"{'healthy' if healthy else 'unhealthy'}: {detail}")
    return 0 if healthy else 1


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the probe's --timeout ran out")
    return left


def _failure(error: Exception) -> str:
    """A failure to get an answer, in one line; a TLS one says what did not verify."""
    ssl = sys.modules.get("ssl")  # not imported: the error cannot be a TLS one
    if ssl is not None and isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: the server's certificate did not verify: {error.verify_message}"
    if ssl is not None and isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    return f"{type(error).__name__}: {error}"


def _probe_http(parts: _Url, deadline: float, tls: Tls) -> tuple[bool, str]:
    """GET the URL and read its status line; 2xx and 3xx pass, as kubelet counts them.

    A URL's ``user:password@`` is sent as Basic credentials, and printed as ``user:***@``.
    """
    shown = _without_password(parts)
    if not parts.hostname:
        return False, f"no host in {shown.geturl()!r}"
    secure = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    context = tls_context(tls, "http/1.1") if secure else None
    port = parts.port or (443 if secure else 80)
    request = _get(path, host, _basic(parts))
    try:
        head = _first_line(parts.hostname, port, request, deadline, context, tls.server_name)
    except OSError as error:
        if not (secure and _plaintext_said(error)):
            raise
        plain = shown.replace(scheme="http").geturl()
        return (
            False,
            f"the server at {host} did not answer TLS (a plaintext port? Probe it with {plain})",
        )
    if secure and not head:
        return False, _closed_tls(host, tls)
    if not secure and _tls_said(head):
        secured = shown.replace(scheme="https").geturl()
        return False, (
            f"the server at {host} closed the connection without an answer "
            f"(a TLS port? Probe it with {secured})"
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
        return False, f"not an HTTP answer from {shown.geturl()}: {_shown(head)}"
    status = int(code)
    return 200 <= status < 400, f"HTTP {status} from {shown.geturl()}"


def _without_password(parts: _Url) -> _Url:
    """The URL to print: the password of its ``user:password@`` as ``***``."""
    if parts.password is None:
        return parts
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return parts.replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}")


def _basic(parts: _Url) -> str:
    """The Authorization header line for the URL's ``user:password@``, if it has one."""
    if parts.username is None and parts.password is None:
        return ""
    import base64
    from urllib.parse import unquote

    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return f"Authorization: Basic {base64.b64encode(pair).decode()}\r\n"


# What OpenSSL says when the server's first bytes are not TLS: a plaintext server.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)


def _plaintext_said(error: OSError) -> bool:
    """Whether a TLS handshake failed on bytes that were not TLS (an ``ssl.SSLError``
    with such a reason; read without importing ssl)."""
    return getattr(error, "reason", None) in _NOT_TLS


def _tls_said(head: bytes) -> bool:
    """Whether a plaintext request got what a TLS server says to one: nothing, or an
    alert record."""
    return not head or head.startswith(b"\x15\x03")


def _closed_tls(address: str, tls: Tls) -> str:
    """A server that closed the TLS connection without a word: often, mutual TLS."""
    said = f"the server at {address} closed the TLS connection without an answer"
    if not tls.client_cert:
        said += (
            " (does it require a client certificate? give --tls-client-cert and --tls-client-key)"
        )
    else:  # the server's TLS does not always say why before it closes
        said += (
            f" (did it refuse this probe's certificate? --tls-client-cert {tls.client_cert} "
            "must be valid now and signed by a CA the server trusts)"
        )
    return said


def _get(path: str, host: str, authorization: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: di-probe\r\n{authorization}"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")


def _connect(
    hostname: str,
    port: int,
    deadline: float,
    context: "ssl.SSLContext | None" = None,
    server_name: str | None = None,
) -> _socket.socket:
    """A connected socket, TLS (handshake done, certificate verified) with a context.

    The first of the name's addresses that accepts, as :func:`socket.create_connection`
    connects; if none does, the first address's error.
    """
    # An ASCII name as bytes: the socket module would load the IDNA codec to encode it.
    host = hostname.encode() if hostname.isascii() else hostname
    failures: list[OSError] = []
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        connection = _socket.socket(family, kind, proto)
        try:
            connection.settimeout(_left(deadline))
            connection.connect(address)
        except OSError as error:
            connection.close()
            failures.append(error)
            continue
        if context is None:
            return connection
        return _secured(connection, context, server_name or hostname, deadline)
    if failures:
        raise failures[0]
    raise OSError("getaddrinfo returns an empty list")


def _secured(
    connection: _socket.socket, context: "ssl.SSLContext", server_name: str, deadline: float
) -> "ssl.SSLSocket":
    """``connection`` with TLS: the handshake done and the certificate verified."""
    import socket  # ssl wraps socket's sockets; ssl has imported it already

    wrapped = socket.socket(fileno=connection.detach())
    try:
        wrapped.settimeout(_left(deadline))
        return context.wrap_socket(wrapped, server_hostname=server_name)
    except BaseException:
        wrapped.close()
        raise


def _first_line(
    hostname: str,
    port: int,
    request: bytes,
    deadline: float,
    context: "ssl.SSLContext | None" = None,
    server_name: str | None = None,
) -> bytes:
    """Send ``request``; what came back up to the first line end, the close, or 8 KiB."""
    connection = _connect(hostname, port, deadline, context, server_name)
    try:
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


def _probe_grpc(parts: _Url, service: str, deadline: float, tls: Tls) -> tuple[bool, str]:
    """Call grpc.health.v1.Health/Check over HTTP/2 spoken by :mod:`di._cli.h2`;
    SERVING passes."""
    if not parts.hostname:
        return False, f"no host in {parts.geturl()!r}"
    address = parts.netloc.rpartition("@")[2]  # gRPC has no use for user:password@
    port = parts.port or 443  # grpc's own default
    # Connect first: a closed port fails at once, as over HTTP, and h2 is not loaded;
    # over TLS, a certificate that does not verify fails here too.
    context = tls_context(tls, "h2") if tls.enabled else None
    try:
        connection = _connect(parts.hostname, port, deadline, context, tls.server_name)
    except OSError as error:
        if not (context is not None and _plaintext_said(error)):
            raise
        return False, f"the server at {address} did not answer TLS (a plaintext port? drop --tls)"
    from . import h2

    try:
        if context is not None and connection.selected_alpn_protocol() != "h2":  # type: ignore[attr-defined]
            return False, f"the server at {address} did not agree to HTTP/2 over TLS (not gRPC?)"
        reply = h2.health_check(connection, address, context is not None, service, deadline)
    except h2.NotHttp2 as error:
        if context is not None and not error.head:
            return False, _closed_tls(address, tls)
        http1 = tls_context(tls, "http/1.1") if context is not None else None
        other = _not_http2(parts.hostname, port, address, deadline, http1, tls)
        if other is not None:
            return False, f"the server at {address} did not answer gRPC: {other}"
        return False, f"UNAVAILABLE from {address} for {service!r}"
    except h2.Broken as error:
        return False, f"the server at {address} broke the gRPC call: {error}"
    except OSError as error:
        if context is not None and _tls_closed(error):
            return False, _closed_tls(address, tls)
        reason = getattr(error, "reason", None)  # an ssl.SSLError after the handshake
        if context is not None and isinstance(reason, str):
            return False, f"TLS with {address}: {reason}"
        raise
    finally:
        connection.close()
    if reply.code:
        return False, f"{reply.code_name} from {address} for {service!r}"
    status = reply.serving
    named = h2.SERVING_STATUSES[status] if status is not None and 0 <= status < 4 else None
    return named == "SERVING", f"{named or f'status {status}'} from {address} for {service!r}"


def _tls_closed(error: OSError) -> bool:
    """Whether a TLS connection closed (or was reset) before the server said a word:
    how a server refuses a client certificate it does not take, in TLS 1.3."""
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return True
    reason = getattr(error, "reason", None) or ""
    return "EOF" in reason or "UNEXPECTED_EOF" in reason or "ALERT" in reason


def _not_http2(
    hostname: str,
    port: int,
    address: str,
    deadline: float,
    context: "ssl.SSLContext | None" = None,
    tls: Tls | None = None,
) -> str | None:
    """What the server speaks if not HTTP/2, found with an HTTP/1 request; None if HTTP/2.

    An HTTP/1 server answers the request with a status line; an HTTP/2 server (gRPC)
    opens with a SETTINGS frame whatever it was sent.
    """
    try:
        server_name = tls.server_name if tls is not None else None
        head = _first_line(hostname, port, _get("/", address), deadline, context, server_name)
    except OSError:  # TimeoutError included: the gRPC status says enough
        return None
    if _is_http2(head):
        return None
    if context is None and _tls_said(head):
        return "it closed the connection without an answer (a TLS port? add --tls)"
    if head.startswith(b"HTTP/1"):
        return f"it speaks HTTP/1 (an HTTP port? Probe it with http://{address}/readyz)"
    return f"it answered {_shown(head)}"
