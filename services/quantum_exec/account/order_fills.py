"""The fills of recent orders, by trade id, and which orders are known final.

Kept by :class:`.state.AccountState`: the executor reads an order's fills right after its own
order (once the order's final ORDER_TRADE_UPDATE came), and the gap replay skips fills already
here. Keyed by symbol too: Binance order ids are unique per symbol only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from quantum_exec.account.events import OrderTradeUpdate
from quantum_exec.account.views import Fill, FillSummary
from quantum_exec.exchange.wire import FINAL_ORDER_STATUSES, OrderStatus

# Fills are kept for this many recent orders; the executor reads them right after its own order.
MAX_ORDERS_WITH_FILLS: Final = 4096


class OrderFills:
    """Each recent order's fills (deduplicated by trade id) and final status."""

    def __init__(self) -> None:
        self._fills: OrderedDict[tuple[str, int], dict[int, Fill]] = OrderedDict()
        self._final: OrderedDict[tuple[str, int], OrderStatus] = OrderedDict()

    def record(self, event: OrderTradeUpdate) -> bool:
        """Note the order's status and the event's fill; True when the fill is new (a replayed
        event, or one that is no fill, is False)."""
        key = (event.symbol, event.order_id)
        if event.status in FINAL_ORDER_STATUSES:
            self._final[key] = event.status
            while len(self._final) > MAX_ORDERS_WITH_FILLS:
                self._final.popitem(last=False)
        if not event.is_fill:
            return False
        trades = self._fills.get(key)
        if trades is None:
            trades = self._fills[key] = {}
            while len(self._fills) > MAX_ORDERS_WITH_FILLS:
                self._fills.popitem(last=False)
        if event.trade_id in trades:
            return False
        trades[event.trade_id] = Fill(
            trade_id=event.trade_id,
            quantity=event.last_qty,
            price=event.last_price,
            commission=event.commission,
            commission_asset=event.commission_asset,
            realized_pnl=event.realized_profit,
            time_ms=event.trade_time_ms,
        )
        return True

    def of(self, symbol: str, order_id: int) -> FillSummary | None:
        """The fills of one order summed (exact), or ``None`` when none was seen."""
        trades = self._fills.get((symbol, order_id))
        return FillSummary.of(trades.values()) if trades else None

    def has_trade(self, symbol: str, order_id: int, trade_id: int) -> bool:
        """True when this fill was recorded already."""
        return trade_id in self._fills.get((symbol, order_id), {})

    def done(self, symbol: str, order_id: int) -> bool:
        """True once an ORDER_TRADE_UPDATE said the order is final: its fills are all here."""
        return (symbol, order_id) in self._final
