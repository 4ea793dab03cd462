"""AccountState: the live view of the account, built from the user data stream, trusted only when fresh.

Positions move by fills only (deduplicated by trade id). A REST snapshot (:meth:`AccountState.resync`)
is merged, never laid over the view (style.md 17): it was taken before the events that arrived while
it travelled, so each fill newer than the snapshot's position (its ``updateTime``, or the moment the
request was sent) is applied again on top of it, and a conditional order keeps what an ALGO_UPDATE
said after the snapshot was asked; a fill that arrives after a snapshot that already holds it (its
time is not after the snapshot's) is recorded but moves nothing. ACCOUNT_UPDATE positions are kept
as the exchange's own word and compared by :meth:`AccountState.drifted_symbols`: events of
different types are not ordered against each other (Binance's "Message Ordering Guarantee" covers
one type on one connection), so adding a pushed amount and a fill could count one trade twice, and
an ACCOUNT_UPDATE may come before the ORDER_TRADE_UPDATE of its own fill: a disagreement is drift
only once it has lasted :data:`SETTLE_GRACE_S`. For the same reason a leg armed after every
position fact seen on its symbol (the entry fill it protects may still be on the way) is
:meth:`AccountState.settling` for that long, and the live OCO does not act on it meanwhile.
NautilusTrader builds its positions from fills the same way and re-checks by REST after every
reconnect; Hummingbot's issues #7590/#7679 show what trusting a silent stream costs. So the view
starts stale, a resync makes it fresh, :meth:`AccountState.mark_stale` (stream down, key expired)
makes every query raise :class:`StaleStateError` until the next resync.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

from quantum_exec.account.algo_book import AlgoBook
from quantum_exec.account.events import (
    AccountUpdate,
    AlgoUpdate,
    ListenKeyExpired,
    OrderTradeUpdate,
    UserEvent,
)
from quantum_exec.account.order_fills import OrderFills
from quantum_exec.account.positions import PositionView, apply_fill
from quantum_exec.account.views import NOTHING, AlgoView, Applied, FillSummary, StaleStateError
from quantum_exec.exchange.wire import AlgoOrder, Position

# AlgoView, FillSummary and StaleStateError live in .views; still importable from here.
__all__ = ["SETTLE_GRACE_S", "AccountState", "AlgoView", "Applied", "FillSummary", "StaleStateError"]

ZERO: Final = Decimal(0)
# Recent fills kept to be applied again over a REST snapshot older than they are.
MAX_RECENT_FILLS: Final = 4096
# How long an event may wait for an event of another type that happened before it (Binance orders
# events within one type only): an ACCOUNT_UPDATE ahead of its fill, a leg armed ahead of the fill
# of the entry it protects. Seconds; bounded, so a fill really missed still starts a resync.
SETTLE_GRACE_S: Final = 0.5


class AccountState:
    """The account as the user data stream tells it, between two REST resyncs."""

    def __init__(self) -> None:
        self._positions: dict[str, PositionView] = {}
        self._open_count = 0  # positions not flat in _positions (asked after every fill)
        self._pushed: dict[str, tuple[int, PositionView]] = {}
        # symbol -> since when (monotonic) its pushed amount disagrees with the fills.
        self._disagreeing: dict[str, float] = {}
        self._last_fill_ms: dict[str, int] = {}
        # What the last resync's position snapshot holds: fills up to this time, per symbol it
        # listed; a fill arriving later but not newer is in it already.
        self._snapshot_ms: dict[str, int] = {}
        self._algos = AlgoBook(SETTLE_GRACE_S)
        self._orders = OrderFills()
        self._recent_fills: deque[OrderTradeUpdate] = deque(maxlen=MAX_RECENT_FILLS)
        self.last_event_time_ms: int | None = None
        self.generation = 0
        self.stale = True

    # ---- the owner: freshness

    def mark_stale(self) -> None:
        """The stream is down or its key expired: queries raise until the next :meth:`resync`."""
        self.stale = True

    def resync(
        self,
        positions: Iterable[Position],
        open_algo_orders: Iterable[AlgoOrder],
        *,
        as_of_ms: int | None = None,
    ) -> None:
        """Merge REST snapshots (positionRisk, openAlgoOrders) into the view and make it fresh.

        ``as_of_ms`` is when the snapshot was asked for (now when not given). A position is the
        snapshot's plus every fill seen whose time is after the snapshot's ``updateTime`` (or after
        ``as_of_ms`` where the snapshot says no time): a fill that landed while the request
        travelled survives it, one the snapshot holds is not counted twice. A conditional order
        keeps a final status or a further live status seen by ALGO_UPDATE, and one the snapshot
        lacks stays when its update is newer than ``as_of_ms`` (placed meanwhile).
        Fills already recorded stay (they are history); the generation goes up, so a caller holding
        an older generation can tell its reading predates the gap.
        """
        asked_ms = int(time.time() * 1000) if as_of_ms is None else as_of_ms
        merged: dict[str, PositionView] = {}
        since: dict[str, int] = {}
        for p in positions:
            if p.position_side == "BOTH":
                merged[p.symbol] = PositionView(p.symbol, p.amount, p.entry_price if p.amount else ZERO)
                since[p.symbol] = p.update_time_ms or asked_ms
        last_fill_ms = dict(since)
        for fill in self._recent_fills:
            fill_ms = _fill_time_ms(fill)
            if fill_ms > since.get(fill.symbol, asked_ms):
                merged[fill.symbol] = apply_fill(merged.get(fill.symbol) or PositionView(fill.symbol), fill)
                last_fill_ms[fill.symbol] = max(last_fill_ms.get(fill.symbol, asked_ms), fill_ms)
        self._positions = merged
        self._open_count = sum(1 for p in merged.values() if not p.is_flat)
        self._last_fill_ms = last_fill_ms
        self._snapshot_ms = since
        self._pushed = {
            symbol: pushed
            for symbol, pushed in self._pushed.items()
            if pushed[0] > since.get(symbol, asked_ms)
        }
        self._disagreeing.clear()
        for symbol in self._pushed:
            self._compare(symbol)
        self._algos.merge(open_algo_orders, asked_ms)
        self.generation += 1
        self.stale = False

    def is_current(self, generation: int) -> bool:
        """True when the view is fresh and no resync happened since ``generation`` was read."""
        return not self.stale and generation == self.generation

    # ---- the stream

    def apply(self, event: UserEvent) -> Applied:
        """Fold one event into the view (even while stale: the next resync supersedes it)."""
        if isinstance(event, ListenKeyExpired):
            self.mark_stale()
            return NOTHING
        self.last_event_time_ms = max(self.last_event_time_ms or 0, event.event_time_ms)
        if isinstance(event, OrderTradeUpdate):
            return self._apply_order(event)
        if isinstance(event, AlgoUpdate):
            self._algos.apply(event)
        elif isinstance(event, AccountUpdate):
            for pushed in event.positions:
                if pushed.position_side == "BOTH":
                    view = PositionView(pushed.symbol, pushed.amount, pushed.entry_price)
                    self._pushed[pushed.symbol] = (event.transaction_time_ms, view)
                    self._compare(pushed.symbol)
        return NOTHING

    def _compare(self, symbol: str) -> None:
        """Note whether the pushed amount of ``symbol`` disagrees with the fills, and since when."""
        pushed = self._pushed.get(symbol)
        ours = self._positions.get(symbol) or PositionView(symbol)
        if (
            pushed is not None
            and pushed[0] >= self._last_fill_ms.get(symbol, 0)
            and pushed[1].amount != ours.amount
        ):
            self._disagreeing.setdefault(symbol, time.monotonic())
        else:
            self._disagreeing.pop(symbol, None)

    def _apply_order(self, event: OrderTradeUpdate) -> Applied:
        if not self._orders.record(event):
            return NOTHING  # no fill, or a replayed one: counted once
        if _fill_time_ms(event) <= self._snapshot_ms.get(event.symbol, 0):
            return NOTHING  # late behind the last resync, whose snapshot holds it already
        self._recent_fills.append(event)
        before = self._positions.get(event.symbol) or PositionView(event.symbol)
        after = apply_fill(before, event)
        self._positions[event.symbol] = after
        self._open_count += (not after.is_flat) - (not before.is_flat)
        last = self._last_fill_ms.get(event.symbol, 0)
        self._last_fill_ms[event.symbol] = max(last, event.transaction_time_ms)
        self._compare(event.symbol)
        return Applied(fill=event, before=before, after=after)

    # ---- queries (raise StaleStateError while stale)

    def _fresh(self) -> None:
        if self.stale:
            raise StaleStateError("account view is stale: resync by REST before acting on it")

    def position(self, symbol: str) -> PositionView:
        """The one-way position on ``symbol`` (flat when unknown)."""
        self._fresh()
        return self._positions.get(symbol) or PositionView(symbol)

    def positions(self) -> list[PositionView]:
        """Every open position, by symbol."""
        self._fresh()
        return [p for _, p in sorted(self._positions.items()) if not p.is_flat]

    def open_algo_orders(self, symbol: str | None = None) -> list[AlgoView]:
        """Conditional orders not yet final (NEW, TRIGGERING, TRIGGERED), of any owner."""
        self._fresh()
        return self._algos.open(symbol)

    def open_protective(self, symbol: str) -> list[AlgoView]:
        """Our own stop-loss / take-profit orders on ``symbol`` that are not final yet."""
        self._fresh()
        return self._algos.own_protective(symbol)

    def algo_order(self, client_algo_id: str) -> AlgoView | None:
        """A conditional order by client id: open, or recently final (with its last status)."""
        self._fresh()
        return self._algos.get(client_algo_id)

    def algo_for_order(self, order_id: int) -> AlgoView | None:
        """The conditional order whose trigger placed the regular order ``order_id`` (its ``ai``)."""
        return self._algos.for_order(order_id)

    def knows_algo_id(self, algo_id: int) -> bool:
        """True when a conditional order of this algo id is open or recently final in the view."""
        return self._algos.knows_algo_id(algo_id)

    def fills_of(self, symbol: str, order_id: int) -> FillSummary | None:
        """The fills of one order summed (exact), or ``None`` when none was seen.

        Keyed by symbol too: Binance order ids are unique per symbol only.
        """
        self._fresh()
        return self._orders.of(symbol, order_id)

    def drifted_symbols(self, now: float | None = None) -> list[str]:
        """Symbols whose pushed ACCOUNT_UPDATE amount has disagreed with the fills (no fill newer
        than it) for :data:`SETTLE_GRACE_S` by ``now`` (monotonic; the present when not given).

        A shorter disagreement is an ACCOUNT_UPDATE ahead of its own fill, which is still on the
        way; a non-empty answer means a fill was missed (or a trade was not a fill to us): resync.
        """
        if not self._disagreeing:
            return []  # the common case, asked after every event
        at = time.monotonic() if now is None else now
        return sorted(s for s, since in self._disagreeing.items() if at - since >= SETTLE_GRACE_S)

    def settling(self, leg: AlgoView, now: float | None = None) -> bool:
        """True while ``leg`` (ours, armed) is newer than every position fact seen on its symbol and
        younger than :data:`SETTLE_GRACE_S`: the fill it protects may still be on the way, so the
        position seen is not yet the one it was placed for."""
        armed_at = self._algos.armed_at(leg.client_algo_id)
        if armed_at is None or leg.update_time_ms <= self._last_fill_ms.get(leg.symbol, 0):
            return False
        return (time.monotonic() if now is None else now) - armed_at < SETTLE_GRACE_S

    def settles_at(self, symbol: str) -> float | None:
        """When (monotonic) the next thing still settling on ``symbol`` stops settling; ``None``
        when nothing is (the follower looks again then: drift, and the OCO on settled legs)."""
        now = time.monotonic()
        since = self._disagreeing.get(symbol)
        times = [] if since is None else [since + SETTLE_GRACE_S]
        times += [
            (self._algos.armed_at(leg.client_algo_id) or now) + SETTLE_GRACE_S
            for leg in self.own_protective_known(symbol)
            if self.settling(leg, now)
        ]
        return min((t for t in times if t > now), default=None)

    def disagreeing_symbols(self) -> list[str]:
        """Symbols whose pushed amount disagrees with the fills now, for however short a time."""
        return sorted(self._disagreeing)

    # ---- the owner's bookkeeping (no freshness check: used to bridge a gap)

    def known_amount(self, symbol: str) -> Decimal:
        """The last known position amount, fresh or not (the resync compares it with REST)."""
        view = self._positions.get(symbol)
        return view.amount if view else ZERO

    def open_count(self) -> int:
        """How many symbols hold a position, as last known."""
        return self._open_count

    def symbols(self) -> set[str]:
        """Every symbol with a known position or a conditional order."""
        return {*self._positions, *self._algos.symbols()}

    def last_fill_ms(self, symbol: str) -> int | None:
        """Transaction time of the last fill seen on ``symbol`` (or of the resync), if any."""
        return self._last_fill_ms.get(symbol)

    def has_trade(self, symbol: str, order_id: int, trade_id: int) -> bool:
        """True when this fill was applied already (the gap replay skips it)."""
        return self._orders.has_trade(symbol, order_id, trade_id)

    def snapshot_ms(self, symbol: str) -> int:
        """When the last resync's snapshot of ``symbol`` was taken (0: never)."""
        return self._snapshot_ms.get(symbol, 0)

    def order_done(self, symbol: str, order_id: int) -> bool:
        """True once an ORDER_TRADE_UPDATE said the order is final: its fills are all here."""
        return self._orders.done(symbol, order_id)

    def own_protective_known(self, symbol: str) -> list[AlgoView]:
        """Our open protective orders as last seen, fresh or not."""
        return self._algos.own_protective(symbol)

    def record_algo(self, order: AlgoOrder) -> None:
        """Fold a REST lookup of one conditional order in (a leg that went final during a gap)."""
        self._algos.record(order)


def _fill_time_ms(fill: OrderTradeUpdate) -> int:
    """When the fill happened on the exchange (its trade time; the event's transaction time)."""
    return fill.trade_time_ms or fill.transaction_time_ms
