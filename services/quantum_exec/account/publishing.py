"""Position events of the account follower.

Each fill that moved a position is queued as it is applied and turned into one event by a single
publisher task, in order, a batch at a time (whatever queued up meanwhile goes out in one
pipeline, so a burst of fills never outruns it): the intent is named from memory or its record
(written while the order travelled), a triggered order's conditional order is awaited briefly
(events of different types are not ordered against each other), and each event goes out through
the store's publish-once script. A non-holder keeps what it could not publish, and publishes it
itself when it takes the lease (:meth:`Publisher.hand_over`): the old holder may have died first.
The holder itself tries a fill's event again while Redis is away, the fills behind it waiting
(:meth:`Publisher._build`, :meth:`Publisher._publish_built`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Final, TypeVar

from quantum_exec.account.events import OrderTradeUpdate
from quantum_exec.account.lease import AccountLease
from quantum_exec.account.positions import PositionEvent, PositionReason, PositionView, position_event
from quantum_exec.account.protection_events import ProtectionReason, protection_changed
from quantum_exec.account.records import IntentIds
from quantum_exec.account.roles import intent_digest, role_of
from quantum_exec.account.state import AccountState
from quantum_exec.account.store import AccountStore
from quantum_exec.account.views import AlgoView, StaleStateError
from quantum_exec.account.waiters import KeyedWaiters
from quantum_exec.core.backoff import Backoff
from quantum_exec.exchange.wire import AlgoOrder
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

T = TypeVar("T")

# Conditional order types whose triggered order carries an id of the exchange's, not ours.
_TRIGGERED_TYPES: Final = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"})
# How long a fill of a triggered order waits for its ALGO_UPDATE before it is published as external.
_ORIGIN_WAIT_S: Final = 1.0
# The most position events published in one pipeline.
_BATCH: Final = 256
# Events a non-holder keeps, to publish them itself if the holder dies before it did.
_KEEP_UNPUBLISHED_S: Final = 600.0
# A holder's batch that met Redis away is tried again at these intervals while it holds the lease.
_RETRY: Final = Backoff(base_s=0.05, cap_s=1.0)
_FOLLOWED_UP: Final = frozenset({PositionReason.STOP_LOSS, PositionReason.TAKE_PROFIT})
_DIGESTS_KEPT: Final = 4096
# A follow-up whose record keeps changing under it (the live OCO, the executor) reads it again
# this many times.
_FOLLOW_UP_TRIES: Final = 5


@dataclass(frozen=True, slots=True)
class Moved:
    """A fill that moved a position, waiting for its event to be built and published."""

    fill: OrderTradeUpdate
    before: PositionView
    after: PositionView
    seen_at: float


class FollowUp(Enum):
    """How a stop's or target's follow-up ended."""

    DONE = "done"  # shrunk (or dropped), or nothing to do, or done before
    NOT_HOLDER = "not_holder"  # the lease is elsewhere: kept for this instance's next hand-over
    UNOPENED = "unopened"  # the intent's record is not opened yet: again later


class Publisher:
    """Builds and publishes the position events (:meth:`run` is the follower's publisher task)."""

    def __init__(
        self,
        store: AccountStore,
        state: AccountState,
        lease: AccountLease,
        intent_ids: IntentIds,
        origin_waiters: KeyedWaiters[str],
    ) -> None:
        self._store = store
        self._state = state
        self._lease = lease
        self._intent_ids = intent_ids
        self._origin_waiters = origin_waiters
        # Redis down: one line when it starts, one a minute, one when it ends (not one per retry).
        self._outage = OutageLog(log, "position_event.redis_down")
        # None wakes the loop (a hand-over: the kept fills go first).
        self._moves: asyncio.Queue[Moved | None] = asyncio.Queue()
        self._unpublished: deque[Moved] = deque(maxlen=4096)
        # A stop's or target's event id -> its intent's digest, from its build to its follow-up.
        self._digests: dict[str, str] = {}

    def queue(self, moved: Moved) -> None:
        """A fill that moved a position: its event goes out in order, from :meth:`run`."""
        self._moves.put_nowait(moved)

    def hand_over(self) -> None:
        """This instance just took the lease: publish what the old holder may not have. The
        kept fills go out ahead of the next batch (:meth:`run`: they are older than anything
        queued since), so this only wakes the publisher."""
        self._moves.put_nowait(None)

    def _kept(self) -> list[Moved]:
        """The fills kept while this instance did not hold the lease (the fresh ones), taken, in
        the order they were seen: a batch keeps one at its build and the others at its publish,
        so the list's own order can put a later fill first."""
        cutoff = time.monotonic() - _KEEP_UNPUBLISHED_S
        kept = sorted((m for m in self._unpublished if m.seen_at >= cutoff), key=lambda m: m.seen_at)
        self._unpublished.clear()
        return kept

    async def run(self) -> None:
        while True:
            first = await self._moves.get()
            batch = [] if first is None else [first]
            while len(batch) < _BATCH and not self._moves.empty():
                moved = self._moves.get_nowait()
                if moved is not None:
                    batch.append(moved)
            if self._unpublished and self._lease.leader:
                # Kept while the lease was elsewhere (or lapsed): older than this batch, first.
                batch = [*self._kept(), *batch]
            if not batch:
                continue
            built: list[tuple[Moved, PositionEvent]] = []
            for moved in batch:
                event = await self._build(moved)
                if event is not None:
                    built.append((moved, event))
            if built:
                await self._publish_built(built)

    async def _build(self, moved: Moved) -> PositionEvent | None:
        """``moved``'s event (naming its intent may read Redis); None when it is kept for a
        hand-over or cannot be built (see :meth:`_while_holder`)."""
        return await self._while_holder(
            lambda: self._event_of(moved), lambda: self._unpublished.append(moved), moved.fill.symbol
        )

    async def _while_holder(
        self, work: Callable[[], Awaitable[T]], keep: Callable[[], None], symbol: str
    ) -> T | None:
        """``work``'s answer. Redis away: tried again while this instance holds the lease, what
        is behind it waiting (the order holds; a holder's fills kept for a hand-over that never
        comes while it keeps the lease were lost); a non-holder ``keep``s them for its own
        hand-over. None when kept, or failed otherwise (logged)."""
        waits = _RETRY.delays()
        while True:
            try:
                return await work()
            except REDIS_DOWN as exc:
                self._outage.failed(error=str(exc))
                if not self._lease.leader:
                    keep()
                    return None
                await asyncio.sleep(next(waits))
            except Exception:
                log.exception("position_event.failed", symbol=symbol)
                return None

    async def _publish_built(self, built: list[tuple[Moved, PositionEvent]]) -> None:
        """Publish the batch, in order (:meth:`_while_holder`). An event answered "published
        before" gets its follow-up too (an attempt of ours whose answer was lost, or a holder
        that died before it, did not run it; one that did left the record saying so)."""
        events = [event for _moved, event in built]
        outcomes = await self._while_holder(
            lambda: self._publish_all(events),
            lambda: self._unpublished.extend(moved for moved, _event in built),
            events[0].symbol,
        )
        if outcomes is None:
            return
        self._outage.ok()
        for (moved, event), outcome in zip(built, outcomes, strict=True):
            if outcome == -1:
                self._unpublished.append(moved)
                continue
            if outcome == 1:
                self._announce(event)
            # Safe to run again (once per event): tried again while this instance holds the lease;
            # a lease lost meanwhile keeps the fill for this instance's next hand-over (the event
            # is published again there, answered 0, and followed up), as a new holder's own does.
            keep = partial(self._unpublished.append, moved)
            follow_up = await self._while_holder(
                partial(self._after_published, event, now=outcome == 1), keep, event.symbol
            )
            if follow_up is FollowUp.NOT_HOLDER:
                keep()
            elif follow_up is FollowUp.UNOPENED:
                self._follow_up_later(moved, event)
            if follow_up is not None:
                self._digests.pop(event.event_id, None)  # built again when published again

    async def _event_of(self, moved: Moved) -> PositionEvent | None:
        fill = moved.fill
        algo = await self._origin(fill)
        client_id = (
            fill.client_order_id if role_of(fill.client_order_id) else (algo.client_algo_id if algo else "")
        )
        digest = intent_digest(client_id) if client_id else None
        intent_id = await self._intent_ids.lookup(fill.symbol, digest) if digest else None
        event = position_event(
            fill,
            moved.before,
            moved.after,
            intent_id=intent_id,
            algo_client_id=algo.client_algo_id if algo else None,
        )
        if digest is not None and event is not None and event.reason in _FOLLOWED_UP:
            # Its follow-up finds the intent's record by this (an intent sent without an
            # intent_id has none to find it by); forgotten once followed up.
            self._digests[event.event_id] = digest
            if len(self._digests) > _DIGESTS_KEPT:
                del self._digests[next(iter(self._digests))]
        return event

    async def _origin(self, fill: OrderTradeUpdate) -> AlgoView | None:
        """The conditional order that placed ``fill``'s order, waiting briefly for its ALGO_UPDATE."""
        algo = self._state.algo_for_order(fill.order_id)
        if algo is not None or role_of(fill.client_order_id) or fill.original_type not in _TRIGGERED_TYPES:
            return algo

        await self._origin_waiters.wait(str(fill.order_id), _ORIGIN_WAIT_S)
        return self._state.algo_for_order(fill.order_id)

    async def publish(self, event: PositionEvent) -> int:
        """Publish one event now (1 published, 0 before, -1 not the holder)."""
        [outcome] = await self._publish_all([event])
        if outcome == 1:
            await self._published(event)
        return outcome

    async def _publish_all(self, events: list[PositionEvent]) -> list[int]:
        if not self._lease.leader:
            return [-1] * len(events)
        return await self._store.publish_many(events)

    async def _published(self, event: PositionEvent) -> None:
        self._announce(event)
        await self._after_published(event)

    def _announce(self, event: PositionEvent) -> None:
        metrics.POSITION_EVENTS.labels(kind=event.kind.value, reason=event.reason.value).inc()
        # DEBUG: the event itself is in the position stream (durable, read by the ledger, the
        # console and the API); at INFO it was a second line per fill beside the intent's own.
        log.debug(
            "position.event",
            event_id=event.event_id,
            symbol=event.symbol,
            kind=event.kind.value,
            reason=event.reason.value,
            position_amount=str(event.position_amount),
            realized_pnl=str(event.realized_pnl),
        )

    async def _after_published(self, event: PositionEvent, *, now: bool = True) -> FollowUp:
        """A stop or target filled: the record of the intent it protected shrinks by the fill,
        once. Run again for an event published before (``now`` False: an attempt whose answer was
        lost, the holder before a hand-over), it changes nothing: the record remembers the fills
        it was shrunk by (one written by a version that did not is shrunk only by an event
        published now). Written under the lease, only if the record is still as read (the live
        OCO, the executor or a deposed holder may write it meanwhile). An intent whose record
        does not say ``opened`` yet (its executor writes it after the protection and the fees,
        and a level may fill before) is followed up again later (:attr:`FollowUp.UNOPENED`)."""
        digest = self._digests.get(event.event_id)
        if event.reason not in _FOLLOWED_UP or not (digest or event.intent_id):
            return FollowUp.DONE
        for _ in range(_FOLLOW_UP_TRIES):
            changed = unopened = False
            for record in await self._store.records_of(event.symbol):
                if (record.digest != digest) if digest else (record.intent_id != event.intent_id):
                    continue
                if not record.opened:
                    unopened = True
                    continue
                if (record.shrunk_by is None and not now) or event.event_id in (record.shrunk_by or ()):
                    return FollowUp.DONE
                left = record.shrunk(event.event_id, event.quantity)
                outcome = await self._store.replace_record(record, left if left.quantity > 0 else None)
                if outcome < 0:
                    return FollowUp.NOT_HOLDER
                if outcome > 0:
                    return FollowUp.DONE
                changed = True
            if not changed:
                return FollowUp.UNOPENED if unopened else FollowUp.DONE
        log.warning("position_event.follow_up_raced", symbol=event.symbol, event_id=event.event_id)
        return FollowUp.DONE

    def _follow_up_later(self, moved: Moved, event: PositionEvent) -> None:
        """Publish ``moved`` again in a while (answered 0) to follow it up once its intent's record
        is opened; given up (logged) past _KEEP_UNPUBLISHED_S (an executor that died there: its
        intent's resume writes the record again)."""
        age = time.monotonic() - moved.seen_at
        if age > _KEEP_UNPUBLISHED_S:
            log.warning("position_event.follow_up_unopened", symbol=event.symbol, event_id=event.event_id)
            return
        asyncio.get_running_loop().call_later(min(5.0, max(0.25, age / 4)), self._moves.put_nowait, moved)

    async def protection_changed(
        self,
        symbol: str,
        reason: str,
        change_id: str,
        before: Sequence[AlgoView | AlgoOrder],
        after: Sequence[AlgoView | AlgoOrder] | None,
        *,
        intent_id: str | None = None,
    ) -> None:
        """Publish that our legs on ``symbol`` changed from ``before`` to ``after`` (None: the
        view's open legs now). Never fails the caller: logged when it cannot."""
        if after is None:
            try:
                after = self._state.open_protective(symbol)
            except StaleStateError:
                after = []
        event = protection_changed(
            symbol, ProtectionReason(reason), change_id, before, after, intent_id=intent_id
        )
        try:
            outcome = await self._store.publish_protection(event)
        except Exception as exc:
            log.warning("account.protection_event_failed", symbol=symbol, reason=reason, error=str(exc))
            return
        if outcome < 0:
            log.warning("account.protection_event_not_leader", symbol=symbol, reason=reason)
