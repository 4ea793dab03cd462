"""What a MODIFY cancels once its new set stands, from the exchange read again (pure)."""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.core.ids import client_order_id, replacement_of, tp_level_id
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, OrderSide, OrderType
from quantum_exec.execution.legs import LegOrder
from quantum_exec.execution.stops.recheck import gone_targets, stale_legs, withdraw_all

D = Decimal
_ids = iter(range(1, 10**6))


def _leg(cid: str, kind: OrderType, quantity: str, status: AlgoStatus = AlgoStatus.NEW) -> AlgoOrder:
    return AlgoOrder(
        next(_ids), cid, "BTCUSDT", OrderSide.SELL, kind, status, D(100), D(quantity), False, True, ""
    )


def _new(cid: str, kind: OrderType, quantity: str) -> LegOrder:
    return LegOrder("BTCUSDT", OrderSide.SELL, kind, D(100), cid, D(quantity))


SL, TP, TS = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.TRAILING_STOP_MARKET


def test_every_old_leg_goes_whatever_id_it_stands_under() -> None:
    old_sl = client_order_id("open", "sl")
    new = {client_order_id("mod", "sl")}
    now = [
        _leg(replacement_of(old_sl), SL, "0.006"),  # the live OCO's resize, under the alternate id
        _leg(client_order_id("mod", "sl"), SL, "0.010"),
        _leg(client_order_id("open", "trail"), TS, "0.010"),
        _leg(old_sl, SL, "0.010", AlgoStatus.CANCELED),
    ]
    assert [o.client_algo_id for o in stale_legs(now, new, trailing=False)] == [replacement_of(old_sl)]
    # A MODIFY setting a trailing stop replaces the old one too.
    assert len(stale_legs(now, new, trailing=True)) == 2
    assert len(withdraw_all(now)) == 3


def test_a_carried_level_that_filled_meanwhile_is_withdrawn_the_others_stay() -> None:
    first = [_leg(tp_level_id("open", n), TP, q) for n, q in ((1, "0.004"), (2, "0.004"), (3, "0.002"))]
    carried = [_new(tp_level_id("mod", n), TP, q) for n, q in ((1, "0.004"), (2, "0.004"), (3, "0.002"))]
    new_ids = {leg.client_algo_id for leg in carried}
    now = [first[1], first[2], *(_leg(leg.client_algo_id, TP, "0.004") for leg in carried)]
    assert gone_targets(first, now, carried, new_ids) == [tp_level_id("mod", 1)]
    # A resumed MODIFY read its own carried copies at first: nothing of the old set to compare.
    assert gone_targets(now[2:], now[2:], carried, new_ids) == []
    # A level the live OCO replaced under its alternate id still stands.
    moved = [_leg(replacement_of(tp_level_id("open", 1)), TP, "0.004"), first[1], first[2]]
    assert gone_targets(first, moved, carried, new_ids) == []
