"""One ``grpc.health.v1.Health/Check`` over HTTP/2, with the standard library only.

``di probe grpc://`` must start as fast as a script, and grpcio takes longer to import
than Python takes to start; a health check is one small unary call, so the probe speaks
HTTP/2 itself. The path of a call: :func:`health_check` is handed a connected socket
(plaintext, or TLS that agreed to ALPN ``h2``) and writes at once the client preface,
an empty SETTINGS frame, one HEADERS frame (HPACK literals, no Huffman) and one DATA
frame holding the gRPC length prefix and the protobuf ``HealthCheckRequest``. It then
reads frames (:class:`_Frames`) until the stream ends: the server's SETTINGS are
acknowledged, PINGs answered, header blocks decoded by :class:`_Hpack` (static and
dynamic tables, Huffman), the response message parsed by :func:`_serving_status`.

What the server sends is not trusted: a frame, header block or message that breaks the
protocol raises :class:`Broken` naming what was wrong; an answer that does not open
with a SETTINGS frame raises :class:`NotHttp2` with the bytes seen; nothing is read
past the caller's ``deadline`` (every read's socket timeout is what is left of it).
"""

import _socket  # loaded by the probe already; the type of its connections
import time

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PUSH_PROMISE = 0x0, 0x1, 0x3, 0x4, 0x5
_PING, _GOAWAY, _CONTINUATION = 0x6, 0x7, 0x9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_STREAM = 1  # the one stream of the call
_MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE: this client never raises it
_MAX_TABLE = 4096  # SETTINGS_HEADER_TABLE_SIZE: this client never raises it
_MAX_BLOCK = 65536  # a header block, or the response's DATA: a health answer is tiny
_PATH = "/grpc.health.v1.Health/Check"

ERRORS = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
]

CODES = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]

SERVING_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")


class Broken(Exception):
    """The server broke HTTP/2, HPACK or gRPC; the message says how."""


class NotHttp2(Exception):
    """The server's first bytes were not an HTTP/2 SETTINGS frame: :attr:`head` holds them."""

    def __init__(self, head: bytes) -> None:
        super().__init__("not HTTP/2")
        self.head = head


class Reply:
    """How the call ended: its gRPC status code (and name) and, when OK, the serving status."""

    __slots__ = ("code", "message", "serving")

    def __init__(self, code: int, message: str, serving: int | None = None) -> None:
        self.code = code
        self.message = message
        self.serving = serving

    def __repr__(self) -> str:
        return f"Reply({self.code!r}, {self.message!r}, {self.serving!r})"

    @property
    def code_name(self) -> str:
        """The gRPC status code's name (``NOT_FOUND``), or ``code N`` for one unknown."""
        return CODES[self.code] if 0 <= self.code < len(CODES) else f"code {self.code}"


def health_check(
    connection: _socket.socket, authority: str, secure: bool, service: str, deadline: float
) -> Reply:
    """Call Check for ``service`` on ``connection`` and read the answer to its end."""
    wanted = service.encode()
    message = (b"\x0a" + _varint(len(wanted)) + wanted) if wanted else b""
    left_ms = max(1, int(_left(deadline) * 1000))
    block = b"".join(
        _literal(name, value)
        for name, value in (
            (":method", "POST"),
            (":scheme", "https" if secure else "http"),
            (":path", _PATH),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", f"{min(left_ms, 99_999_999)}m"),
            ("user-agent", "di-probe"),
        )
    )
    if len(block) > _MAX_FRAME:
        raise Broken(f"the address {authority!r} is too long for one HTTP/2 frame")
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    connection.settimeout(_left(deadline))
    connection.sendall(
        _PREFACE
        + _frame(_SETTINGS, 0, 0, b"\x00\x02\x00\x00\x00\x00")  # no server push
        + _frame(_HEADERS, _END_HEADERS, _STREAM, block)
        + _frame(_DATA, _END_STREAM, _STREAM, body)
    )
    return _Call(connection, deadline).answer()


