"""MODIFY: change the protection of a symbol's open position on the exchange, make before break.

Binance cannot modify an untriggered conditional order, so a MODIFY places a new set of legs and
cancels the old ones only once every new leg is seen armed (``NEW``): at every moment the position
is covered by the old stop, the new one, or both (both reduce-only, never more than the position).

The MODIFY owns the set it places: its legs carry its own client ids (:func:`quantum_exec.ids.client_order_id`
of the MODIFY's key, one generation per MODIFY), and what it does not change is carried over into
the set at the same triggers (the stop, a single target, or a ladder's levels with their sizes), so
the position keeps one coherent set whose records name the last MODIFY. A resumed MODIFY (killed
at any step) reads the exchange again and does the same: legs under its ids that stand are found
(``-4116`` looked up by the leg placer), never placed twice, and the old ones are cancelled.
Every leg goes through the one leg placer (:mod:`..legs`); the live OCO is kept off the legs while
the change travels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from quantum_exec.contracts import ErrorSource, ProtectionState, ProtectiveOrder, ResultStatus, Side
from quantum_exec.errors import ExchangeError, IntentRejected, PermanentError, ReasonCode, RetryableError
from quantum_exec.exchange.wire import AlgoOrder, OrderSide, OrderType
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.execution.guards import Guards
from quantum_exec.execution.legs import LegOrder, Placement
from quantum_exec.execution.run import Run
from quantum_exec.execution.stops.budget import check_budget
from quantum_exec.execution.stops.ladder import plan_ladder
from quantum_exec.ids import client_order_id, tp_level_id, tp_level_of
from quantum_exec.ops.logs import get_logger
from quantum_exec.rules import (
    SymbolRules,
    ceil_to_step,
    check_protection,
    floor_to_step,
    fmt,
    round_trigger,
    trigger_from_pct,
)
from quantum_exec.settings import ProtectionMode

log = get_logger(__name__)


def leg_contract(order: AlgoOrder) -> ProtectiveOrder:
    """One leg as the result shows it."""
    return ProtectiveOrder(
        order_type=order.order_type.value,
        side=order.side.value,
        algo_id=order.algo_id,
        client_algo_id=order.client_algo_id,
        trigger_price=order.trigger_price,
        quantity=None if order.close_position else order.quantity,
        close_position=order.close_position,
        state=order.status.value,
        level=tp_level_of(order.client_algo_id),
        callback_pct=order.callback_rate,
        activation_price=order.activate_price,
    )


def plan_set(
    rules: SymbolRules,
    run: Run,
    *,
    long: bool,
    entry: Decimal,
    size: Decimal,
    armed: Sequence[AlgoOrder],
    close_position: bool,
) -> tuple[list[LegOrder], set[str]]:
    """The new set of legs of ``run``'s MODIFY for a position of ``size`` entered at ``entry``, and
    the client ids of the legs whose trigger the MODIFY asked for (the others are carried over).
    A closePosition leg falls back to a reduce-only one of ``size``: made before the old set breaks,
    it meets the old closePosition legs, and Binance keeps one per side (-4130)."""
    intent, key, symbol = run.intent, run.key, run.intent.symbol
    exit_side = OrderSide.SELL if long else OrderSide.BUY
    new: list[LegOrder] = []
    changed: set[str] = set()
    stops = [o for o in armed if o.order_type is OrderType.STOP_MARKET]
    targets = [o for o in armed if o.order_type is OrderType.TAKE_PROFIT_MARKET]

    sl = intent.stop_loss
    if sl is None and intent.stop_loss_pct is not None:
        sl = trigger_from_pct(entry, intent.stop_loss_pct, long=long, kind="SL")
    if sl is not None:
        sl = round_trigger(rules, sl, long=long, kind="SL")
        changed.add(client_order_id(key, "sl"))
    elif stops:
        # Carried over: the stop that covers the most (a pyramid's stops become one).
        sl = max(stops, key=lambda o: (o.close_position, o.quantity, o.algo_id)).trigger_price
    if sl is not None:
        quantity = None if close_position else size
        sl_id = client_order_id(key, "sl")
        new.append(
            LegOrder(symbol, exit_side, OrderType.STOP_MARKET, sl, sl_id, quantity, fallback_quantity=size)
        )

    tp = intent.take_profit
    if tp is None and intent.take_profit_pct is not None:
        tp = trigger_from_pct(entry, intent.take_profit_pct, long=long, kind="TP")
    if intent.take_profits:
        for rung in plan_ladder(rules, intent.take_profits, size, long=long, entry=entry):
            leg_id = tp_level_id(key, rung.level)
            changed.add(leg_id)
            new.append(
                LegOrder(symbol, exit_side, OrderType.TAKE_PROFIT_MARKET, rung.trigger, leg_id, rung.quantity)
            )
    elif tp is not None:
        leg_id = client_order_id(key, "tp")
        changed.add(leg_id)
        trigger = round_trigger(rules, tp, long=long, kind="TP")
        quantity = None if close_position else size
        new.append(
            LegOrder(
                symbol,
                exit_side,
                OrderType.TAKE_PROFIT_MARKET,
                trigger,
                leg_id,
                quantity,
                fallback_quantity=size,
            )
        )
    else:
        seen: set[str] = set()
        for target in sorted(targets, key=lambda o: o.algo_id):
            level = tp_level_of(target.client_algo_id)
            leg_id = tp_level_id(key, level) if level is not None else client_order_id(key, "tp")
            if leg_id in seen:
                continue  # a pyramid's single targets become one
            seen.add(leg_id)
            quantity = None if target.close_position else min(target.quantity, size)
            new.append(
                LegOrder(
                    symbol,
                    exit_side,
                    OrderType.TAKE_PROFIT_MARKET,
                    target.trigger_price,
                    leg_id,
                    quantity,
                    fallback_quantity=size,
                )
            )
    trail = intent.trailing_stop
    if trail is not None:
        activation = trail.activation_price
        if activation is None and trail.activation_pct is not None:
            activation = trigger_from_pct(entry, trail.activation_pct, long=long, kind="TP")
        if activation is not None:
            tick = rules.tick_size
            activation = ceil_to_step(activation, tick) if long else floor_to_step(activation, tick)
        trail_id = client_order_id(key, "trail")
        changed.add(trail_id)
        new.append(
            LegOrder(
                symbol,
                exit_side,
                OrderType.TRAILING_STOP_MARKET,
                activation if activation is not None else Decimal(0),
                trail_id,
                size,
                callback_rate=trail.callback_pct,
                activate_price=activation,
            )
        )
    return new, changed


def replaced(armed: Sequence[AlgoOrder], new_ids: set[str], *, trailing: bool) -> list[AlgoOrder]:
    """The armed legs a MODIFY's new set replaces: all but its own, and a trailing stop only when
    the MODIFY sets one (placed again it would lose the extreme it tracked)."""
    return [
        o
        for o in armed
        if o.client_algo_id not in new_ids
        and (trailing or o.order_type is not OrderType.TRAILING_STOP_MARKET)
    ]


def check_against_mark(rules: SymbolRules, legs: Sequence[LegOrder], *, long: bool, mark: Decimal) -> None:
    """Every trigger the MODIFY asked for on its side of the mark (``SL_TP_WRONG_SIDE`` /
    ``SL_TP_TOO_CLOSE`` with the trigger and the mark): such a leg would fire at once."""
    for leg in legs:
        if leg.callback_rate is not None:
            continue  # a trailing stop's activation already crossed is the exchange's -2021
        stop = leg.order_type is OrderType.STOP_MARKET
        try:
            check_protection(
                rules,
                long=long,
                reference=mark,
                sl=leg.trigger_price if stop else None,
                tp=None if stop else leg.trigger_price,
            )
        except IntentRejected as exc:
            raise IntentRejected(exc.code, exc.message.replace("the reference", "the mark")) from None


class Modifier:
    """Runs one MODIFY intent (see the module docstring)."""

    def __init__(self, ctx: EntryContext, guards: Guards, own: dict[str, set[int]]) -> None:
        self._ctx = ctx
        self._guards = guards
        self._own = own

    async def modify(self, run: Run) -> None:
        """Change the protection of ``run``'s symbol; the result's fields are set on ``run.out``."""
        ctx, intent, out = self._ctx, run.intent, run.out
        symbol = intent.symbol
        if not run.attempt.resume:
            self._guards.check_fresh(run)
        rules = self._guards.rules_for(symbol)
        with run.step("position"):
            position = next((p for p in await ctx.gateway.positions(symbol) if p.amount != 0), None)
        if position is None:
            raise IntentRejected(ReasonCode.NO_POSITION, f"no open position on {symbol}: nothing to modify")
        long, size = position.amount > 0, abs(position.amount)
        out.quantity = size
        with run.step("legs"):
            own = await ctx.legs.open_own(symbol)
            mark = await ctx.gateway.mark_price(symbol)
        out.legs_before = [leg_contract(o) for o in own]
        armed = [o for o in own if o.status.is_armed]
        close_position = ctx.settings.protection_mode is ProtectionMode.CLOSE_POSITION
        new, changed = plan_set(
            rules,
            run,
            long=long,
            entry=position.entry_price,
            size=size,
            armed=armed,
            close_position=close_position,
        )
        check_against_mark(rules, [leg for leg in new if leg.client_algo_id in changed], long=long, mark=mark)
        new_ids = {leg.client_algo_id for leg in new}
        missing = [leg for leg in new if leg.client_algo_id not in {o.client_algo_id for o in armed}]
        await check_budget(ctx, len(missing))
        held = sorted(new_ids | {o.client_algo_id for o in own})
        account = ctx.account
        if account is not None:
            account.hold_legs(held)
            # The records first: a reconcile running meanwhile (a restart, a reconnect) protects
            # from them, so it places this MODIFY's legs (found, never twice, by the placer) and
            # never the replaced triggers again.
            await self._records(run, long=long, size=size, new=new)
        try:
            with run.step("protection"):
                placements = list(await asyncio.gather(*(ctx.legs.place(leg) for leg in new)))
            standing = [p.order for p in placements if p.order is not None and p.standing]
            self._own.setdefault(symbol, set()).update(o.algo_id for o in standing)
            failed = [(leg, p) for leg, p in zip(new, placements, strict=True) if not _armed(p)]
            if failed:
                if any(o.client_algo_id not in new_ids for o in armed):
                    # The old set still stands whole: the new legs that stand go again.
                    await self._undo([p.order for p in placements if p.order is not None])
                why = "; ".join(f"{leg.client_algo_id}: {p.failure}" for leg, p in failed)
                out.status, out.protection = ResultStatus.FAILED, ProtectionState.PROTECTED
                run.error(
                    ReasonCode.PROTECTION_FAILED,
                    ErrorSource.EXCHANGE,
                    f"MODIFY of {symbol} not made, the old legs stand: {why}",
                )
                out.legs_after = [leg_contract(o) for o in await ctx.legs.open_own(symbol)]
                return
            trailing = intent.trailing_stop is not None
            left = await self._cancel_old(replaced(armed, new_ids, trailing=trailing))
            if account is not None:
                after = [p.order for p in placements if p.order is not None]
                await account.protection_changed(symbol, "modify", run.key, own, after, intent_id=run.key)
        finally:
            if account is not None:
                account.release_legs(held)
        kept = [
            o
            for o in armed
            if o.client_algo_id not in new_ids and o not in replaced(armed, new_ids, trailing=False)
        ]
        if intent.trailing_stop is not None:
            kept = []
        out.legs_after = [
            leg_contract(o) for o in [*(p.order for p in placements if p.order is not None), *kept]
        ]
        out.trailing_stop = next(
            (c for c in out.legs_after if c.order_type == OrderType.TRAILING_STOP_MARKET.value), None
        )
        out.status, out.protection = ResultStatus.FILLED, ProtectionState.PROTECTED
        out.stop_loss = next((c for c in out.legs_after if c.order_type == OrderType.STOP_MARKET.value), None)
        targets = [c for c in out.legs_after if c.order_type == OrderType.TAKE_PROFIT_MARKET.value]
        out.take_profit = targets[-1] if targets else None
        out.take_profits = targets if any(c.level is not None for c in targets) else None
        if left:
            out.status = ResultStatus.PARTIAL
            run.error(
                ReasonCode.PROTECTION_FAILED,
                ErrorSource.EXCHANGE,
                f"new legs of {symbol} armed; old legs left armed beside them: {', '.join(left)}",
            )
        log.info(
            "stops.modified",
            intent_id=run.key,
            symbol=symbol,
            before=[o.client_algo_id for o in own],
            after=sorted(new_ids),
        )

    async def _cancel_old(self, old: list[AlgoOrder]) -> list[str]:
        """Cancel the replaced legs (the new ones are armed); the ids left armed by a refusal."""
        left: list[str] = []
        for order in old:
            try:
                if await self._ctx.legs.cancel(order.algo_id):
                    self._own.get(order.symbol, set()).discard(order.algo_id)
            except (PermanentError, RetryableError) as exc:
                log.warning(
                    "stops.old_leg_left",
                    symbol=order.symbol,
                    client_algo_id=order.client_algo_id,
                    detail=str(exc),
                )
                left.append(order.client_algo_id)
        return left

    async def _undo(self, placed: list[AlgoOrder]) -> None:
        """A new leg could not be armed: the new ones that stand go (the old set stays whole)."""
        for order in placed:
            if order.status.is_armed:
                try:
                    await self._ctx.legs.cancel(order.algo_id)
                except ExchangeError as exc:
                    log.warning("stops.undo_failed", client_algo_id=order.client_algo_id, detail=str(exc))

    async def _records(self, run: Run, *, long: bool, size: Decimal, new: list[LegOrder]) -> None:
        """The position's records name this MODIFY and its triggers from now on (the reconcile
        re-protects from them, never from the replaced triggers)."""
        account = self._ctx.account
        assert account is not None
        symbol = run.intent.symbol
        sl = next((leg.trigger_price for leg in new if leg.order_type is OrderType.STOP_MARKET), None)
        single = [
            leg.trigger_price
            for leg in new
            if leg.order_type is OrderType.TAKE_PROFIT_MARKET
            and leg.client_algo_id == client_order_id(run.key, "tp")
        ]
        await account.closed(symbol)
        owner = run.intent.model_copy(update={"side": Side.BUY if long else Side.SELL})
        await account.opened(run.key, owner, size, stop_loss=sl, take_profit=single[0] if single else None)
        log.info("stops.records", symbol=symbol, intent_id=run.key, stop_loss=fmt(sl) if sl else None)


def _armed(placement: Placement) -> bool:
    return placement.order is not None and placement.order.status.is_armed
