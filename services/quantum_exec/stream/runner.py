"""One attempt at a valid intent: its lease and in-flight mark, the handler under the fence, the commit.

The consumer (:mod:`.consumer`) reads, dispatches and queues entries; each entry's turn ends here:
the order check, the lease and the begin record in one script (:mod:`.leases`, :mod:`.store`),
what earlier attempts left (:mod:`.recovery`), the handler run under the fence, then the atomic
commit (:mod:`.answers`), or the entry left pending when the handler failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Protocol

from quantum_exec.contracts import ExecutionResult, TradeIntent, intent_digest, intent_key
from quantum_exec.core.errors import ReasonCode, RetryableError, UnknownOutcomeError
from quantum_exec.core.settings import Settings
from quantum_exec.exchange import fencing
from quantum_exec.execution import parking
from quantum_exec.execution.parking import Release
from quantum_exec.execution.run import Attempt
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.answers import Answers
from quantum_exec.stream.entries import Entry, dead_letter_fields
from quantum_exec.stream.leases import Leases
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.recovery import RecoveryGate, attempt_of, deciding, record_lost_by
from quantum_exec.stream.store import LOOKUP_BEGAN, REPAIR_BEGAN, BeginState, Begun, Lease, Older, Store

log = get_logger(__name__)

_KEEPER_EXIT_S = 1.0
# The one read-only lookup that answers a poison intent whose repair died too ends within this.
POISON_LOOKUP_S = 30.0
# Why that lookup may fail while the process lives (the exchange or Redis unreadable for now, its
# bound passed): it is tried again later. A refusal for good or a bug answers without the exchange.
UNREAD_NOW = (RetryableError, UnknownOutcomeError, TimeoutError, *REDIS_DOWN)


class Handler(Protocol):
    """Executes one valid intent (the executor in production); never raises for business outcomes.

    ``attempt.resume`` is true when an earlier attempt began (its orders are looked up before
    anything is placed); ``attempt.repair`` when the intent is poison (protect or close what it
    opened, report, place nothing new).
    """

    def __call__(
        self, intent: TradeIntent, stream_id: str, received_at: datetime, *, attempt: Attempt
    ) -> Awaitable[ExecutionResult]: ...


class IntentRunner:
    """Runs the intents of this consumer, one attempt per call of :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        *,
        store: Store,
        leases: Leases,
        answers: Answers,
        recovery: RecoveryGate,
        link: RedisLink,
        survey: Handler | None = None,
    ) -> None:
        self._handler = handler
        self._survey = survey
        self._store = store
        self._leases = leases
        self._answers = answers
        self._recovery = recovery
        self._link = link
        self._consumer = settings.consumer_name
        self._max_attempts = settings.max_attempts
        # Monotonic time of the consumer's first successful command: a data loss this process did
        # not see happened before it, and so did the sending of every order whose record it lost.
        self.connected_at: float | None = None

    async def run(self, entry: Entry, symbol: str, slot: Release) -> Older | None:
        """Check the order and take the lease with the in-flight mark (one script), then execute
        (or repair a poison intent) and commit. The older pending entries when the check found
        some (nothing was taken). ``slot`` gives back the consumer's execution slot the caller
        took for this attempt: called when the attempt parks (safe to call twice)."""
        intent = entry.intent
        assert intent is not None
        key = intent_key(intent, entry.stream_id)
        # Sent before the lease request: the lease is ours at least from here for lease_ttl_ms.
        confirmed_at = time.monotonic()
        taken = await self._leases.acquire(entry, symbol, key, intent_digest(intent))
        if taken is None:
            return None
        if isinstance(taken, Older):
            return taken
        lease, begun = taken
        keeper = self._leases.keep(lease)
        given_back = False  # the commit script released the lease (one round trip, not two)
        try:
            entry.started = True
            if begun.state is BeginState.DONE:
                await self._link.retry(lambda: self._answers.duplicate(entry, key), "ack")
                return None
            if begun.state is BeginState.CONFLICT:
                await self._link.retry(lambda: self._answers.conflict(entry, key), "conflict")
                return None
            lost_by = record_lost_by(entry, self._link.writes_maybe_lost_since(), self.connected_at)
            attempt = attempt_of(begun, self._max_attempts, record_lost_by=lost_by)
            if attempt.resume and begun.state is BeginState.NEW:
                log.info(
                    "intent.record_maybe_lost",
                    stream_id=entry.stream_id,
                    intent_id=key,
                    deliveries=entry.deliveries,
                )
            if attempt.repair:
                if begun.repair_stage >= REPAIR_BEGAN:
                    # The repair itself died: answer from one read of the exchange, or without it.
                    await self._poison(entry, intent, key, lease, begun, attempt)
                    return None
                await self._link.retry(lambda: self._store.mark_repair(key, REPAIR_BEGAN), "repair")
                log.error(
                    "intent.poison_repair", stream_id=entry.stream_id, intent_id=key, attempts=begun.attempts
                )
            # The attempt whose death would make the intent poison runs alone (see .recovery);
            # a parked attempt gives its slot and its place back.
            leave = await self._recovery.enter(alone=deciding(begun, self._max_attempts))

            def release() -> None:
                slot()
                leave()

            try:
                result = await self._execute(
                    entry,
                    intent,
                    key,
                    lease,
                    confirmed_at,
                    attempt,
                    release,
                    resumed=begun.state is BeginState.RESUMED,
                )
            finally:
                leave()
            if result is None:
                return None
            dead_letter = None
            if attempt.repair:
                message = result.error.message if result.error is not None else "repaired"
                dead_letter = dead_letter_fields(entry, ReasonCode.POISON_MESSAGE, message, self._consumer)
            given_back = await self._answers.commit(
                entry, key, result, lease=lease, dead_letter=dead_letter, release=True
            )
            return None
        finally:
            await keeper.stop(_KEEPER_EXIT_S)
            if not given_back:
                await self._leases.release(lease)

    async def _poison(
        self, entry: Entry, intent: TradeIntent, key: str, lease: Lease, begun: Begun, attempt: Attempt
    ) -> None:
        """Answer a poison intent whose repair died too: ``failed POISON_MESSAGE`` with what the
        exchange holds under its ids (``survey``: read only, nothing sent), bounded by
        POISON_LOOKUP_S. A process killed at it answers without the exchange next time; a lookup
        that could not read the exchange now (UNREAD_NOW) leaves the entry pending for the next
        claim; one that failed otherwise (a refusal for good, a bug) answers without it at once."""
        unread = "the process died at that lookup too"
        if self._survey is not None and begun.repair_stage < LOOKUP_BEGAN:
            await self._link.retry(lambda: self._store.mark_repair(key, LOOKUP_BEGAN), "repair")
            leave = await self._recovery.enter(alone=True)
            try:
                result = await asyncio.wait_for(
                    self._survey(intent, entry.stream_id, entry.received_at, attempt=attempt), POISON_LOOKUP_S
                )
            except UNREAD_NOW as exc:
                # The process lives: a lookup that could not read the exchange now is no death at
                # it. Answering without the exchange would leave out what the dead attempts filled
                # (P5): the entry stays pending and the lookup runs again at its next claim.
                await self._link.retry(lambda: self._store.mark_repair(key, REPAIR_BEGAN), "repair")
                log.warning(
                    "intent.poison_lookup_failed",
                    stream_id=entry.stream_id,
                    intent_id=key,
                    error=f"{type(exc).__name__}: {exc}",
                    retry="at the next claim",
                )
                return
            except Exception as exc:
                unread = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.exception("intent.poison_lookup_failed", stream_id=entry.stream_id, intent_id=key)
            else:
                message = result.error.message if result.error is not None else "poison"
                dead_letter = dead_letter_fields(entry, ReasonCode.POISON_MESSAGE, message, self._consumer)
                await self._answers.commit(entry, key, result, lease=lease, dead_letter=dead_letter)
                return
            finally:
                leave()
        elif self._survey is None:
            unread = "no exchange here"
        await self._answers.poison(entry, intent, key, lease, attempts=begun.attempts, unread=unread)

    async def _execute(
        self,
        entry: Entry,
        intent: TradeIntent,
        key: str,
        lease: Lease,
        confirmed_at: float,
        attempt: Attempt,
        release: Release,
        *,
        resumed: bool,
    ) -> ExecutionResult | None:
        """Run the handler under the fence (``release`` is what parking gives back); None when
        it failed and the entry stays pending."""
        metrics.IN_FLIGHT.inc()
        check = self._leases.owner_check(lease, key, confirmed_at, resumed=resumed)
        fence = fencing.set_check(check)
        parked = parking.set_release(release)
        try:
            return await self._handler(intent, entry.stream_id, entry.received_at, attempt=attempt)
        except (fencing.OwnershipLost, *REDIS_DOWN) as exc:
            # Expected in an outage (a lease that could not be renewed) or a takeover: no
            # traceback; the entry stays pending and is resumed by whoever owns it next.
            log.warning("intent.left_pending", stream_id=entry.stream_id, intent_id=key, error=str(exc))
            return None
        except Exception as exc:
            # An unknown outcome or a bug: leave the entry pending; it is claimed again after
            # claim_idle_ms (or re-read at the next start) and resumed by client-id lookups.
            log.exception("intent.handler_failed", stream_id=entry.stream_id, intent_id=key, error=str(exc))
            return None
        finally:
            parking.reset_release(parked)
            fencing.reset_check(fence)
            metrics.IN_FLIGHT.dec()
