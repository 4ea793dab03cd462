"""After an unclean restart (or a claim from a dead consumer): what an attempt knows of the earlier
ones, and who runs alone.

Resumed intents run as soon as their symbol's turn comes, beside new ones: recovery delays no
other symbol. What the old one-at-a-time recovery gave, a real poison intent identified alone, is
kept where it decides: the attempts of an intent are counted per intent (the first, and each
resume that sends an order, see :mod:`.store`), and the one attempt whose death would make an
intent poison (it died executing ``max_attempts - 1`` times already) runs alone: it waits until
no other attempt is executing, and none starts until it ends or parks. An innocent intent counted
with a poison one in a crash loop so gets its deciding attempt to itself and completes; only the
poison one dies in it. Only a crash loop reaches that count: after one restart nothing waits.

Alone means alone among executing attempts; a parked one (a resting LIMIT, an armed STOP, a TWAP
between slices, see :mod:`quantum_exec.execution.parking`) is only waiting for events, and is not
held back when its fill comes: its protection goes first.
"""

from __future__ import annotations

import asyncio
import time

from quantum_exec.execution.parking import Release
from quantum_exec.execution.run import Attempt
from quantum_exec.stream.entries import Entry
from quantum_exec.stream.leases import FENCE_FRESH_S
from quantum_exec.stream.store import BeginState, Begun


def attempt_of(begun: Begun, max_attempts: int, *, record_lost_by: float | None = None) -> Attempt:
    """What the executor must know of earlier attempts (see :class:`Attempt`).

    ``record_lost_by``: for a new record, when an earlier attempt may have begun and its record
    been lost since (acknowledged writes lost in a failover), the monotonic time of its last
    fence Redis can have confirmed (see :func:`record_lost_by`); its orders left by then plus
    :data:`FENCE_FRESH_S` (a fence confirmed moments before skips Redis for that long), and the
    attempt looks them up by client id before sending any.
    """
    first_received_at = begun.first_received_at
    if begun.state is BeginState.NEW and record_lost_by is not None:
        return Attempt(
            resume=True, earlier_sent_by=record_lost_by + FENCE_FRESH_S, first_received_at=first_received_at
        )
    if begun.state is not BeginState.RESUMED:
        return Attempt(first_received_at=first_received_at)
    earlier_sent_by = None
    if begun.fenced_at_ms:
        # The last fence of the dead attempts, on Redis's clock, moved to ours: no order of
        # theirs left later than FENCE_FRESH_S after it. So the recvWindow wait shrinks across
        # restarts instead of starting over with every one.
        ahead_s = (begun.fenced_at_ms - begun.now_ms) / 1000 + FENCE_FRESH_S
        earlier_sent_by = time.monotonic() + ahead_s
    return Attempt(
        resume=True,
        earlier_sent_by=earlier_sent_by,
        repair=begun.attempts >= max_attempts,
        first_received_at=first_received_at,
    )


def deciding(begun: Begun, max_attempts: int) -> bool:
    """True for the attempt whose death would make the intent poison (or its repair): it runs alone."""
    return begun.state is BeginState.RESUMED and begun.attempts >= max_attempts - 1


def record_lost_by(entry: Entry, outage_since: float | None, connected_at: float | None) -> float | None:
    """When a new begin record may stand in for one lost with acknowledged writes (a failover):
    the monotonic time by which Redis last confirmed a fence of the lost attempt (its orders left
    by then plus FENCE_FRESH_S, added by :func:`attempt_of`); None when it cannot be.

    After an outage this process saw (its start: ``outage_since`` now, or ``entry.outage_since``
    when the entry was read, for an entry that waited past the window for a slot or its turn),
    any intent may be one whose records the outage took (a failover rolls the group back too, so
    it comes again as new): its fences were confirmed before the outage began. A redelivered entry
    may have lost its record to an outage before this process connected (``connected_at``; an
    instance started after a failover): its fences were confirmed before that.
    """
    if outage_since is not None:
        return outage_since  # the latest outage: the later bound covers an earlier one too
    if entry.outage_since is not None:
        return entry.outage_since
    if entry.deliveries > 1:
        return connected_at
    return None


class RecoveryGate:
    """Executing attempts run side by side; a deciding one (see :func:`deciding`) runs alone."""

    def __init__(self) -> None:
        self._executing = 0
        self._idle = asyncio.Event()  # no attempt executing
        self._idle.set()
        self._open = asyncio.Event()  # no deciding attempt runs or waits: attempts may start
        self._open.set()
        self._alone = asyncio.Lock()  # deciding attempts, one at a time

    async def enter(self, *, alone: bool) -> Release:
        """Wait for this attempt's turn to execute; returns its leave (safe to call twice)."""
        if alone:
            await self._alone.acquire()
            self._open.clear()
            try:
                while self._executing:
                    await self._idle.wait()
            except BaseException:
                self._reopen()
                raise
        else:
            while not self._open.is_set():
                await self._open.wait()
            self._executing += 1
            self._idle.clear()
        left = False

        def leave() -> None:
            nonlocal left
            if left:
                return
            left = True
            if alone:
                self._reopen()
                return
            self._executing -= 1
            if not self._executing:
                self._idle.set()

        return leave

    def _reopen(self) -> None:
        self._open.set()
        self._alone.release()
