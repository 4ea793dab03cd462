"""Pre-trade checks of the stop-management fields, with the numbers in every reason (kept apart
from :mod:`..guards`' own checks so both grow without touching each other)."""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.contracts import TradeIntent
from quantum_exec.core.rules import SymbolRules, check_protection
from quantum_exec.execution.stops.ladder import check_ladder_sizes, level_triggers


def check_ladder(
    rules: SymbolRules, intent: TradeIntent, *, long: bool, reference: Decimal, quantity: Decimal
) -> None:
    """Every level of the take-profit ladder on the profit side of ``reference`` (the entry's
    reference, or the mark for a MODIFY): ``SL_TP_WRONG_SIDE`` / ``SL_TP_TOO_CLOSE`` naming the
    level's trigger and the reference; and a ladder whose levels all fall below minQty for
    ``quantity`` (nothing left to place): ``QTY_BELOW_MIN`` naming the level and minQty."""
    if not intent.take_profits:
        return
    for trigger in level_triggers(rules, intent.take_profits, long=long, entry=reference):
        check_protection(rules, long=long, reference=reference, sl=None, tp=trigger)
    check_ladder_sizes(rules, intent.take_profits, quantity)
