"""The read-only HTTP API on the metrics port: positions, orders, trades and their summary.

``GET /api/positions``, ``/api/orders``, ``/api/trades``, ``/api/trades/summary``, ``/api/results``
(with the intents still working), ``/api/status``, ``/api/symbols`` (each symbol's tick and step). Numbers are
exact JSON numbers, as in the results. A bad query parameter is a 400 whose JSON error names it;
an unknown ``/api`` path a 404; anything but GET a 405 (aiohttp's own).

Positions and PnL are confidential: with ``QUANTUM_API_TOKEN`` set, ``/api/*`` wants
``Authorization: Bearer <token>`` (compared in constant time, 401 otherwise, 429 after repeated
failures); without one only local clients are answered: a loopback address (403 naming the
setting otherwise) with a loopback ``Host`` (421 otherwise). The rule is
:class:`quantum_exec.ops.access.Access`, shared with ``/metrics``. Each ``/api`` request is logged
at INFO: who, what, status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from redis.asyncio import Redis

from quantum_exec.account.roles import role_of
from quantum_exec.account.views import AlgoView, StaleStateError
from quantum_exec.app.working import working_intents
from quantum_exec.contracts.codec import dumps, payload_value
from quantum_exec.core.settings import Settings
from quantum_exec.execution.stops.budget import MAX_CONDITIONAL_ORDERS
from quantum_exec.ledger.query import QueryError, parse_summary_query, parse_trade_query
from quantum_exec.ledger.summary import summarize
from quantum_exec.ledger.trades import trade_to_json
from quantum_exec.ops.access import Access, json_error
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.account.follower import AccountFollower
    from quantum_exec.exchange.gateway import BinanceGateway
    from quantum_exec.ledger.book import LedgerBook

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX: Final = "/api/"
# The console page (issue #15): static files shipped in the package, no third-party origin.
CONSOLE_FILES: Final = {
    "/": ("index.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/console.css": ("console.css", "text/css"),
}
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=dumps(body), content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return json_error(status, message, **extra)


class ReadApi:
    """The ``/api`` routes; each part may be missing (then the route answers 503 saying why)."""

    def __init__(
        self,
        settings: Settings,
        *,
        book: LedgerBook | None,
        account: AccountFollower | None,
        gateway: BinanceGateway | None,
        redis: Redis | None = None,
        status: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        access: Access | None = None,
        starting: Callable[[], str] | None = None,
    ) -> None:
        self._access = access or Access.from_settings(settings)
        self._book = book
        self._account = account
        self._gateway = gateway
        self._redis = redis
        self._status = status
        self._result_stream = settings.result_stream
        self._settings = settings
        # Mounted before the parts exist (the port opens first): what start-up waits for.
        self._starting = starting

    def attach(
        self,
        *,
        book: LedgerBook | None,
        account: AccountFollower | None,
        gateway: BinanceGateway | None,
        redis: Redis | None,
    ) -> None:
        """The parts, once started; until then every route answers 503 with the start-up's reason."""
        self._book, self._account, self._gateway, self._redis = book, account, gateway, redis
        self._starting = None

    def _missing(self, what: str) -> web.StreamResponse:
        if self._starting is not None:
            return _error(503, self._starting(), unavailable="starting")
        return _error(503, what)

    async def _from_exchange(self, read: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """``read``'s answer; 503 naming the exchange when it cannot be asked."""
        from quantum_exec.core.errors import ExchangeError

        try:
            return await read()
        except (ExchangeError, StaleStateError) as exc:
            assert self._gateway is not None
            return _error(
                503,
                f"the exchange at {self._gateway.base_url} is unreachable: {exc}",
                unavailable="exchange",
            )

    def routes(self) -> dict[str, Handler]:
        return {**dict.fromkeys(CONSOLE_FILES, self.console), **self.api_routes()}

    def api_routes(self) -> dict[str, Handler]:
        return {
            "/api/positions": self.positions,
            "/api/orders": self.orders,
            "/api/trades": self.trades,
            "/api/trades/summary": self.summary,
            "/api/results": self.results,
            "/api/status": self.status,
            "/api/symbols": self.symbols,
        }

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authorization of ``/api/*``; everything else passes untouched."""
        if request.path in CONSOLE_FILES:
            # The page holds no data: with a token it is served to anyone (its script asks for the
            # token); without one, like the API, to local clients only.
            if self._access.token_mode:
                return await handler(request)
            refusal = self._access.check_api(request)
            if refusal is None:
                return await handler(request)
            if refusal.status != 403:
                return refusal
            return web.Response(
                status=403,
                text="The quantum-exec console answers loopback clients only while QUANTUM_API_TOKEN "
                "is unset: open it on the service's host, or set QUANTUM_API_TOKEN.",
            )
        if not request.path.startswith(PREFIX) and request.path != "/api":
            return await handler(request)
        refusal = self._access.check_api(request)
        response = refusal if refusal is not None else await handler(request)
        if response.status != 429:  # a throttled address is logged once, by the throttle
            log.info(
                "api.request",
                remote=request.remote,
                method=request.method,
                path=request.path_qs,
                status=response.status,
            )
        return response

    async def console(self, request: web.Request) -> web.StreamResponse:
        """The console page and its two assets, with a strict Content-Security-Policy."""
        name, content_type = CONSOLE_FILES[request.path]
        body = (resources.files("quantum_exec") / "console" / name).read_bytes()
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        if request.path in self.routes():
            return _error(
                405, f"the API is read-only: {request.method} {request.path} is not allowed, use GET"
            )
        paths = ", ".join(sorted(self.api_routes()))
        return _error(404, f"no such API path {request.path!r}; the API has {paths}", path=request.path)

    # ---- the book

    async def trades(self, request: web.Request) -> web.StreamResponse:
        if self._book is None:
            return self._missing(
                "the ledger is not running (it needs the user data stream: QUANTUM_USER_STREAM)"
            )
        try:
            query = parse_trade_query(request.query)
        except QueryError as exc:
            return _json(400, exc.to_json())
        found = [t for t in await self._book.open_trades() if query.matches(t)]
        found += await self._book.closed_trades(query, limit=query.limit)
        found.sort(key=lambda t: t.closed_at or t.opened_at, reverse=True)
        found = found[: query.limit]
        return _json(200, {"trades": [trade_to_json(t) for t in found], "count": len(found)})

    async def summary(self, request: web.Request) -> web.StreamResponse:
        if self._book is None:
            return self._missing(
                "the ledger is not running (it needs the user data stream: QUANTUM_USER_STREAM)"
            )
        try:
            query = parse_summary_query(request.query)
        except QueryError as exc:
            return _json(400, exc.to_json())
        return _json(200, summarize(await self._book.closed_trades(query)))

    # ---- the service

    async def results(self, request: web.Request) -> web.StreamResponse:
        """The last results as published (``limit`` 1-200, default 20), newest first."""
        extra = [k for k in request.query if k != "limit"]
        if extra:
            name = extra[0]
            return _error(400, f"unknown parameter {name!r}: /api/results takes limit", parameter=name)
        raw = request.query.get("limit", "20").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= 200:
            return _error(400, f"limit={raw!r} must be a whole number from 1 to 200", parameter="limit")
        if self._redis is None:
            return self._missing("no Redis connection in this process")
        rows: Any = await self._redis.xrevrange(self._result_stream, count=int(raw))
        payloads = [payload_value(fields) for _sid, fields in rows]
        # Beside them, the intents still working (a resting LIMIT, an armed STOP): no result yet.
        working = await working_intents(self._redis, self._settings)
        # The payloads are spliced in as published: their numbers stay exactly what was written.
        body = (
            b'{"results":['
            + b",".join(bytes(p) for p in payloads if p is not None)
            + b'],"working":'
            + dumps(working)
            + b"}"
        )
        return web.Response(status=200, body=body, content_type="application/json")

    async def status(self, request: web.Request) -> web.StreamResponse:
        """Environment, version and the health of each dependency."""
        if self._status is None:
            return _error(503, "status is not available in this process")
        return _json(200, await self._status())

    async def symbols(self, request: web.Request) -> web.StreamResponse:
        """Each symbol's tick and step from the cached exchange rules (the console shows prices and
        quantities at them): ``{"symbols": {"BTCUSDT": {"tick_size": 0.10, "step_size": 0.001}}}``."""
        if request.query:
            name = next(iter(request.query))
            return _error(400, f"unknown parameter {name!r}: /api/symbols takes none", parameter=name)
        if self._gateway is None:
            return self._missing("no exchange connection in this process")
        body = {
            name: {"tick_size": r.tick_size, "step_size": r.step_size}
            for name, r in sorted(self._gateway.rules.all().items())
        }
        return _json(200, {"symbols": body})

    # ---- the account

    async def positions(self, request: web.Request) -> web.StreamResponse:
        if request.query:
            name = next(iter(request.query))
            return _error(400, f"unknown parameter {name!r}: /api/positions takes none", parameter=name)
        if self._gateway is None:
            return self._missing("no exchange connection in this process")
        return await self._from_exchange(self._positions)

    async def _positions(self) -> web.StreamResponse:
        assert self._gateway is not None
        positions = [p for p in await self._gateway.positions() if p.amount != 0]
        legs = await self._algo_orders()
        body = []
        for p in sorted(positions, key=lambda p: p.symbol):
            body.append(
                {
                    "symbol": p.symbol,
                    "side": "LONG" if p.amount > 0 else "SHORT",
                    "position_amount": p.amount,
                    "entry_price": p.entry_price,
                    "mark_price": p.mark_price,
                    "unrealized_pnl": p.unrealized_pnl,
                    "notional": abs(p.amount) * p.mark_price,
                    "leverage": p.leverage,
                    "margin_type": p.margin_type,
                    "protective_orders": [leg for leg in legs if leg["symbol"] == p.symbol],
                }
            )
        return _json(200, {"positions": body, "count": len(body)})

    async def orders(self, request: web.Request) -> web.StreamResponse:
        symbol = request.query.get("symbol")
        extra = [k for k in request.query if k != "symbol"]
        if extra:
            return _error(
                400, f"unknown parameter {extra[0]!r}: /api/orders takes symbol", parameter=extra[0]
            )
        if symbol is not None and not (symbol.isascii() and symbol.isalnum() and 2 <= len(symbol) <= 20):
            return _error(400, f"symbol {symbol!r} is not a symbol such as BTCUSDT", parameter="symbol")
        if self._gateway is None:
            return self._missing("no exchange connection in this process")
        return await self._from_exchange(lambda: self._orders(symbol.upper() if symbol else None))

    async def _orders(self, symbol: str | None) -> web.StreamResponse:
        assert self._gateway is not None
        regular = await self._gateway.open_orders(symbol)
        conditional = [a for a in await self._algo_orders() if symbol is None or a["symbol"] == symbol]
        orders = [
            {
                "symbol": o.symbol,
                "order_id": o.order_id,
                "client_order_id": o.client_order_id,
                "side": o.side.value,
                "type": o.order_type.value,
                "price": o.price,
                "quantity": o.orig_qty,
                "executed_quantity": o.executed_qty,
                "reduce_only": o.reduce_only,
                "status": o.status.value,
                # "entry": a LIMIT entry of ours working (resting); "sl"/"tp"/"close"; None: not ours.
                "role": role_of(o.client_order_id),
            }
            for o in regular
        ]
        # The account's budget of open conditional orders (NEW or TRIGGERING, anybody's).
        everyone = conditional if symbol is None else await self._algo_orders()
        budget = {
            "open": sum(1 for a in everyone if a["state"] in ("NEW", "TRIGGERING")),
            "budget": MAX_CONDITIONAL_ORDERS,
        }
        return _json(200, {"orders": orders, "conditional_orders": conditional, "conditional_budget": budget})

    async def _algo_orders(self) -> list[dict[str, Any]]:
        """Open conditional orders: the live view when fresh (no request), else REST."""
        views: list[AlgoView] | None = None
        if self._account is not None:
            with contextlib.suppress(StaleStateError):
                views = self._account.state.open_algo_orders()
        if views is None:
            assert self._gateway is not None
            views = [AlgoView.from_rest(a) for a in await self._gateway.open_algo_orders()]
        return [
            {
                "symbol": v.symbol,
                "algo_id": v.algo_id,
                "client_algo_id": v.client_algo_id,
                "side": v.side.value,
                "type": v.order_type,
                "trigger_price": v.trigger_price,
                "quantity": None if v.close_position else v.quantity,
                "close_position": v.close_position,
                "state": v.status.value,
                # A trailing stop's ``ia`` (ALGO_UPDATE): tracking the price yet; None for the others.
                "activated": v.activated,
                # A stop-loss, a take-profit or an armed STOP entry of this service.
                "ours": role_of(v.client_algo_id) is not None,
                "role": role_of(v.client_algo_id),  # "entry": an armed STOP entry of ours
            }
            for v in sorted(views, key=lambda v: (v.symbol, v.algo_id))
        ]
