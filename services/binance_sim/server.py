"""The HTTP layer: routing, API key and HMAC checks, recvWindow, rate limits, faults, the /_sim/ API."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import hmac
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from binance_sim import errors, persist, signing, ws_api
from binance_sim.config import SimConfig
from binance_sim.engine import Engine
from binance_sim.errors import SimError
from binance_sim.faults import Fault, FaultSet
from binance_sim.funding import next_funding_time, settle_funding
from binance_sim.income import IncomeRow, income_history
from binance_sim.market import fmt, load_market
from binance_sim.params import Params
from binance_sim.ratelimit import RateLimiter, Verdict
from binance_sim.userstream import UserStream
from binance_sim.walk import PriceWalk

log = logging.getLogger("binance_sim")


def kv(**fields: object) -> dict[str, dict[str, object]]:
    """Structured fields of a log record, as quantum-exec's logs carry them (``extra={"kv": ...}``)."""
    return {"kv": fields}


_API_KEY_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_MAX_RECV_WINDOW: Final = 60_000
_DEFAULT_RECV_WINDOW: Final = 5_000
_JSON: Final = "application/json"
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
# How often a changed account is written to the state file (a SIGKILL loses at most this much).
PERSIST_INTERVAL_S: Final = 0.25
_INTERNAL: Final = SimError(-1000, "An unknown error occured while processing the request.", 500)

