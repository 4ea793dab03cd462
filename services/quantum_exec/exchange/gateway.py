"""The Binance USD-M futures adapter: python-binance's keys and session, a lean request path.

Everything about talking to the exchange lives here: base URLs per environment, signing (with
python-binance's helpers, on the lean path of :mod:`.signed`), server-time offset, pacing below
the rate limits, reading the rate-limit headers of *each* response, turning Binance errors into
the typed errors of :mod:`quantum_exec.core.errors`, and parsing replies into the records of
:mod:`quantum_exec.exchange.wire`. Reads are retried here; state-changing requests are never
re-sent here: an unknown outcome is raised for the executor to resolve by client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException
from Crypto.PublicKey import RSA

from quantum_exec.core.aio import cancel_task
from quantum_exec.core.errors import (
    ClockSkewError,
    ListenKeyGone,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UnknownOutcomeError,
)
from quantum_exec.core.ids import role_of
from quantum_exec.core.rules import fmt
from quantum_exec.core.settings import OrderTransport, Settings
from quantum_exec.exchange.codes import (
    ALREADY_DONE_CODES,
    LISTEN_KEY_GONE,
    NOT_FOUND_CODES,
    RULES_STALE_CODES,
    error_of,
    header_int,
    typed_error,
)
from quantum_exec.exchange.endpoints import (
    EP_BALANCE,
    EP_CANCEL_ALGO,
    EP_CANCEL_ORDER,
    EP_COMMISSION_RATE,
    EP_EXCHANGE_INFO,
    EP_GET_ALGO,
    EP_GET_ORDER,
    EP_INCOME,
    EP_LEVERAGE_BRACKET,
    EP_LISTEN_KEY_CLOSE,
    EP_LISTEN_KEY_KEEP,
    EP_LISTEN_KEY_NEW,
    EP_MARK_PRICE,
    EP_NEW_ALGO,
    EP_NEW_ORDER,
    EP_OPEN_ALGO,
    EP_OPEN_ORDERS,
    EP_POSITION_MODE,
    EP_POSITION_RISK,
    EP_SET_LEVERAGE,
    EP_SET_MARGIN,
    EP_TIME,
    EP_USER_TRADES,
    WS_API_METHODS,
    Endpoint,
    ws_api_url,
)
from quantum_exec.exchange.fencing import ensure_owner
from quantum_exec.exchange.http_client import NoAnswer, NotSent
from quantum_exec.exchange.keys import load_private_key
from quantum_exec.exchange.pacing import ROLE_PRIORITY, Priority, RateLimiter
from quantum_exec.exchange.rules_cache import RulesCache
from quantum_exec.exchange.signed import RestSender
from quantum_exec.exchange.wire import (
    AlgoOrder,
    Income,
    Order,
    OrderSide,
    OrderType,
    Position,
    Trade,
    dec,
    parse_max_leverage,
)
from quantum_exec.exchange.ws_api import NotConnected, Unanswered, Unreadable, WsApi
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

# What a parser raises on an answer it cannot read (wire.py names the field in a PermanentError).
UNREADABLE = (KeyError, TypeError, ValueError, PermanentError)
READ_RETRIES = 2
RATE_LIMIT_RETRIES = 3
TIME_SYNC_INTERVAL_S = 300.0
UNREACHABLE_PROBE_S = 5.0


def _algo_id_of(raw: Any) -> int:
    """The ``algoId`` an algo order cancel answers with (``{"algoId", "clientAlgoId", "code", "msg"}``)."""
    return int(raw["algoId"])


def _priority(ep: Endpoint, params: Mapping[str, str] | None) -> Priority:
    """An order request's place when pacing holds several: by the role its client id names."""
    if not ep.orders or not params:
        return Priority.ENTRY
    client_id = params.get("newClientOrderId") or params.get("clientAlgoId")
    role = role_of(client_id) if client_id else None
    return ROLE_PRIORITY[role] if role is not None else Priority.ENTRY


