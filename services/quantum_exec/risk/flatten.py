"""The flatten: every position closed at market (reduce-only), then our conditional orders cancelled.

Run by the holder of the account lease, one step per governor tick, from what the exchange holds
(``positionRisk`` and the open algo orders, read at each step), so a holder killed mid-flatten
leaves nothing for the next one to guess. Each symbol with a position, or with protective legs of
ours, gets a CLOSE intent (:mod:`.rounds`: ``risk-<flatten>-<SYMBOL>-<round>-<mac>``, published at most
once under the account lease, with its ``flatten_close`` risk event). The CLOSE runs as any intent
does: exactly once across kills and instances (its client ids derive from the intent id, a resumed
attempt starts from what the exchange holds under them, :mod:`quantum_exec.execution.recovery`),
behind the symbol's older entries, and cancels our legs once the position is gone; its result is
published. A symbol still not clean after its CLOSE is done gets the next round (a partial
fill), up to :data:`MAX_ROUNDS`. Once nothing is left, no entry admitted before the halt is
still without its exchange answer (:mod:`.admissions`: the halt waits for them only so long; one
answered after it that filled gets its round like any position) and every CLOSE's result is
published, ``flatten_done`` is published (with the number of CLOSEs) and the flatten ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from quantum_exec.execution.ports import Gateway
from quantum_exec.ids import is_own_protective
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.rounds import Rounds
from quantum_exec.risk.store import Fence, RiskStore

log = get_logger(__name__)

MAX_ROUNDS: Final = 5


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

    def __init__(self, store: RiskStore, rounds: Rounds, gateway: Gateway) -> None:
        self._store = store
        self._rounds = rounds
        self._gateway = gateway

    async def left(self) -> Left:
        positions = {p.symbol: p.amount for p in await self._gateway.positions() if p.amount != 0}
        legs: dict[str, int] = {}
        for algo in await self._gateway.open_algo_orders():
            if is_own_protective(algo.client_algo_id):
                legs[algo.symbol] = legs.get(algo.symbol, 0) + 1
        return Left(positions, legs)

    async def step(self, flatten_id: str, fence: Fence) -> bool:
        """Send what the flatten still needs; True once it is done (and published so)."""
        # Read before the exchange: an entry admitted before the halt and answered since shows in
        # the positions read below; one still unanswered may yet fill (the next round closes it).
        unsettled = await self._store.admissions.unsettled()
        left = await self.left()
        if not left.symbols:
            if unsettled:
                log.info("risk.flatten_waits", flatten=flatten_id, unsettled_entries=unsettled)
                return False
            done, closes = await self._rounds.all_done(flatten_id)
            if not done:
                return False  # a CLOSE's result is not published yet: the report waits for it
            numbers = {"closes": closes, "positions": 0, "protective_orders": 0}
            return await self._store.finish_flatten(flatten_id, fence, numbers)
        for symbol in left.symbols:
            amount, legs = left.positions.get(symbol, Decimal(0)), left.legs.get(symbol, 0)

            def make(_round: int, symbol: str = symbol, amount: Decimal = amount, legs: int = legs) -> Any:
                payload = {"side": "CLOSE", "reason": f"risk flatten {flatten_id}"}
                event = {
                    "kind": "flatten_close",
                    "flatten": flatten_id,
                    "reason": f"close {symbol} at market (reduce-only), then cancel our conditional orders",
                    "numbers": {"position_amount": amount, "protective_orders": legs},
                }
                return payload, event

            if await self._rounds.advance(flatten_id, symbol, fence, make, MAX_ROUNDS) is None:
                log.error(
                    "risk.flatten_stuck",
                    flatten=flatten_id,
                    symbol=symbol,
                    rounds=MAX_ROUNDS,
                    position=str(amount),
                    legs=legs,
                    detail="still not flat after every round's CLOSE: see their results",
                )
        return False
