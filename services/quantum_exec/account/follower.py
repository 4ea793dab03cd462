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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Coroutine
from decimal import Decimal
from typing import Any, Final

from quantum_exec.account.events import (
    AccountUpdate,
    AlgoUpdate,
    EventError,
    OrderTradeUpdate,
    parse_event,
)
from quantum_exec.account.positions import (
    PositionView,
)
from quantum_exec.account.publishing import (
    BOOKKEEPING_RETRIES,
    Moved,
    wait_for_key,
    wake_key,
)
from quantum_exec.account.resync import Resyncing
from quantum_exec.account.roles import intent_digest, replacement_of
from quantum_exec.account.state import AccountState, AlgoView, FillSummary, StaleStateError
from quantum_exec.account.store import AccountStore, Record
from quantum_exec.account.unseen import UnseenFills
from quantum_exec.account.userstream import UserStream
from quantum_exec.aio import cancel_task
from quantum_exec.contracts import Side, TradeIntent
from quantum_exec.exchange.endpoints import stream_root
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import AlgoStatus
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.ids import client_order_id, is_own_protective
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog
from quantum_exec.settings import Settings
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

ZERO: Final = Decimal(0)
# Events a non-holder keeps, to publish them itself if the holder dies before it did.
_KEEP_UNPUBLISHED_S: Final = 600.0