class BinanceGateway:
    """Typed, instrumented, paced access to the USD-M futures REST API."""

    def __init__(self, settings: Settings, base_url: str) -> None:
        self._settings = settings
        self.base_url = base_url
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        secret = settings.api_secret.get_secret_value() if settings.api_secret else ""
        private = None
        if settings.private_key_file is not None:
            passphrase = settings.private_key_passphrase
            private = load_private_key(
                settings.private_key_file, passphrase.get_secret_value() if passphrase else None
            )
        # python-binance's client holds the keys, the signing helpers, the clock offset and the
        # one HTTP session; requests go out by the lean path of :mod:`.signed`.
        self._client = AsyncClient(key, secret)
        if private is not None:
            # An Ed25519 or RSA key signs instead of the HMAC secret (python-binance reads these two).
            self._client.PRIVATE_KEY = private
            self._client._is_rsa = isinstance(private, RSA.RsaKey)
        self._client.REQUEST_RECVWINDOW = settings.recv_window_ms
        self._rest = RestSender(
            self._client, base_url, timeout_s=settings.request_timeout_s, on_headers=self._observe_headers
        )
        self.limiter = RateLimiter(enabled=settings.rate_limit_pacing)
        self.rules = RulesCache(self._fetch_exchange_info, settings.exchange_info_refresh_s)
        self._max_leverage: dict[str, int | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.hedge_mode = False
        # False from a failure to connect (or no answer) until the next answered request.
        self.reachable = True
        # QUANTUM_ORDER_TRANSPORT=websocket: the order requests' socket (None: REST only).
        self.ws: WsApi | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Sync the clock, load the rules and the position mode, start background refreshes."""
        await self.sync_time()
        await self.rules.load()
        self.limiter.set_limits(self.rules.raw_limits)
        mode = await self._call(EP_POSITION_MODE)
        self.hedge_mode = bool(mode.get("dualSidePosition")) if isinstance(mode, dict) else False
        if self._settings.order_transport is OrderTransport.WEBSOCKET:
            self.ws = WsApi(
                ws_api_url(self._settings),
                self._client.API_KEY,
                self._ws_signature,
                timeout_s=self._settings.request_timeout_s,
                recv_window_ms=self._settings.recv_window_ms,
                clock_offset_ms=lambda: int(self._client.timestamp_offset),
                # Binance authenticates a connection by session.logon with Ed25519 keys only.
                logon=bool(self._client.PRIVATE_KEY) and not self._client._is_rsa,
            )
            await self.ws.start()
        self._tasks = [
            asyncio.create_task(self.rules.run(), name="rules-refresh"),
            asyncio.create_task(self._time_sync_loop(), name="time-sync"),
        ]

    async def close(self) -> None:
        """Stop background work and close the HTTP session; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_task(task)
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
        await self._rest.close()
        with contextlib.suppress(Exception):
            await self._client.close_connection()

    def _ws_signature(self, payload: str) -> str:
        """A WebSocket API request's signature: HMAC hex, or the Ed25519 / RSA key's base64."""
        client = self._client
        if client.PRIVATE_KEY:
            return str(
                client._rsa_signature(payload) if client._is_rsa else client._ed25519_signature(payload)
            )
        return str(client._hmac_signature(payload))

    async def sync_time(self) -> None:
        """Set the timestamp offset from the server clock (-1021 triggers this too)."""
        raw = await self._call(EP_TIME, resync=False)
        received_ms = time.time() * 1000
        # Server time at its reply minus our time at receipt slightly underestimates the offset,
        # so our timestamps lean behind the server's: never "1000ms ahead of server time".
        offset_ms = int(raw["serverTime"] - received_ms)
        self._client.timestamp_offset = offset_ms
        metrics.CLOCK_OFFSET.set(offset_ms / 1000)

    async def _time_sync_loop(self) -> None:
        # While the exchange is unreachable this doubles as the probe that notices its return.
        while True:
            await asyncio.sleep(TIME_SYNC_INTERVAL_S if self.reachable else UNREACHABLE_PROBE_S)
            try:
                await self.sync_time()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("time.sync_failed", error=type(exc).__name__)

    # -- the one request path ----------------------------------------------------------------

    def _observe_headers(self, headers: Mapping[str, str]) -> None:
        weight = header_int(headers, "X-MBX-USED-WEIGHT-1M")
        if weight is not None:
            metrics.USED_WEIGHT_1M.set(weight)
            self.limiter.observe(weight)
        orders_10s = header_int(headers, "X-MBX-ORDER-COUNT-10S")
        if orders_10s is not None:
            metrics.ORDER_COUNT_10S.set(orders_10s)
        orders_1m = header_int(headers, "X-MBX-ORDER-COUNT-1M")
        if orders_1m is not None:
            metrics.ORDER_COUNT_1M.set(orders_1m)

    async def _call(
        self,
        ep: Endpoint,
        params: Mapping[str, str] | None = None,
        *,
        weight: int | None = None,
        resync: bool = True,
        parse: Callable[[Any], T] | None = None,
        rest_only: bool = False,
    ) -> Any:
        """Send one request; retries what is safe to retry and raises a typed error otherwise.

        A request that changes state (an order, a cancel, a leverage or margin-type change) is
        fenced right before it leaves (after pacing): a caller that lost its intent's lease sends
        nothing (:mod:`.fencing`). Its unknown outcomes carry ``sent_at``, the moment it really
        left, and an answer ``parse`` cannot read is an unknown outcome too.
        """
        ws_method = WS_API_METHODS.get(ep) if self.ws is not None and rest_only is False else None
        if ws_method is not None and self.ws is not None and self.ws.connected:
            try:
                return await self._ws_call(ep, ws_method, params, weight=weight, parse=parse)
            except NotConnected:
                pass  # went down before sending: REST below
        label = f"/fapi/v{ep.version}/{ep.path}"
        priority = _priority(ep, params)
        read_attempts = 0
        rate_limited = 0
        while True:
            await self.limiter.acquire(ep.weight if weight is None else weight, ep.orders, priority)
            if ep.fenced:
                await ensure_owner(f"{ep.method.upper()} {label}")
            sent_at = time.monotonic()
            started = time.perf_counter()
            try:
                result = await self._rest.send(ep, params)
            except BinanceAPIException as exc:
                self.reachable = True
                error = typed_error(exc, order=ep.orders > 0, sent_at=sent_at)
                outcome = (
                    "rate_limited"
                    if isinstance(error, RateLimitedError)
                    else ("unknown" if isinstance(error, UnknownOutcomeError) else "error")
                )
                self._record(ep, label, outcome, started)
                metrics.EXCHANGE_ERRORS.labels(code=str(exc.code or exc.status_code)).inc()
                if exc.code in RULES_STALE_CODES:
                    self.rules.request_refresh()
                if isinstance(error, RateLimitedError) and rate_limited < RATE_LIMIT_RETRIES:
                    # A 429/418 rejects the request before it is processed: safe to send again later.
                    rate_limited += 1
                    self.limiter.pause(error.retry_after_s, reason=f"http_{error.http_status or 429}")
                    log.warning(
                        "exchange.rate_limited",
                        endpoint=label,
                        retry_after_s=error.retry_after_s,
                        status=error.http_status,
                    )
                    continue
                if isinstance(error, ClockSkewError) and resync:
                    resync = False
                    log.warning("exchange.clock_skew", endpoint=label)
                    await self.sync_time()
                    continue
                if (
                    not ep.mutates
                    and isinstance(error, RetryableError | UnknownOutcomeError)
                    and (read_attempts < READ_RETRIES)
                ):
                    read_attempts += 1
                    await asyncio.sleep(0.05 * read_attempts)
                    continue
                raise error from None
            except NotSent as exc:
                # Never connected: nothing was sent, so even an order may be sent again.
                self._record(ep, label, "error", started)
                metrics.EXCHANGE_ERRORS.labels(code="connect").inc()
                self.reachable = False
                if not ep.mutates and read_attempts < READ_RETRIES:
                    read_attempts += 1
                    await asyncio.sleep(0.05 * read_attempts)
                    continue
                raise RetryableError(f"cannot connect to the exchange: {type(exc).__name__}") from None
            except (TimeoutError, NoAnswer, BinanceRequestException, ValueError) as exc:
                # Sent, but no usable answer: a state-changing request may have been executed.
                self._record(ep, label, "unknown", started)
                metrics.EXCHANGE_ERRORS.labels(code=type(exc).__name__).inc()
                self.reachable = False
                if not ep.mutates and read_attempts < READ_RETRIES:
                    read_attempts += 1
                    await asyncio.sleep(0.05 * read_attempts)
                    continue
                raise UnknownOutcomeError(
                    f"no usable answer from {ep.method.upper()} {label}: {type(exc).__name__}",
                    sent_at=sent_at,
                ) from None
            self._record(ep, label, "ok", started)
            self.reachable = True
            if parse is None:
                return result
            try:
                return parse(result)
            except UNREADABLE as exc:
                if not ep.mutates:
                    raise PermanentError(f"unreadable answer from {label}: {exc}") from None
                raise UnknownOutcomeError(
                    f"unreadable answer from {ep.method.upper()} {label}: {type(exc).__name__} {exc}",
                    sent_at=sent_at,
                ) from None

    async def _ws_call(
        self,
        ep: Endpoint,
        method: str,
        params: Mapping[str, str] | None,
        *,
        weight: int | None,
        parse: Callable[[Any], T] | None,
    ) -> Any:
        """One request over the WebSocket API, with REST's pacing, fencing and error rules."""
        assert self.ws is not None
        label = f"ws:{method}"
        await self.limiter.acquire(ep.weight if weight is None else weight, ep.orders, _priority(ep, params))
        if ep.fenced:
            await ensure_owner(label)
        sent_at = time.monotonic()
        started = time.perf_counter()
        try:
            answer = await self.ws.request(method, dict(params or {}))
        except Unanswered as exc:
            return await self._ws_unknown(ep, label, params, f"{method}: {exc}", sent_at, started, parse)
        except Unreadable as exc:
            self.reachable = True
            return await self._ws_unknown(ep, label, params, str(exc), sent_at, started, parse)
        self.reachable = True
        self._observe_rate_limits(answer.rate_limits)
        if answer.status == 200:
            try:
                value = answer.result if parse is None else parse(answer.result)
            except UNREADABLE as exc:
                why = f"unreadable answer from {label}: {type(exc).__name__} {exc}"
                return await self._ws_unknown(ep, label, params, why, sent_at, started, parse)
            self._record(ep, label, "ok", started)
            return value
        status, code = answer.status, answer.code
        failure = error_of(code, status, answer.msg, order=ep.orders > 0, sent_at=sent_at)
        outcome = "rate_limited" if isinstance(failure, RateLimitedError) else "error"
        self._record(ep, label, outcome, started)
        metrics.EXCHANGE_ERRORS.labels(code=str(code or status)).inc()
        if isinstance(failure, RateLimitedError):
            # Refused before processing: wait as told, then the REST path (which paces again).
            self.limiter.pause(failure.retry_after_s, reason=f"http_{status}")
            return await self._call(ep, params, weight=weight, parse=parse, rest_only=True)
        if isinstance(failure, ClockSkewError):
            await self.sync_time()
            return await self._call(ep, params, weight=weight, parse=parse, rest_only=True)
        raise failure

    async def _ws_unknown(
        self,
        ep: Endpoint,
        label: str,
        params: Mapping[str, str] | None,
        why: str,
        sent_at: float,
        started: float,
        parse: Callable[[Any], T] | None,
    ) -> Any:
        """No usable answer over the socket (none, or unreadable): the request may have been
        executed. A state-changing one is an unknown outcome (looked up by client id, never sent
        again here); a read is asked again over REST."""
        self._record(ep, label, "unknown", started)
        metrics.EXCHANGE_ERRORS.labels(code="ws_unknown").inc()
        if ep.mutates:
            raise UnknownOutcomeError(why, sent_at=sent_at)
        log.warning("exchange.ws_read_unusable", endpoint=label, detail=why)
        return await self._call(ep, params, weight=0, parse=parse, rest_only=True)

    def _observe_rate_limits(self, limits: Any) -> None:
        """The WebSocket API's ``rateLimits`` echo: the same usage REST reports in headers."""
        if not isinstance(limits, list):
            return
        for item in limits:
            if not isinstance(item, dict):
                continue
            kind, interval, count = item.get("rateLimitType"), item.get("interval"), item.get("count")
            if not isinstance(count, int):
                continue
            if kind == "REQUEST_WEIGHT" and interval == "MINUTE":
                metrics.USED_WEIGHT_1M.set(count)
                self.limiter.observe(count)
            elif kind == "ORDERS" and interval == "SECOND":
                metrics.ORDER_COUNT_10S.set(count)
            elif kind == "ORDERS" and interval == "MINUTE":
                metrics.ORDER_COUNT_1M.set(count)

    @staticmethod
    def _record(ep: Endpoint, label: str, outcome: str, started: float) -> None:
        method = ep.method.upper()
        metrics.EXCHANGE_LATENCY_BY.of(method, label).observe(time.perf_counter() - started)
        metrics.EXCHANGE_REQUESTS_BY.of(method, label, outcome).inc()

    # -- reads -------------------------------------------------------------------------------

    async def _fetch_exchange_info(self) -> dict[str, Any]:
        raw = await self._call(EP_EXCHANGE_INFO)
        if not isinstance(raw, dict):
            raise PermanentError("exchangeInfo is not an object")
        return raw

    async def mark_price(self, symbol: str) -> Decimal:
        raw = await self._call(EP_MARK_PRICE, {"symbol": symbol})
        return dec(raw.get("markPrice"), "markPrice")

    async def max_leverage(self, symbol: str) -> int | None:
        """The symbol's highest initial leverage (first bracket), cached after the first ask."""
        if symbol not in self._max_leverage:
            raw = await self._call(EP_LEVERAGE_BRACKET, {"symbol": symbol})
            self._max_leverage[symbol] = parse_max_leverage(raw, symbol)
        return self._max_leverage[symbol]

    async def positions(self, symbol: str | None = None) -> list[Position]:
        params = {"symbol": symbol} if symbol else None
        raw = await self._call(EP_POSITION_RISK, params)
        return [Position.parse(item) for item in raw or []]

    async def wallet_balance(self, asset: str = "USDT") -> Decimal:
        """The futures wallet's balance of ``asset`` (GET /fapi/v2/balance; zero when not listed)."""
        raw = await self._call(EP_BALANCE, None)
        for item in raw or []:
            if item.get("asset") == asset:
                return dec(item.get("balance"), "balance")
        return Decimal(0)

    async def position_amount(self, symbol: str) -> Decimal:
        """Net position of ``symbol`` (one-way mode: the BOTH side; hedge: LONG minus |SHORT|)."""
        total = Decimal(0)
        for position in await self.positions(symbol):
            if position.symbol == symbol:
                total += position.amount
        return total

    async def get_order(self, symbol: str, client_order_id: str) -> Order | None:
        """Look an order up by client id; None when the exchange says it does not exist."""
        try:
            order: Order = await self._call(
                EP_GET_ORDER, {"symbol": symbol, "origClientOrderId": client_order_id}, parse=Order.parse
            )
        except PermanentError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return order

    async def get_algo(self, client_algo_id: str) -> AlgoOrder | None:
        """Look a conditional order up by client algo id; None when it does not exist."""
        try:
            algo: AlgoOrder = await self._call(
                EP_GET_ALGO, {"clientAlgoId": client_algo_id}, parse=AlgoOrder.parse
            )
        except PermanentError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return algo

    async def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        params = {"symbol": symbol} if symbol else None
        raw = await self._call(EP_OPEN_ALGO, params, weight=1 if symbol else 40)
        items = raw.get("orders", raw) if isinstance(raw, dict) else raw
        return [AlgoOrder.parse(item) for item in items or []]

    async def user_trades(self, symbol: str, order_id: int) -> list[Trade]:
        raw = await self._call(EP_USER_TRADES, {"symbol": symbol, "orderId": str(order_id)})
        return [Trade.parse(item) for item in raw or []]

    async def taker_rate(self, symbol: str) -> Decimal:
        """The account's taker commission rate on ``symbol`` (GET /fapi/v1/commissionRate, weight 20)."""
        raw = await self._call(EP_COMMISSION_RATE, {"symbol": symbol})
        return Decimal(str(raw["takerCommissionRate"]))

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open regular orders (weight 1 with a symbol, 40 without)."""
        params = {"symbol": symbol} if symbol else None
        raw = await self._call(EP_OPEN_ORDERS, params, weight=1 if symbol else 40)
        return [Order.parse(item) for item in raw or []]

    async def funding_since(self, start_ms: int) -> list[Income]:
        """FUNDING_FEE income rows from ``start_ms`` on (weight 30), oldest first."""
        raw = await self._call(
            EP_INCOME, {"incomeType": "FUNDING_FEE", "startTime": str(start_ms), "limit": "1000"}
        )
        return [Income.parse(item) for item in raw or []]

    async def user_trades_since(self, symbol: str, start_ms: int) -> list[Trade]:
        """The account's trades on ``symbol`` from ``start_ms`` (the gap of a reconnect), oldest first."""
        raw = await self._call(
            EP_USER_TRADES, {"symbol": symbol, "startTime": str(start_ms), "limit": "1000"}
        )
        return sorted((Trade.parse(item) for item in raw or []), key=lambda t: t.trade_id)

    async def get_order_by_id(self, symbol: str, order_id: int) -> Order | None:
        """Look an order up by the exchange's id; None when it does not exist."""
        try:
            order: Order = await self._call(
                EP_GET_ORDER, {"symbol": symbol, "orderId": str(order_id)}, parse=Order.parse
            )
        except PermanentError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return order

    # -- writes ------------------------------------------------------------------------------

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        raw = await self._call(EP_SET_LEVERAGE, {"symbol": symbol, "leverage": str(leverage)})
        return int(raw.get("leverage", leverage))

    async def set_margin_type(self, symbol: str, margin_type: str) -> None:
        try:
            await self._call(EP_SET_MARGIN, {"symbol": symbol, "marginType": margin_type})
        except PermanentError as exc:
            if exc.code in ALREADY_DONE_CODES:
                return
            raise

    async def place_market(
        self,
        symbol: str,
        side: OrderSide,
        quantity: Decimal,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> Order:
        """MARKET order with ``newOrderRespType=RESULT`` (ACK would report no fill)."""
        params = {
            "symbol": symbol,
            "side": side,
            "type": OrderType.MARKET.value,
            "quantity": fmt(quantity),
            "newClientOrderId": client_order_id,
            "newOrderRespType": "RESULT",
        }
        if reduce_only:
            params["reduceOnly"] = "true"
        order: Order = await self._call(EP_NEW_ORDER, params, parse=Order.parse)
        return order

    async def place_limit(
        self,
        symbol: str,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        client_order_id: str,
        *,
        time_in_force: str,
        reduce_only: bool = False,
    ) -> Order:
        """LIMIT order (GTC/IOC/FOK/GTX) with ``newOrderRespType=RESULT``."""
        params = {
            "symbol": symbol,
            "side": side,
            "type": "LIMIT",
            "quantity": fmt(quantity),
            "price": fmt(price),
            "timeInForce": time_in_force,
            "newClientOrderId": client_order_id,
            "newOrderRespType": "RESULT",
        }
        if reduce_only:
            params["reduceOnly"] = "true"
        order: Order = await self._call(EP_NEW_ORDER, params, parse=Order.parse)
        return order

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order | None:
        """Cancel a working order by client id; None when it is no longer open (filled, gone)."""
        try:
            order: Order = await self._call(
                EP_CANCEL_ORDER, {"symbol": symbol, "origClientOrderId": client_order_id}, parse=Order.parse
            )
        except PermanentError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return order

    async def place_algo(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        trigger_price: Decimal,
        client_algo_id: str,
        *,
        quantity: Decimal | None,
        working_type: str,
        price_protect: bool,
        callback_rate: Decimal | None = None,
        activate_price: Decimal | None = None,
    ) -> AlgoOrder:
        """A CONDITIONAL algo order; ``quantity=None`` means closePosition. A TRAILING_STOP_MARKET
        takes ``callback_rate`` (and ``activate_price``, else active at once) instead of a trigger."""
        params = {
            "algoType": "CONDITIONAL",
            "symbol": symbol,
            "side": side,
            "type": order_type,
            "workingType": working_type,
            "priceProtect": "true" if price_protect else "false",
            "clientAlgoId": client_algo_id,
        }
        if callback_rate is None:
            params["triggerPrice"] = fmt(trigger_price)
        else:
            params["callbackRate"] = fmt(callback_rate)
            if activate_price is not None:
                params["activatePrice"] = fmt(activate_price)
        if quantity is None:
            params["closePosition"] = "true"
        else:
            params["quantity"] = fmt(quantity)
            params["reduceOnly"] = "true"
        algo: AlgoOrder = await self._call(EP_NEW_ALGO, params, parse=AlgoOrder.parse)
        return algo

    async def place_stop_entry(
        self,
        symbol: str,
        side: OrderSide,
        trigger_price: Decimal,
        client_algo_id: str,
        quantity: Decimal,
        *,
        price: Decimal | None,
        time_in_force: str | None,
        working_type: str,
        reduce_only: bool = False,
    ) -> AlgoOrder:
        """A STOP_MARKET (``price=None``) or STOP entry: a CONDITIONAL algo order that opens a
        position (not reduce-only) when the market reaches ``trigger_price``."""
        params = {
            "algoType": "CONDITIONAL",
            "symbol": symbol,
            "side": side,
            "type": "STOP_MARKET" if price is None else "STOP",
            "triggerPrice": fmt(trigger_price),
            "quantity": fmt(quantity),
            "workingType": working_type,
            "clientAlgoId": client_algo_id,
        }
        if price is not None:
            params["price"] = fmt(price)
            params["timeInForce"] = time_in_force or "GTC"
        if reduce_only:
            params["reduceOnly"] = "true"
        algo: AlgoOrder = await self._call(EP_NEW_ALGO, params, parse=AlgoOrder.parse)
        return algo

    async def cancel_algo(self, algo_id: int) -> bool:
        """Cancel one algo order; False when it was no longer open."""
        try:
            # The answer is read (its algoId) so that an unreadable one is an unknown outcome.
            await self._call(EP_CANCEL_ALGO, {"algoId": str(algo_id)}, parse=_algo_id_of)
        except PermanentError as exc:
            if exc.code in NOT_FOUND_CODES:
                return False
            raise
        return True

    # -- user data stream key ------------------------------------------------------------------

    async def create_listen_key(self) -> str:
        """The account's listenKey (Binance returns the active one if there is one)."""
        raw = await self._call(EP_LISTEN_KEY_NEW)
        return str(raw["listenKey"])

    async def keepalive_listen_key(self, key: str) -> None:
        """Extend the key by 60 minutes; :class:`ListenKeyGone` when it no longer exists."""
        try:
            await self._call(EP_LISTEN_KEY_KEEP, {"listenKey": key})
        except PermanentError as exc:
            if exc.code == LISTEN_KEY_GONE:
                raise ListenKeyGone(exc.message) from None
            raise

    async def close_listen_key(self, key: str) -> None:
        """Close the key (for every holder of it)."""
        with contextlib.suppress(PermanentError):
            await self._call(EP_LISTEN_KEY_CLOSE, {"listenKey": key})
