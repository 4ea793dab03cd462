"""Per-symbol order across instances: an entry runs only when no older entry of its symbol is pending.

Entries are delivered in id order, so every smaller id of the group is either pending or acked:
before entry E of symbol S runs, the group's pending list is scanned for older entries of S (their
symbols are looked up once and cached: entries are immutable). The first scan is part of the lease
script (:meth:`.store.Store.acquire_and_begin`): with nothing older pending, the order check, the
lease and the in-flight mark cost one round trip; otherwise :meth:`SymbolOrder.wait_turn` sorts
out the older entries it returned and waits for those of S. Within one instance a per-symbol
queue hands its worker the smallest id first, so a worker never waits on itself.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from quantum_exec.contracts import Side
from quantum_exec.core.backoff import Backoff
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.entries import Entry, id_order, raw_symbol, text
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.store import Keys, Older

log = get_logger(__name__)

# The symbols of entries that may still be pending in the group: this consumer's own are dropped
# once answered (forget), others' (looked up once by XRANGE) age out. Pending entries are at most
# what the instances have read and not acknowledged: far fewer than this.
SYMBOL_CACHE_SIZE = 10_000
PENDING_PAGE = 500
# How often a waiting entry looks at the pending list again (a local wakeup comes sooner).
TURN_POLL = Backoff(base_s=0.02, cap_s=0.5)


@dataclass(eq=False)
class SymbolQueue:
    """The entries of one symbol held by this consumer, smallest id first, and their worker."""

    heap: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    def push(self, stream_id: str) -> None:
        heapq.heappush(self.heap, (id_order(stream_id), stream_id))
        self.wakeup.set()

    def remove(self, stream_id: str) -> None:
        self.heap = [item for item in self.heap if item[1] != stream_id]
        heapq.heapify(self.heap)

    def held_up(self, held: dict[str, Entry]) -> list[str]:
        """Its first entry is held up by another instance: the CLOSEs queued here whose signal was
        not published yet (``held``: the consumer's entries), marked published now."""
        closes: list[str] = []
        for _order, stream_id in self.heap:
            entry = held.get(stream_id)
            intent = entry.intent if entry is not None else None
            if entry is not None and intent is not None and intent.side is Side.CLOSE and not entry.signalled:
                entry.signalled = True
                closes.append(stream_id)
        return closes


class HeldOrder:
    """The valid entries this consumer holds, by stream id, with their symbols.

    The lead-in passes the older entries of other symbols to its order check; kept sorted (entries
    mostly arrive in id order: an append), they are a slice of this list instead of a scan of every
    held entry with its id parsed, per lead-in.
    """

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._ids: list[str] = []
        self._symbols: list[str] = []
        self._per_symbol: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, stream_id: str, symbol: str) -> None:
        key = id_order(stream_id)
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            return
        self._keys.insert(at, key)
        self._ids.insert(at, stream_id)
        self._symbols.insert(at, symbol)
        self._per_symbol[symbol] = self._per_symbol.get(symbol, 0) + 1

    def discard(self, stream_id: str) -> None:
        key = id_order(stream_id)
        at = bisect.bisect_left(self._keys, key)
        if at == len(self._keys) or self._keys[at] != key:
            return
        symbol = self._symbols[at]
        del self._keys[at], self._ids[at], self._symbols[at]
        left = self._per_symbol[symbol] - 1
        if left:
            self._per_symbol[symbol] = left
        else:
            del self._per_symbol[symbol]

    def older_of_other_symbols(self, stream_id: str, symbol: str, limit: int) -> list[str]:
        """The held entries older than ``stream_id`` whose symbol is not ``symbol``: the oldest
        ``limit`` of them (the order check's page is the oldest pending ones, so later ones could
        only matter once it is full, and then the caller pages itself)."""
        end = bisect.bisect_left(self._keys, id_order(stream_id))
        ids, symbols = self._ids, self._symbols
        same = self._per_symbol.get(symbol, 0)
        if same == 1 and end < len(ids) and ids[end] == stream_id and symbols[end] == symbol:
            same = 0  # the one of its symbol is itself
        if not same:  # no other entry of its symbol is held: a slice, no filter
            return ids[: min(end, limit)]
        found: list[str] = []
        for at in range(end):
            if symbols[at] != symbol:
                found.append(ids[at])
                if len(found) == limit:
                    break
        return found