Handler = Callable[[Params], Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One Binance route: its handler, IP weight (with / without ``symbol``), and whether it is signed."""

    handler: Handler
    weight: int
    weight_without_symbol: int | None = None
    signed: bool = True
    is_order: bool = False
    api_key: bool = False  # USER_STREAM: X-MBX-APIKEY checked, no signature

    def weight_of(self, params: Params) -> int:
        """Binance's IP weight for this request."""
        if self.weight_without_symbol is not None and not params.has("symbol"):
            return self.weight_without_symbol
        return self.weight


class Simulator:
    """A Binance USD-M futures REST simulator served by aiohttp. See the package docstring."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.market = load_market(self.config.exchange_info_path, self.config.market_state_path)
        self.faults = FaultSet()
        self.engine = Engine(
            self.market,
            self.server_time_ms,
            slippage_bps=self.config.slippage_bps,
            book=self.config.book,
            funding=self.config.funding,
            liquidation=self.config.liquidation,
            max_algo_orders_per_symbol=self.config.max_algo_orders_per_symbol,
        )
        self._restore()
        # Crossed triggers wait in TRIGGERING for the trigger delay (see _complete_triggers).
        self.engine.defer_triggers = True
        self.stream = UserStream(
            self.server_time_ms,
            lifetime_ms=self.config.listen_key_lifetime_ms,
            ping_interval_s=self.config.stream_ping_interval_s,
            max_connection_s=self.config.stream_max_connection_s,
        )
        self.engine.stream = self.stream
        self.walk = PriceWalk(self.config.walk)
        self._timers: list[asyncio.Task[None]] = []
        self.limiter = RateLimiter(self.config.limits)
        self.rate_limits_enabled = self.config.rate_limits
        # Binance requests being handled right now (a test waits for 0 instead of sleeping).
        self.requests_in_progress = 0
        # Binance requests served, by "METHOD /path" (a test asserts what was, or was not, asked).
        self.request_counts: collections.Counter[str] = collections.Counter()
        # Requests refused by the rate limiter, by HTTP status (429, 418).
        self.rate_limited: collections.Counter[int] = collections.Counter()
        self._changes = 0
        self._secrets = {k: v.encode() for k, v in self.config.secrets().items()}
        self._public_keys = {k: signing.load_public_key(pem) for k, pem in self.config.public_keys.items()}
        self.ws_api = ws_api.WsApi(self)
        info = {k: v for k, v in self.market.exchange_info.items() if k != "serverTime"}
        self._exchange_info_tail = orjson.dumps(info)[1:]
        self._routes = self._build_routes()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ----- Python control API ----------------------------------------------------------------

    def server_time_ms(self) -> int:
        """Server time in ms: the wall clock plus the configured clock skew."""
        return time.time_ns() // 1_000_000 + self.faults.clock_skew_ms

    def set_mark_price(
        self,
        symbol: str,
        price: Decimal | str,
        *,
        index: Decimal | str | None = None,
        last: Decimal | str | None = None,
    ) -> None:
        """Move the mark price of ``symbol``; fires every trigger and resting order it crosses and
        liquidates what falls to its maintenance margin. ``index``/``last`` set the index and last
        (contract) price apart from the mark; without them both follow the mark. From Python the
        crossed triggers are placed before this returns (no trigger delay) unless the
        ``hold_triggering`` fault holds them; ``POST /_sim/markPrice`` waits the trigger delay."""
        self._move_mark(symbol, price, index=index, last=last)
        self._complete_triggers()

    def _move_mark(
        self,
        symbol: str,
        price: Decimal | str,
        *,
        index: Decimal | str | None = None,
        last: Decimal | str | None = None,
    ) -> None:
        self.engine.set_reference_prices(
            symbol,
            index=None if index is None else Decimal(index),
            last=None if last is None else Decimal(last),
        )
        self.engine.set_mark_price(symbol, Decimal(price))

    def _complete_triggers(self) -> None:
        """Place the orders of the TRIGGERING algo orders, unless the hold fault keeps them there."""
        if self.engine.triggering and not self.faults.hold_triggering:
            self.engine.complete_triggers()

    async def _move_mark_and_trigger(self, symbol: str, price: Decimal, **reference: Any) -> None:
        """The markPrice control: move, let TRIGGERING last the trigger delay, then place; it answers
        only after the due triggers completed, so callers see them done (FINISHED/REJECTED)."""
        self._move_mark(symbol, price, **reference)
        if self.engine.triggering and self.config.trigger_delay_ms and not self.faults.hold_triggering:
            await asyncio.sleep(self.config.trigger_delay_ms / 1000)
        self._complete_triggers()

    def walk_mark_price(self, symbol: str, prices: list[Decimal] | list[str]) -> None:
        """Move the mark through each price in turn (triggers fire at each step)."""
        for price in prices:
            self.set_mark_price(symbol, Decimal(price))

    def set_faults(self, spec: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Install faults; same document as ``POST /_sim/faults`` (given as a mapping and/or keywords).
        Releasing ``hold_triggering`` places the held triggers now."""
        actions = self.faults.apply({**(spec or {}), **fields})
        self.stream.delay_ms = self.faults.stream_delay_ms
        self.stream.reorder = self.faults.stream_reorder
        for action in actions:
            if action == "expire_listen_key":
                self.stream.expire_now()
            elif action == "drop_user_streams":
                self.stream.drop_soon()
        self._complete_triggers()

    def set_balance(self, asset: str, balance: Decimal | str) -> None:
        """Set a wallet balance (e.g. to provoke -2019); the difference is booked as TRANSFER income,
        as a transfer between the spot and the futures wallet would be."""
        change = Decimal(balance) - self.engine.account.wallet.get(asset, Decimal(0))
        self.engine.set_balance(asset, Decimal(balance))
        if change:
            self.engine.income.book("TRANSFER", change, self.server_time_ms(), asset=asset)

    def settle_funding(self) -> list[IncomeRow]:
        """Settle funding now (what the funding timer does at each funding time); returns the rows."""
        return settle_funding(self.engine, self.server_time_ms())

    def set_funding_rate(self, symbol: str, rate: Decimal | str) -> None:
        """Set the funding rate the next settlements of ``symbol`` use (premiumIndex shows it)."""
        self.engine.spec(symbol)
        self.engine.funding_rates[symbol] = Decimal(rate)

    def walk_step(self, steps: int = 1) -> None:
        """Take ``steps`` steps of the seeded mark walk now (what the walk timer does)."""
        for _ in range(steps):
            self.walk.step(self.engine)
            self._complete_triggers()

    def set_liquidation(self, enabled: bool) -> None:
        """Switch forced liquidation on or off."""
        self.engine.liquidation = enabled

    def set_rate_limits(self, enabled: bool) -> None:
        """Switch rate limiting on or off (counters restart)."""
        self.rate_limits_enabled = enabled
        self.limiter.reset()

    def state(self) -> dict[str, Any]:
        """Orders, algo orders, positions, trades, balances and faults (GET /_sim/state)."""
        return {
            **self.engine.state(),
            "indexPrices": {s: fmt(p) for s, p in self.engine.index_prices.items()},
            "lastPrices": {s: fmt(p) for s, p in self.engine.last_prices.items()},
            "fundingRates": {s: fmt(self.engine.funding_rate(s)) for s in self.engine.marks},
            "nextFundingTime": next_funding_time(self.server_time_ms(), self.config.funding.interval_ms),
            "liquidation": self.engine.liquidation,
            "faults": self.faults.to_json(),
            "rateLimits": self.rate_limits_enabled,
            "requestsInProgress": self.requests_in_progress,
        }

    def reset(self) -> None:
        """Back to the starting state: account, orders, marks, faults and rate-limit counters."""
        self.engine.reset()
        self.engine.liquidation = self.config.liquidation
        self.stream.delay_ms = 0
        self.stream.reorder = None
        self.walk = PriceWalk(self.config.walk)
        self.faults = FaultSet()
        self.limiter.reset()
        self.rate_limits_enabled = self.config.rate_limits

    # ----- lifecycle ------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (one catch-all route; dispatch is a dict lookup)."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving in the running loop; port 0 picks a free port. Returns :attr:`base_url`."""
        if self._runner is not None:
            return self.base_url
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        self._runner = runner
        self.stream.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        self.base_url = f"http://{shown}:{bound_port}"
        if self.config.state_path is not None:
            self._timers.append(asyncio.create_task(self._persist_loop(), name="binance-sim-persist"))
        if self.config.walk.volatility:
            self._timers.append(asyncio.create_task(self._walk_loop(), name="binance-sim-walk"))
        if self.config.funding.auto:
            self._timers.append(asyncio.create_task(self._funding_loop(), name="binance-sim-funding"))
        log.info("sim.started", extra=kv(base_url=self.base_url, rate_limits=self.rate_limits_enabled))
        return self.base_url

    def _restore(self) -> None:
        path = self.config.state_path
        if path is not None and persist.load(self.engine, path):
            log.info("sim.state_restored", extra=kv(path=str(path), orders=len(self.engine.orders)))

    async def _persist_loop(self) -> None:
        """Save the account when requests changed it (at most every PERSIST_INTERVAL_S)."""
        assert self.config.state_path is not None
        saved = self._changes
        while True:
            await asyncio.sleep(PERSIST_INTERVAL_S)
            if self._changes != saved:
                saved = self._changes
                try:
                    persist.save(self.engine, self.config.state_path)
                except Exception:
                    log.exception("sim.state_save_failed")

    async def _walk_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.walk.interval_s)
            try:
                self.walk_step()
            except Exception:
                log.exception("sim.walk_failed")

    async def _funding_loop(self) -> None:
        interval_ms = self.config.funding.interval_ms
        last_due = 0
        while True:
            now = self.server_time_ms()
            due = max(next_funding_time(now, interval_ms), last_due + interval_ms)
            await asyncio.sleep(max(0, due - now) / 1000)
            last_due = due
            try:
                rows = settle_funding(self.engine, due)
                log.info("sim.funding_settled", extra=kv(time=due, positions=len(rows)))
            except Exception:
                log.exception("sim.funding_failed")

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        # Waits for the timers to end; a cancellation of stop() itself still propagates.
        await asyncio.gather(*timers, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await self.stream.stop()
            await self.ws_api.close_all()
            await runner.cleanup()
            if self.config.state_path is not None:
                persist.save(self.engine, self.config.state_path)
            log.info("sim.stopped", extra=kv(base_url=self.base_url))

    # ----- request handling -------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method != "GET":
            self._changes += 1  # for the state file: orders, cancels, settings, controls
        if path.startswith("/_sim/"):
            return await self._control(request, path)
        if path.startswith(("/private/ws", "/private/stream", "/ws/")) and request.method == "GET":
            return await self._user_socket(request, path)
        if path == ws_api.PATH and request.method == "GET":
            return await self.ws_api.serve(request)
        self.requests_in_progress += 1
        self.request_counts[f"{request.method} {path}"] += 1
        try:
            return await self._serve(request, path)
        finally:
            self.requests_in_progress -= 1

    async def _serve(self, request: web.Request, path: str) -> web.StreamResponse:
        method = request.method
        endpoint = self._routes.get((method, path))
        if endpoint is None:
            return _json({"code": -5000, "msg": f"Path {path}, Method {method} is invalid"}, 404)
        ip = request.remote or ""
        headers: dict[str, str] = {}
        try:
            raw_query = request.raw_path.partition("?")[2].encode()
            raw_body = await request.read() if request.body_exists else b""
            params = _parse_params(raw_query, raw_body)
        except SimError as exc:
            return self._refuse(exc, self._count(ip, 1, endpoint, headers), headers)
        verdict = self._count(ip, endpoint.weight_of(params), endpoint, headers)
        if not verdict.allowed:
            self.rate_limited[verdict.status] += 1
            headers["Retry-After"] = str(verdict.retry_after_s)
            return _json({"code": verdict.code, "msg": verdict.msg}, verdict.status, headers)
        plan = self.faults.plan(method, path)
        delay_ms = self.config.latency_ms + plan.delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if plan.before is not None:
            return self._fault_reply(request, plan.before, path, headers)
        try:
            if endpoint.signed:
                self._authenticate(request, params, raw_query, raw_body, ip)
            elif endpoint.api_key:
                self._check_api_key(request, ip)
            result = endpoint.handler(params)
            if isinstance(result, bytes):
                response = web.Response(body=result, status=200, content_type=_JSON, headers=headers)
            else:
                response = _json(result, 200, headers)
        except SimError as exc:
            response = _json({"code": exc.code, "msg": exc.msg}, exc.status, headers)
        except Exception:
            log.exception("sim.handler_failed", extra=kv(method=method, path=path))
            response = _json({"code": _INTERNAL.code, "msg": _INTERNAL.msg}, _INTERNAL.status, headers)
        if plan.after is not None:
            # The request was processed (an order may now exist); only the reply is lost or replaced.
            return self._fault_reply(request, plan.after, path, headers, answer=response)
        return response

    async def _user_socket(self, request: web.Request, path: str) -> web.StreamResponse:
        """The user data stream socket: ``/private/ws?listenKey=<key>`` and ``/private/stream?
        listenKey=<key>`` (Binance since 2026-04-23; ``events=A/B`` an allow-list), ``/private/ws/<key>``
        (python-binance 1.0.37) and the retired ``/ws/<key>``, which opens and receives nothing."""
        raw_events = request.query.get("events")
        events = frozenset(e for e in raw_events.split("/") if e) if raw_events is not None else None
        if path in ("/private/ws", "/private/ws/", "/private/stream", "/private/stream/"):
            key = request.query.get("listenKey")
            envelope = path.startswith("/private/stream")
            return await self.stream.serve(request, key, events=events, envelope=envelope)
        if path.startswith("/private/ws/"):
            return await self.stream.serve(request, path.rsplit("/", 1)[1], events=events)
        return await self.stream.serve(request, path.rsplit("/", 1)[1], retired=True)

    def route(self, method: str, path: str) -> Endpoint:
        """The REST route of ``method path`` (the WebSocket API runs the same handlers)."""
        return self._routes[(method, path)]

    def count_request(self, ip: str, weight: int, endpoint: Endpoint, headers: dict[str, str]) -> Verdict:
        """Count one request against the shared limits (REST and WebSocket API alike)."""
        return self._count(ip, weight, endpoint, headers)

    def _count(self, ip: str, weight: int, endpoint: Endpoint, headers: dict[str, str]) -> Verdict:
        # Counted even when switched off, so the headers stay truthful for clients that pace themselves.
        verdict = self.limiter.check(
            ip,
            weight,
            is_order=endpoint.is_order,
            now_ms=time.time_ns() // 1_000_000,
            enforce=self.rate_limits_enabled,
        )
        headers["X-MBX-USED-WEIGHT-1M"] = str(verdict.used_weight)
        if endpoint.is_order:
            headers["X-MBX-ORDER-COUNT-10S"] = str(verdict.orders_10s)
            headers["X-MBX-ORDER-COUNT-1M"] = str(verdict.orders_1m)
        return verdict

    def _refuse(self, exc: SimError, verdict: Verdict, headers: dict[str, str]) -> web.Response:
        if not verdict.allowed:
            self.rate_limited[verdict.status] += 1
            headers["Retry-After"] = str(verdict.retry_after_s)
            return _json({"code": verdict.code, "msg": verdict.msg}, verdict.status, headers)
        return _json({"code": exc.code, "msg": exc.msg}, exc.status, headers)

    def _fault_reply(
        self,
        request: web.Request,
        fault: Fault,
        path: str,
        headers: dict[str, str],
        *,
        answer: web.Response | None = None,
    ) -> web.Response:
        if fault.kind.startswith("drop"):
            log.info("sim.fault", extra=kv(kind=fault.kind, path=path))
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if fault.kind == "truncated_after" and answer is not None and isinstance(answer.body, bytes):
            cut = fault.cut(answer.body)
            return web.Response(body=cut, status=answer.status, content_type=_JSON, headers=headers)
        if fault.retry_after_s is not None:
            headers["Retry-After"] = str(fault.retry_after_s)
        return _json(fault.body(path, self.server_time_ms()), fault.status, headers)

    def _check_api_key(self, request: web.Request, ip: str) -> bytes | signing.PublicKey:
        """The API key's HMAC secret, or its public key when it signs with Ed25519 / RSA."""
        return self.key_of(request.headers.get("X-MBX-APIKEY", ""), ip)

    def key_of(self, api_key: str, ip: str) -> bytes | signing.PublicKey:
        """The HMAC secret or public key of ``api_key`` (-2014 / -2015 as Binance answers)."""
        if not _API_KEY_RE.match(api_key):
            raise SimError(-2014, "API-key format invalid.", 401)
        public = self._public_keys.get(api_key)
        secret = public if public is not None else self._secrets.get(api_key)
        if secret is None:
            raise SimError(-2015, f"Invalid API-key, IP, or permissions for action, request ip: {ip}", 401)
        return secret

    def _authenticate(
        self, request: web.Request, params: Params, raw_query: bytes, raw_body: bytes, ip: str
    ) -> None:
        secret = self._check_api_key(request, ip)
        payload = _without_signature(raw_query) + _without_signature(raw_body)
        self.verify_signed(secret, params, payload)

    def verify_signed(self, secret: bytes | signing.PublicKey | None, params: Params, payload: bytes) -> None:
        """Binance's checks of a SIGNED request: timestamp, recvWindow, and the signature of
        ``payload`` (REST: query string + body; WebSocket API: the sorted params). ``secret``
        None: a WebSocket API request of a connection authenticated by ``session.logon``, which
        carries no signature (its timestamp and recvWindow are still checked)."""
        if not params.has("timestamp"):
            raise errors.mandatory("timestamp")
        try:
            timestamp = params.req_int("timestamp")
        except SimError:
            raise errors.mandatory("timestamp") from None
        recv_window = params.opt_int("recvWindow")
        if recv_window is None:
            recv_window = _DEFAULT_RECV_WINDOW
        elif recv_window > _MAX_RECV_WINDOW:
            raise errors.invalid_value("recvWindow")
        signature = params.opt_str("signature")
        if secret is None:
            valid = True
        elif signature is None:
            raise errors.mandatory("signature")
        elif isinstance(secret, bytes):
            expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(expected, signature.lower())
        else:
            valid = signing.verify(secret, payload, signature)
        if not valid:
            raise SimError(-1022, "Signature for this request is not valid.")
        now = self.server_time_ms()
        if timestamp >= now + 1000:
            raise SimError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > recv_window:
            raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")

    # ----- routes -------------------------------------------------------------------------------

    def _build_routes(self) -> dict[tuple[str, str], Endpoint]:
        e = self.engine
        routes: dict[tuple[str, str], Endpoint] = {
            ("GET", "/fapi/v1/ping"): Endpoint(lambda p: b"{}", 1, signed=False),
            ("GET", "/fapi/v1/time"): Endpoint(
                lambda p: {"serverTime": self.server_time_ms()}, 1, signed=False
            ),
            ("GET", "/fapi/v1/exchangeInfo"): Endpoint(self._exchange_info, 1, signed=False),
            ("GET", "/fapi/v1/premiumIndex"): Endpoint(e.premium_index, 1, 10, signed=False),
            ("GET", "/fapi/v1/ticker/price"): Endpoint(e.ticker_price, 1, 2, signed=False),
            ("GET", "/fapi/v2/ticker/price"): Endpoint(e.ticker_price, 1, 2, signed=False),
            ("GET", "/fapi/v1/leverageBracket"): Endpoint(e.leverage_bracket, 1),
            ("GET", "/fapi/v1/positionSide/dual"): Endpoint(lambda p: e.position_mode(), 30),
            ("POST", "/fapi/v1/positionSide/dual"): Endpoint(e.change_position_mode, 1),
            ("POST", "/fapi/v1/leverage"): Endpoint(e.change_leverage, 1),
            ("POST", "/fapi/v1/marginType"): Endpoint(e.change_margin_type, 1),
            ("POST", "/fapi/v1/order"): Endpoint(e.new_order, 0, is_order=True),
            ("GET", "/fapi/v1/order"): Endpoint(e.query_order, 1),
            ("DELETE", "/fapi/v1/order"): Endpoint(e.cancel_order, 1),
            ("GET", "/fapi/v1/openOrders"): Endpoint(e.list_open_orders, 1, 40),
            ("GET", "/fapi/v1/allOrders"): Endpoint(e.list_all_orders, 5),
            ("POST", "/fapi/v1/algoOrder"): Endpoint(e.new_algo_order, 0, is_order=True),
            ("GET", "/fapi/v1/algoOrder"): Endpoint(e.query_algo_order, 1),
            ("DELETE", "/fapi/v1/algoOrder"): Endpoint(e.cancel_algo_order, 1),
            ("GET", "/fapi/v1/openAlgoOrders"): Endpoint(e.list_open_algo_orders, 1, 40),
            ("DELETE", "/fapi/v1/algoOpenOrders"): Endpoint(e.cancel_all_algo_orders, 1),
            ("GET", "/fapi/v1/allAlgoOrders"): Endpoint(e.list_all_algo_orders, 5),
            ("GET", "/fapi/v1/userTrades"): Endpoint(e.user_trades, 5),
            ("GET", "/fapi/v1/income"): Endpoint(
                lambda p: income_history(e, p, self.faults.income_delay_ms), 30
            ),
            ("POST", "/fapi/v1/listenKey"): Endpoint(
                lambda p: {"listenKey": self.stream.create()}, 1, signed=False, api_key=True
            ),
            ("PUT", "/fapi/v1/listenKey"): Endpoint(self._keepalive, 1, signed=False, api_key=True),
            ("DELETE", "/fapi/v1/listenKey"): Endpoint(self._close_key, 1, signed=False, api_key=True),
        }
        for version in (2, 3):
            routes[("GET", f"/fapi/v{version}/positionRisk")] = Endpoint(
                functools.partial(_versioned, e.position_risk, version), 5
            )
            routes[("GET", f"/fapi/v{version}/balance")] = Endpoint(
                functools.partial(_unversioned_params, e.balance, version), 5
            )
            routes[("GET", f"/fapi/v{version}/account")] = Endpoint(
                functools.partial(_unversioned_params, e.account_info, version), 5
            )
        return routes

    def _keepalive(self, params: Params) -> Any:
        """PUT /fapi/v1/listenKey: the ``listenKey`` parameter is optional (the account's key)."""
        return {"listenKey": self.stream.keepalive(params.opt_str("listenKey") or self.stream.key)}

    def _close_key(self, params: Params) -> Any:
        """DELETE /fapi/v1/listenKey: answers ``{}`` as Binance does."""
        self.stream.close(params.opt_str("listenKey") or self.stream.key)
        return {}

    def _exchange_info(self, params: Params) -> bytes:
        return b'{"serverTime":%d,' % self.server_time_ms() + self._exchange_info_tail

    # ----- /_sim/ control surface --------------------------------------------------------------------

    async def _control(self, request: web.Request, path: str) -> web.Response:
        if self.config.loopback_only_control and request.remote not in _LOOPBACK:
            return _json({"code": -2015, "msg": "The control API only answers on loopback."}, 403)
        refusal = _cross_site_refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = await _control_body(request)
            action = (request.method, path)
            if action == ("GET", "/_sim/state"):
                return _json(self.state(), 200)
            if action == ("POST", "/_sim/reset"):
                self.reset()
                return _json({"code": 200, "msg": "success"}, 200)
            if action == ("POST", "/_sim/markPrice"):
                symbol = str(body.get("symbol", ""))
                prices = body.get("prices")
                if prices is None:
                    prices = [body.get("price")]
                if not isinstance(prices, list) or not prices:
                    raise errors.mandatory("price")
                reference = {
                    name: None if body.get(key) is None else _decimal(body[key], key)
                    for name, key in (("index", "indexPrice"), ("last", "lastPrice"))
                }
                for price in prices:
                    await self._move_mark_and_trigger(symbol, _decimal(price, "price"), **reference)
                return _json({"symbol": symbol, "markPrice": str(self.engine.mark(symbol))}, 200)
            if action == ("POST", "/_sim/trade"):
                traded = self.engine.trade_against(
                    str(body.get("symbol", "")),
                    str(body.get("origClientOrderId", "")),
                    _decimal(body.get("quantity"), "quantity"),
                )
                return _json(traded, 200)
            if action == ("POST", "/_sim/funding"):
                return _json({"rows": [row.to_json() for row in self.settle_funding()]}, 200)
            if action == ("POST", "/_sim/fundingRate"):
                self.set_funding_rate(str(body.get("symbol", "")), _decimal(body.get("rate"), "rate"))
                return _json({"code": 200, "msg": "success"}, 200)
            if action == ("POST", "/_sim/walk"):
                steps = body.get("steps", 1)
                if isinstance(steps, str) and steps.isdigit():
                    steps = int(steps)
                if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 10_000:
                    raise errors.invalid_value("steps")
                self.walk_step(steps)
                return _json({"markPrices": {s: fmt(p) for s, p in self.engine.marks.items()}}, 200)
            if action == ("POST", "/_sim/liquidation"):
                enabled = body.get("enabled")
                if not isinstance(enabled, bool):
                    raise errors.invalid_value("enabled")
                self.set_liquidation(enabled)
                return _json({"enabled": enabled}, 200)
            if action == ("POST", "/_sim/faults"):
                self.set_faults(body)
                return _json(self.faults.to_json(), 200)
            if action == ("GET", "/_sim/faults"):
                return _json(self.faults.to_json(), 200)
            if action == ("POST", "/_sim/balance"):
                self.set_balance(str(body.get("asset", "USDT")), _decimal(body.get("balance"), "balance"))
                return _json({"code": 200, "msg": "success"}, 200)
            if action == ("POST", "/_sim/rateLimits"):
                enabled = body.get("enabled")
                if not isinstance(enabled, bool):
                    raise errors.invalid_value("enabled")
                self.set_rate_limits(enabled)
                return _json({"enabled": enabled}, 200)
        except SimError as exc:
            return _json({"code": exc.code, "msg": exc.msg}, exc.status)
        return _json({"code": -5000, "msg": f"Path {path}, Method {request.method} is invalid"}, 404)


def _versioned(handler: Callable[[Params, int], Any], version: int, params: Params) -> Any:
    return handler(params, version)


def _unversioned_params(handler: Callable[[int], Any], version: int, params: Params) -> Any:
    return handler(version)


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=_JSON, headers=headers)


