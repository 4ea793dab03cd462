"""The simulator's records: orders, algo orders, positions, trades, the account, ids and constants.

Plain data and small pure helpers, imported by every other part of the exchange (no I/O, no clock).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from binance_sim import errors
from binance_sim.market import ZERO, decimals_of, fmt, fmt_places
from binance_sim.params import Params

JSON = dict[str, Any]


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
PRICE_MATCHES: Final = frozenset(
    {
        "NONE",
        "OPPONENT",
        "OPPONENT_5",
        "OPPONENT_10",
        "OPPONENT_20",
        "QUEUE",
        "QUEUE_5",
        "QUEUE_10",
        "QUEUE_20",
    }
)
# goodTillDate: "greater than the current time plus 600 seconds and smaller than 253402300799000".
GTD_MIN_AHEAD_MS: Final = 600_000
GTD_MAX: Final = 253_402_300_799_000
STP_MODES: Final = frozenset({"NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"})
# ORDER_TRADE_UPDATE "er", Binance's "Expiry Reason" list ("Event: Order Update", USD-M user data streams).
EXPIRE_NONE: Final = 0
EXPIRE_STP: Final = 1  # expired to prevent trading against oneself
EXPIRE_IOC: Final = 2  # IOC could not be filled completely, the rest canceled
EXPIRE_IOC_STP: Final = 3  # IOC stopped by self-trade prevention
EXPIRE_REDUCE_ONLY: Final = 4  # knocked out by a higher-priority reduce-only order / would reverse
EXPIRE_LIQUIDATION: Final = 5  # expired when the account was liquidated
EXPIRE_GTE: Final = 6  # GTE condition unsatisfied
OPEN_STATUSES: Final = frozenset({"NEW", "PARTIALLY_FILLED"})
MAX_OPEN_ALGO_ORDERS: Final = 200
DEFAULT_LEVERAGE: Final = 20
MONEY_PLACES: Final = 8
MONEY_QUANT: Final = Decimal(1).scaleb(-MONEY_PLACES)
HUNDRED: Final = Decimal(100)


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
    price_match: str = "NONE"
    # An order the exchange placed to close a position: LIQUIDATION, ADL or SETTLEMENT ("": the user's).
    auto_close: str = ""
    # ORDER_TRADE_UPDATE "er" once expired (see EXPIRE_REASONS).
    expire_reason: int = 0

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
    # Accumulated realized PnL before fees (ACCOUNT_UPDATE ``cr``).
    realized: Decimal = ZERO


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
class Ids:
    """Id counters (they keep increasing across resets and restarts, so stale ids never match)."""

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
class Account:
    """Wallet balances and account settings."""

    wallet: dict[str, Decimal]
    dual_side: bool = False
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)


def money(value: Decimal) -> Decimal:
    """Rounded to Binance's 8 places of USDT."""
    return value.quantize(MONEY_QUANT, ROUND_HALF_UP)


def hedge_closing(side: str, position_side: str) -> bool:
    """In hedge mode, an order that closes its position side (SELL of LONG, BUY of SHORT)."""
    return (position_side == "LONG" and side == "SELL") or (position_side == "SHORT" and side == "BUY")


def new_client_id() -> str:
    """A client order id as Binance makes one when none is given."""
    return uuid.uuid4().hex[:22]


def crossed(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Binance's trigger rule: STOP BUY at price >= trigger, SELL <=; TAKE_PROFIT the other way round."""
    if order_type.startswith("STOP"):
        return price >= trigger if side == "BUY" else price <= trigger
    return price <= trigger if side == "BUY" else price >= trigger


def liquidation_text(price: Decimal) -> str:
    """Binance prints a liquidation price to 8 places, and "0" when there is none."""
    return fmt_places(price, MONEY_PLACES) if price else "0"


def price_text(value: Decimal, places: int) -> str:
    """A price to the symbol's places, or to 8 when it has more (an average price)."""
    if decimals_of(value.normalize()) <= places:
        return fmt_places(value, places)
    return fmt(money(value))


def limit_param(params: Params) -> int:
    """The ``limit`` of a history endpoint: 500 by default, 1..1000."""
    limit = params.opt_int("limit")
    if limit is None:
        return 500
    if not 1 <= limit <= 1000:
        raise errors.invalid_value("limit")
    return limit
