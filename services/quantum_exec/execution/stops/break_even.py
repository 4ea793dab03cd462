"""The break-even trigger of an entry with ``break_even_after`` (pure).

After take-profit level n fills, the stop moves to the entry price adjusted for the fees: the
commission paid on the entry per unit, and the same again for the exit the stop would make (a
MARKET entry and the stop's market exit pay the same taker rate), so the rest of the position
cannot close at a loss. Rounded to the tick on the safe side: a long's up, a short's down. The move
itself is the account follower's (``account.break_even``): it sees the level fill, while this
intent is long answered.
"""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.execution.run import Run
from quantum_exec.rules import SymbolRules, ceil_to_step, floor_to_step


def break_even_price(
    avg_price: Decimal, quantity: Decimal, fee: Decimal, rules: SymbolRules, *, long: bool
) -> Decimal:
    """The stop that loses nothing on ``quantity`` entered at ``avg_price`` for ``fee`` (quote asset)."""
    per_unit = 2 * fee / quantity if quantity > 0 else Decimal(0)
    raw = avg_price + per_unit if long else avg_price - per_unit
    return ceil_to_step(raw, rules.tick_size) if long else floor_to_step(raw, rules.tick_size)


def break_even_of(run: Run, rules: SymbolRules, *, long: bool) -> tuple[int, Decimal] | None:
    """``(level, trigger)`` of ``run``'s break-even move, or None when it asks for none (or nothing
    filled). A commission paid in another asset than the quote (BNB) counts as none: the trigger is
    then the entry price itself."""
    after, out = run.intent.break_even_after, run.out
    if after is None or out.avg_price is None or not out.executed_quantity:
        return None
    fee = out.fee_usd if out.fee_usd is not None else Decimal(0)
    return after, break_even_price(out.avg_price, out.executed_quantity, fee, rules, long=long)
