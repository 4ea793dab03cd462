"""A take-profit ladder's quantities and triggers (pure): LOT_SIZE steps, the remainder on the last
level, a level below minQty merged into the next, a partial close keeping the proportions."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantum_exec.contracts.stops import TakeProfitLevel
from quantum_exec.core.rules import SymbolRules
from quantum_exec.execution.stops.ladder import Rung, plan_ladder, shrink, shrink_ladders, split_sizes

D = Decimal
# minQty three steps: levels below it are common.
COARSE = SymbolRules(
    "XUSDT", "TRADING", "PERPETUAL", "X", "USDT", "USDT", D("0.1"), D("0.1"), D(10**6),
    D("0.003"), D(10**6), D("0.001"), D("0.003"), D(10**6), D("0.001"), D(0),
)  # fmt: skip


@pytest.fixture
def btc(symbol_rules: dict[str, SymbolRules]) -> SymbolRules:
    return symbol_rules["BTCUSDT"]


def test_sizes_are_stepped_and_the_remainder_goes_on_the_last(btc: SymbolRules) -> None:
    assert btc.market_step_size == D("0.001")
    assert split_sizes(btc, D("0.010"), [D(40), D(40), D(20)]) == [
        (0, D("0.004")),
        (1, D("0.004")),
        (2, D("0.002")),
    ]
    # 0.007 x 40 % = 0.0028 -> 0.002 twice; the last closes what is left: 0.003.
    assert split_sizes(btc, D("0.007"), [D(40), D(40), D(20)]) == [
        (0, D("0.002")),
        (1, D("0.002")),
        (2, D("0.003")),
    ]


def test_a_ladder_under_100_percent_leaves_the_rest_to_the_stop(btc: SymbolRules) -> None:
    sizes = split_sizes(btc, D("0.010"), [D(30), D(30)])
    assert sizes == [(0, D("0.003")), (1, D("0.003"))]


def test_a_level_below_min_qty_merges_into_the_next(btc: SymbolRules) -> None:
    # 0.004 x 10 % = 0.0004 -> 0 (below minQty 0.001): merged into level 2 (0.0016 -> 0.001); the
    # last closes the rest.
    assert split_sizes(btc, D("0.004"), [D(10), D(40), D(50)]) == [(1, D("0.001")), (2, D("0.003"))]
    # 0.02 x 4 % = 0.0008 -> 0, 0.02 x 4 % again: 0 + 0 carried; level 3 takes the rest.
    assert split_sizes(btc, D("0.020"), [D(4), D(4), D(92)]) == [(2, D("0.020"))]
    # The last level too small (minQty 0.003 here): merged into the one before it.
    assert split_sizes(COARSE, D("0.020"), [D(90), D(10)]) == [(0, D("0.020"))]


@given(
    total=st.integers(min_value=1, max_value=10_000),
    pcts=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=5).filter(
        lambda p: sum(p) <= 100
    ),
)
def test_levels_never_exceed_the_position_and_close_all_of_it_at_100(total: int, pcts: list[int]) -> None:
    rules = COARSE
    qty = D(total) * D("0.001")
    sizes = split_sizes(rules, qty, [D(p) for p in pcts])
    got = sum((q for _, q in sizes), D(0))
    assert got <= qty
    assert all(q % rules.market_step_size == 0 and q > 0 for _, q in sizes)
    if sum(pcts) == 100:
        assert got == qty
    if qty >= rules.market_min_qty and sizes:
        assert all(q >= rules.market_min_qty for _, q in sizes) or len(sizes) == 1


def test_plan_ladder_triggers_from_the_entry_rounded_to_the_safe_side(btc: SymbolRules) -> None:
    levels = [
        TakeProfitLevel(pct=D(1), size_pct=D(40)),
        TakeProfitLevel(price=D("105000.07"), size_pct=D(60)),
    ]
    long = plan_ladder(btc, levels, D("0.010"), long=True, entry=D("100000.05"))
    # A long's TP rounds down (it triggers earlier): 101000.0505 -> 101000.0; 105000.07 -> 105000.0.
    assert long == [Rung(1, D("101000.0"), D("0.004")), Rung(2, D("105000.0"), D("0.006"))]
    short = plan_ladder(btc, levels[:1], D("0.010"), long=False, entry=D("100000.05"))
    assert short == [Rung(1, D("99000.1"), D("0.004"))]  # 99000.0495 rounds up for a short


def test_shrink_keeps_the_levels_in_proportion(btc: SymbolRules) -> None:
    rungs = [Rung(1, D(101), D("0.004")), Rung(2, D(102), D("0.004")), Rung(3, D(103), D("0.002"))]
    assert shrink(rungs, D("0.007"), btc) == [
        dataclasses.replace(rungs[0], quantity=D("0.002")),
        dataclasses.replace(rungs[1], quantity=D("0.002")),
        dataclasses.replace(rungs[2], quantity=D("0.003")),
    ]
    assert sum(r.quantity for r in shrink(rungs, D("0.007"), btc)) == D("0.007")
    # Levels that held less than the position keep what they held.
    assert shrink(rungs[:2], D("0.009"), btc) == rungs[:2]
    assert shrink(rungs, D(0), btc) == []


def test_a_share_of_a_whole_number_of_steps_is_not_floored_a_step_below(btc: SymbolRules) -> None:
    """Found trying it as a user: 0.004 and 0.002 left, 50 % closed: 2:1 stays 0.002 and 0.001 (a
    rounded percentage gave 0.0019999..., floored to 0.001, and the last level took 0.002)."""
    rungs = [Rung(2, D(102), D("0.004")), Rung(3, D(103), D("0.002"))]
    assert [r.quantity for r in shrink(rungs, D("0.003"), btc)] == [D("0.002"), D("0.001")]
    assert [dict(x) for x in [shrink_ladders([[D("0.004"), D("0.002")]], D("0.003"), btc)[0]]] == [
        {0: D("0.002"), 1: D("0.001")}
    ]


def test_a_pyramids_ladders_shrink_each_with_its_share(btc: SymbolRules) -> None:
    # Two ladders of 0.006 and 0.004 (two levels of 50 % each), 0.007 left: 0.004 and 0.003.
    ladders = [[D("0.003"), D("0.003")], [D("0.002"), D("0.002")]]
    got = shrink_ladders(ladders, D("0.007"), btc)
    assert got == [{0: D("0.002"), 1: D("0.002")}, {0: D("0.001"), 1: D("0.002")}]
    assert sum(q for kept in got for q in kept.values()) == D("0.007")
    # Levels of equal number and size in both ladders never collapse into one.
    same = shrink_ladders([[D("0.002")], [D("0.002")]], D("0.003"), btc)
    assert sum(q for kept in same for q in kept.values()) == D("0.003")
    # More left than they held: each keeps what it held.
    assert shrink_ladders(ladders, D("0.1"), btc) == [dict(enumerate(ladder)) for ladder in ladders]


def test_ladder_level_ids_are_ours_alternate_and_are_not_the_stops_sibling() -> None:
    from quantum_exec.account.roles import leg_ids, replacement_of, sibling_of
    from quantum_exec.core.ids import client_order_id, is_own_protective, role_of, tp_level_id, tp_level_of

    key = "ladder-1"
    levels = [tp_level_id(key, n) for n in range(1, 6)]
    single, stop = client_order_id(key, "tp"), client_order_id(key, "sl")
    assert len(set(levels) | {single}) == 6 and all(len(i) <= 36 for i in levels)
    for n, level in enumerate(levels, start=1):
        other = replacement_of(level)
        assert other != level and replacement_of(other) == level and other not in levels
        assert is_own_protective(level) and is_own_protective(other)
        assert role_of(level) == role_of(other) == "tp"
        assert tp_level_of(level) == tp_level_of(other) == n
        assert leg_ids(other) == (level, other)
        # A level goes when the stop filled; the stop's sibling is the single target only.
        assert sibling_of(level) == sibling_of(other) == stop
    assert sibling_of(stop) == sibling_of(replacement_of(stop)) == single
    assert tp_level_of(single) is None and tp_level_of(replacement_of(single)) is None
    assert replacement_of(single) == single.replace("qxt-", "qxt1-")
    with pytest.raises(ValueError, match=r"outside 1\.\.5"):
        tp_level_id(key, 6)


def test_close_quantity_is_the_part_asked_stepped_and_never_more_than_held(btc: SymbolRules) -> None:
    from quantum_exec.contracts import parse_intent
    from quantum_exec.core.errors import IntentRejected
    from quantum_exec.execution.stops.partial import close_quantity

    def close(**fields: object) -> Decimal:
        return close_quantity(btc, parse_intent({"symbol": "BTCUSDT", "side": "CLOSE", **fields}), D("0.010"))

    assert close() == D("0.010")
    assert close(close_pct=30) == D("0.003")
    assert close(close_pct="33.3") == D("0.003")  # 0.00333 floored to the step
    assert close(close_pct=100) == D("0.010")
    assert close(quantity="0.004") == D("0.004")
    assert close(quantity="1") == D("0.010")  # never more than the position
    with pytest.raises(IntentRejected, match=r"close_pct 5 of 0\.01 gives 0, below minQty 0\.001"):
        close(close_pct=5)


def test_break_even_is_the_entry_plus_twice_the_fee_per_unit_rounded_safe(btc: SymbolRules) -> None:
    from quantum_exec.execution.stops.break_even import break_even_price

    # 0.010 at 100000.0 paid 0.4 USDT: 40 per unit, twice: 100080.0 for a long, 99920.0 for a short.
    assert break_even_price(D("100000.0"), D("0.010"), D("0.4"), btc, long=True) == D("100080.0")
    assert break_even_price(D("100000.0"), D("0.010"), D("0.4"), btc, long=False) == D("99920.0")
    # 2 x 0.381 / 0.010 = 76.2: a long's 100076.25 rounds up, a short's 99923.75 down.
    assert break_even_price(D("100000.05"), D("0.010"), D("0.381"), btc, long=True) == D("100076.3")
    assert break_even_price(D("100000.05"), D("0.010"), D("0.381"), btc, long=False) == D("99923.8")


def test_a_ladder_planning_to_nothing_is_refused_naming_the_levels_and_min_qty(btc: SymbolRules) -> None:
    from quantum_exec.core.errors import IntentRejected, ReasonCode
    from quantum_exec.execution.stops.ladder import check_ladder_sizes, ladder_too_small

    only = [TakeProfitLevel(pct=D(2), size_pct=D(5))]
    refusal = ladder_too_small(btc, only, D("0.010"))  # 0.0005: below 0.001, nothing to merge into
    assert refusal is not None and refusal.code == ReasonCode.QTY_BELOW_MIN
    assert "minQty 0.001" in refusal.message and "level 1 5 %" in refusal.message
    with pytest.raises(IntentRejected):
        check_ladder_sizes(btc, only, D("0.010"))
    # A level below minQty beside a larger one merges into it: nothing refused, nothing lost.
    merged = [TakeProfitLevel(pct=D(1), size_pct=D(5)), TakeProfitLevel(pct=D(2), size_pct=D(50))]
    assert ladder_too_small(btc, merged, D("0.010")) is None
    assert split_sizes(btc, D("0.010"), [D(5), D(50)]) == [(1, D("0.005"))]
