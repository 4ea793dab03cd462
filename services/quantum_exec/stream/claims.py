"""Pending entries: our own after a restart, keeping held ones alive, claiming the dead's.

Every ``claim_interval_s``: the entries this consumer holds are kept fresh (XCLAIM JUSTID to
itself), so one that waits for its turn or runs long is not stolen while its owner is alive;
entries idle longer than ``claim_idle_ms`` are XAUTOCLAIMed from dead consumers; the pending and
lag gauges are updated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from quantum_exec.core.settings import Settings
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.entries import Entry, Fields, busy, read_entries, text
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.store import Keys

log = get_logger(__name__)

LAG_SCAN_LIMIT = 10_000
Dispatch = Callable[[str, Fields, int], None]


class Claims:
    """The maintenance work over the group's pending list (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        link: RedisLink,
        *,
        held: dict[str, Entry],
        limit: int,
        dispatch: Dispatch,
        forget: Callable[[Entry], None],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._link = link
        self._consumer = settings.consumer_name
        self._held = held
        self._limit = limit
        self._dispatch = dispatch
        self._forget = forget
        self._cursor = "0-0"

    async def run(self, stopping: asyncio.Event, group_ready: Callable[[], bool]) -> None:
        """Until ``stopping``: refresh, claim, gauges; every failure logged, never fatal."""
        while not stopping.is_set():
            try:
                if group_ready():
                    await self.refresh_held()
                    await self.autoclaim(stopping)
                    await self.update_gauges()
            except REDIS_DOWN as exc:
                self._link.lost(exc, "maintenance")
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("consumer.maintenance_failed", error=str(exc))
            except Exception as exc:
                log.exception("consumer.maintenance_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._settings.claim_interval_s)

    async def own_pending(self, stopping: asyncio.Event) -> None:
        """Re-process what this consumer name was given before a crash or restart."""
        last = "0"
        while not stopping.is_set():
            reply = await self._redis.xreadgroup(
                self._keys.consumer_group,
                self._consumer,
                {self._keys.intent_stream: last},
                count=self._settings.read_count,
            )
            entries = read_entries(reply)
            if not entries:
                return
            counts = await self.delivery_counts(entries[0][0], entries[-1][0])
            deleted = [sid for sid, fields in entries if not fields]
            if deleted:
                await self.ack_deleted(deleted, "own_pending")
            for stream_id, fields in entries:
                if fields and stream_id not in self._held:
                    metrics.REDELIVERIES.inc()
                    self._dispatch(stream_id, fields, counts.get(stream_id, 2))
            log.info("consumer.own_pending", entries=len(entries), deleted=len(deleted))
            last = entries[-1][0]

    async def delivery_counts(self, first: str, last: str) -> dict[str, int]:
        """How often each of our pending entries between ``first`` and ``last`` was delivered."""
        rows = await self._redis.xpending_range(
            self._keys.intent_stream,
            self._keys.consumer_group,
            min=first,
            max=last,
            count=self._limit + self._settings.claim_page_size,
            consumername=self._consumer,
        )
        return {text(row["message_id"]): int(row["times_delivered"]) for row in rows}

    async def ack_deleted(self, stream_ids: list[str], where: str) -> None:
        """Ack pending entries whose stream entry was deleted (nothing left to execute)."""
        metrics.CLAIM_DELETED.inc(len(stream_ids))
        log.warning(
            "consumer.pending_deleted", where=where, stream_ids=stream_ids[:20], count=len(stream_ids)
        )
        await self._redis.xack(self._keys.intent_stream, self._keys.consumer_group, *stream_ids)

    async def refresh_held(self) -> None:
        """Reset the idle time of entries we still own; drop unstarted ones we no longer own.

        Also acks entries in our pending list that were deleted from the stream (on Redis 6.2
        XAUTOCLAIM reports them without their id).
        """
        # Only entries held before asking: one read concurrently may not be in the reply yet.
        snapshot = dict(self._held)
        rows = await self._redis.xpending_range(
            self._keys.intent_stream,
            self._keys.consumer_group,
            min="-",
            max="+",
            count=self._limit + self._settings.claim_page_size * self._settings.claim_max_pages,
            consumername=self._consumer,
        )
        owned = {text(row["message_id"]) for row in rows}
        for stream_id, entry in snapshot.items():
            if stream_id not in owned and not entry.started:
                entry.dropped = True
                self._forget(entry)
                log.info("intent.dropped_not_owned", stream_id=stream_id)
        fresh: list[Any] = [sid for sid in snapshot if sid in owned and sid in self._held]
        if fresh:
            await self._redis.xclaim(
                self._keys.intent_stream, self._keys.consumer_group, self._consumer, 0, fresh, justid=True
            )
        orphans = [sid for sid in owned if sid not in self._held]
        if orphans:
            pipe = self._redis.pipeline(transaction=False)
            for sid in orphans:
                pipe.xrange(self._keys.intent_stream, sid, sid, count=1)
            deleted = [sid for sid, found in zip(orphans, await pipe.execute(), strict=True) if not found]
            if deleted:
                await self.ack_deleted(deleted, "refresh")

    async def hand_over(self, stream_ids: list[str]) -> None:
        """The entries a clean stop leaves pending (a LIMIT resting, a STOP armed, an intent not
        started) are made idle for ``claim_idle_ms`` at once: another instance claims them at its
        next pass, not a whole ``claim_idle_ms`` later (a fill meanwhile would wait naked for its
        SL/TP all that time). Best effort: Redis unreachable leaves the plain idle clock."""
        if not stream_ids:
            return
        try:
            await self._redis.xclaim(
                self._keys.intent_stream,
                self._keys.consumer_group,
                self._consumer,
                0,
                list(stream_ids),
                idle=self._settings.claim_idle_ms,
                justid=True,
            )
        except REDIS_DOWN as exc:
            log.warning("consumer.hand_over_failed", count=len(stream_ids), error=str(exc))
            return
        log.info("consumer.handed_over", count=len(stream_ids), first=stream_ids[0], last=stream_ids[-1])

    async def autoclaim(self, stopping: asyncio.Event) -> None:
        """Claim entries idle longer than ``claim_idle_ms`` (their consumer died) and dispatch them.

        The first page is claimed even when we hold all we may: what we hold may be waiting for
        its symbol's turn behind exactly these entries (older, of a dead consumer), and without
        them nothing would ever run. That overshoot is bounded by what the dead left pending.
        """
        s = self._settings
        for page in range(s.claim_max_pages):
            if stopping.is_set() or (page and busy(self._held) >= self._limit):
                return
            reply: Any = await self._redis.xautoclaim(
                self._keys.intent_stream,
                self._keys.consumer_group,
                self._consumer,
                s.claim_idle_ms,
                start_id=self._cursor,
                count=s.claim_page_size,
            )
            # Redis >= 7: [cursor, entries, deleted ids]; 6.2: [cursor, entries] with deleted
            # entries as (None, None), left in our pending list for refresh_held to ack.
            self._cursor = text(reply[0])
            live = [(text(sid), fields) for sid, fields in reply[1] if sid is not None and fields]
            deleted = [text(sid) for sid in reply[2]] if len(reply) > 2 else []
            if deleted:
                await self.ack_deleted(deleted, "autoclaim")
            if live:
                metrics.CLAIMED.inc(len(live))
                log.info("consumer.claimed", count=len(live), first=live[0][0], last=live[-1][0])
                counts = await self.delivery_counts(live[0][0], live[-1][0])
                for stream_id, fields in live:
                    if stream_id not in self._held:
                        metrics.REDELIVERIES.inc()
                        self._dispatch(stream_id, fields, counts.get(stream_id, 2))
            if self._cursor == "0-0":
                return

    async def update_gauges(self) -> None:
        """Pending and lag of the group."""
        groups = await self._redis.xinfo_groups(self._keys.intent_stream)
        for group in groups:
            if text(group["name"]) != self._keys.consumer_group:
                continue
            metrics.PENDING.set(int(group["pending"]))
            lag = group.get("lag")
            if lag is None:
                # Redis 6.2 has no lag field: count what lies after the last delivered id (bounded).
                last = text(group["last-delivered-id"])
                rest: Any = await self._redis.xrange(
                    self._keys.intent_stream, f"({last}", "+", count=LAG_SCAN_LIMIT
                )
                lag = len(rest)
            metrics.CONSUMER_LAG.set(int(lag))
