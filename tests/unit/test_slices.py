"""Child orders of TWAP and maxQty-split entries: quantities to the step, exact totals, timing, ids."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantum_exec.account.roles import intent_digest, role_of
from quantum_exec.contracts.fields import Twap
from quantum_exec.core.errors import IntentRejected
from quantum_exec.core.ids import client_order_id, is_own_protective
from quantum_exec.core.rules import SymbolRules
from quantum_exec.execution.entries.slices import Plan, plan_children, split_max, twap_quantities

D = Decimal


def test_split_is_balanced_to_the_step_and_exact() -> None:
    assert split_max(D("240"), D("120"), D("0.001")) == [D("120"), D("120")]
    assert split_max(D("240.001"), D("120"), D("0.001")) == [D("80.001"), D("80"), D("80")]
    assert split_max(D("120"), D("120"), D("0.001")) == [D("120")]
    assert split_max(D("7"), D("0"), D("1")) == [D("7")]


@given(
    max_steps=st.integers(min_value=1, max_value=10**6),
    parts_and_extra=st.tuples(
        st.integers(min_value=0, max_value=98), st.integers(min_value=1, max_value=10**6)
    ),
)
def test_split_parts_sum_exactly_and_respect_max(max_steps: int, parts_and_extra: tuple[int, int]) -> None:
    full, extra = parts_and_extra
    steps = full * max_steps + min(extra, max_steps)
    step = D("0.001")
    quantity, max_qty = step * steps, step * max_steps
    parts = split_max(quantity, max_qty, step)
    assert sum(parts) == quantity
    assert all(0 < p <= max_qty and p % step == 0 for p in parts)
    assert len(parts) == -(-steps // max_steps)


def test_twap_carries_the_rounding_drift_so_slices_add_up(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    slices = twap_quantities(btc, D("0.011"), 5, D("95000"))
    # 0.011 / 5 = 0.0022: floor(0.011*i/5) to 0.001 gives 0.002, 0.004, 0.006, 0.008, 0.011.
    assert [q for _, q in slices] == [D("0.002"), D("0.002"), D("0.002"), D("0.002"), D("0.003")]
    assert sum(q for _, q in slices) == D("0.011")


def test_a_slice_below_the_minimum_notional_merges_into_the_next(
    symbol_rules: dict[str, SymbolRules],
) -> None:
    btc = symbol_rules["BTCUSDT"]  # minNotional 100
    # 0.004 at 95,000 is 380: four slices of 0.001 (95 each) are below 100 and merge pairwise.
    slices = twap_quantities(btc, D("0.004"), 4, D("95000"))
    assert slices == [(2, D("0.002")), (4, D("0.002"))]
    # 0.001 merges into slice 2 (0.002); the last 0.001 is short too and joins slice 2.
    assert twap_quantities(btc, D("0.003"), 3, D("95000")) == [(2, D("0.003"))]


def test_trailing_remainder_below_the_minimum_joins_the_previous_slice(
    symbol_rules: dict[str, SymbolRules],
) -> None:
    btc = symbol_rules["BTCUSDT"]
    # 0.005 in 2 slices: 0.002 then 0.003 (both >= 100 USDT at 95,000): no merge.
    assert twap_quantities(btc, D("0.005"), 2, D("95000")) == [(1, D("0.002")), (2, D("0.003"))]
    # 0.003 in 2 at 60,000: 0.001 (60) merges into 0.002 -> one slice at slice 2's time.
    assert twap_quantities(btc, D("0.003"), 2, D("60000")) == [(2, D("0.003"))]


def test_plan_times_numbers_and_round_trip(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    plan = plan_children(btc, D("0.05"), D("95000"), Twap(slices=5, interval_s=D("0.5")), 1000.0)
    assert [c.number for c in plan.children] == [1, 2, 3, 4, 5]
    assert [c.due_s for c in plan.children] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert plan.total == D("0.05") and plan.twap
    assert Plan.from_json(plan.to_json()) == plan


def test_twap_slices_above_max_qty_are_split_and_numbered_in_order(
    symbol_rules: dict[str, SymbolRules],
) -> None:
    btc = symbol_rules["BTCUSDT"]  # MARKET_LOT_SIZE maxQty 120
    plan = plan_children(btc, D("300"), D("95000"), Twap(slices=2, interval_s=D(1)), 0.0)
    assert [(c.number, c.quantity, c.due_s) for c in plan.children] == [
        (1, D("75"), 0.0),
        (2, D("75"), 0.0),
        (3, D("75"), 1.0),
        (4, D("75"), 1.0),
    ]
    plain = plan_children(btc, D("240"), D("95000"), None, 0.0)
    assert [(c.number, c.quantity, c.due_s) for c in plain.children] == [
        (1, D("120"), 0.0),
        (2, D("120"), 0.0),
    ]


def test_more_than_99_children_is_refused_with_the_numbers(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    with pytest.raises(IntentRejected) as err:
        plan_children(btc, D("12000.001"), D("95000"), None, 0.0)
    assert err.value.code == "QTY_ABOVE_MAX"
    assert "needs 101 orders" in err.value.message and "maxQty 120" in err.value.message


def test_child_ids_fit_binance_and_map_back_to_their_intent() -> None:
    single = client_order_id("intent-1", "entry")
    for n in (1, 9, 10, 99):
        child = client_order_id("intent-1", "entry", n)
        assert len(child) <= 36
        assert role_of(child) == "entry"
        assert intent_digest(child) == intent_digest(single)
        assert not is_own_protective(child)
    assert role_of(client_order_id("intent-1", "close", 2)) == "close"
    assert client_order_id("intent-1", "entry", 1) != client_order_id("intent-1", "entry", 11)
    with pytest.raises(ValueError):
        client_order_id("intent-1", "entry", 100)
