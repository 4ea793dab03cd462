"""Binance's WebSocket API (``ws-fapi``) as the order transport: one signed socket, requests by id.

``QUANTUM_ORDER_TRANSPORT=websocket`` sends the order requests (``order.place``, ``order.status``,
``order.cancel``, ``algoOrder.place``, ``algoOrder.cancel``) over one long-lived socket instead of
an HTTP request each; everything else stays on REST. A request is ``{"id", "method", "params"}``
with ``apiKey``, ``timestamp`` and ``recvWindow`` added and signed like REST (HMAC hex, or the
Ed25519 / RSA key's base64 signature) over the params sorted by name; the answer carries
``status`` and ``result`` or ``error``, and ``rateLimits`` (the usage the pacer follows).

With an Ed25519 key the connection is authenticated once, right after it opens, by
``session.logon`` (the only key type Binance accepts for it): the requests then carry no
``apiKey`` and no signature (their ``timestamp`` and ``recvWindow`` still), which saves the
Ed25519 signature (~85 µs of CPU) on every order. A refused logon leaves every request signed.

The same unknown-outcome rules as REST: a request that left and got no answer (a timeout, the
socket closing) raises :class:`Unanswered`, one whose answer is not Binance's envelope (no integer
``status``, a 200 without ``result``, an ``error`` that is not an object) :class:`Unreadable`; the
gateway turns either into an unknown outcome for an order (looked up by client id, never re-sent
blindly) and asks a read again over REST. A frame that cannot be read at all (not JSON, or not an
object) answered one of the pending requests, and which one cannot be told: the connection is
closed, so every pending request is :class:`Unanswered` at once instead of waiting out its
timeout. An answer whose id matches no pending request (a late one, or Binance's ``"id": null``)
is dropped. While the socket is down, requests go over REST; it reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from quantum_exec.core.aio import cancel_task
from quantum_exec.core.backoff import Backoff
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

RECONNECT = Backoff(base_s=0.2, cap_s=5.0)
# Binance closes a connection after 24 h; reconnect a little earlier, between requests.
MAX_CONNECTION_S = 23 * 3600.0
ANSWER_FRAMES = frozenset({aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY})


class NotConnected(Exception):
    """The socket is down: nothing was sent (the caller uses REST)."""


class Unanswered(Exception):
    """The request left and no answer came (timeout or the socket closed): its outcome is unknown."""


class Unreadable(Exception):
    """An answer came that is not Binance's envelope: the request's outcome is unknown."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of the WebSocket API: ``status`` and the ``result``, or the error's code and msg."""

    status: int
    result: Any = None
    code: int | None = None
    msg: str = ""
    rate_limits: Any = None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Answer:
        """Read a decoded answer's envelope; :class:`Unreadable` when it is not Binance's."""
        status, limits = body.get("status"), body.get("rateLimits")
        if not isinstance(status, int) or isinstance(status, bool):
            raise Unreadable(f"status {status!r}")
        if status == 200:
            if "result" not in body:
                raise Unreadable("status 200 without a result")
            return cls(status, result=body["result"], rate_limits=limits)
        error = body.get("error")
        if not isinstance(error, dict):
            raise Unreadable(f"status {status} without an error object")
        code = error.get("code")
        return cls(
            status,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            msg=str(error.get("msg", "")),
            rate_limits=limits,
        )


