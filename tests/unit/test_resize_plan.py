"""A partial CLOSE's ladder resize plan (pure): planned once from the whole ladder, kept exactly
through its JSON record, so an attempt resumed after a kill replays the first attempt's sizes
instead of planning again from levels already half replaced."""

from __future__ import annotations

import itertools
from decimal import Decimal

from quantum_exec.contracts.fields import INTENT_ID_RE
from quantum_exec.core.ids import replacement_of, tp_level_id
from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, OrderSide, OrderType
from quantum_exec.execution.stops.resize_plan import ResizePlan, plan_key, plan_resize

D = Decimal
_ids = itertools.count(1)
COARSE = SymbolRules(
    "XUSDT", "TRADING", "PERPETUAL", "X", "USDT", "USDT", D("0.1"), D("0.1"), D(10**6),
    D("0.003"), D(10**6), D("0.001"), D("0.003"), D(10**6), D("0.001"), D(0),
)  # fmt: skip


def _level(cid: str, quantity: str) -> AlgoOrder:
    return AlgoOrder(
        next(_ids), cid, "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, AlgoStatus.NEW,
        D(100), D(quantity), False, True, "",
    )  # fmt: skip


def test_the_plan_keeps_the_proportions_and_survives_its_record(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    ladder = [_level(tp_level_id("open", n), q) for n, q in ((1, "0.004"), (2, "0.004"), (3, "0.002"))]
    plan = plan_resize([ladder], D("0.007"), btc)
    assert [(s.client_algo_id, s.was, s.quantity) for s in plan.steps] == [
        (tp_level_id("open", 1), D("0.004"), D("0.002")),
        (tp_level_id("open", 2), D("0.004"), D("0.002")),
        (tp_level_id("open", 3), D("0.002"), D("0.003")),
    ]
    assert ResizePlan.from_json(plan.to_json()) == plan
    # Why it is saved: planned again once level 1 stands only as its new 0.002, the proportions
    # would come out wrong (0.001/0.003/0.003, the regression the kill test guards against).
    half = [_level(replacement_of(ladder[0].client_algo_id), "0.002"), *ladder[1:]]
    again = [s.quantity for s in plan_resize([half], D("0.007"), btc).steps]
    assert again != [s.quantity for s in plan.steps]


def test_a_merged_level_is_recorded_as_cancelled() -> None:
    ladder = [_level(tp_level_id("open", n), "0.004") for n in (1, 2, 3)]
    plan = plan_resize([ladder], D("0.006"), COARSE)
    assert [s.quantity for s in plan.steps].count(None) >= 1
    assert sum(s.quantity or 0 for s in plan.steps) == D("0.006")
    assert ResizePlan.from_json(plan.to_json()) == plan


def test_the_plan_key_is_never_an_intent_key() -> None:
    key = plan_key("pk-close")
    assert key.startswith("pk-close")
    assert INTENT_ID_RE.fullmatch(key) is None  # nor a stream id (digits and a dash)
