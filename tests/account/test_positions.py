"""Position events from fills: kinds, reasons, exact chaining of partial fills, JSON and schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from account.samples import fill_message
from quantum_exec.account.events import OrderTradeUpdate, parse_event
from quantum_exec.account.positions import (
    PositionEvent,
    PositionKind,
    PositionReason,
    PositionView,
    apply_fill,
    dumps_position_event,
    event_id,
    kind_of,
    position_event,
    position_event_json_schema,
    reason_of,
)
from quantum_exec.core.ids import client_order_id

D = Decimal
KEY = "intent-42"


def fill(**kwargs: object) -> OrderTradeUpdate:
    event = parse_event(fill_message(**kwargs))  # type: ignore[arg-type]
    assert isinstance(event, OrderTradeUpdate)
    return event


def flat() -> PositionView:
    return PositionView("BTCUSDT")


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ("0", "1", PositionKind.OPENED),
        ("0", "-1", PositionKind.OPENED),
        ("1", "1.5", PositionKind.INCREASED),
        ("-1", "-1.5", PositionKind.INCREASED),
        ("1", "0.4", PositionKind.REDUCED),
        ("-1", "-0.4", PositionKind.REDUCED),
        ("1", "0", PositionKind.CLOSED),
        ("-1", "0", PositionKind.CLOSED),
        ("1", "-0.5", PositionKind.FLIPPED),
        ("-1", "2", PositionKind.FLIPPED),
        ("1", "1", None),
    ],
)
def test_kind_of(before: str, after: str, kind: PositionKind | None) -> None:
    assert kind_of(D(before), D(after)) == kind


def test_open_then_increase_averages_entry() -> None:
    p1 = apply_fill(flat(), fill(qty="0.010", price="60000"))
    assert p1 == PositionView("BTCUSDT", D("0.010"), D("60000"))
    p2 = apply_fill(p1, fill(qty="0.030", price="60400", trade_id=2))
    assert p2.amount == D("0.040")
    assert p2.entry_price == D("60300")  # (0.01*60000 + 0.03*60400) / 0.04


def test_reduce_keeps_entry_and_close_zeroes_it() -> None:
    long = PositionView("BTCUSDT", D("0.040"), D("60300"))
    reduced = apply_fill(long, fill(side="SELL", qty="0.015", price="61000"))
    assert reduced == PositionView("BTCUSDT", D("0.025"), D("60300"))
    closed = apply_fill(reduced, fill(side="SELL", qty="0.025", price="61000", trade_id=2))
    assert closed == PositionView("BTCUSDT", D("0.000"), D(0))
    assert closed.is_flat


def test_flip_takes_the_fill_price() -> None:
    long = PositionView("BTCUSDT", D("0.010"), D("60000"))
    flipped = apply_fill(long, fill(side="SELL", qty="0.025", price="59000"))
    assert flipped == PositionView("BTCUSDT", D("-0.015"), D("59000"))


def test_non_fill_changes_nothing() -> None:
    event = parse_event(fill_message())
    assert isinstance(event, OrderTradeUpdate)
    new = OrderTradeUpdate(**{**{f: getattr(event, f) for f in event.__slots__}, "last_qty": D(0)})
    pos = PositionView("BTCUSDT", D(1), D(2))
    assert apply_fill(pos, new) is pos


def test_a_liquidation_fill_moves_the_position() -> None:
    # Binance sends the fill of a liquidation order as x=CALCULATED ("Liquidation Execution"), not TRADE.
    message = fill_message(side="SELL", client_order_id="autoclose-1", original_type="LIQUIDATION")
    message["o"]["x"] = "CALCULATED"
    event = parse_event(message)
    assert isinstance(event, OrderTradeUpdate) and event.is_fill
    assert apply_fill(PositionView("BTCUSDT", D("0.010"), D("60000")), event).is_flat


def test_partial_fills_of_one_order_chain_exactly() -> None:
    entry_id = client_order_id(KEY, "entry")
    parts = [("0.004", "60000", "0.004"), ("0.005", "60010", "0.009"), ("0.001", "60020", "0.010")]
    position = flat()
    events: list[PositionEvent] = []
    for trade_id, (qty, price, cum) in enumerate(parts, start=1):
        f = fill(
            client_order_id=entry_id, qty=qty, price=price, cum_qty=cum, trade_id=trade_id, commission="0.1"
        )
        after = apply_fill(position, f)
        event = position_event(f, position, after, intent_id=KEY)
        assert event is not None
        events.append(event)
        position = after
    assert [e.kind for e in events] == [PositionKind.OPENED, PositionKind.INCREASED, PositionKind.INCREASED]
    assert [e.position_amount for e in events] == [D("0.004"), D("0.009"), D("0.010")]
    assert sum((e.quantity for e in events), D(0)) == D("0.010")
    assert sum((e.commission for e in events), D(0)) == D("0.3")
    # (0.004*60000 + 0.005*60010 + 0.001*60020) / 0.010
    assert events[-1].entry_price == D("60007")
    assert [e.event_id for e in events] == [f"BTCUSDT:1001:{i}" for i in (1, 2, 3)]
    assert {e.reason for e in events} == {PositionReason.ENTRY}
    assert {e.intent_id for e in events} == {KEY}


def test_event_fields_for_a_stop_loss_close() -> None:
    before = PositionView("BTCUSDT", D("0.010"), D("60000"))
    f = fill(
        client_order_id=client_order_id(KEY, "sl"),
        side="SELL",
        qty="0.010",
        price="58000",
        realized="-20",
        commission="0.232",
        order_id=555,
        trade_id=9,
        time_ms=1_700_000_000_123,
    )
    event = position_event(f, before, apply_fill(before, f), intent_id=KEY)
    assert event == PositionEvent(
        event_id="BTCUSDT:555:9",
        symbol="BTCUSDT",
        kind=PositionKind.CLOSED,
        reason=PositionReason.STOP_LOSS,
        position_amount=D("0.000"),
        entry_price=D(0),
        price=D("58000"),
        quantity=D("0.010"),
        realized_pnl=D("-20"),
        commission=D("0.232"),
        commission_asset="USDT",
        intent_id=KEY,
        order_id=555,
        time=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
    )


def test_event_id_is_deterministic() -> None:
    f = fill(order_id=7, trade_id=8)
    a = position_event(f, flat(), apply_fill(flat(), f))
    b = position_event(f, flat(), apply_fill(flat(), f))
    assert a is not None and b is not None
    assert a.event_id == b.event_id == event_id("BTCUSDT", 7, 8) == "BTCUSDT:7:8"


def test_no_event_when_nothing_moved() -> None:
    f = fill()
    assert position_event(f, flat(), flat()) is None


@pytest.mark.parametrize(
    ("client_id", "original_type", "reduce_only", "algo_id", "reason"),
    [
        (client_order_id(KEY, "entry"), "MARKET", False, None, PositionReason.ENTRY),
        (client_order_id(KEY, "entry"), "MARKET", True, None, PositionReason.REDUCE_INTENT),
        (client_order_id(KEY, "sl"), "STOP_MARKET", True, None, PositionReason.STOP_LOSS),
        (client_order_id(KEY, "tp"), "TAKE_PROFIT_MARKET", True, None, PositionReason.TAKE_PROFIT),
        (client_order_id(KEY, "close"), "MARKET", True, None, PositionReason.CLOSE_INTENT),
        (client_order_id(KEY, "flatten"), "MARKET", True, None, PositionReason.EMERGENCY),
        ("autoclose-1568879465650", "LIQUIDATION", False, None, PositionReason.LIQUIDATION),
        ("weird", "LIQUIDATION", False, None, PositionReason.LIQUIDATION),
        ("adl_autoclose", "MARKET", False, None, PositionReason.ADL),
        ("settlement_autoclose-BTCUSDT", "MARKET", False, None, PositionReason.EXTERNAL),
        ("web_abc", "MARKET", False, None, PositionReason.EXTERNAL),
        ("triggered-123", "STOP_MARKET", True, client_order_id(KEY, "sl"), PositionReason.STOP_LOSS),
        ("triggered-123", "STOP_MARKET", True, "web_algo", PositionReason.EXTERNAL),
    ],
)
def test_reason_of(
    client_id: str, original_type: str, reduce_only: bool, algo_id: str | None, reason: PositionReason
) -> None:
    f = fill(client_order_id=client_id, original_type=original_type, reduce_only=reduce_only)
    assert reason_of(f, algo_id) is reason


def test_json_is_exact_and_round_trips() -> None:
    f = fill(qty="0.0000001", price="60000.10", commission="1E-8", realized="0")
    event = position_event(f, flat(), apply_fill(flat(), f))
    assert event is not None
    raw = dumps_position_event(event)
    assert b'"quantity":0.0000001' in raw
    assert b'"commission":0.00000001' in raw
    assert b'"price":60000.10' in raw
    assert b'"kind":"opened"' in raw
    again = PositionEvent.model_validate(json.loads(raw, parse_float=Decimal))
    assert again == event


def test_schema_lists_the_design_fields() -> None:
    schema = position_event_json_schema()
    assert schema["$id"] == "urn:quantum:position.event"
    expected = {
        "event_id", "symbol", "kind", "reason", "position_amount", "entry_price", "price", "quantity",
        "realized_pnl", "commission", "commission_asset", "intent_id", "order_id", "time",
    }  # fmt: skip
    assert set(schema["properties"]) == expected
    assert schema["properties"]["price"]["type"] == "number"
