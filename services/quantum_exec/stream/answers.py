"""Publishing answers: the atomic commit, and the answers that need no exchange.

Every entry gets exactly one answer. The result is published, the idempotency record set to
``done`` and the entry acked in one Lua script (:meth:`Store.commit`); an intent already ``done``
is only acked. Undecodable and poison entries are dead-lettered *and* answered with a
rejected/failed result in that same script. An invalid payload under the intent_id of an intent
an attempt began is dead-lettered as ``INTENT_ID_CONFLICT``: that intent's record is its own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from quantum_exec.contracts import (
    ErrorSource,
    ExecutionResult,
    ProtectionState,
    ResultError,
    ResultStatus,
    Side,
    TradeIntent,
    encode_result_fields,
)
from quantum_exec.contracts.codec import stream_id_time_s
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.settings import Settings
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger, redact_fields
from quantum_exec.stream.entries import Entry, dead_letter_fields, payload_intent_id, raw_symbol, text
from quantum_exec.stream.link import RedisLink
from quantum_exec.stream.store import CommitOutcome, CommitStatus, Lease, Store

log = get_logger(__name__)


class Answers:
    """Writes results (and dead letters) for this consumer."""

    def __init__(self, redis: Redis, store: Store, settings: Settings, link: RedisLink) -> None:
        self._redis = redis
        self._store = store
        self._keys = store.keys
        self._settings = settings
        self._consumer = settings.consumer_name
        self._link = link

    async def commit(
        self,
        entry: Entry,
        key: str,
        result: ExecutionResult,
        *,
        lease: Lease | None,
        dead_letter: dict[bytes | str, bytes | str] | None = None,
        release: bool = False,
    ) -> bool:
        """Publish + done + (dead letter) + XACK atomically, retrying while Redis is away; with
        ``release``, the lease given back in the same script. True when the lease needs no release.

        Known secrets are removed from what is published (echoed producer fields, messages).
        """
        fields = redact_fields(encode_result_fields(result))
        if dead_letter is not None:
            dead_letter = redact_fields(dead_letter)
        outcome: CommitOutcome = await self._link.retry(
            lambda: self._store.commit(
                intent_key=key,
                stream_id=entry.stream_id,
                result_fields=fields,
                lease=lease,
                dead_letter=dead_letter,
                release=release,
            ),
            "commit",
        )
        reason = result.error.code if result.error is not None else "ok"
        if outcome.status is CommitStatus.PUBLISHED:
            metrics.RESULTS_PUBLISHED.inc()
            metrics.INTENTS_EXECUTED_BY.of(result.status.value, reason).inc()
            created = stream_id_time_s(entry.stream_id)
            if created is not None:
                metrics.INTENT_LATENCY.observe(max(0.0, time.time() - created))
            if dead_letter is not None:
                metrics.DEAD_LETTERS.labels(reason=text(dead_letter["reason"])).inc()
                log.warning("intent.dead_lettered", stream_id=entry.stream_id, intent_id=key, reason=reason)
            # The one INFO line of an intent's outcome (the executor's own is at DEBUG).
            log.info(
                "intent.result_published",
                stream_id=entry.stream_id,
                intent_id=key,
                symbol=result.symbol,
                action=result.action.value if result.action is not None else None,
                status=result.status.value,
                protection=result.protection.value,
                reason=reason,
                latency_ms=result.latency_ms,
                result_id=outcome.result_id,
            )
        elif outcome.status is CommitStatus.DUPLICATE:
            metrics.DUPLICATES.inc()
            log.info("intent.duplicate", stream_id=entry.stream_id, intent_id=key)
        elif outcome.status is CommitStatus.HELD:
            # An invalid payload under the intent_id of an intent in flight: answered as a
            # re-used id, and the intent's own result publishes when it is done.
            await self._link.retry(lambda: self.conflict(entry, key), "conflict")
        else:
            log.warning(
                "intent.commit_fenced", stream_id=entry.stream_id, intent_id=key, symbol=result.symbol
            )
        return outcome.released

    async def invalid(
        self, entry: Entry, reason: ReasonCode, message: str, payload: dict[str, Any] | None
    ) -> None:
        """Dead-letter the entry and answer it with a rejected (undecodable) or failed (poison) result."""
        entry.started = True
        poison = reason is ReasonCode.POISON_MESSAGE
        key = payload_intent_id(payload) or entry.stream_id
        result = ExecutionResult(
            symbol=raw_symbol(entry.fields) or "",
            status=ResultStatus.FAILED if poison else ResultStatus.REJECTED,
            intent_id=key,
            stream_id=entry.stream_id,
            error=ResultError(
                code=reason.value,
                source=ErrorSource.INTERNAL if poison else ErrorSource.VALIDATION,
                message=message,
            ),
            received_at=entry.received_at,
            completed_at=datetime.now(UTC),
            meta={},
        )
        dead_letter = dead_letter_fields(entry, reason, message, self._consumer)
        await self.commit(entry, key, result, lease=None, dead_letter=dead_letter)

    async def rejected(self, entry: Entry, payload: dict[str, Any], exc: IntentRejected) -> None:
        """Answer an intent that failed validation (no dead letter: the producer is told why)."""
        entry.started = True
        key = payload_intent_id(payload) or entry.stream_id
        side = payload.get("side", payload.get("action"))
        result = ExecutionResult(
            symbol=raw_symbol(entry.fields) or "",
            status=ResultStatus.REJECTED,
            intent_id=key,
            stream_id=entry.stream_id,
            error=ResultError(code=exc.code, source=ErrorSource.VALIDATION, message=exc.message),
            received_at=entry.received_at,
            completed_at=datetime.now(UTC),
            meta={"side": side} if isinstance(side, str) else {},
        )
        await self.commit(entry, key, result, lease=None)

    async def duplicate(self, entry: Entry, key: str) -> None:
        """Ack an entry whose intent already has its result."""
        await self._redis.xack(self._keys.intent_stream, self._keys.consumer_group, entry.stream_id)
        metrics.DUPLICATES.inc()
        log.info("intent.duplicate", stream_id=entry.stream_id, intent_id=key)

    async def poison(
        self, entry: Entry, intent: TradeIntent, key: str, lease: Lease, *, attempts: int, unread: str
    ) -> None:
        """Dead-letter a poison intent whose one repair died too, answered without the exchange:
        its lookup (see ``runner.IntentRunner._poison``) died, or failed for good, for the reason
        ``unread``. What it filled is unknown: ``executed_quantity`` stays empty and the message
        says so (never a 0 that would say less than happened)."""
        entry.started = True
        message = (
            f"the process died in {attempts} attempts at this intent (QUANTUM_MAX_ATTEMPTS="
            f"{self._settings.max_attempts}) and again while repairing it; the exchange could not be "
            f"read ({unread}), so what its attempts filled is unknown (no executed_quantity: not 0)"
        )
        protection = ProtectionState.NOT_REQUESTED
        if intent.side is Side.CLOSE:
            message += f"; it may have closed the {intent.symbol} position in whole or in part: check it"
        if intent.side in (Side.BUY, Side.SELL):
            # An earlier attempt began executing: it may have filled the entry without SL/TP.
            protection = ProtectionState.UNPROTECTED
            message += f"; it may have opened a {intent.symbol} position that is not protected: check it"
            log.error("position.unverified", intent_id=key, symbol=intent.symbol, stream_id=entry.stream_id)
        result = ExecutionResult(
            symbol=intent.symbol,
            action=intent.side,
            status=ResultStatus.FAILED,
            protection=protection,
            intent_id=key,
            stream_id=entry.stream_id,
            error=ResultError(
                code=ReasonCode.POISON_MESSAGE.value, source=ErrorSource.INTERNAL, message=message
            ),
            received_at=entry.received_at,
            completed_at=datetime.now(UTC),
            meta=intent.meta,
        )
        dead_letter = dead_letter_fields(entry, ReasonCode.POISON_MESSAGE, message, self._consumer)
        await self.commit(entry, key, result, lease=lease, dead_letter=dead_letter)

    async def conflict(self, entry: Entry, key: str) -> None:
        """A re-used intent_id with a different intent: dead-lettered, no second result."""
        entry.started = True
        message = f"intent_id {key!r} was already used for a different intent; the first one's result stands"
        await self._store.dead_letter_only(
            entry.stream_id,
            redact_fields(dead_letter_fields(entry, ReasonCode.INTENT_ID_CONFLICT, message, self._consumer)),
        )
        metrics.INTENT_ID_CONFLICTS.inc()
        metrics.DEAD_LETTERS.labels(reason=ReasonCode.INTENT_ID_CONFLICT.value).inc()
        log.warning("intent.id_conflict", stream_id=entry.stream_id, intent_id=key)
