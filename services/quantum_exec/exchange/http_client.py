"""A lean HTTP/1.1 keep-alive client for the REST order path: one asyncio Protocol per connection.

aiohttp's client costs the order path about a sixth of the service's CPU (request and response
objects, a stream reader, a timeout context, header multidicts, per request). The signed path
needs far less: a request already built as one bytes buffer, written to a kept-alive connection,
and a response framed by :mod:`.http_parse`. Works with uvloop and the default loop alike.

What a caller may conclude from each failure (the gateway maps them; promise 2 rests on this):

- :class:`NotSent`: no connection could be made; not one byte of the request left.
- :class:`NoAnswer`: the request was written (or may have been) and no complete answer came back:
  the connection was closed or reset, or the answer could not be framed. Its outcome is unknown.
- :class:`TimeoutError`: no complete answer within the request's time; unknown outcome (as a
  timeout with aiohttp's total timeout was).

A request is never re-sent here. A kept-alive connection is reused only while it is known to be
open: one the server closed (EOF or reset seen), one that received bytes while idle, and one
idle longer than ``idle_s`` (aiohttp's keep-alive default: shorter than servers' idle timeouts,
so the server rarely closes a connection just as a request is written to it) are dropped
before a request is written. If the close races the write anyway, that is a :class:`NoAnswer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from typing import cast
from urllib.parse import urlsplit

from quantum_exec.exchange.http_parse import ProtocolError, ResponseParser

DEFAULT_LIMIT = 100  # open connections per pool (aiohttp's connector default)
DEFAULT_IDLE_S = 15.0  # aiohttp's keep-alive default


class HttpError(Exception):
    """A request that got no HTTP answer (the subclasses say whether it may have been sent)."""


class NotSent(HttpError):
    """No connection: nothing of the request was sent."""


class NoAnswer(HttpError):
    """The request may have been sent; no complete answer came back."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one request at a time."""

    __slots__ = ("idle_since", "open", "parser", "transport", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[ResponseParser] | None = None
        self.open = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they are ones in kind.
        self.transport = cast(asyncio.Transport, transport)
        self.open = True

    def send(self, data: bytes, waiter: asyncio.Future[ResponseParser]) -> None:
        """Write one request; its response completes ``waiter``."""
        assert self.transport is not None
        self.parser = ResponseParser()
        self.waiter = waiter
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            # Bytes while idle (a server's timeout notice before it closes): not reusable.
            self.close()
            return
        try:
            done = parser.feed(data)
        except ProtocolError as exc:
            self._fail(NoAnswer(f"unreadable answer: {exc}"))
            return
        if done:
            self._complete(parser)

    def eof_received(self) -> bool | None:
        self.open = False
        parser = self.parser
        if parser is not None:
            try:
                done = parser.feed_eof()
            except ProtocolError as exc:
                self._fail(NoAnswer(str(exc)))
                return None
            if done:
                self._complete(parser)
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.parser is not None:
            reason = type(exc).__name__ if exc is not None else "closed by the server"
            self._fail(NoAnswer(f"connection lost before the answer: {reason}"))

    def _complete(self, parser: ResponseParser) -> None:
        self.parser = None
        if not parser.keep_alive:
            self.open = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(parser)

    def _fail(self, error: NoAnswer) -> None:
        self.parser = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()  # nothing of ours is worth flushing on a connection given up

    @property
    def usable(self) -> bool:
        transport = self.transport
        return self.open and transport is not None and not transport.is_closing()


def _expire(waiter: asyncio.Future[ResponseParser]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no complete answer in time"))


class Http1Pool:
    """Kept-alive connections to one origin (``http://`` or ``https://`` host and port)."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int = DEFAULT_LIMIT,
        idle_s: float = DEFAULT_IDLE_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        default_port = 443 if self.tls else 80
        self.port = parts.port or default_port
        name = f"[{self.host}]" if ":" in self.host else self.host
        # The Host header, as a client sends it: the port only when it is not the scheme's.
        self.authority = name if self.port == default_port else f"{name}:{self.port}"
        self._ssl_context = ssl_context
        self._limit = limit
        self._idle_s = idle_s
        self._idle: list[_Connection] = []  # last in, first out: the warmest connection first
        self._open = 0  # connections open or being opened, idle ones included
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def request(self, data: bytes, timeout_s: float) -> ResponseParser:
        """Send one request (``data``: the whole request, head and body) and read its answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        conn = self._take_idle(loop.time())
        if conn is None:
            conn = await self._open_connection(loop, deadline)
        waiter: asyncio.Future[ResponseParser] = loop.create_future()
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            try:
                conn.send(data, waiter)
            except Exception as exc:  # the transport refused the bytes; some may have left
                raise NoAnswer(f"write failed: {type(exc).__name__}") from None
            reply = await waiter
        except BaseException:
            conn.close()  # an answer may still be on its way: the connection cannot be reused
            self._release(conn)
            raise
        finally:
            timer.cancel()
        self._release(conn)
        return reply

    async def close(self) -> None:
        """Close the idle connections now and each one in use when its request ends; new requests
        raise :class:`NotSent`."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self._open -= 1
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _take_idle(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable and now - conn.idle_since < self._idle_s:
                return conn
            conn.close()
            self._open -= 1
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.usable and not self._closed:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()
            self._open -= 1
        self._release_slot()

    async def _open_connection(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        async with asyncio.timeout_at(deadline):
            while True:
                if self._closed:
                    raise NotSent("the HTTP client is closed")
                conn = self._take_idle(loop.time())
                if conn is not None:
                    return conn
                if self._open < self._limit:
                    break
                waiter: asyncio.Future[None] = loop.create_future()
                self._slot_waiters.append(waiter)
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._release_slot()  # woken, then timed out: pass the free slot on
                    raise
            self._open += 1
            try:
                return await self._connect(loop)
            except BaseException:
                self._open -= 1
                self._release_slot()
                raise

    def _release_slot(self) -> None:
        """Wake one request waiting for a connection (one was returned or closed)."""
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        context = None
        if self.tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        try:
            transport, conn = await loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context is not None else None,
            )
        except OSError as exc:
            # Refused, unreachable, not resolved, the kernel's connect timeout, TLS refused. (The
            # request's own deadline arrives here as a cancellation, a TimeoutError only above.)
            raise NotSent(f"cannot connect to {self.authority}: {type(exc).__name__}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn
