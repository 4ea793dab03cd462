"""What a MODIFY that leaves the targets alone carries over (pure): a pyramid's targets, one per
entry, become one set covering the whole position, never the oldest entry's share alone."""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.core.ids import client_order_id, tp_level_id
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, OrderSide, OrderType
from quantum_exec.execution.stops.set_plan import carried_targets

D = Decimal
_ids = iter(range(1, 1000))


def _target(cid: str, trigger: str, quantity: str, *, close_position: bool = False) -> AlgoOrder:
    return AlgoOrder(
        next(_ids), cid, "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, AlgoStatus.NEW,
        D(trigger), D(quantity), close_position, not close_position, "",
    )  # fmt: skip


def test_a_pyramids_single_targets_become_one_for_the_whole_position() -> None:
    legs = [
        _target(client_order_id("a", "tp"), "110", "0.010"),
        _target(client_order_id("b", "tp"), "112", "0.020"),
    ]
    [leg] = carried_targets(legs, "mod", OrderSide.SELL, D("0.030"))
    assert leg.client_algo_id == client_order_id("mod", "tp")
    assert (leg.trigger_price, leg.quantity) == (D("110"), D("0.030"))


def test_a_close_position_target_stays_close_position() -> None:
    legs = [
        _target(client_order_id("a", "tp"), "110", "0", close_position=True),
        _target(client_order_id("b", "tp"), "112", "0.020"),
    ]
    [leg] = carried_targets(legs, "mod", OrderSide.SELL, D("0.030"))
    assert leg.quantity is None


def test_ladders_of_a_pyramid_keep_their_levels_quantities_together() -> None:
    legs = [
        _target(tp_level_id("a", 1), "110", "0.003"),
        _target(tp_level_id("a", 2), "120", "0.003"),
        _target(tp_level_id("b", 1), "111", "0.002"),
        _target(tp_level_id("b", 2), "121", "0.002"),
    ]
    got = {leg.client_algo_id: leg for leg in carried_targets(legs, "mod", OrderSide.SELL, D("0.010"))}
    assert got[tp_level_id("mod", 1)].quantity == D("0.005")
    assert got[tp_level_id("mod", 2)].quantity == D("0.005")
    assert got[tp_level_id("mod", 1)].trigger_price == D("110")
    # Never more than the position, whatever the levels held.
    [one] = carried_targets(legs[:1] + legs[2:3], "mod", OrderSide.SELL, D("0.004"))
    assert one.quantity == D("0.004")


def test_a_resumed_modify_counts_its_own_carried_levels_once() -> None:
    # Killed after its set was placed, before the old one's cancel: both stand side by side.
    legs = [
        _target(tp_level_id("a", 2), "120", "0.004"),
        _target(tp_level_id("a", 3), "130", "0.002"),
        _target(tp_level_id("mod", 2), "120", "0.004"),
        _target(tp_level_id("mod", 3), "130", "0.002"),
    ]
    got = {leg.client_algo_id: leg for leg in carried_targets(legs, "mod", OrderSide.SELL, D("0.006"))}
    assert got[tp_level_id("mod", 2)].quantity == D("0.004")
    assert got[tp_level_id("mod", 3)].quantity == D("0.002")
    # The old set cancelled already: its own legs carry themselves.
    own = {leg.client_algo_id: leg for leg in carried_targets(legs[2:], "mod", OrderSide.SELL, D("0.006"))}
    assert own[tp_level_id("mod", 2)].quantity == D("0.004")
