"""Reconciliation plans from REST snapshots and our records, one rule per test."""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.account.oco import Cancel
from quantum_exec.account.positions import PositionView
from quantum_exec.account.reconcile import IntentRecord, Protect, RecordFlat, ReportExternal, plan_reconcile
from quantum_exec.account.views import AlgoView
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import AlgoOrder, OrderSide

D = Decimal
SL, TP = client_order_id("k1", "sl"), client_order_id("k1", "tp")


def position(amount: str, symbol: str = "BTCUSDT", entry: str = "60000") -> PositionView:
    return PositionView(symbol, D(amount), D(entry) if D(amount) else D(0))


def algo(
    client_algo_id: str,
    *,
    qty: str = "0.010",
    side: str = "SELL",
    status: str = "NEW",
    order_type: str = "STOP_MARKET",
    close_position: bool = False,
    symbol: str = "BTCUSDT",
) -> AlgoView:
    return AlgoView.from_rest(
        AlgoOrder.parse(
            {
                "algoId": 1,
                "clientAlgoId": client_algo_id,
                "symbol": symbol,
                "side": side,
                "orderType": order_type,
                "algoStatus": status,
                "triggerPrice": "58000",
                "quantity": qty,
                "closePosition": close_position,
                "reduceOnly": not close_position,
            }
        )
    )


LONG = IntentRecord(
    "k1", "BTCUSDT", long=True, quantity=D("0.010"), stop_loss=D("58000"), take_profit=D("62000")
)
BOTH_LEGS = [algo(SL), algo(TP, order_type="TAKE_PROFIT_MARKET")]


def protect(role: str, qty: str, replaces: str | None = None) -> Protect:
    return Protect(
        symbol="BTCUSDT",
        intent_key="k1",
        role=role,  # type: ignore[arg-type]
        client_algo_id=SL if role == "sl" else TP,
        side=OrderSide.SELL,
        order_type="STOP_MARKET" if role == "sl" else "TAKE_PROFIT_MARKET",
        trigger_price=D("58000") if role == "sl" else D("62000"),
        quantity=D(qty),
        replaces=replaces,
    )


def test_consistent_account_needs_nothing() -> None:
    assert plan_reconcile([position("0.010")], BOTH_LEGS, [LONG]) == []


def test_nothing_anywhere_needs_nothing() -> None:
    assert plan_reconcile([position("0")], [], []) == []


def test_legs_on_a_flat_symbol_are_cancelled_and_the_record_closed() -> None:
    plan = plan_reconcile([position("0")], BOTH_LEGS, [LONG])
    assert plan == [
        RecordFlat("BTCUSDT", "k1"),
        Cancel("BTCUSDT", SL, "position flat"),
        Cancel("BTCUSDT", TP, "position flat"),
    ]


def test_legs_of_an_unknown_intent_on_a_flat_symbol_are_cancelled() -> None:
    orphan = client_order_id("forgotten", "tp")
    assert plan_reconcile([], [algo(orphan)], []) == [Cancel("BTCUSDT", orphan, "position flat")]


def test_missing_stop_is_placed_with_the_recorded_trigger() -> None:
    plan = plan_reconcile([position("0.010")], [algo(TP, order_type="TAKE_PROFIT_MARKET")], [LONG])
    assert plan == [protect("sl", "0.010")]


def test_missing_both_legs_of_a_short() -> None:
    short = IntentRecord(
        "k1", "BTCUSDT", long=False, quantity=D("0.5"), stop_loss=D("62000"), take_profit=D("58000")
    )
    plan = plan_reconcile([position("-0.5")], [], [short])
    assert [
        (a.role, a.side, a.order_type, a.trigger_price, a.quantity) for a in plan if isinstance(a, Protect)
    ] == [
        ("sl", OrderSide.BUY, "STOP_MARKET", D("62000"), D("0.5")),
        ("tp", OrderSide.BUY, "TAKE_PROFIT_MARKET", D("58000"), D("0.5")),
    ]
    assert len(plan) == 2


def test_too_small_leg_is_replaced() -> None:
    legs = [algo(SL, qty="0.004"), algo(TP, order_type="TAKE_PROFIT_MARKET")]
    assert plan_reconcile([position("0.010")], legs, [LONG]) == [protect("sl", "0.010", replaces=SL)]


def test_position_smaller_than_recorded_needs_only_what_is_left() -> None:
    legs = [algo(SL, qty="0.004"), algo(TP, qty="0.004", order_type="TAKE_PROFIT_MARKET")]
    assert plan_reconcile([position("0.004")], legs, [LONG]) == []


def test_close_position_leg_always_covers() -> None:
    legs = [algo(SL, qty="0", close_position=True), algo(TP, order_type="TAKE_PROFIT_MARKET")]
    assert plan_reconcile([position("0.010")], legs, [LONG]) == []


def test_leg_in_flight_is_not_replaced() -> None:
    legs = [algo(SL, qty="0.004", status="TRIGGERING"), algo(TP, order_type="TAKE_PROFIT_MARKET")]
    assert plan_reconcile([position("0.010")], legs, [LONG]) == []


def test_record_without_triggers_asks_for_no_protection() -> None:
    bare = IntentRecord("k1", "BTCUSDT", long=True, quantity=D("0.010"))
    assert plan_reconcile([position("0.010")], [], [bare]) == []


def test_external_position_is_reported_and_untouched() -> None:
    foreign = algo("web_stop", qty="1")
    plan = plan_reconcile([position("-1.5", symbol="ETHUSDT", entry="3000.25")], [foreign], [])
    assert plan == [ReportExternal("ETHUSDT", D("-1.5"), D("3000.25"), D(0))]


def test_part_of_a_position_not_ours_is_reported() -> None:
    plan = plan_reconcile([position("0.015")], BOTH_LEGS, [LONG])
    assert plan == [ReportExternal("BTCUSDT", D("0.015"), D("60000"), D("0.010"))]


def test_flipped_position_closes_the_record_and_cancels_wrong_side_legs() -> None:
    plan = plan_reconcile([position("-0.010")], BOTH_LEGS, [LONG])
    reason = "side cannot reduce the position"
    assert plan == [
        RecordFlat("BTCUSDT", "k1"),
        ReportExternal("BTCUSDT", D("-0.010"), D("60000"), D(0)),
        Cancel("BTCUSDT", SL, reason),
        Cancel("BTCUSDT", TP, reason),
    ]


def test_two_intents_on_one_symbol() -> None:
    second = IntentRecord("k2", "BTCUSDT", long=True, quantity=D("0.005"), stop_loss=D("57000"))
    legs = [*BOTH_LEGS, algo(client_order_id("k2", "sl"), qty="0.005")]
    assert plan_reconcile([position("0.015")], legs, [LONG, second]) == []