class SymbolOrder:
    """Answers "may this entry run now?" against the group's pending list."""

    def __init__(
        self, redis: Redis, keys: Keys, link: RedisLink, on_held: Callable[[str], None] | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._link = link
        # Told (the symbol) each time an older entry of the symbol is found pending (:mod:`.signals`).
        self._on_held = on_held
        self._symbols: OrderedDict[str, str | None] = OrderedDict()

    def remember(self, stream_id: str, symbol: str | None) -> None:
        """Cache an entry's symbol (bounded)."""
        self._symbols[stream_id] = symbol
        if len(self._symbols) > SYMBOL_CACHE_SIZE:
            self._symbols.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        """This consumer is done with the entry: no longer pending here (if it still is, for a
        later attempt, its symbol is looked up again). Kept, the cache grew with every intent
        (20 MB of the service's memory at its old bound of 100,000)."""
        self._symbols.pop(stream_id, None)

    async def wait_turn(
        self,
        symbol: str,
        queue: SymbolQueue,
        entry: Entry,
        stopping: asyncio.Event,
        older: Older | None = None,
    ) -> bool:
        """Wait until no smaller entry of ``symbol`` is pending in the group; False to re-pick.

        ``older``: the older pending entries the lease script just found (its order check), looked
        at first instead of asking the group again.
        """
        stream_id = entry.stream_id
        waits = TURN_POLL.delays()
        logged = False
        while not stopping.is_set():
            if entry.dropped or not queue.heap or queue.heap[0][1] != stream_id:
                return False
            try:
                if older is not None and older.complete:
                    blockers = await self._of_symbol(symbol, older.ids)
                else:
                    blockers = await self.pending_before(symbol, stream_id)
                older = None
            except REDIS_DOWN as exc:
                self._link.lost(exc, "order_check")
                blockers = ["redis-down"]
            else:
                if blockers and self._on_held is not None:
                    self._on_held(symbol)
            if not blockers:
                return True
            if not logged:
                log.info("intent.waiting_for_order", stream_id=stream_id, symbol=symbol, before=blockers[:5])
                logged = True
            queue.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.wakeup.wait(), next(waits))
        return False

    async def pending_before(self, symbol: str, stream_id: str) -> list[str]:
        """Ids of entries of ``symbol`` older than ``stream_id`` still pending in the group."""
        older: list[str] = []
        start = "-"
        while True:
            rows = await self._redis.xpending_range(
                self._keys.intent_stream,
                self._keys.consumer_group,
                min=start,
                max=f"({stream_id}",
                count=PENDING_PAGE,
            )
            older += [text(row["message_id"]) for row in rows]
            if len(rows) < PENDING_PAGE:
                break
            start = f"({older[-1]}"
        return await self._of_symbol(symbol, older)

    async def _of_symbol(self, symbol: str, ids: list[str]) -> list[str]:
        """Those of ``ids`` that are entries of ``symbol``."""
        unknown = [sid for sid in ids if sid not in self._symbols]
        if unknown:
            # Entries are immutable: look each one up once and remember its symbol.
            pipe = self._redis.pipeline(transaction=False)
            for sid in unknown:
                pipe.xrange(self._keys.intent_stream, sid, sid, count=1)
            for sid, found in zip(unknown, await pipe.execute(), strict=True):
                self.remember(sid, raw_symbol(found[0][1]) if found else None)
        return [sid for sid in ids if self._symbols.get(sid) == symbol]
