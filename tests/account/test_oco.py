"""The live OCO rules, each with exact quantities."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from account.samples import algo_message, fill_message
from quantum_exec.account.events import parse_event
from quantum_exec.account.live_oco import POSITION_FREE
from quantum_exec.account.oco import EXTRA_COPY, Cancel, Replace, plan_oco
from quantum_exec.account.roles import replacement_of
from quantum_exec.account.state import AccountState
from quantum_exec.account.views import StaleStateError
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import OrderSide
from quantum_exec.execution.netting import can_reduce

D = Decimal
SL, TP = client_order_id("k1", "sl"), client_order_id("k1", "tp")
SL2, TP2 = client_order_id("k2", "sl"), client_order_id("k2", "tp")


def feed(state: AccountState, raw: dict[str, Any]) -> None:
    event = parse_event(raw)
    assert event is not None
    state.apply(event)


def long_with_legs(qty: str = "0.010") -> AccountState:
    """A long of ``qty`` protected by our SL (SELL STOP_MARKET) and TP (SELL TAKE_PROFIT_MARKET)."""
    state = AccountState()
    state.resync([], [])
    feed(state, fill_message(order_id=1, trade_id=1, qty=qty, client_order_id=client_order_id("k1", "entry")))
    feed(state, algo_message(client_algo_id=SL, qty=qty, trigger="58000", time_ms=1))
    feed(
        state,
        algo_message(client_algo_id=TP, qty=qty, order_type="TAKE_PROFIT_MARKET", trigger="62000", time_ms=1),
    )
    return state


@pytest.mark.parametrize(
    ("side", "amount", "expected"),
    [
        (OrderSide.SELL, "1", True),
        (OrderSide.BUY, "-1", True),
        (OrderSide.SELL, "-1", False),
        (OrderSide.BUY, "1", False),
        (OrderSide.SELL, "0", False),
        (OrderSide.BUY, "0", False),
    ],
)
def test_can_reduce(side: OrderSide, amount: str, expected: bool) -> None:
    assert can_reduce(side, D(amount)) is expected


def test_protected_position_needs_nothing() -> None:
    assert plan_oco(long_with_legs(), "BTCUSDT") == []


def test_take_profit_filled_cancels_the_stop() -> None:
    state = long_with_legs()
    feed(state, algo_message(client_algo_id=TP, status="TRIGGERED", actual_order_id="77", time_ms=2))
    feed(state, fill_message(side="SELL", order_id=77, trade_id=2, qty="0.010", reduce_only=True))
    feed(
        state,
        algo_message(client_algo_id=TP, status="FINISHED", executed="0.010", actual_order_id="77", time_ms=3),
    )
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", SL, "sibling leg filled")]


def test_sibling_filled_cancels_even_when_another_intent_keeps_a_position() -> None:
    state = long_with_legs("0.010")
    # A second intent adds 0.005 with its own legs.
    feed(
        state,
        fill_message(order_id=2, trade_id=2, qty="0.005", client_order_id=client_order_id("k2", "entry")),
    )
    feed(state, algo_message(client_algo_id=SL2, qty="0.005", time_ms=2))
    feed(state, algo_message(client_algo_id=TP2, qty="0.005", order_type="TAKE_PROFIT_MARKET", time_ms=2))
    # k1's stop fills: 0.005 (k2's) is left.
    feed(
        state,
        fill_message(side="SELL", order_id=3, trade_id=3, qty="0.010", client_order_id=SL, reduce_only=True),
    )
    feed(state, algo_message(client_algo_id=SL, status="FINISHED", executed="0.010", time_ms=3))
    assert state.position("BTCUSDT").amount == D("0.005")
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", TP, "sibling leg filled")]


def test_partial_reduction_shrinks_both_legs() -> None:
    state = long_with_legs("0.010")
    close_id = client_order_id("k9", "close")
    feed(state, fill_message(side="SELL", order_id=5, trade_id=5, qty="0.004", client_order_id=close_id))
    plan = plan_oco(state, "BTCUSDT")
    assert [(type(a), a.client_algo_id) for a in plan] == [(Replace, SL), (Replace, TP)]
    assert {a.new_qty for a in plan if isinstance(a, Replace)} == {D("0.006")}
    replace = plan[0]
    assert isinstance(replace, Replace)
    assert replace.old.trigger_price == D("58000")
    assert replace.old.side is OrderSide.SELL


def test_sibling_partially_filled_then_finished_shrinks_not_cancels() -> None:
    state = long_with_legs("0.010")
    feed(
        state,
        fill_message(
            side="SELL", order_id=77, trade_id=2, qty="0.003", client_order_id="x", reduce_only=True
        ),
    )
    feed(
        state,
        algo_message(client_algo_id=TP, status="FINISHED", executed="0.003", actual_order_id="77", time_ms=3),
    )
    assert plan_oco(state, "BTCUSDT") == [Replace("BTCUSDT", state.open_protective("BTCUSDT")[0], D("0.007"))]


def test_flip_cancels_legs_on_the_wrong_side() -> None:
    state = long_with_legs("0.010")
    feed(state, fill_message(side="SELL", order_id=8, trade_id=8, qty="0.030", client_order_id="web_1"))
    assert state.position("BTCUSDT").amount == D("-0.020")
    reason = "side cannot reduce the position"
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", SL, reason), Cancel("BTCUSDT", TP, reason)]


def test_close_position_leg_is_never_resized() -> None:
    state = AccountState()
    state.resync([], [])
    feed(state, fill_message(order_id=1, trade_id=1, qty="0.010"))
    feed(state, algo_message(client_algo_id=SL, qty="0", close_position=True, time_ms=1))
    feed(state, fill_message(side="SELL", order_id=2, trade_id=2, qty="0.004"))
    assert plan_oco(state, "BTCUSDT") == []


def test_close_position_sibling_finished_counts_as_filled() -> None:
    state = long_with_legs()
    feed(
        state,
        algo_message(
            client_algo_id=TP, status="FINISHED", qty="0", close_position=True, executed="0.004", time_ms=3
        ),
    )
    feed(state, fill_message(side="SELL", order_id=2, trade_id=2, qty="0.004"))
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", SL, "sibling leg filled")]


def test_sibling_finished_without_fill_is_not_a_fill() -> None:
    state = long_with_legs()
    feed(state, algo_message(client_algo_id=TP, status="FINISHED", executed="0", time_ms=3))
    assert plan_oco(state, "BTCUSDT") == []


def test_orders_of_others_are_never_touched() -> None:
    state = AccountState()
    state.resync([], [])
    feed(state, algo_message(client_algo_id="web_stop", qty="1", time_ms=1))
    feed(state, algo_message(client_algo_id="qxs-notours", qty="1", time_ms=1))
    assert plan_oco(state, "BTCUSDT") == []


def test_legs_in_flight_are_left_alone() -> None:
    state = long_with_legs()
    feed(state, algo_message(client_algo_id=SL, status="TRIGGERING", time_ms=2))
    feed(state, fill_message(side="SELL", order_id=9, trade_id=9, qty="0.010", client_order_id="web_x"))
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", TP, "position flat")]


def test_other_symbols_are_not_planned() -> None:
    state = long_with_legs()
    feed(state, fill_message(symbol="ETHUSDT", order_id=1, trade_id=1, qty="1"))
    assert plan_oco(state, "ETHUSDT") == []


def test_plan_refuses_a_stale_view() -> None:
    state = long_with_legs()
    state.mark_stale()
    with pytest.raises(StaleStateError):
        plan_oco(state, "BTCUSDT")


def test_a_leg_open_twice_keeps_the_copy_that_fits() -> None:
    state = long_with_legs("0.010")
    feed(state, fill_message(side="SELL", order_id=5, trade_id=5, qty="0.004", client_order_id="web_c"))
    # The SL's replacement is armed, the old one not cancelled yet (its cancel failed).
    feed(state, algo_message(client_algo_id=replacement_of(SL), algo_id=8, qty="0.006", time_ms=2))
    plan = plan_oco(state, "BTCUSDT")
    assert plan[0] == Cancel("BTCUSDT", SL, "replaced")
    assert [(type(a), a.client_algo_id) for a in plan[1:]] == [(Replace, TP)]


def test_a_smaller_copy_beside_the_copy_kept_is_an_extra_copy() -> None:
    """A resumed attempt placed the leg again beside a copy this OCO had shrunk (before its entry
    filled): the copy kept closes at least what the smaller one does, so its cancel lowers nothing
    and holds whatever the position (the live OCO sends it without a confirmed view)."""
    state = long_with_legs("0.030")
    feed(state, algo_message(client_algo_id=replacement_of(SL), algo_id=8, qty="0.010", time_ms=2))
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", replacement_of(SL), EXTRA_COPY)]


def test_a_larger_copy_that_does_not_fit_is_cancelled_on_the_position_only() -> None:
    """The other way round (the view holds less than the larger copy): the larger copy's cancel
    lowers protection, so it is the position-bound "replaced", which waits for a confirmed view."""
    state = long_with_legs("0.010")
    feed(state, algo_message(client_algo_id=replacement_of(SL), algo_id=8, qty="0.020", time_ms=2))
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", replacement_of(SL), "replaced")]
    assert "replaced" not in POSITION_FREE and EXTRA_COPY in POSITION_FREE


def test_a_sibling_filled_under_its_alternate_id_cancels_the_leg() -> None:
    state = long_with_legs()
    tp_now = replacement_of(TP)
    feed(state, algo_message(client_algo_id=tp_now, algo_id=9, order_type="TAKE_PROFIT_MARKET", time_ms=2))
    feed(state, algo_message(client_algo_id=TP, status="CANCELED", time_ms=3))
    feed(state, fill_message(side="SELL", order_id=77, trade_id=2, qty="0.004", client_order_id="web_x"))
    feed(
        state,
        algo_message(
            client_algo_id=tp_now, algo_id=9, status="FINISHED", qty="0.006", executed="0.006", time_ms=4
        ),
    )
    # Its fill is not seen yet: only the sibling rule can tell.
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", SL, "sibling leg filled")]


def test_a_leg_armed_ahead_of_its_entry_fill_is_not_cancelled_as_flat() -> None:
    """Events of different types are not ordered: the ALGO_UPDATE of a leg placed after its entry
    filled may come before that fill's ORDER_TRADE_UPDATE, while the position looks flat."""
    state = AccountState()
    state.resync([], [])
    feed(state, algo_message(client_algo_id=SL, qty="0.010", trigger="58000", time_ms=1_700_000_000_100))
    assert state.position("BTCUSDT").is_flat
    assert plan_oco(state, "BTCUSDT") == []
    feed(state, fill_message(order_id=1, trade_id=1, qty="0.010", time_ms=1_700_000_000_050))
    assert plan_oco(state, "BTCUSDT") == []


def test_a_leg_armed_after_the_fill_that_flattened_its_position_is_cancelled() -> None:
    """The other way round: the close filled after the leg was placed, but its fill came first."""
    state = AccountState()
    state.resync([], [])
    feed(state, fill_message(order_id=1, trade_id=1, qty="0.010", time_ms=1_700_000_000_050))
    feed(state, fill_message(side="SELL", order_id=2, trade_id=2, qty="0.010", time_ms=1_700_000_000_200))
    feed(state, algo_message(client_algo_id=SL, qty="0.010", trigger="58000", time_ms=1_700_000_000_100))
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", SL, "position flat")]
