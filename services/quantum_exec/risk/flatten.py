"""The flatten: every position closed at market (reduce-only), then our conditional orders cancelled.

Run by the holder of the account lease, one step per governor tick, from what the exchange holds
(``positionRisk`` and the open algo orders, read at each step), so a holder killed mid-flatten
leaves nothing for the next one to guess. Each symbol with a position, or with protective legs
of ours, gets a CLOSE intent on the intent stream, with a deterministic id
(``risk-<flatten>-<SYMBOL>-<round>``) published at most once (``SET NX`` under the account lease,
with its ``flatten_close`` risk event, in one script). The CLOSE runs as any intent does: exactly
once across kills and instances (its client ids derive from the intent id, a resumed attempt
starts from what the exchange holds under them, :mod:`quantum_exec.execution.recovery`), behind
the symbol's older entries, and cancels our legs once the position is gone; its result is
published. A symbol still not clean after its CLOSE is done gets the next round (a partial
fill), up to :data:`MAX_ROUNDS`. Once nothing is left and every CLOSE's result is published,
``flatten_done`` is published (with the number of CLOSEs) and the flatten ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from redis.asyncio import Redis

from quantum_exec.contracts.codec import INTENT_EVENT_TYPE, dumps, isoformat
from quantum_exec.execution.ports import Gateway
from quantum_exec.ids import is_own_protective
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.store import Fence, RiskStore
from quantum_exec.settings import Settings
from quantum_exec.stream.store import Keys

log = get_logger(__name__)

MAX_ROUNDS: Final = 5
SOURCE: Final = "quantum-exec-risk"


def close_intent_id(flatten_id: str, symbol: str, round_: int) -> str:
    return f"risk-{flatten_id}-{symbol}-{round_}"


@dataclass(frozen=True, slots=True)
class Left:
    """What the exchange still holds for the flatten: positions and protective legs of ours."""

    positions: dict[str, Decimal]
    legs: dict[str, int]

    @property
    def symbols(self) -> list[str]:
        return sorted(set(self.positions) | set(self.legs))


class Flattener:
    """One step of a flatten at a time (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings, store: RiskStore, gateway: Gateway) -> None:
        self._redis = redis
        self._keys = Keys(settings)
        self._store = store
        self._gateway = gateway
        self._once_prefix = f"{settings.key_prefix}:risk:flatten:"

    async def left(self) -> Left:
        positions = {p.symbol: p.amount for p in await self._gateway.positions() if p.amount != 0}
        legs: dict[str, int] = {}
        for algo in await self._gateway.open_algo_orders():
            if is_own_protective(algo.client_algo_id):
                legs[algo.symbol] = legs.get(algo.symbol, 0) + 1
        return Left(positions, legs)

    async def step(self, flatten_id: str, fence: Fence) -> bool:
        """Send what the flatten still needs; True once it is done (and published so)."""
        left = await self.left()
        if not left.symbols:
            sent = await self._store.flatten_intents(flatten_id)
            for intent_id in sent:
                if not await self._done(intent_id):
                    return False  # its result is not published yet: the report waits for it
            return await self._store.finish_flatten(
                flatten_id, fence, {"closes": len(sent), "positions": 0, "protective_orders": 0}
            )
        for symbol in left.symbols:
            await self._advance(flatten_id, symbol, left, fence)
        return False

    async def _advance(self, flatten_id: str, symbol: str, left: Left, fence: Fence) -> None:
        for round_ in range(1, MAX_ROUNDS + 1):
            intent_id = close_intent_id(flatten_id, symbol, round_)
            once = f"{flatten_id}:{symbol}:{round_}"
            if not await self._redis.exists(self._once_prefix + once):
                await self._publish(flatten_id, symbol, round_, intent_id, once, left, fence)
                return
            if not await self._done(intent_id):
                return  # on its way: wait for it
        log.error(
            "risk.flatten_stuck",
            flatten=flatten_id,
            symbol=symbol,
            rounds=MAX_ROUNDS,
            position=str(left.positions.get(symbol, 0)),
            legs=left.legs.get(symbol, 0),
            detail="still not flat after every round's CLOSE: see their results",
        )

    async def _done(self, intent_id: str) -> bool:
        state = await self._redis.hget(self._keys.idempotency(intent_id), "state")
        return state is not None and (state.decode() if isinstance(state, bytes) else state) == "done"

    async def _publish(
        self, flatten_id: str, symbol: str, round_: int, intent_id: str, once: str, left: Left, fence: Fence
    ) -> None:
        now = datetime.now(UTC)
        payload = {
            "intent_id": intent_id,
            "symbol": symbol,
            "side": "CLOSE",
            "timestamp": isoformat(now),
            "reason": f"risk flatten {flatten_id}",
        }
        fields = {
            "event_type": INTENT_EVENT_TYPE,
            "payload": dumps(payload).decode(),
            "timestamp": isoformat(now),
            "source": SOURCE,
        }
        amount = left.positions.get(symbol, Decimal(0))
        event = {
            "kind": "flatten_close",
            "flatten": flatten_id,
            "symbol": symbol,
            "round": round_,
            "intent_id": intent_id,
            "by": "governor",
            "reason": f"close {symbol} at market (reduce-only), then cancel our conditional orders",
            "numbers": {"position_amount": amount, "protective_orders": left.legs.get(symbol, 0)},
        }
        outcome = await self._store.publish_close(flatten_id, once, fence, intent_id, fields, event)
        if outcome == 1:
            log.warning(
                "risk.flatten_close",
                flatten=flatten_id,
                symbol=symbol,
                round=round_,
                intent_id=intent_id,
                position=str(amount),
            )
