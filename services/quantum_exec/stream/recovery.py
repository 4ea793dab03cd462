"""After an unclean restart (or a claim from a dead consumer): what an attempt knows of the earlier
ones, and the order in which the intents that were executing run again.

The intents that were executing run one at a time, before new ones, so a real poison intent is
identified alone and innocent ones are not counted with it; new intents wait for that (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from quantum_exec.execution.run import Attempt
from quantum_exec.stream.entries import Entry
from quantum_exec.stream.leases import FENCE_FRESH_S
from quantum_exec.stream.store import BeginState, Begun

# How long a new intent waits for the recovery of earlier ones before it runs anyway.
RECOVERY_WAIT_S = 30.0


def attempt_of(begun: Begun, max_attempts: int, *, record_lost_by: float | None = None) -> Attempt:
    """What the executor must know of earlier attempts (see :class:`Attempt`).

    ``record_lost_by``: for a new record, when an earlier attempt may have begun and its record
    been lost since (acknowledged writes lost in a failover), the monotonic time by which its
    orders were sent; the attempt then looks its orders up by client id before sending any.
    """
    if begun.state is BeginState.NEW and record_lost_by is not None:
        return Attempt(resume=True, earlier_sent_by=record_lost_by)
    if begun.state is not BeginState.RESUMED:
        return Attempt()
    earlier_sent_by = None
    if begun.fenced_at_ms:
        # The last fence of the dead attempts, on Redis's clock, moved to ours: no order of
        # theirs left later than FENCE_FRESH_S after it. So the recvWindow wait shrinks across
        # restarts instead of starting over with every one.
        ahead_s = (begun.fenced_at_ms - begun.now_ms) / 1000 + FENCE_FRESH_S
        earlier_sent_by = time.monotonic() + ahead_s
    return Attempt(resume=True, earlier_sent_by=earlier_sent_by, repair=begun.attempts >= max_attempts)


def record_lost_by(entry: Entry, outage_since: float | None, connected_at: float | None) -> float | None:
    """When a new begin record may stand in for one lost with acknowledged writes (a failover):
    the monotonic time by which the lost attempt's orders were sent; None when it cannot be.

    After an outage this process saw (its start: ``outage_since`` now, or ``entry.outage_since``
    when the entry was read, for an entry that waited past the window for a slot or its turn),
    any intent may be one whose records the outage took (a failover rolls the group back too, so
    it comes again as new): its orders left before the outage began. A redelivered entry may have
    lost its record to an outage before this process connected (``connected_at``; an instance
    started after a failover): its orders left before that.
    """
    if outage_since is not None:
        return outage_since  # the latest outage: the later bound covers an earlier one too
    if entry.outage_since is not None:
        return entry.outage_since
    if entry.deliveries > 1:
        return connected_at
    return None


class RecoveryGate:
    """Entries delivered before (``recovering``) go first; resumed ones one at a time."""

    def __init__(self) -> None:
        self._recovering: set[str] = set()
        self._done = asyncio.Event()
        self._done.set()
        self._serial = asyncio.Lock()

    def arrived(self, stream_id: str) -> None:
        """A recovering entry was dispatched."""
        self._recovering.add(stream_id)
        self._done.clear()

    def finished(self, stream_id: str) -> None:
        """A recovering entry left the consumer (answered, dropped, or left pending)."""
        self._recovering.discard(stream_id)
        if not self._recovering:
            self._done.set()

    async def wait_turn(self) -> None:
        """For a new entry: wait until the recovering ones are done (at most RECOVERY_WAIT_S)."""
        if self._recovering:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), RECOVERY_WAIT_S)

    def serial(self, resumed: bool) -> AbstractAsyncContextManager[Any]:
        """Held around a resumed attempt: the intents that were executing run one at a time."""
        return self._serial if resumed else contextlib.nullcontext()
