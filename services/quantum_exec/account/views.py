"""What the account view hands out: a conditional order as seen, an order's fills, what one event changed.

Plain values, shared by :mod:`.state` (which builds them), the live OCO, the reconcile and the API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from quantum_exec.account.events import AlgoUpdate, OrderTradeUpdate
from quantum_exec.account.positions import PositionView
from quantum_exec.core.errors import QuantumError
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, OrderSide

ZERO: Final = Decimal(0)


class StaleStateError(QuantumError):
    """The view is not known to match the exchange (stream down, or no resync yet): do not act on it."""


@dataclass(frozen=True, slots=True)
class AlgoView:
    """A conditional order as last seen (REST snapshot or ALGO_UPDATE)."""

    client_algo_id: str
    algo_id: int
    symbol: str
    side: OrderSide
    order_type: str
    quantity: Decimal
    trigger_price: Decimal
    close_position: bool
    reduce_only: bool
    status: AlgoStatus
    actual_order_id: str = ""
    executed_qty: Decimal = ZERO
    reject_reason: str = ""
    update_time_ms: int = 0
    activated: bool | None = None  # a trailing stop's ``ia``

    @property
    def is_armed(self) -> bool:
        """Waiting for its trigger: the only state in which a cancel or replace is certain to work."""
        return self.status is AlgoStatus.NEW

    @classmethod
    def from_event(cls, event: AlgoUpdate) -> AlgoView:
        return cls(
            client_algo_id=event.client_algo_id,
            algo_id=event.algo_id,
            symbol=event.symbol,
            side=event.side,
            order_type=event.order_type,
            quantity=event.quantity,
            trigger_price=event.trigger_price,
            close_position=event.close_position,
            reduce_only=event.reduce_only,
            status=event.status,
            actual_order_id=event.actual_order_id,
            executed_qty=event.executed_qty,
            reject_reason=event.reject_reason,
            update_time_ms=event.event_time_ms,
            activated=event.activated,
        )

    @classmethod
    def from_rest(cls, order: AlgoOrder) -> AlgoView:
        return cls(
            client_algo_id=order.client_algo_id,
            algo_id=order.algo_id,
            symbol=order.symbol,
            side=OrderSide(order.side),
            order_type=order.order_type,
            quantity=order.quantity,
            trigger_price=order.trigger_price,
            close_position=order.close_position,
            reduce_only=order.reduce_only,
            status=AlgoStatus(order.status),
            actual_order_id=order.actual_order_id,
        )


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade of an order, from ORDER_TRADE_UPDATE."""

    trade_id: int
    quantity: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    time_ms: int


@dataclass(frozen=True, slots=True)
class FillSummary:
    """An order's fills summed: ``commission_asset`` is ``MIXED`` over several assets, ``None`` for none."""

    quantity: Decimal
    avg_price: Decimal
    commission: Decimal
    commission_asset: str | None
    realized_pnl: Decimal
    trade_ids: tuple[int, ...]

    @classmethod
    def of(cls, fills: Iterable[Fill]) -> FillSummary:
        trades = sorted(fills, key=lambda f: f.trade_id)
        quantity = sum((f.quantity for f in trades), ZERO)
        notional = sum((f.quantity * f.price for f in trades), ZERO)
        assets = {f.commission_asset for f in trades if f.commission_asset}
        return cls(
            quantity=quantity,
            avg_price=notional / quantity if quantity else ZERO,
            commission=sum((f.commission for f in trades), ZERO),
            commission_asset=assets.pop() if len(assets) == 1 else ("MIXED" if assets else None),
            realized_pnl=sum((f.realized_pnl for f in trades), ZERO),
            trade_ids=tuple(f.trade_id for f in trades),
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`AccountState.apply` changed: for a new fill, the position before and after it."""

    fill: OrderTradeUpdate | None = None
    before: PositionView | None = None
    after: PositionView | None = None


NOTHING: Final = Applied()
