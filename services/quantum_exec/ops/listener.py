"""The listening socket of the metrics port, hardened against clients that hold or flood it.

aiohttp parses and answers the requests (its ``AppRunner`` server is the protocol factory); this
module owns the asyncio server around it so that:

- at most ``max_connections`` are open at once; one more is answered ``503`` with ``Retry-After``
  and closed at once. Idle sockets must not take the file descriptors the exchange and Redis
  connections need, so a flood fails the metrics port, never an intent;
- a connection that has not sent a complete request head within ``head_timeout_s`` of connecting
  is closed (a client that connects and says nothing, or trickles its headers); between requests
  aiohttp's keep-alive timeout, set to the same value, does the same;
- a malformed request is one WARNING line (remote address and parser error), at most one a
  second with the count of those left out, instead of aiohttp's traceback at ERROR per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from quantum_exec.ops import metrics
from quantum_exec.ops.logs import StructLogger, get_logger

log = get_logger(__name__)

MAX_CONNECTIONS: Final = 64
HEAD_TIMEOUT_S: Final = 5.0
_HEAD_END: Final = b"\r\n\r\n"
_REFUSAL_BODY: Final = b'{"error":{"message":"too many connections to the metrics port: retry later"}}'
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


class RateLimitedLog:
    """One event at WARNING at most every ``interval_s``; the next line counts those left out."""

    def __init__(self, logger: StructLogger, event: str, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._event = event
        self._interval_s = interval_s
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self._suppressed += 1
            return
        self._last = now
        if self._suppressed:
            fields["suppressed"] = self._suppressed
            self._suppressed = 0
        self._logger.warning(self._event, **fields)


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger: parser errors become one rate-limited WARNING line each; a
    handler's own exception is still logged with its traceback at ERROR (that is a bug)."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.bad_requests = RateLimitedLog(log, "http.bad_request")

    def _malformed(self, args: tuple[Any, ...], exc: HttpProcessingError) -> None:
        metrics.HTTP_REFUSED.labels(reason="bad_request").inc()
        remote = args[0] if args else None
        self.bad_requests.warning(remote=str(remote), status=exc.code, error=exc.message)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        # aiohttp logs a bad method on a connection's first request (non-HTTP traffic) here.
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._malformed(args, exc)
            return
        super().debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._malformed(args, exc)
            return
        super().exception(msg, *args, **kwargs)


class _Refused(asyncio.Protocol):
    """A connection past the cap: the 503 is written and the socket closed, nothing is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.write(_REFUSAL)
        stream.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted, with a deadline for the first request head."""

    def __init__(self, inner: asyncio.Protocol, listener: Listener) -> None:
        self._inner = inner
        self._listener = listener
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._seen = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._listener.head_timeout_s, self._expire)
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._deadline = None
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            seen = self._seen + data
            if _HEAD_END in seen:
                self._deadline.cancel()
                self._deadline = None
                self._seen = b""
            else:
                self._seen = seen[-len(_HEAD_END) :]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._transport = None
        self._listener.closed()
        self._inner.connection_lost(exc)


class Listener:
    """Serves ``app`` on ``host``:``port`` with the limits above; ``port`` is the bound one."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout_s: float = HEAD_TIMEOUT_S,
    ) -> None:
        self._host = host
        self._requested_port = port
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.open_connections = 0
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=head_timeout_s,
            logger=ServerLog(),
        )
        self._server: asyncio.Server | None = None
        self._refusals = RateLimitedLog(log, "http.connection_refused")
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the address is taken."""
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None
        factory: Callable[[], asyncio.BaseProtocol] = lambda: self._accept(handlers)  # noqa: E731
        try:
            self._server = await asyncio.get_running_loop().create_server(
                factory, self._host, self._requested_port, reuse_address=True
            )
        except BaseException:
            await self._runner.cleanup()
            raise
        sockets = self._server.sockets
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port

    def _accept(self, handlers: Callable[[], asyncio.Protocol]) -> asyncio.BaseProtocol:
        if self.open_connections >= self.max_connections:
            metrics.HTTP_REFUSED.labels(reason="connection_cap").inc()
            self._refusals.warning(open=self.open_connections, limit=self.max_connections)
            return _Refused()
        self.open_connections += 1
        return _Counted(handlers(), self)

    def closed(self) -> None:
        self.open_connections -= 1

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._runner.cleanup()
