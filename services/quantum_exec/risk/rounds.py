"""Intents the governor publishes itself, in rounds, each exactly once (the flatten's CLOSEs, the
liquidation-distance reductions).

A round of a group and symbol has a deterministic intent id (``risk-<group>-<SYMBOL>-<round>``)
and is appended to the intent stream at most once: ``SET NX`` of its key, its risk event and the
intent in one script under the account lease (:meth:`.store.RiskStore.publish_once`). The next
round of a symbol is published only once the previous one is done (its result published), so a
new lease holder reading the same Redis and the same exchange continues exactly where the dead one
stopped. The intent then runs like any other: exactly once across kills and instances.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.contracts.codec import INTENT_EVENT_TYPE, dumps, isoformat
from quantum_exec.ids import GOVERNOR_INTENT_PREFIX
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.store import Fence, RiskStore
from quantum_exec.settings import Settings
from quantum_exec.stream.store import Keys

log = get_logger(__name__)

SOURCE: Final = "quantum-exec-risk"
OWN_PREFIX: Final = GOVERNOR_INTENT_PREFIX
# What a round publishes: its intent's payload (without id and time) and its event's fields.
Make = Callable[[int], tuple[dict[str, Any], dict[str, Any]]]


def round_intent_id(group: str, symbol: str, round_: int) -> str:
    return f"{OWN_PREFIX}{group}-{symbol}-{round_}"


class Rounds:
    """See the module docstring."""

    def __init__(self, redis: Redis, settings: Settings, store: RiskStore) -> None:
        self._redis = redis
        self._keys = Keys(settings)
        self._store = store

    async def done(self, intent_id: str) -> bool:
        """True once the intent's result is published (its idempotency record says done)."""
        state = await self._redis.hget(self._keys.idempotency(intent_id), "state")
        return state is not None and (state.decode() if isinstance(state, bytes) else state) == "done"

    async def all_done(self, group: str) -> tuple[bool, int]:
        """Whether every intent the group published is done, and how many it published."""
        sent = await self._store.group_intents(group)
        for intent_id in sent:
            if not await self.done(intent_id):
                return False, len(sent)
        return True, len(sent)

    async def advance(self, group: str, symbol: str, fence: Fence, make: Make, max_rounds: int) -> int | None:
        """Publish the symbol's next round if the previous one is done; the round in flight or
        just published (None when every round was used)."""
        for round_ in range(1, max_rounds + 1):
            intent_id = round_intent_id(group, symbol, round_)
            if not await self._store.published(group, symbol, round_):
                await self._publish(group, symbol, round_, intent_id, fence, make)
                return round_
            if not await self.done(intent_id):
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
        event = {**event, "symbol": symbol, "round": round_, "intent_id": intent_id, "by": "governor"}
        if await self._store.publish_once(group, symbol, round_, fence, intent_id, fields, event) == 1:
            log.warning("risk.intent_published", kind=event.get("kind"), symbol=symbol, intent_id=intent_id)