def decode_frame(raw: str | bytes) -> dict[str, Any] | None:
    """A text frame as the answer object it should be; None when it is not JSON or not an object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


class WsApi:
    """One WebSocket API connection (see the module docstring)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        sign: Callable[[str], str],
        *,
        timeout_s: float,
        recv_window_ms: int,
        clock_offset_ms: Callable[[], int],
        logon: bool = False,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._sign = sign
        self._timeout_s = timeout_s
        self._recv_window_ms = recv_window_ms
        self._offset = clock_offset_ms
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        # session.logon on every new connection (Ed25519 keys); True while the current one is.
        self._logon = logon
        self._logon_task: asyncio.Task[None] | None = None
        self.logged_on = False

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def start(self, wait_s: float = 5.0) -> None:
        """Connect (in the background from then on); waits up to ``wait_s`` for the first socket."""
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="ws-api")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait_s)

    async def close(self) -> None:
        self._closing = True
        await cancel_task(self._logon_task)
        await cancel_task(self._task)
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self._fail_pending("closed")

    async def request(self, method: str, params: dict[str, str]) -> Answer:
        """Send one signed request and return its answer. :class:`NotConnected` before sending,
        :class:`Unanswered` or :class:`Unreadable` after."""
        ws = self._ws
        if ws is None or ws.closed:
            raise NotConnected(method)
        stamped = {
            **params,
            "recvWindow": str(self._recv_window_ms),
            "timestamp": str(int(time.time() * 1000) + self._offset()),
        }
        return await self._send(ws, method, stamped if self.logged_on else self._signed(stamped))

    def _signed(self, params: dict[str, str]) -> dict[str, str]:
        signed = {**params, "apiKey": self._api_key}
        payload = "&".join(f"{k}={v}" for k, v in sorted(signed.items()))
        signed["signature"] = self._sign(payload)
        return signed

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, method: str, signed: dict[str, str]) -> Answer:
        ident = f"qx{next(self._ids)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = answer
        try:
            try:
                # A text frame, as Binance's WebSocket API expects JSON.
                await ws.send_str(orjson.dumps({"id": ident, "method": method, "params": signed}).decode())
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                # The frame may or may not have left: the caller must treat it as unknown.
                raise Unanswered(f"{method}: send failed ({type(exc).__name__})") from None
            try:
                body = await asyncio.wait_for(answer, self._timeout_s)
            except TimeoutError:
                raise Unanswered(f"{method}: no answer in {self._timeout_s:g} s") from None
            try:
                return Answer.of(body)
            except Unreadable as exc:
                raise Unreadable(f"{method}: unreadable answer ({exc})") from None
        finally:
            self._pending.pop(ident, None)

    async def _run(self) -> None:
        waits = RECONNECT.delays()
        assert self._session is not None
        while not self._closing:
            why = "the socket closed"
            try:
                async with self._session.ws_connect(self._url, heartbeat=20.0, autoping=True) as ws:
                    self._ws = ws
                    if self._logon:
                        # Answers are read by this loop: the logon waits in a task beside it.
                        self._logon_task = asyncio.create_task(self._log_on(ws), name="ws-api-logon")
                    else:
                        self._connected.set()
                    metrics.WS_API_CONNECTED.set(1)
                    log.info("ws_api.connected", url=self._url)
                    waits = RECONNECT.delays()
                    opened = time.monotonic()
                    async for message in ws:
                        if message.type in ANSWER_FRAMES and not self._deliver(message.data):
                            why = "an unreadable frame closed the socket"
                            break  # the pending requests are unanswered (finally)
                        if time.monotonic() - opened > MAX_CONNECTION_S and not self._pending:
                            break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("ws_api.connect_failed", url=self._url, error=type(exc).__name__)
            except Exception:
                # Never dies silently: logged, the pending requests unanswered, and it reconnects.
                log.exception("ws_api.reader_failed", url=self._url)
            finally:
                self._ws = None
                self.logged_on = False
                self._connected.clear()
                metrics.WS_API_CONNECTED.set(0)
                self._fail_pending(why)
            if self._closing:
                return
            metrics.WS_API_RECONNECTS.inc()
            await asyncio.sleep(next(waits))

    async def _log_on(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Authenticate the connection (``session.logon``); requests wait for it (``connected``)."""
        stamped = {
            "recvWindow": str(self._recv_window_ms),
            "timestamp": str(int(time.time() * 1000) + self._offset()),
        }
        try:
            answer = await self._send(ws, "session.logon", self._signed(stamped))
        except Unanswered as exc:
            log.warning("ws_api.logon_unanswered", error=str(exc))
            return  # the socket is going away: the next one logs on again
        except Unreadable as exc:
            log.warning("ws_api.logon_unreadable", error=str(exc))  # requests stay signed
        else:
            if answer.status == 200:
                self.logged_on = True
                log.info("ws_api.logged_on")
            else:
                log.warning("ws_api.logon_refused", code=answer.code, msg=answer.msg)
        if self._ws is ws:
            self._connected.set()

    def _deliver(self, raw: str | bytes) -> bool:
        """Hand an answer to its request; False when the frame cannot be read (close the socket)."""
        body = decode_frame(raw)
        if body is None:
            log.warning("ws_api.unreadable_frame", pending=len(self._pending), size=len(raw))
            return False
        waiter = self._pending.get(str(body.get("id")))
        if waiter is None or waiter.done():
            log.warning("ws_api.unmatched_answer", id=str(body.get("id")), status=str(body.get("status")))
        else:
            waiter.set_result(body)
        return True

    def _fail_pending(self, why: str) -> None:
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(Unanswered(why))