class _Call:
    """The reading side of the call: frames in until the stream ends."""

    def __init__(self, connection: _socket.socket, deadline: float) -> None:
        self.frames = _Frames(connection, deadline)
        self.connection = connection
        self.deadline = deadline
        self.hpack = _Hpack()
        self.headers: dict[str, str] = {}
        self.data = b""

    def answer(self) -> Reply:
        kind, flags, stream, payload = self.frames.next()
        if kind != _SETTINGS or flags & _ACK or stream:
            raise NotHttp2(self.frames.seen)
        self._settings(payload)
        while True:
            kind, flags, stream, payload = self.frames.next()
            if kind == _SETTINGS:
                if stream:
                    raise Broken("a SETTINGS frame on a stream")
                if not flags & _ACK:
                    self._settings(payload)
            elif kind == _PING:
                if stream or len(payload) != 8:
                    raise Broken("a PING frame that is not 8 bytes on stream 0")
                if not flags & _ACK:
                    self._send(_frame(_PING, _ACK, 0, payload))
            elif kind == _GOAWAY:
                if len(payload) < 8:
                    raise Broken("a GOAWAY frame under 8 bytes")
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                if last < _STREAM:  # the call was never taken
                    error = int.from_bytes(payload[4:8], "big")
                    return Reply(14, f"the server went away ({_error(error)})")
            elif kind in (_PUSH_PROMISE, _CONTINUATION):
                raise Broken(f"an unexpected frame of type {kind}")
            elif kind in (_HEADERS, _DATA, _RST_STREAM) and stream != _STREAM:
                raise Broken(f"a frame of type {kind} on stream {stream}, not {_STREAM}")
            elif kind == _RST_STREAM:
                if len(payload) != 4:
                    raise Broken("an RST_STREAM frame that is not 4 bytes")
                error = int.from_bytes(payload, "big")
                return Reply(14 if error == 7 else 13, f"the call was reset ({_error(error)})")
            elif kind == _HEADERS:
                self._header_block(flags, payload)
                if flags & _END_STREAM:
                    return self._ended()
            elif kind == _DATA:
                self.data += _unpadded(flags, payload)
                if len(self.data) > _MAX_BLOCK:
                    raise Broken(f"a response over {_MAX_BLOCK} bytes")
                if flags & _END_STREAM:
                    return self._ended()
            # PRIORITY, WINDOW_UPDATE and unknown frame types: nothing to do

    def _send(self, data: bytes) -> None:
        """Answer a SETTINGS or PING frame. A server that already closed may refuse
        it (a reset, a broken pipe): what it sent before is still read, and reading
        says the connection closed."""
        self.connection.settimeout(_left(self.deadline))
        try:  # noqa: SIM105 (contextlib.suppress would import contextlib on the probe's path)
            self.connection.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise Broken(f"a SETTINGS frame of {len(payload)} bytes, not a multiple of 6")
        self._send(_frame(_SETTINGS, _ACK, 0, b""))

    def _header_block(self, flags: int, payload: bytes) -> None:
        block = _unpadded(flags, payload)
        if flags & _PRIORITY:
            if len(block) < 5:
                raise Broken("a HEADERS frame too short for its priority")
            block = block[5:]
        while not flags & _END_HEADERS:
            kind, flags, stream, more = self.frames.next()
            if kind != _CONTINUATION or stream != _STREAM:
                raise Broken("a header block interrupted by another frame")
            block += more
            if len(block) > _MAX_BLOCK:
                raise Broken(f"a header block over {_MAX_BLOCK} bytes")
        for name, value in self.hpack.decode(block):
            self.headers[name] = value

    def _ended(self) -> Reply:
        status = self.headers.get(":status")
        if status != "200":
            return Reply(14 if status in ("502", "503", "504") else 2, f"HTTP status {status}")
        said = self.headers.get("grpc-status")
        if said is None or not said.isdigit():
            raise Broken(f"the answer ended with grpc-status {said!r}")
        code = int(said)
        if code:
            return Reply(code, self.headers.get("grpc-message", ""))
        return Reply(0, "", _serving_status(self.data))


