"""The set of legs a MODIFY places (:mod:`.modify`): what it changes, what it carries over at the
same triggers (a single target, a ladder's levels with their sizes, a pyramid's legs made one set
covering the whole position), the old legs it replaces, and the checks against the mark price.
Pure functions of what the exchange holds; the make-before-break that sends them is the
:class:`.modify.Modifier`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from quantum_exec.account.roles import leg_ids
from quantum_exec.contracts import ProtectiveOrder
from quantum_exec.core.errors import IntentRejected
from quantum_exec.core.ids import client_order_id, tp_level_id, tp_level_of
from quantum_exec.core.rules import (
    SymbolRules,
    ceil_to_step,
    check_protection,
    floor_to_step,
    round_trigger,
    trigger_from_pct,
)
from quantum_exec.exchange.wire import AlgoOrder, OrderSide, OrderType
from quantum_exec.execution.legs import LegOrder
from quantum_exec.execution.run import Run
from quantum_exec.execution.stops.ladder import plan_ladder


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
    stop_floor: Decimal | None = None,
) -> tuple[list[LegOrder], set[str]]:
    """The new set of legs of ``run``'s MODIFY for a position of ``size`` entered at ``entry``, and
    the client ids of the legs whose trigger the MODIFY asked for (the others are carried over).
    A closePosition leg falls back to a reduce-only one of ``size``: made before the old set breaks,
    it meets the old closePosition legs, and Binance keeps one per side (-4130). ``stop_floor``
    (a break-even move due at once) is the least safe trigger the stop may keep."""
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
    if sl is not None and stop_floor is not None and (sl < stop_floor if long else sl > stop_floor):
        sl = stop_floor
        changed.add(client_order_id(key, "sl"))
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
        new.extend(carried_targets(targets, key, exit_side, size))
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


def carried_targets(
    targets: Sequence[AlgoOrder], key: str, exit_side: OrderSide, size: Decimal
) -> list[LegOrder]:
    """The targets a MODIFY that leaves them alone carries over under its own ids, at the oldest
    one's trigger for each: the single targets (a pyramid's, one per entry) become one that covers
    the whole position (closePosition when one was, else ``size``); a ladder's levels of the same
    number (a pyramid of ladders) become one level holding their quantities together (never more
    than ``size``). Nothing of the position is left without the target it had. A resumed MODIFY
    finds its own legs beside the old ones: those of a level the old set still holds are the old
    ones carried already (counted once, from the old)."""
    merged: dict[str, LegOrder] = {}
    own = {_carried_id(t, key): t for t in targets if t.client_algo_id in leg_ids(_carried_id(t, key))}
    old = [t for t in targets if t not in own.values()]
    old_ids = {_carried_id(t, key) for t in old}
    mine = [t for leg_id, t in own.items() if leg_id not in old_ids]
    for target in sorted([*old, *mine], key=lambda o: o.algo_id):
        level = tp_level_of(target.client_algo_id)
        leg_id = tp_level_id(key, level) if level is not None else client_order_id(key, "tp")
        earlier = merged.get(leg_id)
        quantity: Decimal | None
        if target.close_position or (earlier is not None and earlier.quantity is None):
            quantity = None
        elif level is None:
            quantity = size
        else:
            before = earlier.quantity if earlier is not None and earlier.quantity is not None else 0
            quantity = min(target.quantity + before, size)
        trigger = earlier.trigger_price if earlier is not None else target.trigger_price
        merged[leg_id] = LegOrder(
            target.symbol,
            exit_side,
            OrderType.TAKE_PROFIT_MARKET,
            trigger,
            leg_id,
            quantity,
            fallback_quantity=size,  # a closePosition target meets the old one (-4130): reduce-only
        )
    return list(merged.values())


def _carried_id(target: AlgoOrder, key: str) -> str:
    """The id ``target`` is carried over under by the MODIFY ``key``."""
    level = tp_level_of(target.client_algo_id)
    return tp_level_id(key, level) if level is not None else client_order_id(key, "tp")


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