def _parse_params(raw_query: bytes, raw_body: bytes) -> Params:
    merged: dict[str, str] = {}
    for raw in (raw_query, raw_body):
        if not raw:
            continue
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise errors.illegal_chars("body", "form-urlencoded UTF-8") from None
        for key, value in pairs:
            if key in merged:
                raise errors.DUPLICATE_PARAM()
            merged[key] = value
    return Params(merged)


def _without_signature(raw: bytes) -> bytes:
    if b"signature=" not in raw:
        return raw
    return b"&".join(part for part in raw.split(b"&") if not part.startswith(b"signature="))


def _decimal(value: Any, name: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise errors.mandatory(name) from None
    if not result.is_finite():
        raise errors.mandatory(name)
    return result


def _cross_site_refusal(request: web.Request) -> web.Response | None:
    """Refuse what a web page can send to 127.0.0.1 without CORS: a foreign ``Origin`` (browsers send
    one with every cross-site POST, body or not) and a ``text/plain`` or form body (a "simple"
    request needs no preflight). Tools send JSON and no Origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
        return _json({"code": -2015, "msg": f"Origin {origin} may not use the control API."}, 403)
    if request.body_exists and request.content_type != _JSON:
        return _json({"code": -1130, "msg": "Control bodies must be Content-Type: application/json."}, 415)
    return None


async def _control_body(request: web.Request) -> dict[str, Any]:
    body: dict[str, Any] = dict(request.query)
    if request.body_exists:
        try:
            parsed = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise SimError(-1130, "Control body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise SimError(-1130, "Control body must be a JSON object.")
        body.update(parsed)
    return body


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@contextlib.contextmanager
def run_in_thread(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run a simulator on its own event loop in a daemon thread; yields its base URL."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        sim = Simulator(config)
        stop = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = stop
        box["sim"] = sim
        try:
            box["url"] = await sim.start(host, port)
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise
        ready.set()
        try:
            await stop.wait()
        finally:
            await sim.stop()

    def target() -> None:
        with contextlib.suppress(BaseException), asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
        ready.set()

    thread = threading.Thread(target=target, name="binance-sim", daemon=True)
    thread.start()
    ready.wait()
    if "url" not in box:
        raise RuntimeError(f"simulator failed to start: {box.get('error')!r}")
    try:
        yield str(box["url"])
    finally:
        loop: asyncio.AbstractEventLoop = box["loop"]
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=10)


def serve_forever(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until SIGINT/SIGTERM, then stop cleanly (the CLI entry point)."""

    async def main() -> None:
        sim = Simulator(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sim.start(host, port)
        print(
            f"binance_sim listening on {sim.base_url} (REST root; FUTURES_URL = {sim.base_url}/fapi)",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await sim.stop()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())
