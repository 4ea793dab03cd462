"""The exchange as a pure state machine: account, orders, algo orders, positions, fills and rule checks.

No I/O and no clock of its own: the HTTP layer passes a ``clock`` returning server time in ms. Every
method that serves an endpoint takes the request's :class:`Params` and returns the JSON-ready value
Binance would send, or raises :class:`SimError` with Binance's code and message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Protocol

from binance_sim import errors, events, liquidation
from binance_sim.book import BookConfig, best_price, market_fills
from binance_sim.errors import SimError
from binance_sim.funding import FundingConfig, is_perpetual, next_funding_time
from binance_sim.income import IncomeLedger
from binance_sim.market import ONE, ZERO, MarketData, SymbolSpec, decimals_of, fmt, fmt_places, round_to_step
from binance_sim.params import Params

JSON = dict[str, Any]


class EventSink(Protocol):
    """Where the engine's hooks put user data stream events (binance_sim.userstream.UserStream)."""

    @property
    def active(self) -> bool:
        """True when someone listens (events are only built then)."""
        ...

    def publish(self, event: JSON) -> None:
        """Queue one event."""
        ...


SIDES: Final = frozenset({"BUY", "SELL"})
ORDER_TYPES: Final = frozenset({"LIMIT", "MARKET"})
CONDITIONAL_TYPES: Final = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
POSITION_SIDES: Final = frozenset({"BOTH", "LONG", "SHORT"})
TIME_IN_FORCE: Final = frozenset({"GTC", "IOC", "FOK", "GTX", "GTD"})
RESP_TYPES: Final = frozenset({"ACK", "RESULT"})
WORKING_TYPES: Final = frozenset({"MARK_PRICE", "CONTRACT_PRICE"})
MARGIN_TYPES: Final = frozenset({"ISOLATED", "CROSSED"})
STP_MODES: Final = frozenset({"NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"})
OPEN_STATUSES: Final = frozenset({"NEW", "PARTIALLY_FILLED"})
MAX_OPEN_ALGO_ORDERS: Final = 200
DEFAULT_LEVERAGE: Final = 20
MONEY_PLACES: Final = 8
_MONEY_QUANT: Final = Decimal(1).scaleb(-MONEY_PLACES)
_HUNDRED: Final = Decimal(100)


@dataclass(slots=True)
class Order:
    """An order of the matching engine (what /fapi/v1/order, openOrders and allOrders show)."""

    order_id: int
    symbol: str
    client_order_id: str
    side: str
    position_side: str
    type: str
    orig_type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    reduce_only: bool
    close_position: bool
    time: int
    update_time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    stop_price: Decimal = ZERO
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    self_trade_prevention_mode: str = "EXPIRE_MAKER"
    good_till_date: int = 0

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED."""
        return self.status in OPEN_STATUSES

    @property
    def avg_price(self) -> Decimal:
        """Volume-weighted fill price, 0 before any fill."""
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO


@dataclass(slots=True)
class AlgoOrder:
    """A conditional order held by the algo service until its trigger is crossed."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    position_side: str
    order_type: str
    time_in_force: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    working_type: str
    close_position: bool
    price_protect: bool
    reduce_only: bool
    activate_price: Decimal | None
    callback_rate: Decimal | None
    self_trade_prevention_mode: str
    good_till_date: int
    create_time: int
    update_time: int
    algo_status: str = "NEW"
    trigger_time: int = 0
    actual_order_id: int | None = None
    actual_price: Decimal | None = None
    trailing_extreme: Decimal | None = None
    reject_reason: str = ""

    @property
    def is_open(self) -> bool:
        """Still waiting for its trigger."""
        return self.algo_status == "NEW"


@dataclass(slots=True)
class Position:
    """A position of one symbol and position side; ``amount`` is signed (short < 0)."""

    symbol: str
    position_side: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    update_time: int = 0


@dataclass(slots=True)
class Trade:
    """One fill, as /fapi/v1/userTrades reports it."""

    trade_id: int
    order_id: int
    symbol: str
    side: str
    position_side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    realized_pnl: Decimal
    maker: bool
    time: int


@dataclass(slots=True)
class _Ids:
    order: int = 4_000_000_000
    algo: int = 3_000_000_000_000
    trade: int = 500_000_000

    def next_order(self) -> int:
        self.order += 1
        return self.order

    def next_algo(self) -> int:
        self.algo += 1
        return self.algo

    def next_trade(self) -> int:
        self.trade += 1
        return self.trade


@dataclass(slots=True)
class _Account:
    wallet: dict[str, Decimal]
    dual_side: bool = False
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)


def _money(value: Decimal) -> Decimal:
    return value.quantize(_MONEY_QUANT, ROUND_HALF_UP)


def _hedge_closing(side: str, position_side: str) -> bool:
    """In hedge mode, an order that closes its position side (SELL of LONG, BUY of SHORT)."""
    return (position_side == "LONG" and side == "SELL") or (position_side == "SHORT" and side == "BUY")


def _new_client_id() -> str:
    return uuid.uuid4().hex[:22]


