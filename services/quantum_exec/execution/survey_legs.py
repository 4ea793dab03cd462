"""The protective legs a poison intent asked for, and which of them stand armed on the exchange
(read only, for :mod:`.survey`); and what a poison MODIFY left on its symbol.

Every leg asked for counts: the stop, each level of a take-profit ladder (the levels the ladder
plans for the size, as :func:`.stops.ladder.plan_ladder` placed them: one merged into its
neighbour is never placed), or the single target, and a trailing stop. Each may stand under its
plain id or the id its make-before-break replacement alternates with (:func:`~quantum_exec.core.ids.
replacement_of`); a leg is armed when one of them is ``NEW`` among the symbol's open conditional
orders. ``protected`` is said only when every leg asked for is armed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from quantum_exec.account.roles import intent_digest
from quantum_exec.contracts import ProtectionState, TradeIntent
from quantum_exec.core.ids import client_order_id, is_own_protective, replacement_of, tp_level_id
from quantum_exec.core.rules import fmt
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.run import Run
from quantum_exec.execution.stops.ladder import plan_ladder
from quantum_exec.execution.stops.set_plan import leg_contract
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LegsFound:
    """The legs asked for: the ids of those armed, and the plain ids of those not armed."""

    armed: list[str]
    missing: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        asked = len(self.armed) + len(self.missing)
        text = f"{len(self.armed)} of {asked} legs asked for armed"
        if self.armed:
            text += f" ({', '.join(self.armed)})"
        if self.missing:
            text += f", not armed: {', '.join(self.missing)}"
        return text


def asked_legs(
    gateway: Gateway, intent: TradeIntent, key: str, *, size: Decimal, price: Decimal | None, long: bool
) -> list[str]:
    """The plain client ids of the legs ``intent`` asked for, for a position of ``size`` entered at
    ``price`` (the ladder's levels as planned for it; every level when it cannot be planned)."""
    legs: list[str] = []
    if intent.stop_loss is not None or intent.stop_loss_pct is not None:
        legs.append(client_order_id(key, "sl"))
    if intent.take_profits:
        levels = list(range(1, len(intent.take_profits) + 1))
        rules = gateway.rules.get(intent.symbol)
        if rules is not None and price is not None and size > 0:
            levels = [r.level for r in plan_ladder(rules, intent.take_profits, size, long=long, entry=price)]
        legs.extend(tp_level_id(key, level) for level in levels)
    elif intent.take_profit is not None or intent.take_profit_pct is not None:
        legs.append(client_order_id(key, "tp"))
    if intent.trailing_stop is not None:
        legs.append(client_order_id(key, "trail"))
    return legs


async def own_open(gateway: Gateway, symbol: str) -> list[AlgoOrder]:
    """Our protective legs armed on ``symbol`` (one read of its open conditional orders)."""
    return [
        o
        for o in await gateway.open_algo_orders(symbol)
        if is_own_protective(o.client_algo_id) and o.status is AlgoStatus.NEW
    ]


def found(asked: list[str], armed: list[AlgoOrder]) -> LegsFound:
    """Which of the ``asked`` legs stand armed, under their plain id or their replacement's."""
    standing = {o.client_algo_id for o in armed}
    hit: list[str] = []
    missing: list[str] = []
    for plain in asked:
        cid = next((c for c in (plain, replacement_of(plain)) if c in standing), None)
        if cid is None:
            missing.append(plain)
        else:
            hit.append(cid)
    return LegsFound(hit, missing)


async def modify_state(gateway: Gateway, run: Run) -> str:
    """What a poison MODIFY left on its symbol, read once (nothing sent): the position, the legs it
    asked for that stand armed under its ids (all, some or none), the other legs under its ids
    (those it carried over), and our legs of earlier intents still armed (those it replaces, until
    it cancelled them). ``run.out`` gets the position's size, the legs armed and the protection:
    ``protected`` only when every leg asked for is armed, ``unprotected`` (loud) when not."""
    intent, out, key = run.intent, run.out, run.key
    symbol = intent.symbol
    position = next((p for p in await gateway.positions(symbol) if p.amount != 0), None)
    armed = await own_open(gateway, symbol)
    out.legs_after = [leg_contract(o) for o in armed]
    digest = intent_digest(client_order_id(key, "sl"))
    mine = [o for o in armed if intent_digest(o.client_algo_id) == digest]
    earlier = [o.client_algo_id for o in armed if o not in mine]
    size = abs(position.amount) if position is not None else Decimal(0)
    entry = position.entry_price if position is not None else None
    long = position is None or position.amount > 0
    legs = found(asked_legs(gateway, intent, key, size=size, price=entry, long=long), mine)
    carried = [o.client_algo_id for o in mine if o.client_algo_id not in legs.armed]
    verdict = "made" if legs.complete else ("partly made" if legs.armed or carried else "not made")
    state = f"MODIFY of {symbol} {verdict}: {legs.describe()}"
    if carried:
        state += f"; carried over under its ids: {', '.join(carried)}"
    state += (
        f"; our legs of earlier intents still armed: {', '.join(earlier)}"
        if earlier
        else "; no leg of an earlier intent left armed on the symbol (replaced)"
    )
    if position is None:
        return f"{state}; no open position on {symbol}"
    out.quantity = size
    state += f"; position {fmt(position.amount)} open"
    if legs.complete:
        out.protection = ProtectionState.PROTECTED
    else:
        out.protection = ProtectionState.UNPROTECTED
        log.error("position.unverified", intent_id=key, symbol=symbol, detail=state)
        state += ": check its protection"
    return state
