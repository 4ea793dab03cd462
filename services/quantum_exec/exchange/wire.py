"""Binance USD-M futures JSON parsed at the edge into typed values.

The executor never touches raw dicts: every response it needs is one of these frozen records,
with prices and quantities as ``Decimal`` (Binance sends them as strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from quantum_exec.core.errors import PermanentError
from quantum_exec.exchange.algo_status import AlgoStatus as AlgoStatus  # re-exported: one enum

ZERO = Decimal(0)


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    """The order types the service sends or meets (entries, protective legs, the exchange's own)."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    TRAILING_STOP_MARKET = "TRAILING_STOP_MARKET"
    LIQUIDATION = "LIQUIDATION"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
    NEW_INSURANCE = "NEW_INSURANCE"  # liquidation with the insurance fund (user data stream)
    NEW_ADL = "NEW_ADL"  # auto-deleveraging (user data stream)


# Order statuses that will not change any more.
FINAL_ORDER_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED_IN_MATCH,
    }
)

E = TypeVar("E", bound=StrEnum)


def enum_of(kind: type[E], raw: Any, field: str) -> E:
    """A Binance enumeration value as our enum; a value we do not know is an error naming it."""
    try:
        return kind(str(raw))
    except ValueError:
        raise PermanentError(f"unexpected {field} in exchange response: {raw!r}") from None


def dec(raw: Any, field: str = "value") -> Decimal:
    """A Binance numeric string (or number) as Decimal; empty means zero."""
    if raw is None or raw == "":
        return ZERO
    try:
        return Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise PermanentError(f"unexpected {field} in exchange response: {raw!r}") from None


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    return str(raw).lower() == "true"


@dataclass(frozen=True, slots=True)
class Order:
    """A regular order as returned by POST/GET /fapi/v1/order."""

    order_id: int
    client_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    status: OrderStatus
    orig_qty: Decimal
    executed_qty: Decimal
    avg_price: Decimal
    cum_quote: Decimal
    reduce_only: bool
    update_time_ms: int
    orig_type: str = ""  # what was placed: STOP_MARKET for an order a conditional order triggered
    price: Decimal = ZERO  # limit price (0 for MARKET)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_ORDER_STATUSES

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Order:
        return cls(
            order_id=int(raw["orderId"]),
            client_order_id=str(raw.get("clientOrderId", "")),
            symbol=str(raw.get("symbol", "")),
            side=enum_of(OrderSide, raw.get("side"), "side"),
            order_type=enum_of(OrderType, raw.get("type", raw.get("origType")), "type"),
            status=enum_of(OrderStatus, raw.get("status"), "status"),
            orig_qty=dec(raw.get("origQty"), "origQty"),
            executed_qty=dec(raw.get("executedQty"), "executedQty"),
            avg_price=dec(raw.get("avgPrice"), "avgPrice"),
            cum_quote=dec(raw.get("cumQuote"), "cumQuote"),
            reduce_only=_bool(raw.get("reduceOnly", False)),
            update_time_ms=int(raw.get("updateTime") or 0),
            orig_type=str(raw.get("origType", "")),
            price=dec(raw.get("price", "0"), "price"),
        )


