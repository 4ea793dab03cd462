"""Intents the governor publishes itself, in rounds, each exactly once (the flatten's CLOSEs, the
liquidation-distance reductions).

A round of a group and symbol has an intent id no producer can predict and every lease holder
derives alike: ``risk-<group>-<SYMBOL>-<round>-<mac>``, the mac an HMAC of the group, symbol and
round under the group's secret nonce (chosen once under the account lease, kept in Redis, never
published: :meth:`.store.RiskStore.group_nonce`). A round is appended to the intent stream at most
once: ``SET NX`` of its key, its risk event, the digest of the intent and the intent in one script
under the account lease (:meth:`.store.RiskStore.publish_once`). The next round of a symbol is
published only once the previous one is done: its result published *for that very intent* (the
idempotency record's digest is the one the governor published; a producer's intent that took the
id counts for nothing). A new lease holder reading the same Redis and the same exchange continues
exactly where the dead one stopped. The intent then runs like any other: exactly once across kills
and instances.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.contracts.codec import INTENT_EVENT_TYPE, decode_entry, dumps, isoformat
from quantum_exec.contracts.intent import intent_digest, parse_intent
from quantum_exec.core.ids import GOVERNOR_INTENT_PREFIX
from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.store import Fence, RiskStore
from quantum_exec.stream.store import Keys

log = get_logger(__name__)

SOURCE: Final = "quantum-exec-risk"
OWN_PREFIX: Final = GOVERNOR_INTENT_PREFIX
# What a round publishes: its intent's payload (without id and time) and its event's fields.
Make = Callable[[int], tuple[dict[str, Any], dict[str, Any]]]
_MAC_HEX: Final = 20  # 80 bits: not guessable, short enough for any intent id


def round_intent_id(group: str, symbol: str, round_: int, nonce: str) -> str:
    mac = hmac.new(nonce.encode(), f"{group}|{symbol}|{round_}".encode(), hashlib.sha256).hexdigest()
    return f"{OWN_PREFIX}{group}-{symbol}-{round_}-{mac[:_MAC_HEX]}"


class Outcome(StrEnum):
    PENDING = "pending"  # no final result yet
    DONE = "done"  # the governor's own intent has its result
    FOREIGN = "foreign"  # another intent took the id (its result is not the governor's)


class Rounds:
    """See the module docstring."""

    def __init__(self, redis: Redis, settings: Settings, store: RiskStore) -> None:
        self._redis = redis
        self._keys = Keys(settings)
        self._store = store

    async def outcome(self, intent_id: str) -> Outcome:
        """Where the governor's intent ``intent_id`` stands, from its idempotency record's digest."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._keys.idempotency(intent_id), ["state", "hash"])
            pipe.get(self._store.own_key(intent_id))
            (state, digest), own = await pipe.execute()
        done = state is not None and _text(state) == "done"
        if digest is None:
            # Answered without an attempt under the id (an invalid intent): not the governor's.
            return Outcome.FOREIGN if done else Outcome.PENDING
        if own is None or _text(digest) != _text(own):
            return Outcome.FOREIGN
        return Outcome.DONE if done else Outcome.PENDING

    async def done(self, intent_id: str) -> bool:
        """True once the result of the governor's own intent under ``intent_id`` is published."""
        return await self.outcome(intent_id) is Outcome.DONE

    async def all_done(self, group: str) -> tuple[bool, int]:
        """Whether every intent the group published is settled, and how many of them ran (an id a
        foreign intent took is settled: nothing of the governor's runs under it)."""
        sent = await self._store.group_intents(group)
        ran = 0
        for intent_id in sent:
            outcome = await self.outcome(intent_id)
            if outcome is Outcome.PENDING:
                return False, len(sent)
            ran += outcome is Outcome.DONE
        return True, ran

    async def advance(self, group: str, symbol: str, fence: Fence, make: Make, max_rounds: int) -> int | None:
        """Publish the symbol's next round if the previous one is done; the round in flight or
        just published (None when every round was used, 0 when the lease is no longer ours)."""
        nonce = await self._store.group_nonce(group, fence)
        if nonce is None:
            return 0
        for round_ in range(1, max_rounds + 1):
            intent_id = round_intent_id(group, symbol, round_, nonce)
            if not await self._store.published(group, symbol, round_):
                await self._publish(group, symbol, round_, intent_id, fence, make)
                return round_
            outcome = await self.outcome(intent_id)
            if outcome is Outcome.FOREIGN:
                log.error(
                    "risk.intent_id_taken",
                    group=group,
                    symbol=symbol,
                    round=round_,
                    intent_id=intent_id,
                    detail="another intent ran under the governor's id: the round counts for nothing",
                )
            elif outcome is Outcome.PENDING:
                return round_  # on its way: wait for it
        return None

    async def _publish(
        self, group: str, symbol: str, round_: int, intent_id: str, fence: Fence, make: Make
    ) -> None:
        now = datetime.now(UTC)
        payload, event = make(round_)
        payload = {"intent_id": intent_id, "symbol": symbol, **payload, "timestamp": isoformat(now)}
        fields = {
            "event_type": INTENT_EVENT_TYPE,
            "payload": dumps(payload).decode(),
            "timestamp": isoformat(now),
            "source": SOURCE,
        }
        # Its digest as the consumer will compute it from the stream entry.
        digest = intent_digest(parse_intent(decode_entry(fields)))
        event = {**event, "symbol": symbol, "round": round_, "intent_id": intent_id, "by": "governor"}
        published = await self._store.publish_once(
            group, symbol, round_, fence, intent_id, digest, fields, event
        )
        if published == 1:
            log.warning("risk.intent_published", kind=event.get("kind"), symbol=symbol, intent_id=intent_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
