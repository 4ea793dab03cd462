"""A poison intent whose one repair died too: what the exchange holds under its ids, read only.

The stream layer answers such an intent without executing anything (``stream/runner.py``), but
its earlier attempts may have filled an entry or a close: a result that said "nothing" would say
less than happened (P5). So before that answer one bounded, read-only lookup runs
(:meth:`Recovery.look_up`, the same facts every resumed attempt starts from): the entry or close
order, a sliced order's children (by id, also when their plan was lost), a stop entry's algo
order and the order its trigger placed; then, for an entry that filled, its legs under both ids a
leg may stand under (plain, or a make-before-break replacement numbered 1). Nothing is sent.

The result is ``failed POISON_MESSAGE`` and says what the exchange holds: the quantity filled (at
least what happened), ``protected`` only when every requested leg is armed there, ``unprotected``
(loud) when a fill has no SL/TP or an entry is still working and may fill later with none.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from quantum_exec.contracts import ErrorSource, ProtectionState, ResultStatus, Side
from quantum_exec.errors import ReasonCode
from quantum_exec.exchange.wire import FINAL_ORDER_STATUSES, AlgoStatus, Order
from quantum_exec.execution.guards import wants_protection
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.recovery import ExchangeFacts, Recovery
from quantum_exec.execution.run import Run
from quantum_exec.ids import MAX_CHILDREN, Role, client_order_id
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

ZERO: Final = Decimal(0)


async def survey(gateway: Gateway, recovery: Recovery, run: Run, max_attempts: int) -> None:
    """Fill ``run.out`` with what the exchange holds of the intent (see the module docstring)."""
    intent, out = run.intent, run.out
    role: Role = "close" if intent.side is Side.CLOSE else "entry"
    out.client_order_id = client_order_id(run.key, role)
    facts = await recovery.look_up(run, role)
    if facts.plan is None and facts.order is None and not facts.children and facts.algo is None:
        # A split close whose plan was lost leaves its parts (the entry's are found by look_up).
        facts.children = await recovery.children(run, role, MAX_CHILDREN)
    orders = _orders(facts)
    executed = sum((o.executed_qty for o in orders), ZERO)
    filled = [o for o in orders if o.executed_qty > 0]
    if filled:
        out.order_id = filled[0].order_id
        out.executed_quantity = executed
        out.avg_price = sum((o.avg_price * o.executed_qty for o in filled), ZERO) / executed
    working = [o.client_order_id or str(o.order_id) for o in orders if o.status not in FINAL_ORDER_STATUSES]
    if facts.algo is not None and facts.triggered is None and not facts.algo.status.is_final:
        working.append(facts.algo.client_algo_id)
    what = f"filled {executed} at {out.avg_price}" if filled else "nothing filled"
    if role == "close" or not wants_protection(intent):
        state = f"{out.client_order_id}: {what}"
    else:
        armed = await _armed_legs(gateway, run) if filled else []
        asked = (intent.stop_loss or intent.stop_loss_pct, intent.take_profit or intent.take_profit_pct)
        requested = sum(1 for v in asked if v is not None)
        if filled and len(armed) >= requested:
            out.protection = ProtectionState.PROTECTED
            state = f"{out.client_order_id}: {what}; protected by {', '.join(armed)}"
        elif filled or working:
            out.protection = ProtectionState.UNPROTECTED
            state = f"{out.client_order_id}: {what}"
            if filled:
                state += f"; no SL/TP armed for it ({len(armed)} of {requested} legs): check the position"
            log.error("position.unverified", intent_id=run.key, symbol=intent.symbol, detail=state)
        else:
            state = f"{out.client_order_id}: {what}, nothing opened"
    if working:
        state += f"; still working on the exchange: {', '.join(working)} (it may fill with no SL/TP)"
    out.status = ResultStatus.FAILED
    run.error(
        ReasonCode.POISON_MESSAGE,
        ErrorSource.INTERNAL,
        f"the process died in {max_attempts} attempts at this intent (QUANTUM_MAX_ATTEMPTS) and "
        f"again while repairing it; read once on the exchange: {state}",
    )


def _orders(facts: ExchangeFacts) -> list[Order]:
    """Every order of the intent found: the entry (or close), its children, a trigger's order."""
    found = [facts.order, *facts.children.values(), facts.triggered]
    return [o for o in found if o is not None]


async def _armed_legs(gateway: Gateway, run: Run) -> list[str]:
    """The client ids of the intent's legs armed on the exchange (one per role at most)."""
    armed: list[str] = []
    for role in ("sl", "tp"):
        for client_algo_id in (client_order_id(run.key, role), client_order_id(run.key, role, 1)):
            leg = await gateway.get_algo(client_algo_id)
            if leg is not None and leg.status is AlgoStatus.NEW:
                armed.append(client_algo_id)
                break
    return armed
