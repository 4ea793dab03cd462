"""Position events (design.md section 7) derived from fills, exactly and deterministically.

A one-way position moves only by fills (ORDER_TRADE_UPDATE with ``x`` TRADE): :func:`apply_fill`
gives the position after a fill from the position before, and :func:`position_event` the event
that describes the move. Applied fill by fill in order, partial fills of one order produce one
event each whose amounts chain exactly. The entry price follows the exchange's one-way rule:
weighted average while increasing, unchanged while reducing, the fill price when opening or
flipping (what ACCOUNT_UPDATE ``ep`` reports).

The reason comes from the order: Binance gives liquidation orders client ids starting
``autoclose-`` (origType LIQUIDATION) and ADL orders ``adl_autoclose`` (Binance "Event: Order
Update"; NautilusTrader's ``BinanceFuturesOrderData`` docstring says the same); settlement
orders (``settlement_autoclose-``) and every id not ours are ``external``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from quantum_exec.account.events import OrderTradeUpdate
from quantum_exec.account.roles import role_of
from quantum_exec.contracts.codec import dumps

ZERO: Final = Decimal(0)
POSITION_EVENT_TYPE: Final = "position.event"
LIQUIDATION_PREFIX: Final = "autoclose-"
ADL_PREFIX: Final = "adl_autoclose"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

JsonDecimal = Annotated[Decimal, WithJsonSchema({"type": "number"})]


@dataclass(frozen=True, slots=True)
class PositionView:
    """A one-way position: ``amount`` signed (short < 0), ``entry_price`` zero when flat."""

    symbol: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO

    @property
    def is_flat(self) -> bool:
        return self.amount == 0


class PositionKind(StrEnum):
    OPENED = "opened"
    INCREASED = "increased"
    REDUCED = "reduced"
    CLOSED = "closed"
    FLIPPED = "flipped"


class PositionReason(StrEnum):
    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    CLOSE_INTENT = "close_intent"
    REDUCE_INTENT = "reduce_intent"
    EMERGENCY = "emergency"
    LIQUIDATION = "liquidation"
    ADL = "adl"
    EXTERNAL = "external"


_REASON_BY_ROLE: Final = {
    "sl": PositionReason.STOP_LOSS,
    "tp": PositionReason.TAKE_PROFIT,
    "close": PositionReason.CLOSE_INTENT,
    "flatten": PositionReason.EMERGENCY,
    # A trailing stop is a stop (the contract's reasons name no trailing one); a missing role
    # raised KeyError here and the fill's event was never published.
    "trail": PositionReason.STOP_LOSS,
}


def apply_fill(before: PositionView, fill: OrderTradeUpdate) -> PositionView:
    """The position after ``fill`` (one-way mode). A non-fill leaves it unchanged."""
    if not fill.is_fill:
        return before
    amount = before.amount + fill.signed_last_qty
    if amount == 0:
        return PositionView(before.symbol)
    if before.amount == 0 or (amount > 0) != (before.amount > 0):
        entry = fill.last_price  # opened, or flipped: the remainder was opened at this fill
    elif abs(amount) > abs(before.amount):
        entry = (abs(before.amount) * before.entry_price + fill.last_qty * fill.last_price) / abs(amount)
    else:
        entry = before.entry_price
    return PositionView(before.symbol, amount, entry)


def kind_of(before: Decimal, after: Decimal) -> PositionKind | None:
    """How a position moved from ``before`` to ``after`` (signed amounts); ``None`` if it did not."""
    if before == after:
        return None
    if before == 0:
        return PositionKind.OPENED
    if after == 0:
        return PositionKind.CLOSED
    if (before > 0) != (after > 0):
        return PositionKind.FLIPPED
    return PositionKind.INCREASED if abs(after) > abs(before) else PositionKind.REDUCED


def reason_of(fill: OrderTradeUpdate, algo_client_id: str | None = None) -> PositionReason:
    """Why the fill happened, from the order's client id (or the algo order it was triggered from).

    ``algo_client_id`` is the client id of the conditional order whose triggered order this
    is (``AccountState.algo_for_order``), for when the triggered order carries an id of its own.
    """
    client_id = fill.client_order_id
    if client_id.startswith(LIQUIDATION_PREFIX) or fill.original_type == "LIQUIDATION":
        return PositionReason.LIQUIDATION
    if client_id.startswith(ADL_PREFIX) or fill.original_type == "ADL":
        return PositionReason.ADL
    role = role_of(client_id) or (role_of(algo_client_id) if algo_client_id else None)
    if role is None:
        return PositionReason.EXTERNAL
    if role == "entry":
        return PositionReason.REDUCE_INTENT if fill.reduce_only else PositionReason.ENTRY
    return _REASON_BY_ROLE[role]


def event_id(symbol: str, order_id: int, trade_id: int) -> str:
    """Deterministic id of the event of one fill: the same on a restart or another instance."""
    return f"{symbol}:{order_id}:{trade_id}"


class PositionEvent(BaseModel):
    """Payload of a ``position.event`` stream entry (design.md section 7)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    symbol: str
    kind: PositionKind
    reason: PositionReason
    position_amount: JsonDecimal
    entry_price: JsonDecimal
    price: JsonDecimal
    quantity: JsonDecimal
    realized_pnl: JsonDecimal
    commission: JsonDecimal
    commission_asset: str | None = None
    intent_id: str | None = None
    order_id: int
    time: datetime


def position_event(
    fill: OrderTradeUpdate,
    before: PositionView,
    after: PositionView,
    *,
    intent_id: str | None = None,
    algo_client_id: str | None = None,
) -> PositionEvent | None:
    """The event for one fill given the position before and after it; ``None`` if it moved nothing."""
    kind = kind_of(before.amount, after.amount)
    if kind is None or not fill.is_fill:
        return None
    return PositionEvent(
        event_id=event_id(fill.symbol, fill.order_id, fill.trade_id),
        symbol=fill.symbol,
        kind=kind,
        reason=reason_of(fill, algo_client_id),
        position_amount=after.amount,
        entry_price=after.entry_price,
        price=fill.last_price,
        quantity=fill.last_qty,
        realized_pnl=fill.realized_profit,
        commission=fill.commission,
        commission_asset=fill.commission_asset or None,
        intent_id=intent_id,
        order_id=fill.order_id,
        time=_EPOCH + timedelta(milliseconds=fill.trade_time_ms),  # exact, never through float
    )


def dumps_position_event(event: PositionEvent) -> bytes:
    """JSON bytes of an event with Decimals as exact numbers and the time in ISO-8601 UTC."""
    return dumps(event)


def position_event_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the ``position.event`` payload."""
    schema = PositionEvent.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:quantum:position.event"
    return schema
