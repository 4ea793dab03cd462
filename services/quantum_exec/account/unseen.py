"""Orders this instance saw final with fills by REST whose fills the user stream has not brought yet.

Binance orders events within one type only, and a fill's ORDER_TRADE_UPDATE can trail the REST
answer that told the executor the order filled. Until the view has applied such an order's final
update (or a resync snapshot taken after it), the view's position of that symbol is older than
what this instance knows: :meth:`AccountFollower.position_amount` then answers ``None``, so the
caller (a CLOSE sizing itself, an entry netting) reads the position by REST instead of acting on
the older view (style 17: merge, never act on the older fact).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

# Per symbol; the oldest are forgotten first (a resync clears them long before this matters).
MAX_UNSEEN_PER_SYMBOL: Final = 256


class UnseenFills:
    """Per symbol, the orders known filled by REST and not yet seen final on the stream."""

    def __init__(self) -> None:
        self._orders: dict[str, OrderedDict[int, int]] = {}  # symbol -> order id -> update time (ms)

    def add(self, symbol: str, order_ids: Iterable[int], update_time_ms: int) -> None:
        """Remember ``order_ids`` (final, with fills, as REST said at ``update_time_ms``)."""
        orders = self._orders.setdefault(symbol, OrderedDict())
        for order_id in order_ids:
            orders[order_id] = max(update_time_ms, orders.get(order_id, 0))
            orders.move_to_end(order_id)
        while len(orders) > MAX_UNSEEN_PER_SYMBOL:
            orders.popitem(last=False)

    def pending(self, symbol: str, seen: Callable[[int], bool], snapshot_ms: int) -> bool:
        """True while an order of ``symbol`` is neither ``seen`` final on the stream nor older than
        the last resync snapshot of the symbol (which holds its fills); forgets the others."""
        orders = self._orders.get(symbol)
        if not orders:
            return False
        for order_id, update_time_ms in list(orders.items()):
            if seen(order_id) or update_time_ms <= snapshot_ms:
                del orders[order_id]
        if not orders:
            del self._orders[symbol]
            return False
        return True
