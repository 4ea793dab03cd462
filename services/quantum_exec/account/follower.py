"""Following the account live: the user data stream folded into :class:`AccountState`, and acted on.

Every instance follows the stream (its executor reads positions and fills from the live view);
exactly one - the holder of the account lease (:mod:`.store`) - acts on it:

* **Live OCO** (:func:`.oco.plan_oco`): after every fill and every final conditional order, our
  legs that protect nothing any more are cancelled, legs larger than what is left are replaced.
* **Position events**: one per fill that moved a position, published once (the id is the fill's).
* **Reconciliation** (:func:`.reconcile.plan_reconcile`) after every resync: orphan legs
  cancelled, our positions whose protection is missing re-armed from the recorded triggers,
  positions we did not open reported and left alone.

On every (re)connect the view is resynced by REST before an event is trusted; fills that happened
while the socket was down are fetched (``userTrades`` from the last fill seen) and replayed through
the same path, so a stop that fired during a gap still cancels its sibling and is published once.
While the stream is down :meth:`position_amount` answers ``None`` and the executor falls back to
REST: nothing acts on a stale view.

The follower composes single-purpose parts, each given what it uses: :class:`.lease.AccountLease`,
:class:`.live_oco.LiveOco`, :class:`.resync.Resyncer`, :class:`.publishing.Publisher`,
:class:`.records.IntentRecords` and :class:`.claims.LegClaims` (which legs someone here acts on).
It keeps the event intake and what the executor reads (:class:`quantum_exec.execution.ports.AccountView`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Coroutine, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Final

from quantum_exec.account.claims import LegClaims
from quantum_exec.account.close_records import CloseRecords
from quantum_exec.account.event_checks import armed_late, trailing_active, twin_open
from quantum_exec.account.events import (
    AccountUpdate,
    AlgoUpdate,
    EventError,
    OrderTradeUpdate,
    parse_event,
)
from quantum_exec.account.lease import AccountLease
from quantum_exec.account.live_oco import LiveOco
from quantum_exec.account.positions import PositionView
from quantum_exec.account.publishing import Moved, Publisher
from quantum_exec.account.records import IntentIds, IntentRecords
from quantum_exec.account.resync import Resyncer
from quantum_exec.account.state import AccountState
from quantum_exec.account.store import AccountStore
from quantum_exec.account.unseen import UnseenFills
from quantum_exec.account.userstream import UserStream
from quantum_exec.account.views import AlgoView, FillSummary, StaleStateError
from quantum_exec.account.waiters import KeyedWaiters
from quantum_exec.contracts import TradeIntent
from quantum_exec.core.aio import cancel_task
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.endpoints import stream_root
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import AlgoOrder
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

ZERO: Final = Decimal(0)


class AccountFollower:
    """Runs the user stream, keeps :attr:`state`, and (as lease holder) acts on it."""

    def __init__(
        self, settings: Settings, gateway: BinanceGateway, store: AccountStore, legs: LegPlacer | None = None
    ) -> None:
        # Every leg the OCO and the reconcile place, replace, cancel or read goes through it.
        legs = legs if legs is not None else LegPlacer(settings, gateway)
        self.store = store
        self._background: set[asyncio.Task[None]] = set()  # protection events on their way
        self.state = AccountState()
        self.synced = asyncio.Event()
        self._stopping = asyncio.Event()
        self._unseen = UnseenFills()
        self._claims = LegClaims()
        # Waiters woken by one order's final event / the ALGO_UPDATE naming one order as its
        # triggered order / one conditional order's ALGO_UPDATE (never all at once).
        self._order_waiters: KeyedWaiters[tuple[str, int]] = KeyedWaiters()
        self._origin_waiters: KeyedWaiters[str] = KeyedWaiters()
        self._algo_waiters: KeyedWaiters[str] = KeyedWaiters()
        self.lease = AccountLease(store, settings.account_lease_ttl_s, self._lease_taken)
        intent_ids = IntentIds(store)
        self._records = IntentRecords(store, intent_ids)
        self.publisher = Publisher(store, self.state, self.lease, intent_ids, self._origin_waiters)
        self._close_records = CloseRecords(self.state)
        self.oco = LiveOco(
            gateway,
            legs,
            store,
            self.state,
            self.lease,
            self._claims,
            self.position_amount,
            self._stopping,
            records_in_hand=self._close_records.leaves_alone,
        )
        self.resync = Resyncer(
            gateway, legs, store, self.state, self.lease, self.oco, self.publisher, self._moved, self.synced
        )
        self.stream = UserStream(
            gateway,
            stream_root(settings),
            on_event=self._on_raw,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            reconnect_max_s=min(settings.redis_reconnect_max_s, 30.0),
        )
        # symbol -> the timer that looks at it again once what is settling there has settled.
        self._settle_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Event time of the last FUNDING_FEE account update: the ledger fetches the income rows.
        self.funding_seen_ms = 0

    @property
    def leader(self) -> bool:
        """True while this instance holds the account lease (and acts on the account)."""
        return self.lease.leader

    # ---- life cycle

    async def start(self) -> None:
        """Take the lease if free, then start the stream (returns at once)."""
        await self.store.load_scripts()
        await self.lease.tick()
        self._tasks = [
            asyncio.create_task(self.lease.run(), name="account-lease"),
            asyncio.create_task(self.publisher.run(), name="position-events"),
        ]
        await self.stream.start()

    async def wait_synced(self, timeout_s: float) -> bool:
        """Wait for the first resync (and, as holder, reconciliation); False after ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.synced.wait(), timeout_s)
        return self.synced.is_set()

    async def stop(self) -> None:
        self._stopping.set()
        for timer in self._settle_timers.values():
            timer.cancel()
        self._settle_timers.clear()
        await self.stream.stop()
        tasks = [*self._tasks, *self.oco.running()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            # Again until done: a cancellation landing as a Redis call completes can be lost.
            await cancel_task(task)
        with contextlib.suppress(Exception):
            await self.store.batch.drained()  # the records queued are written before we go
        with contextlib.suppress(Exception):
            await self.store.release_lease()
        metrics.ACCOUNT_LEASE_HELD.set(0)
        metrics.USER_STREAM_CONNECTED.set(0)

    # ---- what the executor reads (None / empty: not known, fall back to REST)

    def position_amount(self, symbol: str) -> Decimal | None:
        """The live position amount, or ``None`` while the view is stale or behind an order this
        instance saw filled by REST (its fill events still on the way: ask REST)."""
        if self._unseen.pending(
            symbol, lambda order_id: self.state.order_done(symbol, order_id), self.state.snapshot_ms(symbol)
        ):
            return None
        try:
            return self.state.position(symbol).amount
        except StaleStateError:
            return None

    def saw_final(self, symbol: str, order_ids: Collection[int], update_time_ms: int) -> None:
        """The executor saw these orders of ``symbol`` final, with fills, by REST: the view is behind
        them until it has applied their final updates (see :mod:`.unseen`)."""
        self._unseen.add(
            symbol, (i for i in order_ids if not self.state.order_done(symbol, i)), update_time_ms
        )

    async def protection_changed(
        self,
        symbol: str,
        reason: str,
        change_id: str,
        before: Sequence[AlgoView | AlgoOrder],
        after: Sequence[AlgoView | AlgoOrder] | None = None,
        *,
        intent_id: str | None = None,
    ) -> None:
        """Publish that our legs on ``symbol`` changed from ``before`` to ``after`` (None: the
        view's open legs now). Never fails the caller: logged when it cannot."""
        await self.publisher.protection_changed(symbol, reason, change_id, before, after, intent_id=intent_id)

    def conditional_open(self) -> int | None:
        """Open conditional orders of the account, anybody's (NEW or TRIGGERING: what counts toward
        the exchange's limit of 200), or ``None`` while the view is stale."""
        try:
            return sum(1 for a in self.state.open_algo_orders() if not a.status.has_order)
        except StaleStateError:
            return None

    def own_protective(self, symbol: str) -> list[AlgoView] | None:
        """Our protective orders on ``symbol`` that nobody here is cancelling, or ``None`` while
        the view is stale; a leg still settling (armed ahead of the fill it protects, which may be on
        the way) is left out: to the view its position may look flat."""
        try:
            return [
                a
                for a in self.state.open_protective(symbol)
                if not self._claims.acting(a.algo_id) and not self.state.settling(a)
            ]
        except StaleStateError:
            return None

    def take_for_cancel(self, symbol: str, placed: Collection[int] = ()) -> list[int] | None:
        """Our armed protective orders on ``symbol`` (never anyone else's) that nobody here is
        cancelling yet, now marked as cancelled by the caller (the live OCO leaves them alone: one
        DELETE each, not two); ``None`` while stale. A caller whose cancel failed, or that keeps
        them after all, calls :meth:`cancel_failed`.

        ``placed`` are algo ids of our legs on ``symbol`` the caller placed itself: one the view
        does not know yet (its ALGO_UPDATE may come after later events of other types) is taken
        too, one the view knows ended is not."""
        try:
            legs = self.state.open_protective(symbol)
        except StaleStateError:
            return None
        ids = [a.algo_id for a in legs if a.is_armed and not self._claims.acting(a.algo_id)]
        ids += sorted(
            algo_id
            for algo_id in set(placed)
            if not self._claims.acting(algo_id) and not self.state.knows_algo_id(algo_id)
        )
        self._claims.claim(ids)
        return ids

    def claim_cancel(self, algo_id: int) -> None:
        """The caller cancels our leg ``algo_id`` itself: the live OCO leaves it alone until its
        final ALGO_UPDATE (a view still without its CANCELED would replace it, under its alternate
        id, as if armed). A cancel that failed calls :meth:`cancel_failed`."""
        self._claims.claim([algo_id])

    def cancel_failed(self, algo_id: int) -> None:
        """A cancel taken with :meth:`take_for_cancel` failed: the OCO may act on the order again."""
        self._claims.unclaim(algo_id)

    def hold_legs(self, client_algo_ids: list[str]) -> None:
        """Legs sent beside an entry still travelling: the symbol is flat only until it fills, so
        the live OCO leaves them alone until :meth:`release_legs`."""
        self._claims.hold(client_algo_ids)

    async def hold_symbol(self, symbol: str, timeout_s: float = 5.0) -> None:
        """A MODIFY replaces the whole set of ``symbol``: the live OCO acts on none of its legs
        until :meth:`release_symbol`; returns once its run in progress there ended (or after
        ``timeout_s``), so what the caller reads next is not changing under it."""
        self._claims.hold_symbol(symbol)
        await self.oco.quiet(symbol, timeout_s)

    def release_symbol(self, symbol: str) -> None:
        """The MODIFY's set stands: the live OCO looks at ``symbol`` again at once (what changed
        meanwhile, a level filled, is its to follow: resize the stop to what is left)."""
        self._claims.release_symbol(symbol)
        self.oco.kick(symbol)

    async def break_even(self, symbol: str, *, long: bool) -> tuple[int, Decimal] | None:
        """The break-even move the open records of ``symbol`` hold (see :mod:`.records`)."""
        return await self._records.break_even(symbol, long=long)

    async def record_keys(self, symbol: str, *, long: bool) -> dict[str, tuple[Decimal | None, int | None]]:
        """The keys of the open records of ``symbol`` (see :mod:`.records`)."""
        return await self._records.record_keys(symbol, long=long)

    def release_legs(self, client_algo_ids: list[str]) -> None:
        """The entry of legs held with :meth:`hold_legs` is done: the live OCO looks after them."""
        self._claims.release(client_algo_ids)

    async def fills(self, symbol: str, order_id: int, timeout_s: float = 1.0) -> FillSummary | None:
        """The order's fills once its final ORDER_TRADE_UPDATE arrived; ``None`` if stale or late."""
        if self.state.stale:
            return None

        if not self.state.order_done(symbol, order_id):
            await self._order_waiters.wait((symbol, order_id), timeout_s)
        if self.state.stale or not self.state.order_done(symbol, order_id):
            return None
        return self.state.fills_of(symbol, order_id)

    async def algo_changed(
        self, client_algo_id: str, timeout_s: float, seen: object = None
    ) -> AlgoView | None:
        """The conditional order as the live view holds it, once that differs from ``seen`` (the
        view this returned before; at once when it differs already, so an update between two calls
        is not lost); ``None`` after ``timeout_s`` or while the view is stale (read it by REST).

        Only this order's ALGO_UPDATE wakes the wait.
        """
        deadline = time.monotonic() + timeout_s
        while not self.state.stale:
            view = self.state.algo_order(client_algo_id)
            if view is not None and view != seen:
                return view
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            await self._algo_waiters.wait(client_algo_id, left_s)
        return None

    async def opening(self, key: str, intent: TradeIntent, position_before: Decimal | None = None) -> None:
        """Record the intent before its order is sent (whoever sees the fill can name the intent),
        with the position its entry meets."""
        await self._records.opening(key, intent, position_before)

    async def resumed(self, key: str, symbol: str) -> tuple[bool | None, Decimal | None]:
        """For a resumed attempt: whether the intent's record is there, and the position its entry
        met as its first attempt recorded it (:meth:`.records.IntentRecords.resumed`)."""
        return await self._records.resumed(key, symbol)

    async def opened(
        self,
        key: str,
        intent: TradeIntent,
        executed: Decimal,
        *,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        break_even: tuple[int, Decimal] | None = None,
        filled: Decimal | None = None,
        position_before: Decimal | None = None,
        seen: bool = False,
    ) -> None:
        """The entry opened ``executed`` (of the ``filled`` it executed, when that differs): the
        record holds a position and the triggers placed (after rounding, or from ``*_pct``), and
        the break-even move, and the position the entry met; dropped when nothing filled."""
        await self._records.opened(
            key,
            intent,
            executed,
            stop_loss,
            take_profit,
            break_even,
            filled=filled,
            position_before=position_before,
            seen=seen,
        )

    async def closed(
        self,
        symbol: str,
        *,
        long: bool | None = None,
        close_key: str | None = None,
        flat_by: Collection[int] = (),
    ) -> None:
        """A CLOSE (or an entry that closed/flipped the position) filled: the records of the
        position it closed (of side ``long``, or every side) hold nothing any more; as the holder
        (it names fills from memory), a CLOSE's own record too (:mod:`.close_records`)."""
        own = close_key if self.leader else None
        if await self._records.closed(symbol, long, own) and own is not None and flat_by:
            self._close_records.dropped(symbol, flat_by)

    def closing(self, symbol: str) -> AbstractContextManager[None]:
        """A CLOSE of this instance runs on ``symbol``: the live OCO leaves its records to it."""
        return self._close_records.closing(symbol, self.oco.kick)

    # ---- the stream's callbacks

    async def _on_raw(self, raw: dict[str, Any]) -> None:
        try:
            event = parse_event(raw)
        except EventError as exc:
            log.error("user_stream.bad_event", error=str(exc))
            metrics.USER_STREAM_EVENTS_BY.of("malformed").inc()
            return
        metrics.USER_STREAM_EVENTS_BY.of(str(raw.get("e", "unknown"))).inc()
        metrics.USER_STREAM_LAST_EVENT.set(time.time())
        if event is None:
            return
        was_active = trailing_active(self.state, event)
        applied = self.state.apply(event)
        if isinstance(event, AlgoUpdate) and event.activated and was_active is False and self.leader:
            # A trailing stop of ours activated (ALGO_UPDATE ia): published once (its id).
            leg = self.state.algo_order(event.client_algo_id)
            task = self.protection_changed(
                event.symbol, "trailing_activated", event.client_algo_id, [], [leg] if leg else []
            )
            self._background.add(asyncio.create_task(task, name=f"trailing-{event.client_algo_id}"))
            self._background = {t for t in self._background if not t.done()}
        if isinstance(event, OrderTradeUpdate):
            if applied.fill is not None and applied.before is not None and applied.after is not None:
                self._moved(applied.fill, applied.before, applied.after)
            if self.state.order_done(event.symbol, event.order_id):
                self._order_waiters.wake((event.symbol, event.order_id))
            self._watch(event.symbol)
        elif isinstance(event, AlgoUpdate):
            self._algo_waiters.wake(event.client_algo_id)
            if event.actual_order_id:
                self._origin_waiters.wake(event.actual_order_id)
            if event.status.is_final:
                self._claims.unclaim(event.algo_id)
                self.oco.kick(event.symbol)
            elif twin_open(self.state, event) or armed_late(self.state, event):
                # A leg armed beside its other copy (the OCO keeps one), or after the fill that
                # left it nothing to protect (the OCO cancels it now, not at the next fill).
                self.oco.kick(event.symbol)
            self._watch(event.symbol)  # a leg still settling: the OCO looks again when it has
        elif isinstance(event, AccountUpdate):
            if event.reason == "FUNDING_FEE":
                self.funding_seen_ms = max(self.funding_seen_ms, event.event_time_ms)
            for symbol in {p.symbol for p in event.positions}:
                self._watch(symbol)
        self._check_drift()

    def _watch(self, symbol: str) -> None:
        """Look at ``symbol`` again when what is settling on it (an ACCOUNT_UPDATE ahead of its fill,
        a leg armed ahead of the fill it protects) has had its grace: drift, and the OCO."""
        if symbol in self._settle_timers or self._stopping.is_set():
            return
        at = self.state.settles_at(symbol)
        if at is not None:
            delay_s = max(0.0, at - time.monotonic()) + 0.001
            loop = asyncio.get_running_loop()
            self._settle_timers[symbol] = loop.call_later(delay_s, self._settled, symbol)

    def _settled(self, symbol: str) -> None:
        del self._settle_timers[symbol]
        self._check_drift()
        self.oco.kick(symbol)
        self._watch(symbol)

    def _check_drift(self) -> None:
        """Resync when a pushed position has disagreed with the fills for longer than the grace."""
        drifted = self.state.drifted_symbols()
        if drifted and not self.resync.busy:
            log.warning("account.drift", symbols=drifted)
            self._spawn(self._drift_resync(), "account-resync")

    async def _drift_resync(self) -> None:
        await self.resync.run()
        for symbol in self.state.disagreeing_symbols():
            self._watch(symbol)

    def _moved(self, fill: OrderTradeUpdate, before: PositionView, after: PositionView) -> None:
        self.publisher.queue(Moved(fill, before, after, time.monotonic()))
        self._close_records.filled(fill.symbol, fill.order_id)
        metrics.OPEN_POSITIONS.set(self.state.open_count())
        metrics.OPEN_POSITION_NOTIONAL.labels(symbol=fill.symbol).set(
            float(abs(after.amount) * after.entry_price)
        )
        self.oco.kick(fill.symbol)

    async def _on_connected(self) -> None:
        await self.resync.run()
        metrics.USER_STREAM_CONNECTED.set(1)
        log.info("account.synced", generation=self.state.generation, leader=self.leader)

    def _on_disconnected(self) -> None:
        self.state.mark_stale()
        for waiters in (self._order_waiters, self._origin_waiters, self._algo_waiters):
            waiters.wake_all()  # stale now: nobody waits for an event that may never come
        metrics.USER_STREAM_CONNECTED.set(0)
        if self._stopping.is_set():
            return
        metrics.USER_STREAM_RECONNECTS.inc()
        log.warning("account.stream_down", detail="the account view is stale: REST until the next resync")

    # ---- taking the lease over

    def _lease_taken(self) -> None:
        # What was kept while the lease was elsewhere goes out whatever the view's state (the
        # events were built from fills seen); the resync and reconcile need a live view.
        self.publisher.hand_over()
        if self.synced.is_set() and not self.state.stale:
            self._spawn(self._take_over(), "account-takeover")

    async def _take_over(self) -> None:
        """A new holder: resync and reconcile (what the old one may not have published is
        handed over by :meth:`_lease_taken`)."""
        try:
            await self.resync.run()
        except Exception:
            log.exception("account.takeover_resync_failed")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(work, name=name))
