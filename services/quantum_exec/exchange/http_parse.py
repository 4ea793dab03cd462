"""An HTTP/1.1 response parser, fed bytes as they arrive (pure: no I/O).

Just what a client of a JSON API needs, but framed by the rules of RFC 9112 section 6.3: a
``Transfer-Encoding`` ending in ``chunked`` wins over ``Content-Length``; any other transfer coding,
or neither header, means the body runs to the end of the connection; 1xx, 204 and 304 carry no
body; interim 1xx responses are skipped. Anything malformed raises :class:`ProtocolError`: the
caller cannot know what the server did with its request, which is the point of raising.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum, auto

MAX_HEAD_BYTES = 64 * 1024
MAX_LINE_BYTES = 4 * 1024
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class ProtocolError(Exception):
    """The bytes received are not an HTTP/1.x response this parser can frame."""


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively; a repeated header's values joined by ``, ``."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # keys lower-cased

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class _State(Enum):
    HEAD = auto()
    LENGTH = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    CHUNK_END = auto()
    TRAILERS = auto()
    UNTIL_CLOSE = auto()
    DONE = auto()


_NO_HEADERS = Headers({})


class ResponseParser:
    """One response: :meth:`feed` the bytes received, :meth:`feed_eof` at the end of the stream.

    When either returns True the response is complete: ``status``, ``headers``, ``body`` and
    ``keep_alive`` (whether the connection may carry another request) are set. ``text`` is the
    body decoded, for python-binance's error type, which reads ``response.text``.
    """

    __slots__ = ("_buffer", "_parts", "_remaining", "_state", "body", "headers", "keep_alive", "status")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._remaining = 0
        self._state = _State.HEAD
        self.status = 0
        self.headers = _NO_HEADERS
        self.body = b""
        self.keep_alive = False

    @property
    def started(self) -> bool:
        """True once any byte of the response arrived."""
        return self._state is not _State.HEAD or bool(self._buffer) or self.status != 0

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True when the response is complete."""
        if self._state is _State.DONE:
            # We never pipeline: bytes past the response mean the connection is not to be trusted.
            self.keep_alive = False
            return True
        buffer = self._buffer
        buffer += data
        while True:
            state = self._state
            if state is _State.HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise ProtocolError("response head too long")
                    return False
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state is _State.LENGTH or state is _State.CHUNK_DATA:
                take = min(len(buffer), self._remaining)
                if take == 0:
                    return False
                self._parts.append(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if self._remaining:
                    return False
                self._state = _State.CHUNK_END if state is _State.CHUNK_DATA else _State.DONE
            elif state is _State.CHUNK_SIZE:
                line = self._line(buffer)
                if line is None:
                    return False
                size = _chunk_size(line)
                if size:
                    self._remaining = size
                    self._state = _State.CHUNK_DATA
                else:
                    self._state = _State.TRAILERS
            elif state is _State.CHUNK_END:
                if len(buffer) < 2:
                    return False
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del buffer[:2]
                self._state = _State.CHUNK_SIZE
            elif state is _State.TRAILERS:
                line = self._line(buffer)
                if line is None:
                    return False
                if not line:
                    self._state = _State.DONE
            elif state is _State.UNTIL_CLOSE:
                if buffer:
                    self._parts.append(bytes(buffer))
                    buffer.clear()
                return False
            if self._state is _State.DONE:
                return self._finish()

    def feed_eof(self) -> bool:
        """The server closed its side: True when that completes the response, else ProtocolError."""
        if self._state is _State.UNTIL_CLOSE:
            self._state = _State.DONE
            return self._finish()
        if self._state is _State.DONE:
            self.keep_alive = False
            return True
        if self.started:
            raise ProtocolError(f"connection closed mid-response ({self._state.name.lower()})")
        raise ProtocolError("connection closed before any response")

    def _finish(self) -> bool:
        self.body = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        if self._buffer:
            self.keep_alive = False  # bytes past the response: see feed()
        return True

    def _line(self, buffer: bytearray) -> bytes | None:
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > MAX_LINE_BYTES:
                raise ProtocolError("chunk line too long")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return line

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        if rest[3:4] not in (b"", b" "):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
            key = name.decode("latin-1").lower()
            text = value.strip(b" \t").decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected protocol switch (101)")
            return  # interim response: the real one follows
        self.status = status
        self.headers = Headers(fields)
        connection = fields.get("connection")
        tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
        self.keep_alive = "keep-alive" in tokens if version == b"HTTP/1.0" else "close" not in tokens
        self._frame(status, fields)

    def _frame(self, status: int, fields: dict[str, str]) -> None:
        transfer = fields.get("transfer-encoding")
        length = fields.get("content-length")
        if status in (204, 304):
            self._state = _State.DONE
        elif transfer is not None:
            if length is not None:
                self.keep_alive = False  # RFC 9112 6.3: both present, close after this one
            if transfer.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._state = _State.CHUNK_SIZE
            else:
                self._state = _State.UNTIL_CLOSE
                self.keep_alive = False
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            value = values.pop()
            if values or not (value.isascii() and value.isdigit()):  # "²".isdigit(), int() refuses it
                raise ProtocolError(f"bad Content-Length: {length[:40]!r}")
            self._remaining = int(value)
            self._state = _State.LENGTH if self._remaining else _State.DONE
        else:
            self._state = _State.UNTIL_CLOSE
            self.keep_alive = False


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not digits or len(digits) > 16 or not _HEX_DIGITS.issuperset(digits):
        raise ProtocolError(f"bad chunk size: {line[:40]!r}")
    return int(digits, 16)
