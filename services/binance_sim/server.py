"""The HTTP layer: routing, API key and HMAC checks, recvWindow, rate limits, faults, the /_sim/ API."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from aiohttp import web

from binance_sim import control, persist, ws_api
from binance_sim.auth import Auth
from binance_sim.config import SimConfig
from binance_sim.endpoint import Endpoint
from binance_sim.engine import Engine
from binance_sim.errors import SimError
from binance_sim.faults import FaultSet
from binance_sim.funding import next_funding_time, next_settlement
from binance_sim.httpio import JSON_TYPE, fault_reply, json_response, parse_params
from binance_sim.income import IncomeRow
from binance_sim.market import fmt, load_market
from binance_sim.ratelimit import RateLimiter, Verdict
from binance_sim.routes import build_routes
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
# How often time-driven changes (GTD expiry, countdownCancelAll) are checked.
TICK_S: Final = 0.05
_INTERNAL: Final = SimError(-1000, "An unknown error occured while processing the request.", 500)


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
            margin_call_ratio=self.config.margin_call_ratio,
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
        self._saved = 0
        self.auth = Auth(self.config.secrets(), self.config.public_keys, self.server_time_ms)
        self.ws_api = ws_api.WsApi(self)
        self._routes = build_routes(
            self.engine,
            self.stream,
            self.market,
            self.server_time_ms,
            lambda: self.faults.income_delay_ms,
            self.config.limits,
        )
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

    async def move_mark_and_trigger(self, symbol: str, price: Decimal, **reference: Any) -> None:
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
        as a transfer between the spot and the futures wallet would be, and announced as an
        ACCOUNT_UPDATE of reason DEPOSIT or WITHDRAW."""
        change = Decimal(balance) - self.engine.account.wallet.get(asset, Decimal(0))
        self.engine.set_balance(asset, Decimal(balance))
        if change:
            self.engine.income.book("TRANSFER", change, self.server_time_ms(), asset=asset)
            # ACCOUNT_UPDATE reasons DEPOSIT / WITHDRAW ("Event: Balance and Position Update"): no P.
            reason = "DEPOSIT" if change > 0 else "WITHDRAW"
            self.engine.notify.account_update(reason, (), (asset,), balance_change=change)

    def settle_funding(self) -> list[IncomeRow]:
        """Settle funding now (what the funding timer does at each funding time); returns the rows."""
        return self.engine.settle_funding(self.server_time_ms())

    def set_funding_rate(self, symbol: str, rate: Decimal | str) -> None:
        """Set the funding rate the next settlements of ``symbol`` use (premiumIndex shows it)."""
        self.engine.spec(symbol)
        self.engine.funding_rates[symbol] = Decimal(rate)

    def walk_step(self, steps: int = 1) -> None:
        """Take ``steps`` steps of the seeded mark walk now (what the walk timer does)."""
        for _ in range(steps):
            self.walk.step(self.engine)
            self._complete_triggers()

    def auto_deleverage(
        self,
        symbol: str,
        position_side: str = "BOTH",
        quantity: Decimal | str | None = None,
        price: Decimal | str | None = None,
    ) -> dict[str, Any]:
        """ADL: the exchange closes ``quantity`` (all when None) of the position at ``price`` (the
        mark when None) with an "adl_autoclose" order (``POST /_sim/adl``)."""
        return self.engine.liquidator.auto_deleverage(
            symbol,
            position_side,
            None if quantity is None else Decimal(quantity),
            None if price is None else Decimal(price),
        )

    def settle_symbol(self, symbol: str, price: Decimal | str) -> list[dict[str, Any]]:
        """Delisting or delivery: the symbol's orders end and its positions close at ``price`` with
        "settlement_autoclose-" orders (``POST /_sim/settle``)."""
        return self.engine.liquidator.settle(symbol, Decimal(price))

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
            "nextFundingTime": {
                symbol: next_funding_time(self.server_time_ms(), interval)
                for symbol, interval in self.engine.ledger.funding_intervals().items()
            },
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
        # State file at most every PERSIST_INTERVAL_S; GTD and countdowns need no request (TICK_S).
        if self.config.state_path is not None:
            self._timers.append(_every(PERSIST_INTERVAL_S, self._save_if_changed, "state_save"))
        if self.config.walk.volatility:
            self._timers.append(_every(self.config.walk.interval_s, self.walk_step, "walk"))
        self._timers.append(_every(TICK_S, self.engine.tick, "tick"))
        if self.config.funding.auto:
            self._timers.append(asyncio.create_task(self._funding_loop(), name="binance-sim-funding"))
        log.info("sim.started", extra=kv(base_url=self.base_url, rate_limits=self.rate_limits_enabled))
        return self.base_url

    def _restore(self) -> None:
        path = self.config.state_path
        if path is not None and persist.load(self.engine, path):
            log.info("sim.state_restored", extra=kv(path=str(path), orders=len(self.engine.orders)))

    def _save_if_changed(self) -> None:
        """Save the account when requests changed it since the last save."""
        assert self.config.state_path is not None
        if self._changes != self._saved:
            self._saved = self._changes
            persist.save(self.engine, self.config.state_path)

    async def _funding_loop(self) -> None:
        """Settle each symbol at the end of its own interval (8 h, 4 h, … or the configured one)."""
        last: dict[str, int] = {}
        while True:
            now = self.server_time_ms()
            intervals = self.engine.ledger.funding_intervals()
            if not intervals:
                return
            due, symbols = next_settlement(now, intervals, last)
            await asyncio.sleep(max(0, due - now) / 1000)
            last |= dict.fromkeys(symbols, due)
            try:
                rows = self.engine.settle_funding(due, symbols)
                log.info("sim.funding_settled", extra=kv(time=due, symbols=len(symbols), positions=len(rows)))
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
            return await control.handle(self, request, path)
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
            return json_response({"code": -5000, "msg": f"Path {path}, Method {method} is invalid"}, 404)
        ip = request.remote or ""
        headers: dict[str, str] = {}
        try:
            raw_query = request.raw_path.partition("?")[2].encode()
            raw_body = await request.read() if request.body_exists else b""
            params = parse_params(raw_query, raw_body)
        except SimError as exc:
            return self._refuse(exc, self._count(ip, 1, endpoint, headers), headers)
        verdict = self._count(ip, endpoint.weight_of(params), endpoint, headers)
        if not verdict.allowed:
            self.rate_limited[verdict.status] += 1
            headers["Retry-After"] = str(verdict.retry_after_s)
            return json_response({"code": verdict.code, "msg": verdict.msg}, verdict.status, headers)
        plan = self.faults.plan(method, path)
        delay_ms = self.config.latency_ms + plan.delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if plan.before is not None:
            return fault_reply(request, plan.before, path, headers, self.server_time_ms())
        try:
            if endpoint.signed:
                self.auth.authenticate(request, params, raw_query, raw_body, ip)
            elif endpoint.api_key:
                self.auth.check_api_key(request, ip)
            result = endpoint.handler(params)
            if isinstance(result, bytes):
                response = web.Response(body=result, status=200, content_type=JSON_TYPE, headers=headers)
            else:
                response = json_response(result, 200, headers)
        except SimError as exc:
            response = json_response({"code": exc.code, "msg": exc.msg}, exc.status, headers)
        except Exception:
            log.exception("sim.handler_failed", extra=kv(method=method, path=path))
            response = json_response(
                {"code": _INTERNAL.code, "msg": _INTERNAL.msg}, _INTERNAL.status, headers
            )
        if plan.after is not None:
            # The request was processed (an order may now exist); only the reply is lost or replaced.
            return fault_reply(request, plan.after, path, headers, self.server_time_ms(), answer=response)
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
            return json_response({"code": verdict.code, "msg": verdict.msg}, verdict.status, headers)
        return json_response({"code": exc.code, "msg": exc.msg}, exc.status, headers)


def _every(interval_s: float, action: Callable[[], object], label: str) -> asyncio.Task[None]:
    """A task running ``action`` every ``interval_s`` (a failure is logged, the next run goes on)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                action()
            except Exception:
                log.exception("sim.%s_failed", label)

    return asyncio.create_task(loop(), name=f"binance-sim-{label}")
