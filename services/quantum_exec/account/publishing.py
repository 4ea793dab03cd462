"""Position events of the account follower (a mixin of AccountFollower).

Each fill that moved a position is queued as it is applied and turned into one event by a single
publisher task, in order, a batch at a time (whatever queued up meanwhile goes out in one
pipeline, so a burst of fills never outruns it): the intent is named from memory or its record
(written while the order travelled), a triggered order's conditional order is awaited briefly
(events of different types are not ordered against each other), and each event goes out through
the store's publish-once script. A non-holder keeps what it could not publish for the next holder.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, Final

from quantum_exec.account.events import OrderTradeUpdate
from quantum_exec.account.positions import PositionEvent, PositionReason, PositionView, position_event
from quantum_exec.account.roles import intent_digest, role_of
from quantum_exec.account.state import AccountState, AlgoView
from quantum_exec.account.store import AccountStore
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

# Conditional order types whose triggered order carries an id of the exchange's, not ours.
_TRIGGERED_TYPES: Final = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"})
# How long a fill of a triggered order waits for its ALGO_UPDATE before it is published as external.
_ORIGIN_WAIT_S: Final = 1.0
# Intent ids remembered by digest (far more than can be in flight).
_MAX_INTENT_IDS: Final = 10_000
# The most position events published in one pipeline.
_BATCH: Final = 256
# A record read or write during a Redis outage is tried this often (waits between, seconds).
BOOKKEEPING_RETRIES: Final = (0.05, 0.1, 0.2)


@dataclass(frozen=True, slots=True)
class Moved:
    """A fill that moved a position, waiting for its event to be built and published."""

    fill: OrderTradeUpdate
    before: PositionView
    after: PositionView
    seen_at: float


class Publishing:
    """Builds and publishes the position events; the follower provides the attributes below."""

    store: AccountStore
    state: AccountState
    leader: bool
    _moves: asyncio.Queue[Moved]
    _unpublished: deque[Moved]
    _publish_outage: OutageLog
    _intent_ids: OrderedDict[str, str | None]
    _origin_waiters: dict[str, list[asyncio.Future[None]]]

    async def _publisher(self) -> None:
        while True:
            batch = [await self._moves.get()]
            while len(batch) < _BATCH and not self._moves.empty():
                batch.append(self._moves.get_nowait())
            built: list[tuple[Moved, PositionEvent]] = []
            for moved in batch:
                try:
                    event = await self._event_of(moved)
                except REDIS_DOWN as exc:
                    self._publish_outage.failed(error=str(exc))
                    self._unpublished.append(moved)
                    continue
                except Exception:
                    log.exception("position_event.failed", symbol=moved.fill.symbol)
                    continue
                if event is not None:
                    built.append((moved, event))
            if built:
                await self._publish_built(built)

    async def _publish_built(self, built: list[tuple[Moved, PositionEvent]]) -> None:
        try:
            outcomes = await self._publish_all([event for _moved, event in built])
        except REDIS_DOWN as exc:
            self._publish_outage.failed(error=str(exc))
            self._unpublished.extend(moved for moved, _event in built)
            return
        except Exception:
            log.exception("position_event.failed", symbol=built[0][1].symbol)
            return
        self._publish_outage.ok()
        for (moved, event), outcome in zip(built, outcomes, strict=True):
            if outcome == -1:
                self._unpublished.append(moved)
            elif outcome == 1:
                try:
                    await self._published(event)
                except REDIS_DOWN as exc:
                    self._publish_outage.failed(error=str(exc))
                except Exception:
                    log.exception("position_event.failed", symbol=event.symbol)

    async def _event_of(self, moved: Moved) -> PositionEvent | None:
        fill = moved.fill
        algo = await self._origin(fill)
        client_id = (
            fill.client_order_id if role_of(fill.client_order_id) else (algo.client_algo_id if algo else "")
        )
        digest = intent_digest(client_id) if client_id else None
        intent_id = await self._intent_id(fill.symbol, digest) if digest else None
        return position_event(
            fill,
            moved.before,
            moved.after,
            intent_id=intent_id,
            algo_client_id=algo.client_algo_id if algo else None,
        )

    async def _origin(self, fill: OrderTradeUpdate) -> AlgoView | None:
        """The conditional order that placed ``fill``'s order, waiting briefly for its ALGO_UPDATE."""
        algo = self.state.algo_for_order(fill.order_id)
        if algo is not None or role_of(fill.client_order_id) or fill.original_type not in _TRIGGERED_TYPES:
            return algo

        await wait_for_key(self._origin_waiters, str(fill.order_id), _ORIGIN_WAIT_S)
        return self.state.algo_for_order(fill.order_id)

    def _remember_intent(self, digest: str, intent_id: str | None) -> None:
        self._intent_ids[digest] = intent_id
        self._intent_ids.move_to_end(digest)
        while len(self._intent_ids) > _MAX_INTENT_IDS:
            self._intent_ids.popitem(last=False)

    async def _intent_id(self, symbol: str, digest: str) -> str | None:
        """The intent id of one of our ids: from memory, else its record (written while the order
        travelled, so on another instance it may land a moment after the fill)."""
        if digest in self._intent_ids:
            return self._intent_ids[digest]
        for delay_s in (0.0, *BOOKKEEPING_RETRIES):
            await asyncio.sleep(delay_s)
            record = await self.store.get_record(symbol, digest)
            if record is not None:
                self._remember_intent(digest, record.intent_id)
                return record.intent_id
        return None

    async def _publish(self, event: PositionEvent) -> int:
        """Publish one event now (1 published, 0 before, -1 not the holder)."""
        [outcome] = await self._publish_all([event])
        if outcome == 1:
            await self._published(event)
        return outcome

    async def _publish_all(self, events: list[PositionEvent]) -> list[int]:
        if not self.leader:
            return [-1] * len(events)
        return await self.store.publish_many(events)

    async def _published(self, event: PositionEvent) -> None:
        metrics.POSITION_EVENTS.labels(kind=event.kind.value, reason=event.reason.value).inc()
        log.info(
            "position.event",
            event_id=event.event_id,
            symbol=event.symbol,
            kind=event.kind.value,
            reason=event.reason.value,
            position_amount=str(event.position_amount),
            realized_pnl=str(event.realized_pnl),
        )
        await self._after_published(event)

    async def _after_published(self, event: PositionEvent) -> None:
        """A stop or target filled: the record of the intent it protected shrinks by the fill."""
        if event.reason not in (PositionReason.STOP_LOSS, PositionReason.TAKE_PROFIT) or not event.intent_id:
            return
        for record in await self.store.records_of(event.symbol):
            if record.intent_id == event.intent_id and record.opened:
                left = record.quantity - event.quantity
                if left <= 0:
                    await self.store.drop_record(event.symbol, record.digest)
                else:
                    await self.store.put_record(replace(record, quantity=left))


async def wait_for_key(table: dict[Any, list[asyncio.Future[None]]], key: Any, timeout_s: float) -> None:
    """Wait until ``key`` is woken or ``timeout_s`` passed."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    table.setdefault(key, []).append(future)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout_s)
    finally:
        waiting = table.get(key)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(future)
            if not waiting:
                del table[key]


def wake_key(table: dict[Any, list[asyncio.Future[None]]], key: Any) -> None:
    for future in table.pop(key, []):
        if not future.done():
            future.set_result(None)
