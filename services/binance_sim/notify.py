"""Where changes become user data stream events: ORDER_TRADE_UPDATE, TRADE_LITE, ACCOUNT_UPDATE and
ALGO_UPDATE, built by binance_sim.events from the ledger and handed to the user stream.

One place for each announcement; an algo order whose real order is done becomes FINISHED here, since
that is what its real order's last update announces.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from binance_sim import events
from binance_sim.ledger import Ledger
from binance_sim.market import ZERO
from binance_sim.model import JSON, AlgoOrder, Order, Trade


class EventSink(Protocol):
    """Where events go (binance_sim.userstream.UserStream)."""

    @property
    def active(self) -> bool:
        """True when someone listens (events are only built then)."""
        ...

    def publish(self, event: JSON) -> None:
        """Queue one event."""
        ...


class Notifier:
    """Announces the ledger's changes on the user data stream (``stream`` None: nobody listens)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.stream: EventSink | None = None

    def publish(self, event: JSON) -> None:
        """Send an event built elsewhere (MARGIN_CALL)."""
        stream = self.stream
        if stream is not None and stream.active:
            stream.publish(event)

    def order_update(self, order: Order, trade: Trade | None = None, *, amendment: bool = False) -> None:
        """An order changed (new, filled by ``trade``, canceled, expired): ORDER_TRADE_UPDATE (and
        TRADE_LITE for a fill). An algo order whose real order is done becomes FINISHED."""
        stream = self.stream
        if stream is not None and stream.active:
            now = self.ledger.clock()
            if trade is not None:
                stream.publish(events.trade_lite(self.ledger, order, trade, now))
            stream.publish(events.order_trade_update(self.ledger, order, trade, now, amendment=amendment))
        if not order.is_open:
            algo = self.ledger.algo_by_order.pop(order.order_id, None)
            if algo is not None and algo.algo_status == "TRIGGERED":
                self.set_algo_status(algo, "FINISHED")

    def account_update(
        self,
        reason: str,
        symbols: Iterable[str] = (),
        assets: Iterable[str] = ("USDT",),
        balance_change: Decimal = ZERO,
    ) -> None:
        """Balances or positions changed for ``reason`` (ORDER, FUNDING_FEE, ...): ACCOUNT_UPDATE with
        the positions of ``symbols`` and ``balance_change`` as USDT's ``bc``."""
        stream = self.stream
        if stream is not None and stream.active:
            now = self.ledger.clock()
            stream.publish(events.account_update(self.ledger, reason, symbols, assets, now, balance_change))

    def algo_update(self, algo: AlgoOrder) -> None:
        """An algo order changed status: ALGO_UPDATE."""
        stream = self.stream
        if stream is not None and stream.active:
            stream.publish(events.algo_update(self.ledger, algo, self.ledger.clock()))

    def set_algo_status(self, algo: AlgoOrder, status: str, reason: str = "") -> None:
        """Move ``algo`` to ``status`` (with the reject reason) and announce it."""
        algo.algo_status = status
        algo.update_time = self.ledger.clock()
        if reason:
            algo.reject_reason = reason
        if algo.actual_order_id is not None:
            actual = self.ledger.orders.get(algo.actual_order_id)
            if actual is not None and actual.executed_qty:
                algo.actual_price = actual.avg_price
        self.algo_update(algo)
