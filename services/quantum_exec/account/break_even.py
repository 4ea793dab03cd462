"""The break-even move (issue #27): after take-profit level n of an intent filled, its stop moves
to the fee-adjusted entry its record holds (computed by the executor,
``execution.stops.break_even``). Pure: the plan comes from the view and the records, so run again
after a restart or a replayed event it asks for nothing once the stop sits there (exactly once
across kills, from the exchange's facts). The live OCO carries it out make before break, in the
same replacement as a resize when the stop is resized too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from quantum_exec.account.record import Record
from quantum_exec.account.roles import leg_ids
from quantum_exec.account.state import AccountState
from quantum_exec.account.views import AlgoView
from quantum_exec.core.ids import client_order_id, tp_level_id


@dataclass(frozen=True, slots=True)
class MoveStop:
    """Place ``old`` again at ``trigger`` (its size, or what is left), then cancel it."""

    symbol: str
    old: AlgoView
    trigger: Decimal


def _level_filled(state: AccountState, intent_key: str, level: int) -> bool:
    for client_algo_id in leg_ids(tp_level_id(intent_key, level)):
        leg = state.algo_order(client_algo_id)
        if leg is not None and leg.status.is_final and leg.status.has_order and leg.executed_qty > 0:
            return True
    return False


def plan_break_even(state: AccountState, records: Iterable[Record], symbol: str) -> list[MoveStop]:
    """The stops to move to break-even on ``symbol`` now (raises StaleStateError while stale)."""
    moves: list[MoveStop] = []
    for record in records:
        after, trigger = record.break_even_after, record.break_even
        if not record.opened or record.long is None or after is None or trigger is None:
            continue
        if not _level_filled(state, record.intent_key, after):
            continue
        for client_algo_id in leg_ids(client_order_id(record.intent_key, "sl")):
            leg = state.algo_order(client_algo_id)
            if leg is None or not leg.is_armed:
                continue
            worse = leg.trigger_price < trigger if record.long else leg.trigger_price > trigger
            if worse:
                moves.append(MoveStop(symbol, leg, trigger))
    return moves
