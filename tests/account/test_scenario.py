"""One protected trade through the stream: entry in partial fills, legs armed, TP fills, OCO, events."""

from __future__ import annotations

from decimal import Decimal

from account.samples import algo_message, fill_message
from quantum_exec.account.events import parse_event
from quantum_exec.account.oco import Cancel, plan_oco
from quantum_exec.account.positions import PositionEvent, PositionKind, PositionReason, position_event
from quantum_exec.account.state import AccountState
from quantum_exec.core.ids import client_order_id

D = Decimal
KEY = "intent-7"
ENTRY, SL, TP = (client_order_id(KEY, role) for role in ("entry", "sl", "tp"))  # type: ignore[arg-type]


def test_protected_trade_end_to_end() -> None:
    state = AccountState()
    state.resync([], [])
    messages = [
        fill_message(
            client_order_id=ENTRY,
            order_id=10,
            trade_id=1,
            qty="0.006",
            price="60000",
            cum_qty="0.006",
            status="PARTIALLY_FILLED",
            commission="0.144",
            time_ms=1000,
        ),
        fill_message(
            client_order_id=ENTRY,
            order_id=10,
            trade_id=2,
            qty="0.004",
            price="60050",
            cum_qty="0.010",
            commission="0.09612",
            time_ms=1000,
        ),
        algo_message(client_algo_id=SL, qty="0.010", trigger="58000", time_ms=1001),
        algo_message(
            client_algo_id=TP, qty="0.010", order_type="TAKE_PROFIT_MARKET", trigger="62000", time_ms=1001
        ),
        algo_message(
            client_algo_id=TP,
            status="TRIGGERED",
            actual_order_id="20",
            order_type="TAKE_PROFIT_MARKET",
            time_ms=2000,
        ),
        fill_message(
            client_order_id="triggered-20",
            side="SELL",
            order_id=20,
            trade_id=3,
            qty="0.010",
            price="62010",
            realized="19.9",
            commission="0.24804",
            reduce_only=True,
            time_ms=2001,
        ),
        fill_message(
            client_order_id="triggered-20",
            side="SELL",
            order_id=20,
            trade_id=3,
            qty="0.010",
            price="62010",
            realized="19.9",
            commission="0.24804",
            reduce_only=True,
            time_ms=2001,
        ),
        algo_message(
            client_algo_id=TP,
            status="FINISHED",
            executed="0.010",
            actual_order_id="20",
            order_type="TAKE_PROFIT_MARKET",
            time_ms=2002,
        ),
    ]
    events: list[PositionEvent] = []
    for raw in messages:
        event = parse_event(raw)
        assert event is not None
        applied = state.apply(event)
        if applied.fill is not None and applied.before is not None and applied.after is not None:
            algo = state.algo_for_order(applied.fill.order_id)
            made = position_event(
                applied.fill,
                applied.before,
                applied.after,
                intent_id=KEY,
                algo_client_id=algo.client_algo_id if algo else None,
            )
            assert made is not None
            events.append(made)

    assert [(e.kind, e.reason, e.position_amount) for e in events] == [
        (PositionKind.OPENED, PositionReason.ENTRY, D("0.006")),
        (PositionKind.INCREASED, PositionReason.ENTRY, D("0.010")),
        (PositionKind.CLOSED, PositionReason.TAKE_PROFIT, D("0.000")),
    ]
    assert events[1].entry_price == D("60020")  # (0.006*60000 + 0.004*60050) / 0.010
    assert events[2].realized_pnl == D("19.9")
    entry = state.fills_of("BTCUSDT", 10)
    assert entry is not None
    assert (entry.quantity, entry.avg_price, entry.commission) == (D("0.010"), D("60020"), D("0.24012"))
    exit_fills = state.fills_of("BTCUSDT", 20)
    assert exit_fills is not None and exit_fills.trade_ids == (3,)  # the replay counted once
    assert plan_oco(state, "BTCUSDT") == [Cancel("BTCUSDT", SL, "sibling leg filled")]
