"""The flatten: our working entries cancelled, every position closed at market (reduce-only), then
our conditional orders cancelled.

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

While the exchange holds nothing left and the flatten only waits for such admissions (an instance
killed between its entry's answer and its settle leaves its record until it lapses, up to
:data:`~.admissions.ADMITTED_TTL_MS`), the exchange is read again only every
:data:`WAIT_READ_S` and once no admission is left: a read costs 85 of the account's request weight
(positions, every open algo and regular order), and one per tick spent this instance's share of the
weight budget within seconds, after which pacing held the governor's next read, and with it the
``flatten_done``, for most of a minute.

Our working entries (a resting LIMIT, a STOP entry, a TWAP's child: every open order or algo order
whose client id is one of our entry ids, :func:`quantum_exec.core.ids.role_of`) count as left too: one
whose instance was killed would otherwise fill after ``flatten_done`` and reopen a position while
HALTED. The flatten cancels them (fenced by the account lease: a deposed holder sends nothing), and
a part they filled meanwhile is a position the next round closes. A foreign order is never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from quantum_exec.core.ids import is_own_protective, role_of
from quantum_exec.exchange.fencing import OwnershipLost, reset_check, set_check
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.rounds import Rounds
from quantum_exec.risk.store import Fence, RiskStore

log = get_logger(__name__)

MAX_ROUNDS: Final = 5
# How often the exchange is read while the flatten only waits for admissions to settle.
WAIT_READ_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Left:
    """What the exchange still holds for the flatten: positions, protective legs of ours and
    working entries of ours (regular orders by symbol and client id, algo orders by algo id)."""

    positions: dict[str, Decimal]
    legs: dict[str, int]
    entries: list[tuple[str, str]] = field(default_factory=list)
    algo_entries: list[int] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        return sorted(set(self.positions) | set(self.legs))

    @property
    def empty(self) -> bool:
        return not (self.symbols or self.entries or self.algo_entries)


class Flattener:
    """One step of a flatten at a time (see the module docstring)."""

    def __init__(self, store: RiskStore, rounds: Rounds, gateway: BinanceGateway) -> None:
        self._store = store
        self._rounds = rounds
        self._gateway = gateway
        # The flatten whose exchange read found nothing left while admissions were unsettled, and when.
        self._clean: tuple[str, float] | None = None

    async def left(self) -> Left:
        positions = {p.symbol: p.amount for p in await self._gateway.positions() if p.amount != 0}
        legs: dict[str, int] = {}
        algo_entries: list[int] = []
        for algo in await self._gateway.open_algo_orders():
            if is_own_protective(algo.client_algo_id):
                legs[algo.symbol] = legs.get(algo.symbol, 0) + 1
            elif role_of(algo.client_algo_id) == "entry":
                algo_entries.append(algo.algo_id)
        if positions or legs:
            # The regular open orders (weight 40) are read once the positions are closed and the
            # legs gone: an entry that fills meanwhile is a position read then, closed by a round.
            return Left(positions, legs, [], algo_entries)
        entries = [
            (order.symbol, order.client_order_id)
            for order in await self._gateway.open_orders()
            if not order.is_final and role_of(order.client_order_id) == "entry"
        ]
        return Left(positions, legs, entries, algo_entries)

    async def cancel_entries(self, flatten_id: str, left: Left, fence: Fence) -> None:
        """Cancel our working entries, each request fenced by the account lease."""
        token = set_check(lambda: self._store.holds(fence))
        try:
            for symbol, client_id in left.entries:
                await self._gateway.cancel_order(symbol, client_id)
                log.warning("risk.flatten_entry_cancelled", flatten=flatten_id, symbol=symbol, id=client_id)
            for algo_id in left.algo_entries:
                await self._gateway.cancel_algo(algo_id)
                log.warning("risk.flatten_entry_cancelled", flatten=flatten_id, algo_id=algo_id)
        except OwnershipLost:
            log.warning("risk.flatten_deposed", flatten=flatten_id, detail="the account lease is not ours")
        finally:
            reset_check(token)

    async def step(self, flatten_id: str, fence: Fence) -> bool:
        """Send what the flatten still needs; True once it is done (and published so)."""
        # Read before the exchange: an entry admitted before the halt and answered since shows in
        # the positions read below; one still unanswered may yet fill (the next round closes it).
        unsettled = await self._store.admissions.unsettled()
        clean = self._clean
        if (
            unsettled
            and clean is not None
            and clean[0] == flatten_id
            and time.monotonic() - clean[1] < WAIT_READ_S
        ):
            log.info("risk.flatten_waits", flatten=flatten_id, unsettled_entries=unsettled)
            return False  # nothing was left at the last read: no exchange weight spent per tick
        self._clean = None
        left = await self.left()
        if left.entries or left.algo_entries:
            # Cancelled before anything is reported: a part they filled is a position left below
            # (now or at the next step, read again from the exchange).
            await self.cancel_entries(flatten_id, left, fence)
        if left.empty:
            if unsettled:
                self._clean = (flatten_id, time.monotonic())
                log.info("risk.flatten_waits", flatten=flatten_id, unsettled_entries=unsettled)
                return False
            done, closes = await self._rounds.all_done(flatten_id)
            if not done:
                return False  # a CLOSE's result is not published yet: the report waits for it
            numbers = {"closes": closes, "positions": 0, "protective_orders": 0}
            return await self._store.finish_flatten(flatten_id, fence, numbers)
        if not left.symbols:
            return False  # only entries were left: cancelled above, read again at the next step
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
