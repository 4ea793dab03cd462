"""The day's booked PnL of the closed round trips, followed on the ledger's trade stream.

The lease holder's check (:mod:`.watch`) needs, every ``QUANTUM_RISK_CHECK_INTERVAL_S``, the net PnL
of the round trips closed this UTC day. Reading the day's trades again each time costs what the
day has traded; :class:`ClosedToday` reads only the records written since its last read (one
``XRANGE`` that is usually empty) and keeps the sum, exactly what
``sum(t.net_pnl for t in ledger.closed_trades(TradeQuery(since=day_start)))`` gives: the newest record
of each trade written since the day began, closed since it began. A revised record (funding the
history listed after the trade closed) replaces its trade's earlier one, so each trade's figure is
kept until the day ends; a new UTC day starts from nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from quantum_exec.ledger.query import TradeQuery

if TYPE_CHECKING:
    from quantum_exec.ledger.book import LedgerBook


class ClosedToday:
    """The net PnL of the trades closed since ``start`` (the UTC day's), kept incrementally."""

    def __init__(self, ledger: LedgerBook) -> None:
        self._ledger = ledger
        self._start: datetime | None = None
        self._low = ""
        self._query = TradeQuery()
        self._net: dict[str, Decimal] = {}  # the trade's newest figure, when it counts
        self._sum = Decimal(0)

    async def since(self, start: datetime) -> Decimal:
        """The sum for the day that began at ``start``, with what was written since the last read."""
        if start != self._start:
            self._start, self._query = start, TradeQuery(since=start)
            self._low = str(int(start.timestamp() * 1000))  # stream ids are the write times
            self._net, self._sum = {}, Decimal(0)
        trades, last = await self._ledger.trades_written(self._low)
        for trade in trades:  # oldest first: a later record of a trade replaces its earlier one
            earlier = self._net.pop(trade.trade_id, None)
            if earlier is not None:
                self._sum -= earlier
            if self._query.matches(trade):
                self._net[trade.trade_id] = trade.net_pnl
                self._sum += trade.net_pnl
        if last is not None:
            self._low = "(" + last
        return self._sum