class AccountFollower(Resyncing):
    """Runs the user stream, keeps :attr:`state`, and (as lease holder) acts on it."""

    def __init__(
        self, settings: Settings, gateway: BinanceGateway, store: AccountStore, legs: LegPlacer | None = None
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        # Redis down for the lease loop and the position events: logged as outages, not per retry.
        self._lease_outage = OutageLog(log, "account_lease.redis_down")
        self._publish_outage = OutageLog(log, "position_event.redis_down")
        # Every leg the OCO and the reconcile place, replace, cancel or read goes through it.
        self._legs = legs if legs is not None else LegPlacer(settings, gateway)
        self.store = store
        self.state = AccountState()
        self._unseen = UnseenFills()
        self.stream = UserStream(
            gateway,
            stream_root(settings),
            on_event=self._on_raw,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            reconnect_max_s=min(settings.redis_reconnect_max_s, 30.0),
        )
        self.synced = asyncio.Event()
        self.leader = False
        # Waiters woken by one order's final event / the ALGO_UPDATE naming one order as its
        # triggered order / one conditional order's ALGO_UPDATE (never all at once).
        self._order_waiters: dict[tuple[str, int], list[asyncio.Future[None]]] = {}
        self._origin_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._algo_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._moves: asyncio.Queue[Moved] = asyncio.Queue()
        self._unpublished: deque[Moved] = deque(maxlen=4096)
        # digest -> intent id, the most recent ones (events name their intent from here first).
        self._intent_ids: OrderedDict[str, str | None] = OrderedDict()
        self._oco_tasks: dict[str, asyncio.Task[None]] = {}
        self._oco_dirty: set[str] = set()
        self._acted_on: set[int] = set()  # algo ids cancelled by us (their CANCELED may still be on the way)
        self._held_legs: set[str] = set()  # client ids of legs whose entry is still travelling
        # symbol -> the timer that looks at it again once what is settling there has settled.
        self._settle_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._resync_lock = asyncio.Lock()
        # Event time of the last FUNDING_FEE account update: the ledger fetches the income rows.
        self.funding_seen_ms = 0

    # ---- life cycle

    async def start(self) -> None:
        """Take the lease if free, then start the stream (returns at once)."""
        await self._tick_lease()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="account-lease"),
            asyncio.create_task(self._publisher(), name="position-events"),
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
        tasks = [*self._tasks, *self._oco_tasks.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            # Again until done: a cancellation landing as a Redis call completes can be lost.
            await cancel_task(task)
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

    def own_protective(self, symbol: str) -> list[AlgoView] | None:
        """Our protective orders on ``symbol`` that nobody here is cancelling, or ``None`` while
        the view is stale; a leg still settling (armed ahead of the fill it protects, which may be on
        the way) is left out: to the view its position may look flat."""
        try:
            return [
                a
                for a in self.state.open_protective(symbol)
                if a.algo_id not in self._acted_on and not self.state.settling(a)
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
        ids = [a.algo_id for a in legs if a.is_armed and a.algo_id not in self._acted_on]
        ids += sorted(
            algo_id
            for algo_id in set(placed)
            if algo_id not in self._acted_on and not self.state.knows_algo_id(algo_id)
        )
        self._acted_on.update(ids)
        return ids

    def cancel_failed(self, algo_id: int) -> None:
        """A cancel taken with :meth:`take_for_cancel` failed: the OCO may act on the order again."""
        self._acted_on.discard(algo_id)

    def hold_legs(self, client_algo_ids: list[str]) -> None:
        """Legs sent beside an entry still travelling: the symbol is flat only until it fills, so
        the live OCO leaves them alone until :meth:`release_legs`."""
        self._held_legs.update(client_algo_ids)

    def release_legs(self, client_algo_ids: list[str]) -> None:
        """The entry of legs held with :meth:`hold_legs` is done: the live OCO looks after them."""
        self._held_legs.difference_update(client_algo_ids)

    async def fills(self, symbol: str, order_id: int, timeout_s: float = 1.0) -> FillSummary | None:
        """The order's fills once its final ORDER_TRADE_UPDATE arrived; ``None`` if stale or late."""
        if self.state.stale:
            return None

        if not self.state.order_done(symbol, order_id):
            await wait_for_key(self._order_waiters, (symbol, order_id), timeout_s)
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
            await wait_for_key(self._algo_waiters, client_algo_id, left_s)
        return None

    async def opening(self, key: str, intent: TradeIntent) -> None:
        """Record the intent before its order is sent (whoever sees the fill can name the intent)."""
        await self._bookkeeping("opening", intent.symbol, lambda: self._opening(key, intent))

    async def opened(
        self,
        key: str,
        intent: TradeIntent,
        executed: Decimal,
        *,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
    ) -> None:
        """The entry filled ``executed``: the record holds a position and the triggers placed
        (after rounding, or from ``*_pct``); dropped when nothing filled."""
        await self._bookkeeping(
            "opened", intent.symbol, lambda: self._opened(key, intent, executed, stop_loss, take_profit)
        )

    async def closed(self, symbol: str, *, long: bool | None = None) -> None:
        """A CLOSE (or an entry that closed/flipped the position) filled: the records of the
        position it closed (of side ``long``, or every side) hold nothing any more."""
        await self._bookkeeping("closed", symbol, lambda: self._closed(symbol, long))

    async def _bookkeeping(self, what: str, symbol: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run a record write for the executor; it never fails an intent.

        The records serve the reconciliation and the events' intent ids, not the order flow: a
        Redis outage is retried briefly, then logged (the next redelivery or reconcile repairs it).
        """
        for delay_s in BOOKKEEPING_RETRIES:
            try:
                await work()
                return
            except REDIS_DOWN as exc:
                error = str(exc)
                await asyncio.sleep(delay_s)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
        log.error("account.record_failed", step=what, symbol=symbol, error=error)

    async def _opening(self, key: str, intent: TradeIntent) -> None:
        digest = intent_digest(client_order_id(key, "entry"))
        assert digest is not None
        self._remember_intent(digest, intent.intent_id)
        long = None if intent.side is Side.CLOSE else intent.side is Side.BUY
        labels = {k: str(intent.meta[k]) for k in ("model", "strategy") if intent.meta.get(k) is not None}
        await self.store.put_record(
            Record(
                digest=digest,
                intent_key=key,
                intent_id=intent.intent_id,
                symbol=intent.symbol,
                long=long,
                quantity=intent.quantity or ZERO,
                stop_loss=intent.stop_loss,
                take_profit=intent.take_profit,
                opened=False,
            ),
            labels,
        )

    async def _opened(
        self,
        key: str,
        intent: TradeIntent,
        executed: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
    ) -> None:
        digest = intent_digest(client_order_id(key, "entry"))
        assert digest is not None
        if executed <= 0 or intent.side is Side.CLOSE:
            await self.store.drop_record(intent.symbol, digest)
            return
        await self.store.put_record(
            Record(
                digest=digest,
                intent_key=key,
                intent_id=intent.intent_id,
                symbol=intent.symbol,
                long=intent.side is Side.BUY,
                quantity=executed,
                stop_loss=stop_loss,
                take_profit=take_profit,
                opened=True,
            )
        )

    async def _closed(self, symbol: str, long: bool | None) -> None:
        for record in await self.store.records_of(symbol):
            if record.opened and (long is None or record.long is long):
                await self.store.drop_record(symbol, record.digest)

    # ---- the stream's callbacks

    async def _on_raw(self, raw: dict[str, Any]) -> None:
        try:
            event = parse_event(raw)
        except EventError as exc:
            log.error("user_stream.bad_event", error=str(exc))
            metrics.USER_STREAM_EVENTS.labels(type="malformed").inc()
            return
        metrics.USER_STREAM_EVENTS.labels(type=str(raw.get("e", "unknown"))).inc()
        metrics.USER_STREAM_LAST_EVENT.set(time.time())
        if event is None:
            return
        applied = self.state.apply(event)
        if isinstance(event, OrderTradeUpdate):
            if applied.fill is not None and applied.before is not None and applied.after is not None:
                self._moved(applied.fill, applied.before, applied.after)
            if self.state.order_done(event.symbol, event.order_id):
                wake_key(self._order_waiters, (event.symbol, event.order_id))
            self._watch(event.symbol)
        elif isinstance(event, AlgoUpdate):
            wake_key(self._algo_waiters, event.client_algo_id)
            if event.actual_order_id:
                wake_key(self._origin_waiters, event.actual_order_id)
            if event.status.is_final:
                self._acted_on.discard(event.algo_id)
                self._kick(event.symbol)
            elif self._twin_open(event) or self._armed_late(event):
                # A leg armed beside its other copy (the OCO keeps one), or after the fill that
                # left it nothing to protect (the OCO cancels it now, not at the next fill).
                self._kick(event.symbol)
            self._watch(event.symbol)  # a leg still settling: the OCO looks again when it has
        elif isinstance(event, AccountUpdate):
            if event.reason == "FUNDING_FEE":
                self.funding_seen_ms = max(self.funding_seen_ms, event.event_time_ms)
            for symbol in {p.symbol for p in event.positions}:
                self._watch(symbol)
        self._check_drift()

    def _armed_late(self, event: AlgoUpdate) -> bool:
        """True when our leg is armed and not settling: every fill before its placement has come
        (one type is ordered), so the view can tell already whether it still protects anything."""
        if not is_own_protective(event.client_algo_id) or event.status is not AlgoStatus.NEW:
            return False
        leg = self.state.algo_order(event.client_algo_id)
        return leg is not None and leg.is_armed and not self.state.settling(leg)

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
        self._kick(symbol)
        self._watch(symbol)

    def _check_drift(self) -> None:
        """Resync when a pushed position has disagreed with the fills for longer than the grace."""
        drifted = self.state.drifted_symbols()
        if drifted and not self._resync_lock.locked():
            log.warning("account.drift", symbols=drifted)
            self._spawn(self._drift_resync(), "account-resync")

    async def _drift_resync(self) -> None:
        await self._resync()
        for symbol in self.state.disagreeing_symbols():
            self._watch(symbol)

    def _twin_open(self, event: AlgoUpdate) -> bool:
        """True when our leg of ``event`` is open under both of its ids (see :func:`.roles.leg_ids`)."""
        if not is_own_protective(event.client_algo_id):
            return False
        twin = replacement_of(event.client_algo_id)
        return any(a.client_algo_id == twin for a in self.state.own_protective_known(event.symbol))

    def _moved(self, fill: OrderTradeUpdate, before: PositionView, after: PositionView) -> None:
        self._moves.put_nowait(Moved(fill, before, after, time.monotonic()))
        metrics.OPEN_POSITIONS.set(self.state.open_count())
        metrics.OPEN_POSITION_NOTIONAL.labels(symbol=fill.symbol).set(
            float(abs(after.amount) * after.entry_price)
        )
        self._kick(fill.symbol)

    async def _on_connected(self) -> None:
        await self._resync()
        metrics.USER_STREAM_CONNECTED.set(1)
        log.info("account.synced", generation=self.state.generation, leader=self.leader)

    def _on_disconnected(self) -> None:
        self.state.mark_stale()
        for table in (self._order_waiters, self._origin_waiters, self._algo_waiters):
            for key in list(table):
                wake_key(table, key)  # stale now: nobody waits for an event that may never come
        metrics.USER_STREAM_CONNECTED.set(0)
        if self._stopping.is_set():
            return
        metrics.USER_STREAM_RECONNECTS.inc()
        log.warning("account.stream_down", detail="the account view is stale: REST until the next resync")

    # ---- the account lease

    async def _lease_loop(self) -> None:
        every = self._settings.account_lease_ttl_s / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self._tick_lease()
                self._lease_outage.ok()
            except REDIS_DOWN as exc:
                self._lease_outage.failed(error=str(exc))
                self._lease_lost()
            except Exception:
                log.exception("account_lease.failed")
                self._lease_lost()

    async def _tick_lease(self) -> None:
        was = self.leader
        self.leader = await self.store.take_lease() > 0
        metrics.ACCOUNT_LEASE_HELD.set(1 if self.leader else 0)
        if self.leader and not was:
            log.info("account_lease.taken", token=self.store.token)
            if self.synced.is_set() and not self.state.stale:
                self._spawn(self._take_over(), "account-takeover")
        elif was and not self.leader:
            log.warning("account_lease.lost")

    def _lease_lost(self) -> None:
        """The lease could not be renewed: it may be another instance's by now, so act on nothing
        until it is taken again (and the takeover resyncs)."""
        if self.leader:
            log.warning("account_lease.lost", detail="not renewed: acting on nothing until it is ours again")
        self.leader = False
        metrics.ACCOUNT_LEASE_HELD.set(0)

    async def _take_over(self) -> None:
        """A new holder: publish what the old one may not have, then resync and reconcile."""
        cutoff = time.monotonic() - _KEEP_UNPUBLISHED_S
        pending = [m for m in self._unpublished if m.seen_at >= cutoff]
        self._unpublished.clear()
        for moved in pending:
            self._moves.put_nowait(moved)
        try:
            await self._resync()
        except Exception:
            log.exception("account.takeover_resync_failed")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _still_leader(self) -> bool:
        """The fence before each order the follower sends: is the account lease still ours?"""
        try:
            self.leader = await self.store.take_lease() > 0
        except REDIS_DOWN:
            self._lease_lost()
        return self.leader