class _Frames:
    """HTTP/2 frames read from a socket within the deadline; :attr:`seen` keeps the
    first bytes read (to say what a server that is not HTTP/2 sent)."""

    def __init__(self, connection: _socket.socket, deadline: float) -> None:
        self.connection = connection
        self.deadline = deadline
        self.buffer = b""
        self.seen = b""
        self.framed = False  # whether a whole frame came

    def next(self) -> tuple[int, int, int, bytes]:
        head = self._take(9)
        length = int.from_bytes(head[:3], "big")
        if length > _MAX_FRAME:
            if not self.framed:  # the first frame: most likely not HTTP/2 at all
                raise NotHttp2(self.seen)
            raise Broken(f"a frame of {length} bytes, over the {_MAX_FRAME} agreed")
        payload = self._take(length)
        self.framed = True
        return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.connection.settimeout(_left(self.deadline))
            try:
                chunk = self.connection.recv(65536)
            except ConnectionResetError:
                # A server that closes without reading the acknowledgements it was
                # sent resets the connection: once it spoke HTTP/2, that is a close.
                if not self.framed:
                    raise
                chunk = b""
            if not chunk:
                if not self.framed:
                    raise NotHttp2(self.seen)
                raise Broken("the connection closed before the answer ended")
            if len(self.seen) < 1024:
                self.seen += chunk[: 1024 - len(self.seen)]
            self.buffer += chunk
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the probe's --timeout ran out")
    return left


def _error(code: int) -> str:
    return ERRORS[code] if 0 <= code < len(ERRORS) else f"error {code}"


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _unpadded(flags: int, payload: bytes) -> bytes:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise Broken("a frame whose padding is longer than itself")
    return payload[1 : len(payload) - payload[0]]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _serving_status(data: bytes) -> int:
    """HealthCheckResponse.status (field 1) from the one gRPC message in ``data``."""
    if len(data) < 5:
        raise Broken(f"a response of {len(data)} bytes, under gRPC's 5-byte prefix")
    if data[0] != 0:
        raise Broken("a compressed response, though none was asked for")
    length = int.from_bytes(data[1:5], "big")
    if length != len(data) - 5:
        raise Broken(f"a response of {len(data) - 5} bytes whose prefix says {length}")
    status, at, message = 0, 0, data[5:]
    while at < len(message):
        tag, at = _read_varint(message, at)
        wire = tag & 7
        if wire == 0:
            value, at = _read_varint(message, at)
            if tag >> 3 == 1:
                status = value
        elif wire == 2:
            size, at = _read_varint(message, at)
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise Broken(f"a HealthCheckResponse with wire type {wire}")
        if at > len(message):
            raise Broken("a HealthCheckResponse cut short")
    return status


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if at >= len(data):
            raise Broken("a HealthCheckResponse cut short")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    raise Broken("a varint of more than 10 bytes in the HealthCheckResponse")


def _literal(name: str, value: str) -> bytes:
    """A literal header field without indexing, new name, no Huffman (RFC 7541, 6.2.2)."""
    raw_name, raw_value = name.encode(), value.encode()
    return b"\x00" + _integer(len(raw_name), 7) + raw_name + _integer(len(raw_value), 7) + raw_value


def _integer(value: int, bits: int, first: int = 0) -> bytes:
    """``value`` as an HPACK integer with a ``bits``-bit prefix (RFC 7541, 5.1)."""
    top = (1 << bits) - 1
    if value < top:
        return bytes((first | value,))
    out, value = bytearray((first | top,)), value - top
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_STATIC = (  # RFC 7541, Appendix A: index 1 onwards
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    *((":status", code) for code in ["200", "204", "206", "304", "400", "404", "500"]),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    *(
        (name, "")
        for name in [
            "accept-language",
            "accept-ranges",
            "accept",
            "access-control-allow-origin",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "content-disposition",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-range",
            "content-type",
            "cookie",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "link",
            "location",
            "max-forwards",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "refresh",
            "retry-after",
            "server",
            "set-cookie",
            "strict-transport-security",
            "transfer-encoding",
            "user-agent",
            "vary",
            "via",
            "www-authenticate",
        ]
    ),
)

# RFC 7541, Appendix B: the bit length of each symbol's code, symbols 0-256 (256 is
# EOS), one character each: "0"-"9" are 5-14 bits, "A"-"P" 15-30. The codes are
# canonical: sorted by length then symbol, each is the one before plus one, shifted
# left as the length grows.
_HUFFMAN_LENGTHS = (
    "8INNNNNNNJPNNPNNNNNNNNPNNNNNNNNN1557813655363111000111111123A1758122222222222222222222"
    "223238E891A01010111022111012100122222A698NFHFFHHHIHIIIIIJIJJHIJIIIIGHIHIIJHGFHHIIGIHHJ"
    "GHIIGGHGIHIIFHHHIHHILLFEHIHKLLLMMLJKEGLMMLMJGGLLNMMMFJFGHGGIHHKKJJLILMLLMMMMMNMMMMMLP"
)


