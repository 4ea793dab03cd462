"""A poison intent whose one repair died too: what the exchange holds under its ids, read only.

The stream layer answers such an intent without executing anything (``stream/runner.py``), but
its earlier attempts may have filled an entry or a close: a result that said "nothing" would say
less than happened (P5). So before that answer one bounded, read-only lookup runs
(:meth:`Recovery.look_up`, the same facts every resumed attempt starts from): the entry or close
order, a sliced order's children (by id, also when their plan was lost), a stop entry's algo
order and the order its trigger placed; then, for an entry that filled, every leg it asked for
(the stop, each ladder level, the target, a trailing stop) under both ids a leg may stand under
(plain, or a make-before-break replacement numbered 1: :mod:`.survey_legs`). A MODIFY has no order:
its symbol's position and legs are read instead (:func:`.survey_legs.modify_state`). Nothing is
sent.

The result is ``failed POISON_MESSAGE`` and says what the exchange holds: the quantity filled (at
least what happened), ``protected`` only when every requested leg is armed there, ``unprotected``
(loud) when a fill lacks one of its legs or an entry is still working and may fill later with
none; for a MODIFY, which of its legs stand and which of the ones it replaces are still armed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from quantum_exec.contracts import ErrorSource, ProtectionState, ResultStatus, Side
from quantum_exec.core.errors import ReasonCode
from quantum_exec.core.ids import MAX_CHILDREN, Role, client_order_id
from quantum_exec.exchange.wire import FINAL_ORDER_STATUSES, Order
from quantum_exec.execution.guards import wants_protection
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.recovery import ExchangeFacts, Recovery
from quantum_exec.execution.run import Run
from quantum_exec.execution.survey_legs import asked_legs, found, modify_state, own_open
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

ZERO: Final = Decimal(0)


async def survey(gateway: Gateway, recovery: Recovery, run: Run, max_attempts: int) -> None:
    """Fill ``run.out`` with what the exchange holds of the intent (see the module docstring)."""
    if run.intent.side is Side.MODIFY:
        state = await modify_state(gateway, run)
    else:
        state = await _order_state(gateway, recovery, run)
    run.out.status = ResultStatus.FAILED
    run.error(
        ReasonCode.POISON_MESSAGE,
        ErrorSource.INTERNAL,
        f"the process died in {max_attempts} attempts at this intent (QUANTUM_MAX_ATTEMPTS) and "
        f"again while repairing it; read once on the exchange: {state}",
    )


async def _order_state(gateway: Gateway, recovery: Recovery, run: Run) -> str:
    """An entry's or a close's orders and, for an entry that filled, its legs."""
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
    elif filled:
        long = intent.side is Side.BUY
        asked = asked_legs(gateway, intent, run.key, size=executed, price=out.avg_price, long=long)
        legs = found(asked, await own_open(gateway, intent.symbol))
        state = f"{out.client_order_id}: {what}"
        if legs.complete:
            out.protection = ProtectionState.PROTECTED
            state += f"; protected by {', '.join(legs.armed)}"
        else:
            out.protection = ProtectionState.UNPROTECTED
            which = "no SL/TP" if not legs.armed else "not every SL/TP"
            state += f"; {which} armed for it ({legs.describe()}): check the position"
            log.error("position.unverified", intent_id=run.key, symbol=intent.symbol, detail=state)
    elif working:
        out.protection = ProtectionState.UNPROTECTED
        state = f"{out.client_order_id}: {what}"
        log.error("position.unverified", intent_id=run.key, symbol=intent.symbol, detail=state)
    else:
        state = f"{out.client_order_id}: {what}, nothing opened"
    if working:
        state += f"; still working on the exchange: {', '.join(working)} (it may fill with no SL/TP)"
    return state


def _orders(facts: ExchangeFacts) -> list[Order]:
    """Every order of the intent found: the entry (or close), its children, a trigger's order."""
    found = [facts.order, *facts.children.values(), facts.triggered]
    return [o for o in found if o is not None]
