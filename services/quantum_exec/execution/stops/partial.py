"""A partial CLOSE (``quantity`` or ``close_pct``): how much to close, and the ladder's levels
shrunk to what is left, each keeping its share (make before break).

The stop (and a single target) larger than what is left is resized by the live OCO like after any
reduce; the ladder's levels are resized here, because the OCO shrinks only a leg larger than the
whole position and a ladder must keep its proportions: each intent's ladder (a pyramid has one
per entry) keeps its own share of what is left. The levels are held from the OCO while they
are replaced, each new one armed before its old one is cancelled (:meth:`LegPlacer.replace`).
A partial CLOSE the account's conditional-order budget has no room to resize after is refused
before it is sent (:func:`check_resize_budget`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from quantum_exec.account.roles import intent_digest
from quantum_exec.contracts import TradeIntent
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.ids import replacement_of, tp_level_of
from quantum_exec.core.rules import SymbolRules, floor_to_step, fmt
from quantum_exec.exchange.wire import AlgoOrder, OrderType
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.execution.legs import LegOrder
from quantum_exec.execution.stops.budget import check_budget
from quantum_exec.execution.stops.resize_plan import ResizePlan, plan_key, plan_resize
from quantum_exec.ops.logs import get_logger

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


async def check_resize_budget(ctx: EntryContext, symbol: str, remaining: Decimal) -> None:
    """Refuse a partial CLOSE (``CONDITIONAL_BUDGET``, before it is sent) when the account has no
    room for the legs its make-before-break resize places beside the old ones: one for the stop or
    single target the live OCO shrinks to ``remaining``, one for the ladder levels replaced here
    (each is replaced one at a time, and the two may run together). Resizing cancel-first instead
    would leave the position naked for a moment, and a failed placement after the cancel naked for
    good; a full CLOSE needs no new leg and is never refused for the budget."""
    own = [o for o in await ctx.legs.open_own(symbol) if o.status.is_armed]
    ladder = any(tp_level_of(o.client_algo_id) is not None for o in own)
    larger = any(
        tp_level_of(o.client_algo_id) is None
        and o.order_type is not OrderType.TRAILING_STOP_MARKET
        and not o.close_position
        and o.quantity > remaining
        for o in own
    )
    await check_budget(ctx, int(ladder) + int(larger))


def ladders_of(own: Sequence[AlgoOrder]) -> list[list[AlgoOrder]]:
    """Our armed ladder levels on a symbol, one ladder per intent (by the ids' digest: a pyramid's
    entries each have theirs), each by level; in an order of their own, never the exchange's."""
    by_intent: dict[str, list[AlgoOrder]] = {}
    for order in own:
        digest = intent_digest(order.client_algo_id)
        if digest is not None and tp_level_of(order.client_algo_id) is not None:
            by_intent.setdefault(digest, []).append(order)
    return [
        sorted(levels, key=lambda o: (tp_level_of(o.client_algo_id), o.algo_id))
        for _, levels in sorted(by_intent.items())
    ]


async def shrink_ladder(
    ctx: EntryContext, rules: SymbolRules, symbol: str, remaining: Decimal, change_id: str
) -> None:
    """Replace our ladder levels on ``symbol`` by ones sized for ``remaining`` in proportion, each
    intent's ladder with its share (:func:`.ladder.shrink_ladders`); a level that merged away is
    cancelled once the others are armed. The sizes are planned once and saved before the first
    replacement; a resumed attempt replays them (:mod:`.resize_plan`). Failures are logged: the
    old levels stay (reduce-only, they never close more than is there)."""
    own = [o for o in await ctx.legs.open_own(symbol) if o.status.is_armed]
    account = ctx.account
    saved = await ctx.plans.load(plan_key(change_id))
    if saved is not None:
        plan = ResizePlan.from_json(saved)
    else:
        plan = plan_resize(ladders_of(own), remaining, rules)
        if any(step.changes for step in plan.steps):
            await ctx.plans.save(plan_key(change_id), plan.to_json())
    if not plan.steps:
        if account is not None:
            await account.protection_changed(symbol, "partial_close", change_id, own, None)
        return
    by_id = {o.client_algo_id: o for o in own}
    ids = [s.client_algo_id for s in plan.steps] + [replacement_of(s.client_algo_id) for s in plan.steps]
    if account is not None:
        account.hold_legs(ids)
    try:
        armed_all = True
        merged: list[AlgoOrder] = []
        for step in plan.steps:
            old = by_id.get(step.client_algo_id)
            if old is None or not step.changes:
                continue  # kept as it is, or replaced by an earlier attempt (or fired meanwhile)
            if step.quantity is None:
                merged.append(old)
                continue
            new = LegOrder(
                symbol,
                old.side,
                old.order_type,
                old.trigger_price,
                replacement_of(old.client_algo_id),
                step.quantity,
            )
            done = await ctx.legs.replace(old, new)  # finds the new leg an earlier attempt armed
            armed_all &= done.old_cancelled is not None
            if done.old_cancelled is None:
                log.warning(
                    "stops.level_not_resized",
                    symbol=symbol,
                    client_algo_id=old.client_algo_id,
                    detail=done.placed.failure,
                )
        if armed_all:
            for old in merged:
                await ctx.legs.cancel(old.algo_id)  # merged into another level
    finally:
        if account is not None:
            account.release_legs(ids)
    if account is not None:
        after = [o for o in await ctx.legs.open_own(symbol) if o.status.is_armed]
        await account.protection_changed(symbol, "partial_close", change_id, own, after)
