"""A partial CLOSE (``quantity`` or ``close_pct``): how much to close, and the ladder's levels
shrunk to what is left, each keeping its share (make before break).

The stop (and a single target) larger than what is left is resized by the live OCO like after any
reduce; the ladder's levels are resized here, because the OCO shrinks only a leg larger than the
whole position and a ladder must keep its proportions. The levels are held from the OCO while they
are replaced, each new one armed before its old one is cancelled (:meth:`LegPlacer.replace`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from quantum_exec.contracts import TradeIntent
from quantum_exec.errors import IntentRejected, ReasonCode
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.execution.legs import LegOrder
from quantum_exec.execution.stops.ladder import Rung, shrink
from quantum_exec.ids import replacement_of, tp_level_of
from quantum_exec.ops.logs import get_logger
from quantum_exec.rules import SymbolRules, floor_to_step, fmt

log = get_logger(__name__)

_HUNDRED: Final = Decimal(100)


def is_partial(intent: TradeIntent) -> bool:
    """A CLOSE that asks for part of the position (it may still come to all of it)."""
    return intent.quantity is not None or intent.close_pct is not None


def close_quantity(rules: SymbolRules, intent: TradeIntent, held: Decimal) -> Decimal:
    """What a CLOSE of a position of ``held`` (unsigned) sends: all of it, or its asked part floored
    to the MARKET_LOT_SIZE step and never more than the position (``QTY_BELOW_MIN`` when the part
    is below minQty)."""
    if not is_partial(intent):
        return held
    if intent.quantity is not None:
        asked, what = intent.quantity, f"quantity {fmt(intent.quantity)}"
    else:
        assert intent.close_pct is not None
        asked, what = held * intent.close_pct / _HUNDRED, f"close_pct {fmt(intent.close_pct)} of {fmt(held)}"
    quantity = min(floor_to_step(asked, rules.market_step_size), held)
    if quantity < held and (quantity <= 0 or quantity < rules.market_min_qty):
        raise IntentRejected(
            ReasonCode.QTY_BELOW_MIN,
            f"{what} gives {fmt(quantity)}, below minQty {fmt(rules.market_min_qty)} for {rules.symbol}",
        )
    return quantity


async def shrink_ladder(
    ctx: EntryContext, rules: SymbolRules, symbol: str, remaining: Decimal, change_id: str
) -> None:
    """Replace our ladder levels on ``symbol`` by ones sized for ``remaining`` in proportion; a level
    that merged away is cancelled once the others are armed. Failures are logged: the old levels
    stay (reduce-only, they never close more than is there)."""
    own = [o for o in await ctx.legs.open_own(symbol) if o.status.is_armed]
    account = ctx.account
    levels = sorted(
        ((lvl, o) for o in own if (lvl := tp_level_of(o.client_algo_id)) is not None), key=lambda p: p[0]
    )
    if not levels:
        if account is not None:
            await account.protection_changed(symbol, "partial_close", change_id, own, None)
        return
    by_level = {lvl: o for lvl, o in levels}
    target = {
        r.level: r
        for r in shrink([Rung(lvl, o.trigger_price, o.quantity) for lvl, o in levels], remaining, rules)
    }
    ids = [o.client_algo_id for _, o in levels] + [replacement_of(o.client_algo_id) for _, o in levels]
    if account is not None:
        account.hold_legs(ids)
    try:
        armed_all = True
        for lvl, old in levels:
            rung = target.get(lvl)
            if rung is None or rung.quantity == old.quantity:
                continue
            new = LegOrder(
                symbol,
                old.side,
                old.order_type,
                old.trigger_price,
                replacement_of(old.client_algo_id),
                rung.quantity,
            )
            done = await ctx.legs.replace(old, new)
            armed_all &= done.old_cancelled is not None
            if done.old_cancelled is None:
                log.warning("stops.level_not_resized", symbol=symbol, level=lvl, detail=done.placed.failure)
        if armed_all:
            for lvl, old in by_level.items():
                if lvl not in target:
                    await ctx.legs.cancel(old.algo_id)  # merged into another level
    finally:
        if account is not None:
            account.release_legs(ids)
    if account is not None:
        after = [o for o in await ctx.legs.open_own(symbol) if o.status.is_armed]
        await account.protection_changed(symbol, "partial_close", change_id, own, after)