class Engine:
    """The state of one simulated account on one exchange."""

    def __init__(
        self,
        market: MarketData,
        clock: Callable[[], int],
        *,
        slippage_bps: Decimal = ZERO,
        book: BookConfig | None = None,
        funding: FundingConfig | None = None,
        liquidation: bool = True,
        max_algo_orders_per_symbol: int | None = None,
    ) -> None:
        self.market = market
        # Where events go (the server's user stream); None: nobody listens.
        self.stream: EventSink | None = None
        # True: a crossed trigger stops in TRIGGERING until complete_triggers() (the server paces it).
        self.defer_triggers = False
        self.max_algo_orders_per_symbol = max_algo_orders_per_symbol
        self.clock = clock
        self.slippage_bps = slippage_bps
        self.book = book or BookConfig()
        self.funding = funding or FundingConfig()
        self.liquidation = liquidation
        self._ids = _Ids()
        self.reset()

    def reset(self) -> None:
        """Back to the fixtures' starting state (ids keep increasing so stale ids never match)."""
        self.marks: dict[str, Decimal] = dict(self.market.mark_prices)
        assets = [a["asset"] for a in self.market.exchange_info.get("assets", [])]
        wallet = {asset: ZERO for asset in assets}
        wallet.update(self.market.wallet)
        self.account = _Account(wallet=wallet)
        self.orders: dict[int, Order] = {}
        self.open_orders: dict[int, Order] = {}
        self.algo_orders: dict[int, AlgoOrder] = {}
        self.open_algo: dict[int, AlgoOrder] = {}
        # Crossed triggers waiting to be placed (TRIGGERING) and triggered algos by their real order.
        self.triggering: dict[int, AlgoOrder] = {}
        self._algo_by_order: dict[int, AlgoOrder] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.trades: list[Trade] = []
        self.income = IncomeLedger()
        self.funding_rates: dict[str, Decimal] = dict(self.market.funding_rates)
        # Index and last (contract) price where they differ from the mark (absent: equal to the mark).
        self.index_prices: dict[str, Decimal] = {}
        self.last_prices: dict[str, Decimal] = {}

    # ----- market data -------------------------------------------------------------------------

    def spec(self, symbol: str) -> SymbolSpec:
        """Rules of a known symbol; -1121 otherwise."""
        spec = self.market.symbols.get(symbol)
        if spec is None:
            raise errors.INVALID_SYMBOL()
        return spec

    def _trading_spec(self, params: Params) -> SymbolSpec:
        spec = self.spec(params.req_str("symbol"))
        if spec.status != "TRADING":
            raise errors.INVALID_SYMBOL_STATUS()
        return spec

    def mark(self, symbol: str) -> Decimal:
        """Current mark price (the fixture's until moved)."""
        return self.marks[symbol]

    def index_price(self, symbol: str) -> Decimal:
        """Index price (premiumIndex's indexPrice): the mark unless set apart."""
        return self.index_prices.get(symbol, self.marks[symbol])

    def last_price(self, symbol: str) -> Decimal:
        """Last contract price (the ticker's price; CONTRACT_PRICE triggers watch it): the mark unless set."""
        return self.last_prices.get(symbol, self.marks[symbol])

    def set_reference_prices(self, symbol: str, *, index: Decimal | None, last: Decimal | None) -> None:
        """Set the index and last price apart from the mark (None: follow the mark again)."""
        self.spec(symbol)
        for prices, value in ((self.index_prices, index), (self.last_prices, last)):
            if value is None:
                prices.pop(symbol, None)
            elif value <= 0:
                raise errors.PRICE_NOT_POSITIVE()
            else:
                prices[symbol] = value

    def funding_rate(self, symbol: str) -> Decimal:
        """The funding rate the next settlement of ``symbol`` uses."""
        return self.funding_rates.get(symbol, self.funding.default_rate)

    def _symbols(self, params: Params) -> list[SymbolSpec]:
        symbol = params.opt_str("symbol")
        return [self.spec(symbol)] if symbol else list(self.market.symbols.values())

    def premium_index(self, params: Params) -> JSON | list[JSON]:
        """GET /fapi/v1/premiumIndex."""
        now = self.clock()
        next_funding = next_funding_time(now, self.funding.interval_ms)
        rows = [
            {
                "symbol": s.symbol,
                "markPrice": fmt_places(self.mark(s.symbol), s.price_places),
                "indexPrice": fmt_places(self.index_price(s.symbol), s.price_places),
                "estimatedSettlePrice": fmt_places(self.index_price(s.symbol), s.price_places),
                "lastFundingRate": fmt_places(self.funding_rate(s.symbol), 8) if is_perpetual(s) else "",
                "interestRate": "0.00010000" if is_perpetual(s) else "",
                "nextFundingTime": next_funding if is_perpetual(s) else 0,
                "time": now,
            }
            for s in self._symbols(params)
            if s.symbol in self.marks
        ]
        return rows[0] if params.has("symbol") else rows

    def ticker_price(self, params: Params) -> JSON | list[JSON]:
        """GET /fapi/v1/ticker/price and /fapi/v2/ticker/price (the last contract price)."""
        now = self.clock()
        rows = [
            {"symbol": s.symbol, "price": fmt_places(self.last_price(s.symbol), s.price_places), "time": now}
            for s in self._symbols(params)
            if s.symbol in self.marks
        ]
        return rows[0] if params.has("symbol") else rows

    def leverage_bracket(self, params: Params) -> JSON | list[JSON]:
        """GET /fapi/v1/leverageBracket: an object when a symbol is given, else a list."""
        rows = []
        for s in self._symbols(params):
            brackets = [
                {
                    "bracket": b.bracket,
                    "initialLeverage": b.initial_leverage,
                    "notionalCap": int(b.notional_cap),
                    "notionalFloor": int(b.notional_floor),
                    "maintMarginRatio": float(b.maint_margin_ratio),
                    "cum": float(b.cum),
                }
                for b in s.brackets
            ]
            rows.append({"symbol": s.symbol, "brackets": brackets})
        return rows[0] if params.has("symbol") else rows

    # ----- account settings -------------------------------------------------------------------

    def leverage_of(self, symbol: str) -> int:
        """Leverage set for ``symbol`` (Binance's default 20, capped at the symbol's max)."""
        return self.account.leverage.get(symbol, min(DEFAULT_LEVERAGE, self.spec(symbol).max_leverage))

    def margin_type_of(self, symbol: str) -> str:
        """ISOLATED or CROSSED (the default)."""
        return self.account.margin_type.get(symbol, "CROSSED")

    def change_leverage(self, params: Params) -> JSON:
        """POST /fapi/v1/leverage."""
        spec = self.spec(params.req_str("symbol"))
        raw = params.req_str("leverage")
        leverage = params.req_int("leverage")
        if not 1 <= leverage <= spec.max_leverage:
            raise errors.invalid_leverage(raw)
        for side in self._position_sides():
            pos = self.positions.get((spec.symbol, side))
            if pos and abs(pos.amount) * self.mark(spec.symbol) > spec.max_notional(leverage):
                raise errors.MAX_POSITION_AT_LEVERAGE()
        self.account.leverage[spec.symbol] = leverage
        return {
            "leverage": leverage,
            "maxNotionalValue": fmt(spec.max_notional(leverage)),
            "symbol": spec.symbol,
        }

    def change_margin_type(self, params: Params) -> JSON:
        """POST /fapi/v1/marginType."""
        spec = self.spec(params.req_str("symbol"))
        margin_type = params.enum("marginType", MARGIN_TYPES)
        if margin_type == self.margin_type_of(spec.symbol):
            raise errors.MARGIN_TYPE_UNCHANGED()
        if any(o.symbol == spec.symbol for o in self.open_orders.values()):
            raise errors.MARGIN_TYPE_OPEN_ORDERS()
        if any(p.symbol == spec.symbol and p.amount for p in self.positions.values()):
            raise errors.MARGIN_TYPE_POSITION()
        self.account.margin_type[spec.symbol] = margin_type
        return {"code": 200, "msg": "success"}

    def position_mode(self) -> JSON:
        """GET /fapi/v1/positionSide/dual."""
        return {"dualSidePosition": self.account.dual_side}

    def change_position_mode(self, params: Params) -> JSON:
        """POST /fapi/v1/positionSide/dual."""
        params.req_str("dualSidePosition")
        dual = params.opt_bool("dualSidePosition")
        if dual == self.account.dual_side:
            raise errors.POSITION_MODE_UNCHANGED()
        if self.open_orders or self.open_algo:
            raise errors.POSITION_MODE_OPEN_ORDERS()
        if any(p.amount for p in self.positions.values()):
            raise errors.POSITION_MODE_POSITION()
        self.account.dual_side = dual
        self.positions.clear()
        return {"code": 200, "msg": "success"}

    def _position_sides(self) -> tuple[str, ...]:
        return ("LONG", "SHORT") if self.account.dual_side else ("BOTH",)

    # ----- margin ------------------------------------------------------------------------------

    def _position(self, symbol: str, position_side: str) -> Position:
        key = (symbol, position_side)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(symbol, position_side)
        return pos

    def _unrealized(self, pos: Position) -> Decimal:
        return (self.mark(pos.symbol) - pos.entry_price) * pos.amount if pos.amount else ZERO

    def _position_margin(self, pos: Position) -> Decimal:
        return abs(pos.amount) * self.mark(pos.symbol) / self.leverage_of(pos.symbol)

    def _order_margin(self, order: Order) -> Decimal:
        if order.reduce_only or not order.is_open:
            return ZERO
        return (order.orig_qty - order.executed_qty) * order.price / self.leverage_of(order.symbol)

    def _totals(self) -> dict[str, Decimal]:
        cross_upnl = ZERO
        upnl = ZERO
        position_margin = ZERO
        for pos in self.positions.values():
            if not pos.amount:
                continue
            pnl = self._unrealized(pos)
            upnl += pnl
            if self.margin_type_of(pos.symbol) == "CROSSED":
                cross_upnl += pnl
            position_margin += self._position_margin(pos)
        order_margin = sum((self._order_margin(o) for o in self.open_orders.values()), ZERO)
        wallet = self.account.wallet.get("USDT", ZERO)
        available = wallet + cross_upnl - position_margin - order_margin
        return {
            "wallet": wallet,
            "upnl": upnl,
            "cross_upnl": cross_upnl,
            "position_margin": position_margin,
            "order_margin": order_margin,
            "available": available,
        }

    def available_balance(self) -> Decimal:
        """USDT free for new positions: wallet + cross unrealized PnL - initial margins."""
        return self._totals()["available"]

    def _reducible(self, symbol: str, side: str, position_side: str) -> Decimal:
        """How much of an order on ``side`` would reduce the position rather than open one."""
        pos = self.positions.get((symbol, position_side))
        amount = pos.amount if pos else ZERO
        if position_side == "BOTH":
            if side == "BUY":
                return -amount if amount < 0 else ZERO
            return amount if amount > 0 else ZERO
        return abs(amount) if _hedge_closing(side, position_side) else ZERO

    def _check_margin(self, spec: SymbolSpec, increase: Decimal, price: Decimal) -> None:
        if increase <= 0:
            return
        leverage = self.leverage_of(spec.symbol)
        if increase * price / leverage > self.available_balance():
            raise errors.MARGIN_INSUFFICIENT()
        current = sum(
            (abs(p.amount) for p in self.positions.values() if p.symbol == spec.symbol and p.amount), ZERO
        )
        if (current + increase) * price > spec.max_notional(leverage):
            raise errors.MAX_POSITION_AT_LEVERAGE()

    # ----- validation -----------------------------------------------------------------------------

    def _quantity(self, spec: SymbolSpec, params: Params, *, market: bool) -> Decimal:
        qty = params.req_decimal("quantity")
        if decimals_of(qty) > spec.quantity_precision:
            raise errors.PRECISION()
        if qty <= 0:
            raise errors.QTY_NOT_POSITIVE()
        min_qty, max_qty, step = (
            (spec.market_min_qty, spec.market_max_qty, spec.market_step)
            if market
            else (spec.lot_min_qty, spec.lot_max_qty, spec.lot_step)
        )
        if qty < min_qty:
            raise errors.QTY_BELOW_MIN()
        if max_qty and qty > max_qty:
            raise errors.QTY_ABOVE_MAX()
        if step and (qty - min_qty) % step:
            raise errors.QTY_STEP()
        return qty

    def _price(self, spec: SymbolSpec, params: Params, name: str) -> Decimal:
        price = params.req_decimal(name)
        if decimals_of(price) > spec.price_places:
            raise errors.PRECISION()
        if price <= 0:
            raise errors.STOP_PRICE_NOT_POSITIVE() if name != "price" else errors.PRICE_NOT_POSITIVE()
        if spec.max_price and price > spec.max_price:
            raise errors.PRICE_ABOVE_MAX()
        if price < spec.min_price:
            raise errors.PRICE_BELOW_MIN()
        if spec.tick_size and (price - spec.min_price) % spec.tick_size:
            raise errors.PRICE_TICK()
        return price

    def _limit_band(self, spec: SymbolSpec, side: str, price: Decimal) -> None:
        mark = self.mark(spec.symbol)
        if not spec.multiplier_up:
            return
        if side == "BUY":
            cap = round_to_step(mark * spec.multiplier_up, spec.tick_size, up=False)
            if price > cap:
                raise errors.limit_price_too_high(fmt_places(cap, spec.price_places))
        else:
            floor = round_to_step(mark * spec.multiplier_down, spec.tick_size, up=True)
            if price < floor:
                raise errors.limit_price_too_low(fmt_places(floor, spec.price_places))

    def _position_side(self, params: Params) -> str:
        position_side = params.enum("positionSide", POSITION_SIDES, default="BOTH")
        if self.account.dual_side:
            if position_side == "BOTH":
                raise errors.POSITION_SIDE_MISMATCH()
            if params.opt_bool("reduceOnly"):
                raise errors.not_required("reduceOnly")
        elif position_side != "BOTH":
            raise errors.POSITION_SIDE_MISMATCH()
        return position_side

    def _market_fill_price(self, spec: SymbolSpec, side: str) -> Decimal:
        """The best price a taker meets in the synthetic book; -4131 when it is outside PERCENT_PRICE."""
        mark = self.mark(spec.symbol)
        price = best_price(spec, side, mark, self.book, self.slippage_bps)
        if side == "BUY":
            if spec.multiplier_up and price > mark * spec.multiplier_up:
                raise errors.PERCENT_PRICE()
        elif spec.multiplier_down and price < mark * spec.multiplier_down:
            raise errors.PERCENT_PRICE()
        return price

    # ----- orders -------------------------------------------------------------------------------

    def new_order(self, params: Params) -> JSON:
        """POST /fapi/v1/order (MARKET and LIMIT; conditional types belong to the algo API)."""
        spec = self._trading_spec(params)
        order_type = params.req_str("type")
        if order_type in CONDITIONAL_TYPES:
            raise errors.USE_ALGO_API()
        if order_type not in ORDER_TYPES:
            raise errors.INVALID_ORDER_TYPE()
        side = params.enum("side", SIDES, errors.INVALID_SIDE)
        position_side = self._position_side(params)
        reduce_only = params.opt_bool("reduceOnly")
        client_id = params.opt_client_id("newClientOrderId") or _new_client_id()
        resp_type = params.enum("newOrderRespType", RESP_TYPES, default="ACK")
        stp = params.enum("selfTradePreventionMode", STP_MODES, default="EXPIRE_MAKER")
        if params.has("closePosition") and params.opt_bool("closePosition"):
            raise errors.not_required("closePosition")
        market = order_type == "MARKET"
        qty = self._quantity(spec, params, market=market)
        good_till = 0
        if market:
            if params.has("price"):
                raise errors.not_required("price")
            tif = "GTC"
            price = ZERO
            reference = self.mark(spec.symbol)
        else:
            tif = params.enum("timeInForce", TIME_IN_FORCE, errors.INVALID_TIF)
            price = self._price(spec, params, "price")
            self._limit_band(spec, side, price)
            if tif == "GTD":
                good_till = params.req_int("goodTillDate")
            reference = price
        if not reduce_only and qty * reference < spec.min_notional:
            raise errors.min_notional(fmt(spec.min_notional))
        reducible = self._reducible(spec.symbol, side, position_side)
        if reduce_only and reducible <= 0:
            raise errors.REDUCE_ONLY_REJECTED()
        if _hedge_closing(side, position_side) and qty > reducible:
            # Hedge mode: a SELL of LONG (a BUY of SHORT) only closes; beyond the position, or with
            # none, it is refused, never a negative position.
            raise errors.REDUCE_ONLY_REJECTED()
        if any(o.client_order_id == client_id for o in self.open_orders.values()):
            raise errors.CLIENT_ID_DUPLICATED()
        if not reduce_only:
            self._check_margin(spec, qty - reducible, reference)
        fill_price = self._market_fill_price(spec, side) if market else ZERO
        marketable = market or (
            price >= self.mark(spec.symbol) if side == "BUY" else price <= self.mark(spec.symbol)
        )
        if not market and tif == "GTX" and marketable:
            raise errors.POST_ONLY_REJECTED()
        resting = sum(1 for o in self.open_orders.values() if o.symbol == spec.symbol)
        if not marketable and resting >= spec.max_num_orders:
            raise errors.MAX_OPEN_ORDERS()
        now = self.clock()
        order = Order(
            order_id=self._ids.next_order(),
            symbol=spec.symbol,
            client_order_id=client_id,
            side=side,
            position_side=position_side,
            type=order_type,
            orig_type=order_type,
            time_in_force=tif,
            orig_qty=qty,
            price=price,
            reduce_only=reduce_only,
            close_position=False,
            time=now,
            update_time=now,
            self_trade_prevention_mode=stp,
            good_till_date=good_till,
        )
        self.orders[order.order_id] = order
        self._execute(order, reduce_only=reduce_only, fill_price=fill_price, marketable=marketable)
        return self._order_json(order, ack=resp_type == "ACK", with_cum_qty=True)

    def _execute(self, order: Order, *, reduce_only: bool, fill_price: Decimal, marketable: bool) -> None:
        """Fill a new order now (MARKET, marketable LIMIT) or rest it (GTC/GTD LIMIT) or expire it.

        A reduce-only MARKET larger than the position fills the position size: its origQty shrinks
        to it and it ends FILLED (Binance answers such an order that way, not with a partial fill)."""
        spec = self.spec(order.symbol)
        if marketable:
            qty = order.orig_qty
            if reduce_only:
                qty = min(qty, self._reducible(order.symbol, order.side, order.position_side))
                if order.type == "MARKET" and 0 < qty < order.orig_qty:
                    order.orig_qty = qty
            self._on_order_update(order)
            price = fill_price
            if order.type == "LIMIT":
                taker = self._market_fill_price(spec, order.side)
                price = min(order.price, taker) if order.side == "BUY" else max(order.price, taker)
            if qty > 0 and order.type == "MARKET":
                # Level by level through the synthetic book, up to the marketTakeBound (the rest expires).
                for level_price, level_qty in market_fills(
                    spec, order.side, qty, self.mark(spec.symbol), self.book, self.slippage_bps
                ):
                    self._book_fill(order, level_qty, level_price, maker=False)
            elif qty > 0:
                self._book_fill(order, qty, price, maker=False)
            if order.executed_qty != order.orig_qty:
                order.status = "EXPIRED"
                self._on_order_update(order)
        elif order.time_in_force in ("IOC", "FOK"):
            self._on_order_update(order)
            order.status = "EXPIRED"
            self._on_order_update(order)
        else:
            self.open_orders[order.order_id] = order
            self._on_order_update(order)

    def _book_fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> Trade:
        """One fill with its events: ORDER_TRADE_UPDATE (x=TRADE), TRADE_LITE, ACCOUNT_UPDATE (ORDER)."""
        trade = self._fill(order, qty, price, maker=maker)
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self.open_orders.pop(order.order_id, None)
        self._on_order_update(order, trade)
        self._on_account_update("ORDER", (order.symbol,))
        return trade

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> Trade:
        """Book one fill: position, realized PnL, commission, wallet, order progress and the trade."""
        pos = self._position(order.symbol, order.position_side)
        signed = qty if order.side == "BUY" else -qty
        old = pos.amount
        realized = ZERO
        if old and (old > 0) != (signed > 0):
            closed = min(abs(old), qty)
            realized = _money((price - pos.entry_price) * closed * (ONE if old > 0 else -ONE))
            if qty > abs(old):
                pos.entry_price = price
            elif qty == abs(old):
                pos.entry_price = ZERO
        else:
            total = abs(old) + qty
            pos.entry_price = _money((abs(old) * pos.entry_price + qty * price) / total)
        pos.amount = old + signed
        now = self.clock()
        pos.update_time = now
        rate = self.market.maker_rate if maker else self.market.taker_rate
        quote = qty * price
        commission = _money(quote * rate)
        self.account.wallet["USDT"] = self.account.wallet.get("USDT", ZERO) + realized - commission
        order.executed_qty += qty
        order.cum_quote += quote
        order.update_time = now
        trade = Trade(
            trade_id=self._ids.next_trade(),
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            position_side=order.position_side,
            price=price,
            qty=qty,
            quote_qty=quote,
            commission=commission,
            realized_pnl=realized,
            maker=maker,
            time=now,
        )
        self.trades.append(trade)
        return trade

    def _find_order(self, params: Params) -> Order:
        spec = self.spec(params.req_str("symbol"))
        order_id = params.opt_int("orderId")
        client_id = params.opt_str("origClientOrderId")
        if order_id is None and client_id is None:
            raise errors.ORDER_ID_REQUIRED()
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.symbol != spec.symbol:
                raise errors.ORDER_NOT_FOUND()
            return order
        for candidate in reversed(self.orders.values()):
            if candidate.client_order_id == client_id and candidate.symbol == spec.symbol:
                return candidate
        raise errors.ORDER_NOT_FOUND()

    def query_order(self, params: Params) -> JSON:
        """GET /fapi/v1/order."""
        return self._order_json(self._find_order(params), with_time=True)

    def cancel_order(self, params: Params) -> JSON:
        """DELETE /fapi/v1/order: only open orders can be canceled (-2011 otherwise)."""
        try:
            order = self._find_order(params)
        except SimError as exc:
            if exc.code == -2013:
                raise errors.UNKNOWN_ORDER() from None
            raise
        if not order.is_open:
            raise errors.UNKNOWN_ORDER()
        order.status = "CANCELED"
        order.update_time = self.clock()
        self.open_orders.pop(order.order_id, None)
        self._on_order_update(order)
        return self._order_json(order, with_cum_qty=True)

    def list_open_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/openOrders."""
        symbol = params.opt_str("symbol")
        if symbol:
            self.spec(symbol)
        return [
            self._order_json(o, with_time=True)
            for o in self.open_orders.values()
            if not symbol or o.symbol == symbol
        ]

    def list_all_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/allOrders (symbol required; orderId, startTime, endTime, limit)."""
        spec = self.spec(params.req_str("symbol"))
        from_id = params.opt_int("orderId")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        limit = _limit(params)
        rows = [
            o
            for o in self.orders.values()
            if o.symbol == spec.symbol
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time >= start)
            and (end is None or o.time <= end)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [self._order_json(o, with_time=True) for o in rows]

    def user_trades(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/userTrades (symbol required; orderId, fromId, startTime, endTime, limit)."""
        spec = self.spec(params.req_str("symbol"))
        order_id = params.opt_int("orderId")
        from_id = params.opt_int("fromId")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        limit = _limit(params)
        rows = [
            t
            for t in self.trades
            if t.symbol == spec.symbol
            and (order_id is None or t.order_id == order_id)
            and (from_id is None or t.trade_id >= from_id)
            and (start is None or t.time >= start)
            and (end is None or t.time <= end)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [self._trade_json(t) for t in rows]

    # ----- algo orders -----------------------------------------------------------------------------

    def new_algo_order(self, params: Params) -> JSON:
        """POST /fapi/v1/algoOrder with algoType=CONDITIONAL."""
        params.enum("algoType", frozenset({"CONDITIONAL"}))
        spec = self._trading_spec(params)
        order_type = params.req_str("type")
        if order_type not in CONDITIONAL_TYPES:
            raise errors.INVALID_ORDER_TYPE()
        side = params.enum("side", SIDES, errors.INVALID_SIDE)
        position_side = self._position_side(params)
        close_position = params.opt_bool("closePosition")
        reduce_only = params.opt_bool("reduceOnly")
        working_type = params.enum("workingType", WORKING_TYPES, default="CONTRACT_PRICE")
        price_protect = params.opt_bool("priceProtect")
        tif = params.enum("timeInForce", TIME_IN_FORCE, errors.INVALID_TIF, default="GTC")
        stp = params.enum("selfTradePreventionMode", STP_MODES, default="EXPIRE_MAKER")
        client_id = params.opt_client_id("clientAlgoId") or _new_client_id()
        market = order_type.endswith("_MARKET")
        if close_position:
            if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise errors.close_position_invalid(order_type)
            if params.has("quantity"):
                raise errors.not_required("quantity")
            if reduce_only:
                raise errors.not_required("reduceOnly")
            qty = ZERO
        else:
            qty = self._quantity(spec, params, market=market)
        price = ZERO
        if market:
            if params.has("price"):
                raise errors.not_required("price")
        else:
            price = self._price(spec, params, "price")
        mark = self.mark(spec.symbol)
        activate: Decimal | None = None
        callback: Decimal | None = None
        trigger = ZERO
        if order_type == "TRAILING_STOP_MARKET":
            callback = params.req_decimal("callbackRate")
            if not Decimal("0.1") <= callback <= Decimal(10):
                raise errors.CALLBACK_RATE()
            activate_name = "activationPrice" if params.has("activationPrice") else "activatePrice"
            if params.has(activate_name):
                activate = self._price(spec, params, activate_name)
                if (side == "SELL" and activate <= mark) or (side == "BUY" and activate >= mark):
                    raise errors.WOULD_TRIGGER()
            reference = activate if activate is not None else mark
        else:
            trigger = self._price(spec, params, "triggerPrice")
            if _crossed(order_type, side, trigger, self._working_price(spec.symbol, working_type)):
                raise errors.WOULD_TRIGGER()
            reference = trigger
        if not (reduce_only or close_position) and qty * (price or reference) < spec.min_notional:
            raise errors.min_notional(fmt(spec.min_notional))
        per_symbol = self.max_algo_orders_per_symbol or spec.max_num_algo_orders
        pending = [*self.open_algo.values(), *self.triggering.values()]
        if len(pending) >= MAX_OPEN_ALGO_ORDERS or (
            per_symbol is not None and sum(1 for a in pending if a.symbol == spec.symbol) >= per_symbol
        ):
            raise errors.MAX_STOP_ORDERS()
        if any(a.client_algo_id == client_id for a in self.open_algo.values()):
            raise errors.CLIENT_ID_DUPLICATED()
        now = self.clock()
        algo = AlgoOrder(
            algo_id=self._ids.next_algo(),
            client_algo_id=client_id,
            symbol=spec.symbol,
            side=side,
            position_side=position_side,
            order_type=order_type,
            time_in_force=tif,
            quantity=qty,
            trigger_price=trigger,
            price=price,
            working_type=working_type,
            close_position=close_position,
            price_protect=price_protect,
            reduce_only=reduce_only,
            activate_price=activate,
            callback_rate=callback,
            self_trade_prevention_mode=stp,
            good_till_date=params.opt_int("goodTillDate") or 0,
            create_time=now,
            update_time=now,
            trailing_extreme=mark if order_type == "TRAILING_STOP_MARKET" and activate is None else None,
        )
        self.algo_orders[algo.algo_id] = algo
        self.open_algo[algo.algo_id] = algo
        self._on_algo_update(algo)
        return self._algo_json(algo, query=False)

    def _find_algo(self, params: Params) -> AlgoOrder:
        algo_id = params.opt_int("algoId")
        client_id = params.opt_str("clientAlgoId")
        if algo_id is None and client_id is None:
            raise errors.ALGO_ID_REQUIRED()
        if algo_id is not None:
            algo = self.algo_orders.get(algo_id)
            if algo is None:
                raise errors.ORDER_NOT_FOUND()
            return algo
        for candidate in reversed(self.algo_orders.values()):
            if candidate.client_algo_id == client_id:
                return candidate
        raise errors.ORDER_NOT_FOUND()

    def query_algo_order(self, params: Params) -> JSON:
        """GET /fapi/v1/algoOrder by algoId or clientAlgoId."""
        return self._algo_json(self._find_algo(params), query=True)

    def cancel_algo_order(self, params: Params) -> JSON:
        """DELETE /fapi/v1/algoOrder."""
        try:
            algo = self._find_algo(params)
        except SimError as exc:
            if exc.code == -2013:
                raise errors.UNKNOWN_ORDER() from None
            raise
        if not algo.is_open:
            raise errors.UNKNOWN_ORDER()
        self._cancel_algo(algo)
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def _cancel_algo(self, algo: AlgoOrder) -> None:
        self.open_algo.pop(algo.algo_id, None)
        self._set_algo_status(algo, "CANCELED")

    def cancel_all_algo_orders(self, params: Params) -> JSON:
        """DELETE /fapi/v1/algoOpenOrders for one symbol."""
        spec = self.spec(params.req_str("symbol"))
        for algo in [a for a in self.open_algo.values() if a.symbol == spec.symbol]:
            self._cancel_algo(algo)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def list_open_algo_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/openAlgoOrders."""
        symbol = params.opt_str("symbol")
        if symbol:
            self.spec(symbol)
        return [
            self._algo_json(a, query=True)
            for a in self.open_algo.values()
            if not symbol or a.symbol == symbol
        ]

    def list_all_algo_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/allAlgoOrders (symbol required; algoId, startTime, endTime, limit)."""
        spec = self.spec(params.req_str("symbol"))
        from_id = params.opt_int("algoId")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        limit = _limit(params)
        rows = [
            a
            for a in self.algo_orders.values()
            if a.symbol == spec.symbol
            and (from_id is None or a.algo_id >= from_id)
            and (start is None or a.create_time >= start)
            and (end is None or a.create_time <= end)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [self._algo_json(a, query=True) for a in rows]

    # ----- price moves and triggers ----------------------------------------------------------------

    def set_mark_price(self, symbol: str, price: Decimal) -> None:
        """Move the mark price; fills crossed resting LIMIT orders, then fires crossed algo orders."""
        self.spec(symbol)
        if price <= 0:
            raise errors.PRICE_NOT_POSITIVE()
        self.marks[symbol] = price
        for order in [o for o in self.open_orders.values() if o.symbol == symbol]:
            crossed = price <= order.price if order.side == "BUY" else price >= order.price
            if crossed:
                self._fill_resting(order)
        for algo in [a for a in self.open_algo.values() if a.symbol == symbol]:
            if self._should_fire(algo, self._working_price(symbol, algo.working_type)):
                self._fire(algo)
        if not self.defer_triggers:
            self.complete_triggers()  # checks liquidation after the placements
        elif not self.triggering:
            self._check_liquidation()

    def _working_price(self, symbol: str, working_type: str) -> Decimal:
        """The price a trigger watches: the mark for MARK_PRICE, the last price for CONTRACT_PRICE."""
        return self.mark(symbol) if working_type == "MARK_PRICE" else self.last_price(symbol)

    def _check_liquidation(self) -> None:
        """Liquidate positions at or below their maintenance margin (when liquidation is switched on)."""
        if self.liquidation:
            liquidation.liquidate_below_maintenance(self)

    # ----- events: the user data stream ---------------------------------------------------------------

    def _on_order_update(self, order: Order, trade: Trade | None = None) -> None:
        """An order changed (new, filled by ``trade``, canceled, expired): ORDER_TRADE_UPDATE (and
        TRADE_LITE for a fill). An algo order whose real order is done becomes FINISHED."""
        stream = self.stream
        if stream is not None and stream.active:
            now = self.clock()
            if trade is not None:
                stream.publish(events.trade_lite(self, order, trade, now))
            stream.publish(events.order_trade_update(self, order, trade, now))
        if not order.is_open:
            algo = self._algo_by_order.pop(order.order_id, None)
            if algo is not None and algo.algo_status == "TRIGGERED":
                self._set_algo_status(algo, "FINISHED")

    def _on_account_update(
        self, reason: str, symbols: Iterable[str] = (), assets: Iterable[str] = ("USDT",)
    ) -> None:
        """Balances or positions changed for ``reason`` (ORDER, FUNDING_FEE, ...): ACCOUNT_UPDATE."""
        stream = self.stream
        if stream is not None and stream.active:
            stream.publish(events.account_update(self, reason, symbols, assets, self.clock()))

    def _on_algo_update(self, algo: AlgoOrder) -> None:
        """An algo order changed status: ALGO_UPDATE."""
        stream = self.stream
        if stream is not None and stream.active:
            stream.publish(events.algo_update(self, algo, self.clock()))

    def _set_algo_status(self, algo: AlgoOrder, status: str, reason: str = "") -> None:
        algo.algo_status = status
        algo.update_time = self.clock()
        if reason:
            algo.reject_reason = reason
        if algo.actual_order_id is not None:
            actual = self.orders.get(algo.actual_order_id)
            if actual is not None and actual.executed_qty:
                algo.actual_price = actual.avg_price
        self._on_algo_update(algo)

    def trade_against(self, symbol: str, client_order_id: str, quantity: Decimal) -> dict[str, Any]:
        """A taker trades ``quantity`` against our resting order at its price (one maker fill).

        On Binance a resting LIMIT fills in pieces as takers meet it, each with its own
        ORDER_TRADE_UPDATE (x=TRADE, X=PARTIALLY_FILLED until the last) and ACCOUNT_UPDATE; the mark
        crossing the price (``set_mark_price``) fills the whole remainder. At most the remainder
        fills; a reduce-only order at most what it can reduce."""
        order = next(
            (
                o
                for o in self.open_orders.values()
                if o.symbol == symbol and o.client_order_id == client_order_id
            ),
            None,
        )
        if order is None:
            raise errors.UNKNOWN_ORDER()
        if quantity <= 0:
            raise errors.invalid_value("quantity")
        qty = min(quantity, order.orig_qty - order.executed_qty)
        if order.reduce_only:
            qty = min(qty, self._reducible(order.symbol, order.side, order.position_side))
        if qty > 0:
            self._book_fill(order, qty, order.price, maker=True)
        return self._order_json(order, ack=False, with_cum_qty=True)

    def _fill_resting(self, order: Order) -> None:
        qty = order.orig_qty - order.executed_qty
        if order.reduce_only:
            qty = min(qty, self._reducible(order.symbol, order.side, order.position_side))
        self.open_orders.pop(order.order_id, None)
        if qty > 0:
            self._book_fill(order, qty, order.price, maker=True)
        if order.executed_qty != order.orig_qty:
            order.status = "EXPIRED"
            order.update_time = self.clock()
            self._on_order_update(order)

    def _should_fire(self, algo: AlgoOrder, price: Decimal) -> bool:
        if algo.order_type != "TRAILING_STOP_MARKET":
            return _crossed(algo.order_type, algo.side, algo.trigger_price, price)
        assert algo.callback_rate is not None
        if algo.trailing_extreme is None:
            assert algo.activate_price is not None
            activated = price >= algo.activate_price if algo.side == "SELL" else price <= algo.activate_price
            if not activated:
                return False
            algo.trailing_extreme = price
        rate = algo.callback_rate / _HUNDRED
        if algo.side == "SELL":
            algo.trailing_extreme = max(algo.trailing_extreme, price)
            fire = price <= algo.trailing_extreme * (ONE - rate)
        else:
            algo.trailing_extreme = min(algo.trailing_extreme, price)
            fire = price >= algo.trailing_extreme * (ONE + rate)
        if fire:
            spec = self.spec(algo.symbol)
            algo.trigger_price = round_to_step(price, spec.tick_size, up=algo.side == "BUY")
        return fire

    def _fire(self, algo: AlgoOrder) -> None:
        """The trigger is crossed: NEW -> TRIGGERING (placed by :meth:`complete_triggers`, at once
        unless the server paces it with its trigger delay)."""
        now = self.clock()
        algo.trigger_time = now
        self.open_algo.pop(algo.algo_id, None)
        self.triggering[algo.algo_id] = algo
        self._set_algo_status(algo, "TRIGGERING")

    def complete_triggers(self) -> None:
        """Place the real order of every TRIGGERING algo order (TRIGGERED, then FINISHED once that
        order is filled, canceled or expired; REJECTED when it cannot be placed)."""
        while self.triggering:
            algo_id = next(iter(self.triggering))
            self._place_triggered(self.triggering.pop(algo_id))
        self._check_liquidation()

    def _place_triggered(self, algo: AlgoOrder) -> None:
        """Submit the real order. A reduce-only/closePosition trigger with nothing to reduce is
        REJECTED with rm "Reduce Only reject" and no order behind it (ALGO_UPDATE docs)."""
        now = self.clock()
        spec = self.spec(algo.symbol)
        market = algo.order_type.endswith("_MARKET")
        reduce_only = algo.reduce_only or algo.close_position
        reducible = self._reducible(algo.symbol, algo.side, algo.position_side)
        qty = reducible if algo.close_position else algo.quantity
        if _hedge_closing(algo.side, algo.position_side):
            reduce_only = True
        if reduce_only and reducible <= 0:
            self._set_algo_status(algo, "REJECTED", "Reduce Only reject")
            return
        try:
            if not reduce_only:
                self._check_margin(spec, qty, self.mark(spec.symbol) if market else algo.price)
            fill_price = self._market_fill_price(spec, algo.side) if market else ZERO
        except SimError as exc:
            self._set_algo_status(algo, "REJECTED", exc.msg)
            return
        order = Order(
            order_id=self._ids.next_order(),
            symbol=algo.symbol,
            client_order_id=_new_client_id(),
            side=algo.side,
            position_side=algo.position_side,
            type="MARKET" if market else "LIMIT",
            orig_type=algo.order_type,
            time_in_force=algo.time_in_force,
            orig_qty=qty,
            price=algo.price,
            reduce_only=algo.reduce_only,
            close_position=algo.close_position,
            time=now,
            update_time=now,
            stop_price=algo.trigger_price,
            working_type=algo.working_type,
            price_protect=algo.price_protect,
            self_trade_prevention_mode=algo.self_trade_prevention_mode,
            good_till_date=algo.good_till_date,
        )
        mark = self.mark(spec.symbol)
        marketable = market or (algo.price >= mark if algo.side == "BUY" else algo.price <= mark)
        self.orders[order.order_id] = order
        algo.actual_order_id = order.order_id
        self._algo_by_order[order.order_id] = algo
        self._set_algo_status(algo, "TRIGGERED")
        self._execute(order, reduce_only=reduce_only, fill_price=fill_price, marketable=marketable)

    # ----- account views ----------------------------------------------------------------------------

    def _position_rows(
        self, symbols: Iterable[SymbolSpec], *, only_active: bool
    ) -> list[tuple[SymbolSpec, Position]]:
        rows = []
        for spec in symbols:
            for side in self._position_sides():
                pos = self.positions.get((spec.symbol, side)) or Position(spec.symbol, side)
                active = bool(pos.amount) or any(o.symbol == spec.symbol for o in self.open_orders.values())
                if only_active and not active:
                    continue
                rows.append((spec, pos))
        return rows

    def _position_fields(self, spec: SymbolSpec, pos: Position) -> JSON:
        mark = self.mark(spec.symbol)
        leverage = self.leverage_of(spec.symbol)
        upnl = _money(self._unrealized(pos))
        margin = _money(self._position_margin(pos)) if pos.amount else ZERO
        isolated = self.margin_type_of(spec.symbol) == "ISOLATED"
        isolated_wallet = _money(liquidation.isolated_wallet(self, pos))
        fee = self.market.taker_rate
        break_even = pos.entry_price * (ONE + fee if pos.amount > 0 else ONE - fee) if pos.amount else ZERO
        order_margin = sum(
            (self._order_margin(o) for o in self.open_orders.values() if o.symbol == spec.symbol), ZERO
        )
        return {
            "symbol": spec.symbol,
            "positionSide": pos.position_side,
            "positionAmt": fmt_places(pos.amount, spec.qty_places),
            "entryPrice": fmt(pos.entry_price.normalize()) if pos.entry_price else "0.0",
            "breakEvenPrice": fmt(_money(break_even).normalize()) if pos.amount else "0.0",
            "markPrice": fmt_places(mark, MONEY_PLACES),
            "unRealizedProfit": fmt_places(upnl, MONEY_PLACES),
            "liquidationPrice": _liquidation_text(liquidation.liquidation_price(self, pos)),
            "leverage": leverage,
            "maxNotionalValue": fmt(spec.max_notional(leverage)),
            "marginType": "isolated" if isolated else "cross",
            "isolated": isolated,
            "isolatedMargin": fmt_places(isolated_wallet + upnl if isolated else ZERO, MONEY_PLACES),
            "isolatedWallet": fmt_places(isolated_wallet, MONEY_PLACES),
            "notional": fmt_places(_money(pos.amount * mark), MONEY_PLACES),
            "initialMargin": fmt_places(_money(margin + order_margin), MONEY_PLACES),
            "positionInitialMargin": fmt_places(margin, MONEY_PLACES),
            "openOrderInitialMargin": fmt_places(_money(order_margin), MONEY_PLACES),
            "maintMargin": fmt_places(_money(liquidation.position_maint_margin(self, pos)), MONEY_PLACES),
            "updateTime": pos.update_time,
        }

    def position_risk(self, params: Params, version: int) -> list[JSON]:
        """GET /fapi/v2/positionRisk (every symbol) and /fapi/v3/positionRisk (active ones only)."""
        rows = self._position_rows(self._symbols(params), only_active=version >= 3)
        result = []
        for spec, pos in rows:
            f = self._position_fields(spec, pos)
            if version >= 3:
                result.append(
                    {k: f[k] for k in _V3_POSITION_KEYS}
                    | {"marginAsset": "USDT", "adl": 0, "bidNotional": "0", "askNotional": "0"}
                )
            else:
                result.append(
                    {k: f[k] for k in _V2_POSITION_KEYS}
                    | {
                        "isAutoAddMargin": "false",
                        "leverage": str(f["leverage"]),
                        "marginType": f["marginType"],
                    }
                )
        return result

    def _asset_rows(self) -> list[JSON]:
        totals = self._totals()
        now = self.clock()
        rows = []
        for asset, balance in self.account.wallet.items():
            usdt = asset == "USDT"
            available = totals["available"] if usdt else balance
            rows.append(
                {
                    "asset": asset,
                    "walletBalance": fmt_places(balance, MONEY_PLACES),
                    "unrealizedProfit": fmt_places(_money(totals["upnl"]) if usdt else ZERO, MONEY_PLACES),
                    "marginBalance": fmt_places(
                        _money(balance + (totals["upnl"] if usdt else ZERO)), MONEY_PLACES
                    ),
                    "maintMargin": fmt_places(
                        _money(liquidation.total_maint_margin(self)) if usdt else ZERO, MONEY_PLACES
                    ),
                    "initialMargin": fmt_places(
                        _money(totals["position_margin"] + totals["order_margin"]) if usdt else ZERO,
                        MONEY_PLACES,
                    ),
                    "positionInitialMargin": fmt_places(
                        _money(totals["position_margin"]) if usdt else ZERO, 8
                    ),
                    "openOrderInitialMargin": fmt_places(_money(totals["order_margin"]) if usdt else ZERO, 8),
                    "crossWalletBalance": fmt_places(balance, MONEY_PLACES),
                    "crossUnPnl": fmt_places(_money(totals["cross_upnl"]) if usdt else ZERO, MONEY_PLACES),
                    "availableBalance": fmt_places(_money(available), MONEY_PLACES),
                    "maxWithdrawAmount": fmt_places(_money(max(available, ZERO)), MONEY_PLACES),
                    "marginAvailable": True,
                    "updateTime": now,
                }
            )
        return rows

    def balance(self, version: int) -> list[JSON]:
        """GET /fapi/v2/balance and /fapi/v3/balance."""
        return [
            {
                "accountAlias": "SgsR",
                "asset": row["asset"],
                "balance": row["walletBalance"],
                "crossWalletBalance": row["crossWalletBalance"],
                "crossUnPnl": row["crossUnPnl"],
                "availableBalance": row["availableBalance"],
                "maxWithdrawAmount": row["maxWithdrawAmount"],
                "marginAvailable": row["marginAvailable"],
                "updateTime": row["updateTime"],
            }
            for row in self._asset_rows()
        ]

    def account_info(self, version: int) -> JSON:
        """GET /fapi/v2/account (all symbols' positions) and /fapi/v3/account (active positions only)."""
        totals = self._totals()
        margin = _money(totals["position_margin"] + totals["order_margin"])
        body: JSON = {}
        if version < 3:
            body |= {
                "feeTier": 0,
                "feeBurn": False,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": True,
                "updateTime": 0,
                "multiAssetsMargin": False,
                "tradeGroupId": -1,
            }
        body |= {
            "totalInitialMargin": fmt_places(margin, MONEY_PLACES),
            "totalMaintMargin": fmt_places(_money(liquidation.total_maint_margin(self)), MONEY_PLACES),
            "totalWalletBalance": fmt_places(totals["wallet"], MONEY_PLACES),
            "totalUnrealizedProfit": fmt_places(_money(totals["upnl"]), MONEY_PLACES),
            "totalMarginBalance": fmt_places(_money(totals["wallet"] + totals["upnl"]), MONEY_PLACES),
            "totalPositionInitialMargin": fmt_places(_money(totals["position_margin"]), MONEY_PLACES),
            "totalOpenOrderInitialMargin": fmt_places(_money(totals["order_margin"]), MONEY_PLACES),
            "totalCrossWalletBalance": fmt_places(totals["wallet"], MONEY_PLACES),
            "totalCrossUnPnl": fmt_places(_money(totals["cross_upnl"]), MONEY_PLACES),
            "availableBalance": fmt_places(_money(totals["available"]), MONEY_PLACES),
            "maxWithdrawAmount": fmt_places(_money(max(totals["available"], ZERO)), MONEY_PLACES),
            "assets": self._asset_rows(),
        }
        positions = []
        for spec, pos in self._position_rows(self.market.symbols.values(), only_active=version >= 3):
            f = self._position_fields(spec, pos)
            # /fapi/v2|v3/account spells it unrealizedProfit (positionRisk: unRealizedProfit).
            row = {
                ("unrealizedProfit" if k == "unRealizedProfit" else k): f[k] for k in _ACCOUNT_POSITION_KEYS
            }
            if version < 3:
                row |= {
                    "leverage": str(f["leverage"]),
                    "isolated": f["isolated"],
                    "entryPrice": f["entryPrice"],
                }
                row |= {"maxNotional": f["maxNotionalValue"], "bidNotional": "0", "askNotional": "0"}
            positions.append(row)
        body["positions"] = positions
        return body

    # ----- JSON shapes --------------------------------------------------------------------------

    def _order_json(
        self, order: Order, *, ack: bool = False, with_time: bool = False, with_cum_qty: bool = False
    ) -> JSON:
        spec = self.spec(order.symbol)
        if ack:
            status, executed, cum_quote, avg = "NEW", "0", "0", "0.00"
        else:
            status = order.status
            executed = fmt_places(order.executed_qty, spec.qty_places)
            cum_quote = fmt(order.cum_quote) if order.cum_quote else "0"
            avg = _price_text(order.avg_price, spec.price_places) if order.executed_qty else "0.00"
        body: JSON = {
            "orderId": order.order_id,
            "symbol": order.symbol,
            "status": status,
            "clientOrderId": order.client_order_id,
            "price": fmt_places(order.price, spec.price_places),
            "avgPrice": avg,
            "origQty": fmt_places(order.orig_qty, spec.qty_places),
            "executedQty": executed,
        }
        if with_cum_qty:
            body["cumQty"] = executed
        body |= {
            "cumQuote": cum_quote,
            "timeInForce": order.time_in_force,
            "type": order.type,
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side,
            "positionSide": order.position_side,
            "stopPrice": fmt_places(order.stop_price, spec.price_places),
            "workingType": order.working_type,
            "priceProtect": order.price_protect,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": order.self_trade_prevention_mode,
            "goodTillDate": order.good_till_date,
        }
        if with_time:
            body["time"] = order.time
        body["updateTime"] = order.update_time
        return body

    def _algo_json(self, algo: AlgoOrder, *, query: bool) -> JSON:
        spec = self.spec(algo.symbol)
        body: JSON = {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": algo.order_type,
            "symbol": algo.symbol,
            "side": algo.side,
            "positionSide": algo.position_side,
            "timeInForce": algo.time_in_force,
            "quantity": fmt_places(algo.quantity, spec.qty_places),
            "algoStatus": algo.algo_status,
        }
        if query:
            # GET /fapi/v1/algoOrder: "actualOrderId" "" and "actualPrice" "0.00000" until triggered.
            body["actualOrderId"] = "" if algo.actual_order_id is None else str(algo.actual_order_id)
            body["actualPrice"] = (
                "0.00000" if algo.actual_price is None else _price_text(algo.actual_price, spec.price_places)
            )
        body |= {
            "triggerPrice": fmt_places(algo.trigger_price, spec.price_places),
            "price": fmt_places(algo.price, spec.price_places),
            "icebergQuantity": None,
        }
        if query:
            # The query answers carry the (unused for CONDITIONAL) TP/SL attachment fields too.
            zero = fmt_places(ZERO, spec.price_places)
            body |= {
                "tpTriggerPrice": zero,
                "tpPrice": zero,
                "slTriggerPrice": zero,
                "slPrice": zero,
                "tpOrderType": "",
            }
        body |= {
            "selfTradePreventionMode": algo.self_trade_prevention_mode,
            "workingType": algo.working_type,
            "priceMatch": "NONE",
            "closePosition": algo.close_position,
            "priceProtect": algo.price_protect,
            "reduceOnly": algo.reduce_only,
            "activatePrice": ""
            if algo.activate_price is None
            else fmt_places(algo.activate_price, spec.price_places),
            "callbackRate": "" if algo.callback_rate is None else fmt(algo.callback_rate),
            "createTime": algo.create_time,
            "updateTime": algo.update_time,
            "triggerTime": algo.trigger_time,
            "goodTillDate": algo.good_till_date,
        }
        return body

    def _trade_json(self, trade: Trade) -> JSON:
        spec = self.spec(trade.symbol)
        return {
            "buyer": trade.side == "BUY",
            "commission": fmt_places(trade.commission, MONEY_PLACES),
            "commissionAsset": "USDT",
            "id": trade.trade_id,
            "marginAsset": "USDT",
            "maker": trade.maker,
            "orderId": trade.order_id,
            "price": fmt_places(trade.price, spec.price_places),
            "qty": fmt_places(trade.qty, spec.qty_places),
            "quoteQty": fmt(trade.quote_qty),
            "realizedPnl": fmt_places(trade.realized_pnl, MONEY_PLACES),
            "side": trade.side,
            "positionSide": trade.position_side,
            "symbol": trade.symbol,
            "time": trade.time,
        }

    def state(self) -> JSON:
        """Everything for GET /_sim/state: Binance-shaped orders, algo orders, trades, positions, balances."""
        return {
            "serverTime": self.clock(),
            "markPrices": {s: fmt(p) for s, p in self.marks.items()},
            "dualSidePosition": self.account.dual_side,
            "leverage": dict(self.account.leverage),
            "marginType": dict(self.account.margin_type),
            "balances": self._asset_rows(),
            "positions": [
                self._position_fields(self.spec(p.symbol), p) for p in self.positions.values() if p.amount
            ],
            "orders": [self._order_json(o, with_time=True) for o in self.orders.values()],
            "openOrderIds": list(self.open_orders),
            "algoOrders": [self._algo_json(a, query=True) for a in self.algo_orders.values()],
            "trades": [self._trade_json(t) for t in self.trades],
        }

    def set_balance(self, asset: str, balance: Decimal) -> None:
        """Set a wallet balance directly (tests of -2019 and of low-balance behaviour)."""
        self.account.wallet[asset] = balance


_V2_POSITION_KEYS: Final = (
    "entryPrice",
    "breakEvenPrice",
    "isolatedMargin",
    "liquidationPrice",
    "markPrice",
    "maxNotionalValue",
    "positionAmt",
    "notional",
    "isolatedWallet",
    "symbol",
    "unRealizedProfit",
    "positionSide",
    "updateTime",
)
_V3_POSITION_KEYS: Final = (
    "symbol",
    "positionSide",
    "positionAmt",
    "entryPrice",
    "breakEvenPrice",
    "markPrice",
    "unRealizedProfit",
    "liquidationPrice",
    "isolatedMargin",
    "notional",
    "isolatedWallet",
    "initialMargin",
    "maintMargin",
    "positionInitialMargin",
    "openOrderInitialMargin",
    "updateTime",
)
_ACCOUNT_POSITION_KEYS: Final = (
    "symbol",
    "positionSide",
    "positionAmt",
    "unRealizedProfit",
    "isolatedMargin",
    "notional",
    "isolatedWallet",
    "initialMargin",
    "maintMargin",
    "updateTime",
)


def _crossed(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Binance's trigger rule: STOP BUY at price >= trigger, SELL <=; TAKE_PROFIT the other way round."""
    if order_type.startswith("STOP"):
        return price >= trigger if side == "BUY" else price <= trigger
    return price <= trigger if side == "BUY" else price >= trigger


def _liquidation_text(price: Decimal) -> str:
    """Binance prints a liquidation price to 8 places, and "0" when there is none."""
    return fmt_places(price, MONEY_PLACES) if price else "0"


def _price_text(value: Decimal, places: int) -> str:
    if decimals_of(value.normalize()) <= places:
        return fmt_places(value, places)
    return fmt(_money(value))


def _limit(params: Params) -> int:
    limit = params.opt_int("limit")
    if limit is None:
        return 500
    if not 1 <= limit <= 1000:
        raise errors.invalid_value("limit")
    return limit