def _huffman_codes() -> dict[tuple[int, int], int]:
    """(length, code) -> symbol, for every symbol of the HPACK Huffman code."""
    lengths = [
        ord(char) - ord("0") + 5 if char.isdigit() else ord(char) - ord("A") + 15
        for char in _HUFFMAN_LENGTHS
    ]
    codes: dict[tuple[int, int], int] = {}
    code = previous = 0
    for symbol in sorted(range(len(lengths)), key=lambda symbol: (lengths[symbol], symbol)):
        code <<= lengths[symbol] - previous
        previous = lengths[symbol]
        codes[(previous, code)] = symbol
        code += 1
    return codes


class _Hpack:
    """An HPACK decoder (RFC 7541): the static table, a dynamic table of at most
    4096 bytes, integers and strings, Huffman-coded or not."""

    def __init__(self) -> None:
        self.table: list[tuple[str, str]] = []  # the dynamic table, newest first
        self.limit = _MAX_TABLE
        self.huffman: dict[tuple[int, int], int] | None = None

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        at = 0
        while at < len(block):
            byte = block[at]
            if byte & 0x80:  # indexed field
                index, at = self._integer(block, at, 7)
                fields.append(self._entry(index))
            elif byte & 0xE0 == 0x20:  # dynamic table size update
                size, at = self._integer(block, at, 5)
                if size > _MAX_TABLE:
                    raise Broken(f"an HPACK table size of {size}, over the {_MAX_TABLE} agreed")
                self.limit = size
                self._evict()
            else:  # a literal: with incremental indexing (01), without or never (000x)
                indexing = bool(byte & 0x40)
                index, at = self._integer(block, at, 6 if indexing else 4)
                if index:
                    name = self._entry(index)[0]
                else:
                    name, at = self._string(block, at)
                value, at = self._string(block, at)
                fields.append((name, value))
                if indexing:
                    self.table.insert(0, (name, value))
                    self._evict()
        return fields

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(_STATIC):
            return _STATIC[index - 1]
        if 0 < index - len(_STATIC) <= len(self.table):
            return self.table[index - len(_STATIC) - 1]
        raise Broken(f"an HPACK index {index} that is in no table")

    def _evict(self) -> None:
        while sum(len(name) + len(value) + 32 for name, value in self.table) > self.limit:
            self.table.pop()

    def _integer(self, block: bytes, at: int, bits: int) -> tuple[int, int]:
        top = (1 << bits) - 1
        value = block[at] & top
        at += 1
        if value < top:
            return value, at
        for shift in range(0, 28, 7):
            if at >= len(block):
                raise Broken("an HPACK integer cut short")
            byte = block[at]
            at += 1
            value += (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, at
        raise Broken("an HPACK integer of more than 4 bytes")

    def _string(self, block: bytes, at: int) -> tuple[str, int]:
        if at >= len(block):
            raise Broken("an HPACK string cut short")
        coded = bool(block[at] & 0x80)
        length, at = self._integer(block, at, 7)
        if at + length > len(block):
            raise Broken("an HPACK string cut short")
        raw = block[at : at + length]
        text = self._huffman(raw) if coded else raw
        return text.decode("latin-1"), at + length

    def _huffman(self, raw: bytes) -> bytes:
        if self.huffman is None:
            self.huffman = _huffman_codes()
        out = bytearray()
        code = length = 0
        for byte in raw:
            for shift in range(7, -1, -1):
                code = code << 1 | (byte >> shift) & 1
                length += 1
                symbol = self.huffman.get((length, code))
                if symbol is not None:
                    if symbol == 256:
                        raise Broken("an HPACK string holding the EOS code")
                    out.append(symbol)
                    code = length = 0
                elif length > 30:
                    raise Broken("an HPACK string with a code no symbol has")
        if length > 7 or code != (1 << length) - 1:
            raise Broken("an HPACK string whose padding is not the EOS code's first bits")
        return bytes(out)