@dataclass(frozen=True, slots=True)
class AlgoOrder:
    """A conditional order of the Algo Order API (note ``orderType``, not ``type``)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    status: AlgoStatus
    trigger_price: Decimal
    quantity: Decimal
    close_position: bool
    reduce_only: bool
    actual_order_id: str
    callback_rate: Decimal | None = None  # a trailing stop's callbackRate (percent)
    activate_price: Decimal | None = None  # and its activatePrice

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> AlgoOrder:
        return cls(
            algo_id=int(raw["algoId"]),
            client_algo_id=str(raw.get("clientAlgoId", "")),
            symbol=str(raw.get("symbol", "")),
            side=enum_of(OrderSide, raw.get("side"), "side"),
            order_type=enum_of(OrderType, raw.get("orderType", raw.get("type")), "orderType"),
            status=enum_of(AlgoStatus, raw.get("algoStatus"), "algoStatus"),
            trigger_price=dec(raw.get("triggerPrice"), "triggerPrice"),
            quantity=dec(raw.get("quantity"), "quantity"),
            close_position=_bool(raw.get("closePosition", False)),
            reduce_only=_bool(raw.get("reduceOnly", False)),
            actual_order_id=str(raw.get("actualOrderId") or ""),
            callback_rate=dec(raw["callbackRate"], "callbackRate") if raw.get("callbackRate") else None,
            activate_price=dec(raw["activatePrice"], "activatePrice") if raw.get("activatePrice") else None,
        )


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill from GET /fapi/v1/userTrades: the only place commission is reported."""

    trade_id: int
    order_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    side: str = ""
    time_ms: int = 0
    maker: bool = False

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Trade:
        return cls(
            trade_id=int(raw["id"]),
            order_id=int(raw["orderId"]),
            price=dec(raw.get("price"), "price"),
            qty=dec(raw.get("qty"), "qty"),
            quote_qty=dec(raw.get("quoteQty"), "quoteQty"),
            commission=dec(raw.get("commission"), "commission"),
            commission_asset=str(raw.get("commissionAsset", "")),
            realized_pnl=dec(raw.get("realizedPnl"), "realizedPnl"),
            side=str(raw.get("side", "")),
            time_ms=int(raw.get("time", 0)),
            maker=bool(raw.get("maker", False)),
        )


@dataclass(frozen=True, slots=True)
class Position:
    """A position from GET /fapi/v2|v3/positionRisk; ``amount`` is signed (short < 0)."""

    symbol: str
    position_side: str
    amount: Decimal
    entry_price: Decimal
    leverage: int | None
    margin_type: str | None
    mark_price: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    update_time_ms: int = 0  # the last change of the position (0: never, or not said)
    liquidation_price: Decimal = ZERO  # zero: none (flat, or margin far beyond the position)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Position:
        margin_type = raw.get("marginType")
        if margin_type is not None:
            margin_type = "CROSSED" if str(margin_type).lower() in {"cross", "crossed"} else "ISOLATED"
        leverage = raw.get("leverage")
        return cls(
            symbol=str(raw["symbol"]),
            position_side=str(raw.get("positionSide", "BOTH")),
            amount=dec(raw.get("positionAmt"), "positionAmt"),
            entry_price=dec(raw.get("entryPrice"), "entryPrice"),
            leverage=int(leverage) if leverage not in (None, "") else None,
            margin_type=margin_type,
            mark_price=dec(raw.get("markPrice", "0"), "markPrice"),
            unrealized_pnl=dec(raw.get("unRealizedProfit", "0"), "unRealizedProfit"),
            update_time_ms=int(raw.get("updateTime") or 0),
            liquidation_price=dec(raw.get("liquidationPrice") or "0", "liquidationPrice"),
        )


@dataclass(frozen=True, slots=True)
class Income:
    """One row of GET /fapi/v1/income (a FUNDING_FEE, a commission, a realized PnL, ...)."""

    tran_id: str
    symbol: str
    income_type: str
    income: Decimal
    asset: str
    time_ms: int

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Income:
        return cls(
            tran_id=str(raw.get("tranId", "")),
            symbol=str(raw.get("symbol", "")),
            income_type=str(raw.get("incomeType", "")),
            income=dec(raw.get("income"), "income"),
            asset=str(raw.get("asset", "")),
            time_ms=int(raw.get("time", 0)),
        )


@dataclass(frozen=True, slots=True)
class Fees:
    """Commission and realized PnL summed over an order's trades."""

    commission: Decimal
    commission_asset: str | None
    realized_pnl: Decimal
    trade_count: int

    @classmethod
    def from_trades(cls, trades: list[Trade]) -> Fees:
        assets = {t.commission_asset for t in trades}
        return cls(
            commission=sum((t.commission for t in trades), ZERO),
            commission_asset=assets.pop() if len(assets) == 1 else ("MIXED" if assets else None),
            realized_pnl=sum((t.realized_pnl for t in trades), ZERO),
            trade_count=len(trades),
        )


def parse_max_leverage(raw: Any, symbol: str) -> int | None:
    """Max initial leverage of the first bracket; the endpoint answers an object or a list."""
    entries = raw if isinstance(raw, list) else [raw]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("symbol") == symbol:
            brackets = entry.get("brackets") or []
            if brackets:
                return max(int(b.get("initialLeverage", 0)) for b in brackets)
    return None
