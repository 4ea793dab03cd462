"""The conditional orders of the account view: open ones, recently final ones, and which order each placed.

Kept by :class:`.state.AccountState` (which checks freshness before it answers). An ALGO_UPDATE
older than what is held is ignored; a final status is for good; a REST snapshot is merged, never
laid over what the stream said since it was asked (style.md 17). Our legs seen armed are
remembered with the moment (monotonic) they were, so the view can tell one that may be settling
(armed ahead of the fill it protects).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from typing import Final

from quantum_exec.account.events import AlgoUpdate
from quantum_exec.account.views import AlgoView
from quantum_exec.core.ids import is_own_protective
from quantum_exec.exchange.wire import AlgoOrder

# Final algo orders are remembered this long (count), so the OCO can see which leg filled.
MAX_CLOSED_ALGO_ORDERS: Final = 4096
# Legs remembered as armed lately before the older ones are forgotten (they settled long ago).
MAX_SETTLING_LEGS: Final = 1024
# algo id -> client algo id of every view held (bounded; past it a miss is checked by a scan).
MAX_ALGO_IDS: Final = 4 * MAX_CLOSED_ALGO_ORDERS


class AlgoBook:
    """Conditional orders by client id, as last seen (REST snapshot or ALGO_UPDATE)."""

    def __init__(self, settle_grace_s: float) -> None:
        self._settle_grace_s = settle_grace_s
        self._open: dict[str, AlgoView] = {}
        # symbol -> our open protective orders on it, in the order of ``_open`` (the follower asks
        # for them on every event of the symbol: no scan of every open order of the account).
        self._own: dict[str, dict[str, AlgoView]] = {}
        self._closed: OrderedDict[str, AlgoView] = OrderedDict()
        # actualOrderId -> client algo id of the conditional order that placed it (bounded).
        self._by_actual: OrderedDict[str, str] = OrderedDict()
        # client algo id -> when (monotonic) our leg was seen armed, while it may be settling.
        self._armed_at: dict[str, float] = {}
        # algo id -> client algo id of every view ever held (bounded): knows_algo_id without a
        # scan of the open and the 4,096 closed orders (it was 2.7 % of the service's CPU under
        # load, growing with the legs seen). A hit is checked against the view held under that
        # client id; once the index dropped an id, a miss is checked by the scan.
        self._ids: OrderedDict[int, str] = OrderedDict()
        self._ids_trimmed = False

    def apply(self, event: AlgoUpdate) -> None:
        """Fold one ALGO_UPDATE in (an older one than what is held changes nothing)."""
        current = self._open.get(event.client_algo_id)
        if current is not None and current.update_time_ms > event.event_time_ms:
            return  # older than what we have
        view = AlgoView.from_event(event)
        self._index(view)
        if view.is_armed and is_own_protective(view.client_algo_id):
            now = time.monotonic()
            if len(self._armed_at) >= MAX_SETTLING_LEGS:  # only the last grace's matter
                self._armed_at = {k: t for k, t in self._armed_at.items() if now - t < self._settle_grace_s}
            self._armed_at.setdefault(view.client_algo_id, now)
        else:
            self._armed_at.pop(view.client_algo_id, None)
        if view.status.is_final:
            self._close(view)
        elif current is None:
            self._put(view)
        else:
            # A triggered update may omit what the first one said; keep the last non-empty values.
            self._put(replace(view, actual_order_id=view.actual_order_id or current.actual_order_id))

    def merge(self, open_algo_orders: Iterable[AlgoOrder], asked_ms: int) -> None:
        """Merge a REST snapshot of the open conditional orders, asked at ``asked_ms``: an order
        keeps a final status or a further live status seen by ALGO_UPDATE, and one the snapshot
        lacks stays when its update is newer than ``asked_ms`` (placed meanwhile)."""
        algos: dict[str, AlgoView] = {}
        for order in open_algo_orders:
            view = AlgoView.from_rest(order)
            self._index(view)
            if view.status.is_final:
                continue
            closed = self._closed.get(view.client_algo_id)
            if closed is not None and closed.algo_id == view.algo_id:
                continue  # it ended after the snapshot was taken: a final status is for good
            live = self._open.get(view.client_algo_id)
            if live is not None and (
                # A snapshot never moves an order back: keep what the stream saw it become since.
                view.status.may_become(live.status)
                if live.algo_id == view.algo_id
                else live.update_time_ms > asked_ms
            ):
                view = live
            algos[view.client_algo_id] = view
        for client_algo_id, live in self._open.items():
            if client_algo_id not in algos and live.update_time_ms > asked_ms:
                algos[client_algo_id] = live  # placed (or moved) while the snapshot travelled
        self._open = algos
        self._reindex()

    def record(self, order: AlgoOrder) -> None:
        """Fold a REST lookup of one conditional order in (a leg that went final during a gap)."""
        view = AlgoView.from_rest(order)
        self._index(view)
        if view.status.is_final:
            self._close(view)
        else:
            self._put(view)

    def open(self, symbol: str | None = None) -> list[AlgoView]:
        """Conditional orders not yet final, of any owner (on ``symbol`` when given)."""
        return [a for a in self._open.values() if symbol is None or a.symbol == symbol]

    def own_protective(self, symbol: str) -> list[AlgoView]:
        """Our open protective orders on ``symbol``."""
        own = self._own.get(symbol)
        return list(own.values()) if own else []

    def get(self, client_algo_id: str) -> AlgoView | None:
        """A conditional order by client id: open, or recently final (with its last status)."""
        return self._open.get(client_algo_id) or self._closed.get(client_algo_id)

    def for_order(self, order_id: int) -> AlgoView | None:
        """The conditional order whose trigger placed the regular order ``order_id`` (its ``ai``)."""
        client_algo_id = self._by_actual.get(str(order_id))
        return None if client_algo_id is None else self.get(client_algo_id)

    def knows_algo_id(self, algo_id: int) -> bool:
        """True when a conditional order of this algo id is open or recently final."""
        client_algo_id = self._ids.get(algo_id)
        if client_algo_id is not None:
            held = self._open.get(client_algo_id)
            if held is not None and held.algo_id == algo_id:
                return True
            held = self._closed.get(client_algo_id)
            if held is not None and held.algo_id == algo_id:
                return True
        if not self._ids_trimmed:
            return False  # every view held was indexed
        return any(a.algo_id == algo_id for a in (*self._open.values(), *self._closed.values()))

    def armed_at(self, client_algo_id: str) -> float | None:
        """When (monotonic) our leg was seen armed, while that is recent enough to matter."""
        return self._armed_at.get(client_algo_id)

    def symbols(self) -> set[str]:
        """Every symbol with an open conditional order."""
        return {a.symbol for a in self._open.values()}

    def _put(self, view: AlgoView) -> None:
        """Hold ``view`` as open (in place of the one under its client id, if any)."""
        held = self._open.get(view.client_algo_id)
        self._open[view.client_algo_id] = view
        if held is not None and held.symbol != view.symbol:
            self._reindex()  # never seen: an id on another symbol; keep the index in _open's order
        elif is_own_protective(view.client_algo_id):
            self._own.setdefault(view.symbol, {})[view.client_algo_id] = view

    def _reindex(self) -> None:
        self._own = {}
        for client_algo_id, view in self._open.items():
            if is_own_protective(client_algo_id):
                self._own.setdefault(view.symbol, {})[client_algo_id] = view

    def _close(self, view: AlgoView) -> None:
        held = self._open.pop(view.client_algo_id, None)
        if held is not None:
            own = self._own.get(held.symbol)
            if own is not None and own.pop(view.client_algo_id, None) is not None and not own:
                del self._own[held.symbol]
        self._closed[view.client_algo_id] = view
        self._closed.move_to_end(view.client_algo_id)
        while len(self._closed) > MAX_CLOSED_ALGO_ORDERS:
            self._closed.popitem(last=False)

    def _index(self, view: AlgoView) -> None:
        self._ids[view.algo_id] = view.client_algo_id
        self._ids.move_to_end(view.algo_id)
        if len(self._ids) > MAX_ALGO_IDS:
            self._ids.popitem(last=False)
            self._ids_trimmed = True
        if view.actual_order_id:
            self._by_actual[view.actual_order_id] = view.client_algo_id
            self._by_actual.move_to_end(view.actual_order_id)
            while len(self._by_actual) > MAX_CLOSED_ALGO_ORDERS:
                self._by_actual.popitem(last=False)
