"""Which symbols' records a CLOSE of this instance looks after, so the live OCO reads none there.

A CLOSE makes its symbol's records stale itself: the records of the position it closed, and its own
record (written before its order, so that whoever sees the fill can name the intent). It drops them
itself, in the one script it runs once its order filled (:meth:`.records.IntentRecords.closed`). So
while a CLOSE of this instance is in flight on a symbol, and after its script ran for as long as no
other order filled there and no resync happened, the live OCO leaves the records of that flat symbol
alone: no read of them, no positionRisk. A CLOSE that ends without having dropped them (it failed,
it left part of the position, Redis was down) has the OCO look again.

The OCO's REST-confirmed drop stays for every record nobody here looks after: a dead instance's, one
a lost write left, one of a position a leg or someone else closed (its fill is another order's), and
any after a resync (fills may have gone unseen in the gap). Nothing here ever drops a record: the
worst a mistake here can do is leave a stale one for the next OCO run that reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from quantum_exec.account.state import AccountState


@dataclass(slots=True)
class _Closing:
    """The CLOSEs in flight on one symbol, and what they saw meanwhile."""

    count: int
    generation: int  # the view's when the first one started
    fills: set[int] = field(default_factory=set)  # order ids that filled meanwhile
    deferred: bool = False  # the OCO left the records alone meanwhile


class CloseRecords:
    """Per symbol: the CLOSEs of this instance in flight, and the records a CLOSE left clean."""

    def __init__(self, state: AccountState) -> None:
        self._state = state
        self._closing: dict[str, _Closing] = {}
        # symbol -> (the CLOSE's orders, the view's generation): clean while only they fill.
        self._clean: dict[str, tuple[frozenset[int], int]] = {}

    @contextlib.contextmanager
    def closing(self, symbol: str, look_again: Callable[[str], None]) -> Iterator[None]:
        """A CLOSE of this instance runs on ``symbol`` meanwhile (:meth:`start`, :meth:`end`);
        ``look_again`` (the OCO's kick) when it left records it should have dropped."""
        self.start(symbol)
        try:
            yield
        finally:
            if self.end(symbol):
                look_again(symbol)

    def start(self, symbol: str) -> None:
        """A CLOSE of this instance starts on ``symbol`` (before its record is written)."""
        closing = self._closing.get(symbol)
        if closing is None:
            self._closing[symbol] = _Closing(1, self._state.generation)
        else:
            closing.count += 1
        self._clean.pop(symbol, None)

    def dropped(self, symbol: str, order_ids: Collection[int]) -> None:
        """The CLOSE's orders ``order_ids`` flattened ``symbol`` and its script dropped every record
        it made stale, its own included: clean, unless another order filled or a resync came since
        it started."""
        closing = self._closing.get(symbol)
        ids = frozenset(order_ids)
        if closing is None or not closing.fills <= ids or not self._state.is_current(closing.generation):
            return
        self._clean[symbol] = (ids, closing.generation)

    def end(self, symbol: str) -> bool:
        """The CLOSE ended (however): True when the OCO should look at the records again (it left
        them alone meanwhile, and the CLOSE did not leave them clean)."""
        closing = self._closing.get(symbol)
        if closing is None:
            return False
        closing.count -= 1
        if closing.count > 0:
            return False
        del self._closing[symbol]
        return closing.deferred and symbol not in self._clean

    def filled(self, symbol: str, order_id: int) -> None:
        """The view applied a fill of ``order_id`` on ``symbol``."""
        closing = self._closing.get(symbol)
        if closing is not None:
            closing.fills.add(order_id)
        clean = self._clean.get(symbol)
        if clean is not None and order_id not in clean[0]:
            del self._clean[symbol]

    def leaves_alone(self, symbol: str) -> bool:
        """True when the live OCO leaves the records of ``symbol`` (flat to the view) alone: a CLOSE
        here drops them (the OCO looks again if it did not), or one did and nothing moved since."""
        closing = self._closing.get(symbol)
        if closing is not None:
            closing.deferred = True
            return True
        clean = self._clean.get(symbol)
        if clean is None:
            return False
        if self._state.is_current(clean[1]):
            return True
        del self._clean[symbol]  # a resync since: fills may have gone unseen
        return False
