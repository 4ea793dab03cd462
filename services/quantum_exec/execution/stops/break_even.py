"""The break-even trigger of an entry with ``break_even_after`` (pure).

After take-profit level n fills, the stop moves to the entry price adjusted for the fees: the
commission paid on the entry per unit, and the same again for the exit the stop would make (a
MARKET entry and the stop's market exit pay the same taker rate), so the rest of the position
cannot close at a loss. Rounded to the tick on the safe side: a long's up, a short's down. The move
itself is the account follower's (``account.break_even``): it sees the level fill, while this
intent is long answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from quantum_exec.account.roles import leg_ids
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.ids import tp_level_id, tp_level_of
from quantum_exec.core.rules import SymbolRules, ceil_to_step, floor_to_step
from quantum_exec.exchange.wire import AlgoOrder, OrderType
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.execution.run import Run


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


async def modify_break_even(
    ctx: EntryContext, run: Run, rules: SymbolRules, *, long: bool, entry: Decimal, armed: Sequence[AlgoOrder]
) -> tuple[int, Decimal, bool] | None:
    """A MODIFY's ``break_even_after`` n: ``(n, trigger, now)``, ``now`` when level n of the
    position's ladder has filled already (the stop moves at once, in the MODIFY's own set); None
    when the MODIFY asks for none. The trigger is the one the entry's records hold (its real fee),
    else the entry price with the account's taker rate paid twice (entry and exit). Refused with
    ``INVALID_FIELD`` naming n when the ladder has no level n. A resumed MODIFY reads its own
    records (written before any send): the same decision, never a second move."""
    after, symbol = run.intent.break_even_after, run.intent.symbol
    account = ctx.account
    if after is None or account is None:
        return None
    keys = await account.record_keys(symbol, long=long)
    carried = await account.break_even(symbol, long=long)
    if run.key in keys and keys[run.key][1] == after and carried is not None:
        stop = keys[run.key][0]
        return after, carried[1], stop is not None and stop == carried[1]
    if carried is not None:
        trigger = carried[1]
    else:
        rate = await ctx.gateway.taker_rate(symbol)
        trigger = break_even_price(entry, Decimal(1), entry * rate, rules, long=long)
    if run.intent.take_profits:
        if after > len(run.intent.take_profits):
            raise IntentRejected(
                ReasonCode.INVALID_FIELD,
                f"break_even_after: {after}: the MODIFY's take_profits has "
                f"{len(run.intent.take_profits)} level(s)",
            )
        return after, trigger, False
    levels = {tp_level_of(o.client_algo_id) for o in armed if o.order_type is OrderType.TAKE_PROFIT_MARKET}
    if after in levels:
        return after, trigger, False
    for key in keys:
        for client_algo_id in leg_ids(tp_level_id(key, after)):
            if await _filled(ctx, symbol, client_algo_id):
                return after, trigger, True
    armed_levels = ", ".join(str(n) for n in sorted(n for n in levels if n is not None)) or "none"
    raise IntentRejected(
        ReasonCode.INVALID_FIELD,
        f"break_even_after: {after}: {symbol} has no take-profit level {after} "
        f"(levels armed: {armed_levels})",
    )


async def _filled(ctx: EntryContext, symbol: str, client_algo_id: str) -> bool:
    """The leg under ``client_algo_id`` fired and the order it placed filled (some of it)."""
    leg = await ctx.legs.find(client_algo_id)
    if leg is None or not leg.status.has_order or not leg.actual_order_id:
        return False
    order = await ctx.gateway.get_order_by_id(symbol, int(leg.actual_order_id))
    return order is not None and order.executed_qty > 0
