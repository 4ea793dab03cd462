"""The intent records the follower keeps for the executor, and the intent ids it names events by.

A record is written before an entry's order is sent (whoever sees the fill can name the intent),
holds the position and the triggers placed once it filled, and is dropped when nothing filled or
the position closed (:mod:`.store`). Every record command rides in the loop turn's one pipeline
(:mod:`.record_batch`): the intents in flight share their bookkeeping's round trips, and each still
waits for its own write (a commit never runs ahead of it). Record writes never fail an intent: they serve the
reconciliation and the events' intent ids, not the order flow, so a Redis outage is retried
briefly, then logged (the next redelivery or reconcile repairs it).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Final

from quantum_exec.account.record import Record
from quantum_exec.account.roles import intent_digest
from quantum_exec.account.store import AccountStore
from quantum_exec.contracts import Side, TradeIntent
from quantum_exec.core.ids import client_order_id
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

ZERO: Final = Decimal(0)
# Intent ids remembered by digest (far more than can be in flight).
_MAX_INTENT_IDS: Final = 10_000
# A record read or write during a Redis outage is tried this often (waits between, seconds).
BOOKKEEPING_RETRIES: Final = (0.05, 0.1, 0.2)


def _digest(key: str) -> str:
    """The digest the records of intent ``key`` are kept under."""
    digest = intent_digest(client_order_id(key, "entry"))
    assert digest is not None
    return digest


class IntentIds:
    """digest -> intent id, the most recent ones from memory, the others from their records."""

    def __init__(self, store: AccountStore) -> None:
        self._store = store
        self._ids: OrderedDict[str, str | None] = OrderedDict()

    def remember(self, digest: str, intent_id: str | None) -> None:
        self._ids[digest] = intent_id
        self._ids.move_to_end(digest)
        while len(self._ids) > _MAX_INTENT_IDS:
            self._ids.popitem(last=False)

    async def lookup(self, symbol: str, digest: str) -> str | None:
        """The intent id of one of our ids: from memory, else its record (written while the order
        travelled, so on another instance it may land a moment after the fill)."""
        if digest in self._ids:
            return self._ids[digest]
        for delay_s in (0.0, *BOOKKEEPING_RETRIES):
            await asyncio.sleep(delay_s)
            record = await self._store.get_record(symbol, digest)
            if record is not None:
                self.remember(digest, record.intent_id)
                return record.intent_id
        return None


class IntentRecords:
    """The executor's record writes (:meth:`opening`, :meth:`opened`, :meth:`closed`)."""

    def __init__(self, store: AccountStore, intent_ids: IntentIds) -> None:
        self._store = store
        self._intent_ids = intent_ids

    async def opening(self, key: str, intent: TradeIntent, position_before: Decimal | None = None) -> None:
        """Record the intent before its order is sent (whoever sees the fill can name the intent),
        with the position its entry meets (a resumed attempt reads it: :meth:`resumed`)."""
        await self._bookkeeping("opening", intent.symbol, lambda: self._opening(key, intent, position_before))

    async def resumed(self, key: str, symbol: str) -> tuple[bool | None, Decimal | None]:
        """For a resumed attempt: whether the intent's record is there (False: gone, a fill of
        its own legs took the last of it, or its position closed and its records were dropped;
        None: it could not be read), and the position its entry met as its first attempt
        recorded it (None: unknown)."""
        digest = _digest(key)
        try:
            record = await self._store.get_record(symbol, digest)
        except REDIS_DOWN as exc:
            log.warning("account.record_unread", symbol=symbol, error=str(exc))
            return None, None
        return record is not None, None if record is None else record.position_before

    async def opened(
        self,
        key: str,
        intent: TradeIntent,
        executed: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        break_even: tuple[int, Decimal] | None = None,
        *,
        filled: Decimal | None = None,
        position_before: Decimal | None = None,
        seen: bool = False,
    ) -> None:
        """The entry opened ``executed`` (of the ``filled`` it executed, when that differs: a
        flip, or an entry that only reduced ``position_before``): the record holds a position and
        the triggers placed (and the break-even move: after which level, to which trigger).
        Dropped when nothing filled; an entry that filled and opened nothing keeps a record of
        size 0 with the position it met, for a resumed attempt (:meth:`resumed`). ``seen``: a
        resumed attempt read the record there: if it is gone now, it is not written again."""
        await self._bookkeeping(
            "opened",
            intent.symbol,
            lambda: self._opened(
                key, intent, executed, stop_loss, take_profit, break_even, filled, position_before, seen
            ),
        )

    async def closed(self, symbol: str, long: bool | None, close_key: str | None = None) -> bool:
        """The records of the position closed (of side ``long``, or every side) hold nothing any
        more, nor does the record of the CLOSE ``close_key`` (its intent key) when given: dropped
        in one script. False when they could not be dropped."""
        also = [] if close_key is None else [_digest(close_key)]
        return await self._bookkeeping("closed", symbol, lambda: self._closed(symbol, long, also))

    async def _bookkeeping(self, what: str, symbol: str, work: Callable[[], Awaitable[None]]) -> bool:
        for delay_s in BOOKKEEPING_RETRIES:
            try:
                await work()
                return True
            except REDIS_DOWN as exc:
                error = str(exc)
                await asyncio.sleep(delay_s)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
        log.error("account.record_failed", step=what, symbol=symbol, error=error)
        return False

    async def _opening(self, key: str, intent: TradeIntent, position_before: Decimal | None) -> None:
        digest = _digest(key)
        self._intent_ids.remember(digest, intent.intent_id)
        long = None if intent.side is Side.CLOSE else intent.side is Side.BUY
        labels = {k: str(intent.meta[k]) for k in ("model", "strategy") if intent.meta.get(k) is not None}
        await self._store.put_record(
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
                position_before=position_before,
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
        break_even: tuple[int, Decimal] | None = None,
        filled: Decimal | None = None,
        position_before: Decimal | None = None,
        seen: bool = False,
    ) -> None:
        digest = _digest(key)
        netted = executed <= 0 and filled is not None and filled > 0 and position_before is not None
        if intent.side is Side.CLOSE or (executed <= 0 and not netted):
            await self._store.drop_record(intent.symbol, digest)
            return
        if netted:
            # It filled and opened nothing (it reduced an opposite position, or was closed at
            # once): no position, no triggers; only what a resumed attempt must know.
            stop_loss = take_profit = None
            break_even = None
            executed = Decimal(0)
        # Merged over an "opened" record of the intent (a redelivered intent's attempt): what a
        # level's fill took off it since stays off; what the entry filled further (a resumed
        # TWAP's child) is added.
        await self._store.put_opened(
            Record(
                digest=digest,
                intent_key=key,
                intent_id=intent.intent_id,
                symbol=intent.symbol,
                long=intent.side is Side.BUY,
                quantity=executed,
                entry_filled=executed if filled is None else filled,
                stop_loss=stop_loss,
                take_profit=take_profit,
                opened=True,
                break_even_after=break_even[0] if break_even else None,
                break_even=break_even[1] if break_even else None,
                position_before=position_before,
            ),
            seen=seen,
        )

    async def _closed(self, symbol: str, long: bool | None, also: list[str]) -> None:
        await self._store.drop_opened(symbol, long, also)  # one script: no read of the records first

    async def break_even(self, symbol: str, *, long: bool) -> tuple[int, Decimal] | None:
        """The break-even move the open records of ``symbol`` (side ``long``) hold: after which
        level, to which trigger (of several, the earliest level and the safest trigger); None
        when none holds one. A MODIFY that rewrites the records carries it over."""
        records = [
            r
            for r in await self._store.records_of(symbol)
            if r.opened and r.long is long and r.break_even_after is not None and r.break_even is not None
        ]
        if not records:
            return None
        after = min(r.break_even_after for r in records if r.break_even_after is not None)
        triggers = [r.break_even for r in records if r.break_even is not None]
        return after, max(triggers) if long else min(triggers)

    async def record_keys(self, symbol: str, *, long: bool) -> dict[str, tuple[Decimal | None, int | None]]:
        """The keys of the open records of ``symbol`` (side ``long``): their stop trigger and
        break-even level (a MODIFY finds the ladder's filled levels under them, and a resumed one
        the stop it decided)."""
        return {
            r.intent_key: (r.stop_loss, r.break_even_after)
            for r in await self._store.records_of(symbol)
            if r.opened and r.long is long and r.quantity > 0
        }
