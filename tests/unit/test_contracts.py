"""Contracts: stream codec, intent validation, result round trip, schemas."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantum_exec.contracts import (
    META_MAX_BYTES,
    META_TRUNCATED_KEY,
    CloseFill,
    ErrorSource,
    ExecutionResult,
    PayloadError,
    ProtectionState,
    ProtectiveOrder,
    ResultError,
    ResultStatus,
    Side,
    TradeIntent,
    decode_entry,
    decode_result_fields,
    encode_intent_fields,
    encode_result_fields,
    intent_json_schema,
    intent_key,
    parse_intent,
    result_json_schema,
)
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.settings import ExchangeEnv, MarginType

PRODUCTION_PAYLOAD = (
    b'{"symbol": "NEARUSDT", "side": "BUY", "confidence": 0.72, "entry_price": 1.465, '
    b'"stop_loss": 1.4357, "take_profit": 1.4943000000000002, "position_size_usd": 200.0, '
    b'"leverage": 1, "timestamp": "2025-12-24T04:32:14.062679", "model": "ensemble", '
    b'"reason": "AI signal", "atr_value": 0.02}'
)
ENVELOPE = {
    b"event_type": b"trade.intent",
    b"payload": PRODUCTION_PAYLOAD,
    b"timestamp": b"2025-12-24T04:32:14.100000Z",
    b"source": b"ai-engine",
}
RESULT_LIMIT_BYTES = 16 * 1024


def intent_of(**fields: Any) -> TradeIntent:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 200}
    base.update(fields)
    return parse_intent({k: v for k, v in base.items() if v is not ...})


def rejection(payload: dict[str, Any]) -> IntentRejected:
    with pytest.raises(IntentRejected) as caught:
        parse_intent(payload)
    return caught.value


# ---------------------------------------------------------------- decoding stream entries


def test_production_payload_decodes_exactly() -> None:
    intent = parse_intent(decode_entry(ENVELOPE))
    assert intent.symbol == "NEARUSDT"
    assert intent.side is Side.BUY
    assert intent.take_profit == Decimal("1.4943000000000002")
    assert str(intent.take_profit) == "1.4943000000000002"
    assert str(intent.stop_loss) == "1.4357"
    assert str(intent.entry_price) == "1.465"
    assert intent.position_size_usd == Decimal(200)
    assert intent.leverage == 1
    assert intent.quantity is None
    assert intent.timestamp == datetime(2025, 12, 24, 4, 32, 14, 62679, tzinfo=UTC)
    assert intent.meta == {
        "confidence": Decimal("0.72"),
        "model": "ensemble",
        "reason": "AI signal",
        "atr_value": Decimal("0.02"),
    }
    assert intent.intent_id is None
    assert intent.reduce_only is False


def test_floats_become_decimal_from_shortest_repr_at_any_depth() -> None:
    obj = decode_entry({"data": b'{"a": 0.1, "b": [1.5, {"c": 2.675}], "d": 3}'})
    assert obj == {"a": Decimal("0.1"), "b": [Decimal("1.5"), {"c": Decimal("2.675")}], "d": 3}
    assert type(obj["d"]) is int


@pytest.mark.parametrize(
    "fields",
    [
        {"payload": PRODUCTION_PAYLOAD.decode()},
        {b"data": PRODUCTION_PAYLOAD},
        {"data": PRODUCTION_PAYLOAD.decode()},
        {b"json": PRODUCTION_PAYLOAD},
        {"json": bytearray(PRODUCTION_PAYLOAD)},
        {"json": memoryview(PRODUCTION_PAYLOAD)},
        {"event_type": "trade.intent", b"payload": PRODUCTION_PAYLOAD, "source": b"x"},
    ],
    ids=["payload-str", "data-bytes", "data-str", "json-bytes", "json-bytearray", "json-memoryview", "mixed"],
)
def test_envelope_variants(fields: dict[Any, Any]) -> None:
    intent = parse_intent(decode_entry(fields))
    assert intent.take_profit == Decimal("1.4943000000000002")


def test_payload_field_wins_over_data_and_json() -> None:
    obj = decode_entry({b"json": b'{"x": 3}', b"data": b'{"x": 2}', b"payload": b'{"x": 1}'})
    assert obj == {"x": 1}
    assert decode_entry({b"json": b'{"x": 3}', b"data": b'{"x": 2}'}) == {"x": 2}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({}, "no payload field"),
        ({b"event_type": b"trade.intent", b"body": b"{}"}, "no payload field"),
        ({b"payload": b""}, "not valid JSON"),
        ({b"payload": b"{not json"}, "not valid JSON"),
        ({b"payload": b'{"a": 1} trailing'}, "not valid JSON"),
        ({b"payload": b'{"symbol": "\xff\xfe"}'}, "UTF-8"),
        ({b"payload": b"[1, 2]"}, "array"),
        ({b"payload": b'"BUY BTCUSDT"'}, "string"),
        ({b"payload": b"null"}, "null"),
        ({b"payload": b"42"}, "number"),
        ({b"payload": b"true"}, "boolean"),
        ({b"payload": b'{"a": "\\ud800"}'}, "UTF-8"),
        ({"payload": '{"a": "\ud800"}'}, "UTF-8"),
        ({b"payload": 42}, "bytes or str"),
        ({b"payload": b'{"a": "' + b"x" * (1 << 20) + b'"}'}, "too large"),
    ],
)
def test_undecodable_entries_raise_payload_error(fields: dict[Any, Any], fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        decode_entry(fields)


def test_nan_and_infinity_are_decodable_then_rejected_as_field_errors() -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        payload = decode_entry(
            {b"payload": b'{"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": ' + literal + b"}"}
        )
        error = rejection(payload)
        assert error.code == ReasonCode.INVALID_FIELD
        assert error.message.startswith("position_size_usd: ")


def test_nan_in_meta_is_echoed_as_a_string_so_the_result_stays_json() -> None:
    payload = decode_entry(
        {
            b"payload": b'{"symbol": "BTCUSDT", "side": "CLOSE", "score": NaN, '
            b'"big": 123456789012345678901234567890}'
        }
    )
    intent = parse_intent(payload)
    result = ExecutionResult(
        symbol=intent.symbol, status=ResultStatus.REJECTED, intent_id="1-0", meta=intent.meta
    )
    text = encode_result_fields(result)["payload"]
    assert json.loads(text)["meta"] == {"score": "NaN", "big": 123456789012345678901234567890}


def test_deeply_nested_payload_decodes_and_its_meta_is_bounded() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    payload = decode_entry({b"payload": b'{"symbol": "BTCUSDT", "side": "CLOSE", "deep": ' + deep + b"}"})
    intent = parse_intent(payload)
    assert isinstance(intent.meta["deep"], str)
    result = ExecutionResult(symbol="BTCUSDT", status=ResultStatus.REJECTED, intent_id="k", meta=intent.meta)
    assert len(encode_result_fields(result)["payload"]) < RESULT_LIMIT_BYTES


def test_meta_is_bounded_whatever_the_producer_sends() -> None:
    payload: dict[str, Any] = {"symbol": "BTCUSDT", "side": "CLOSE", "note": "x" * 100_000}
    payload.update({f"k{i}": "y" * 500 for i in range(200)})
    payload["nested"] = {"list": list(range(5000))}
    payload["k" * 500] = 1
    intent = parse_intent(payload)
    assert len(intent.meta["note"]) <= 1024
    assert intent.meta[META_TRUNCATED_KEY] is True
    assert len(orjson.dumps(intent.meta, default=str)) <= META_MAX_BYTES + 64
    result = ExecutionResult(
        symbol="BTCUSDT",
        status=ResultStatus.REJECTED,
        intent_id="x" * 64,
        meta=intent.meta,
        error=ResultError(code="INVALID_FIELD", source=ErrorSource.VALIDATION, message="m" * 300),
    )
    assert len(encode_result_fields(result)["payload"]) < RESULT_LIMIT_BYTES


# ---------------------------------------------------------------- accepted variants


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"symbol": " btcusdt "}, {"symbol": "BTCUSDT"}),
        ({"symbol": "BTCUSDT_260327"}, {"symbol": "BTCUSDT_260327"}),
        ({"side": "buy"}, {"side": Side.BUY}),
        ({"side": ..., "action": "Sell"}, {"side": Side.SELL}),
        ({"side": "SELL", "action": "sell"}, {"side": Side.SELL}),
        ({"side": "long"}, {"side": Side.BUY}),
        ({"side": "SHORT"}, {"side": Side.SELL}),
        ({"side": "close", "position_size_usd": ...}, {"side": Side.CLOSE, "position_size_usd": None}),
        ({"position_size_usd": "200.50"}, {"position_size_usd": Decimal("200.50")}),
        ({"position_size_usd": 1e-7}, {"position_size_usd": Decimal("1E-7")}),
        ({"quantity": "0.015"}, {"quantity": Decimal("0.015"), "position_size_usd": Decimal(200)}),
        ({"quantity": 3, "position_size_usd": ...}, {"quantity": Decimal(3)}),
        ({"entry_price": "95234.50"}, {"entry_price": Decimal("95234.50")}),
        ({"leverage": 20}, {"leverage": 20}),
        ({"leverage": 3.0}, {"leverage": 3}),
        ({"leverage": "125"}, {"leverage": 125}),
        ({"margin_type": "isolated"}, {"margin_type": MarginType.ISOLATED}),
        ({"margin_type": "CROSS"}, {"margin_type": MarginType.CROSSED}),
        ({"margin_type": "crossed"}, {"margin_type": MarginType.CROSSED}),
        (
            {"stop_loss_pct": 1.5, "take_profit_pct": "3"},
            {"stop_loss_pct": Decimal("1.5"), "take_profit_pct": Decimal(3)},
        ),
        (
            {"stop_loss": 90000, "take_profit": "99000.5"},
            {"stop_loss": Decimal(90000), "take_profit": Decimal("99000.5")},
        ),
        ({"reduce_only": True}, {"reduce_only": True}),
        ({"reduce_only": "TRUE"}, {"reduce_only": True}),
        ({"reduce_only": "false"}, {"reduce_only": False}),
        ({"intent_id": "sig-2025.12.24:0001_a"}, {"intent_id": "sig-2025.12.24:0001_a"}),
        ({"intent_id": 12345}, {"intent_id": "12345"}),
        ({"leverage": None, "stop_loss": None, "intent_id": None}, {"leverage": None, "stop_loss": None}),
        ({"timestamp": "2025-12-24T04:32:14Z"}, {"timestamp": datetime(2025, 12, 24, 4, 32, 14, tzinfo=UTC)}),
        (
            {"timestamp": "2025-12-24T06:32:14+02:00"},
            {"timestamp": datetime(2025, 12, 24, 4, 32, 14, tzinfo=UTC)},
        ),
        ({"timestamp": "2025-12-24T04:32:14"}, {"timestamp": datetime(2025, 12, 24, 4, 32, 14, tzinfo=UTC)}),
        ({"timestamp": 1766550734062}, {"timestamp": datetime(2025, 12, 24, 4, 32, 14, 62000, tzinfo=UTC)}),
        ({"timestamp": "1766550734062"}, {"timestamp": datetime(2025, 12, 24, 4, 32, 14, 62000, tzinfo=UTC)}),
        ({"timestamp": 1766550734}, {"timestamp": datetime(2025, 12, 24, 4, 32, 14, tzinfo=UTC)}),
        ({"timestamp": 1766550734.5}, {"timestamp": datetime(2025, 12, 24, 4, 32, 14, 500000, tzinfo=UTC)}),
    ],
)
def test_accepted_values(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    intent = intent_of(**fields)
    for name, value in expected.items():
        assert getattr(intent, name) == value, name
        if isinstance(value, Decimal):
            assert str(getattr(intent, name)) == str(value), name
    assert intent.meta == {}


def test_epoch_threshold_separates_seconds_from_milliseconds() -> None:
    # 10**11 ms is 1973; 10**11 - 1 s is the year 5138: no realistic value is ambiguous.
    assert intent_of(timestamp=10**11).timestamp == datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)
    assert intent_of(timestamp=10**11 - 1).timestamp.year == 5138  # type: ignore[union-attr]


def test_quantity_and_size_are_both_kept_quantity_wins_downstream() -> None:
    intent = intent_of(quantity="0.01", position_size_usd=500)
    assert intent.quantity == Decimal("0.01")
    assert intent.position_size_usd == Decimal(500)


def test_unknown_fields_are_echoed_in_meta_and_meta_object_is_unfolded() -> None:
    intent = intent_of(confidence=0.9, tags=["a", 1.5], meta={"run": 7})
    assert intent.meta == {"confidence": Decimal("0.9"), "tags": ["a", Decimal("1.5")], "run": 7}


def test_model_dump_feeds_back_into_the_constructor() -> None:
    intent = parse_intent(decode_entry(ENVELOPE))
    assert TradeIntent(**intent.model_dump()) == intent
    assert TradeIntent.model_validate(intent.model_dump()) == intent


def test_constructor_applies_the_same_rules() -> None:
    with pytest.raises(IntentRejected, match="leverage"):
        TradeIntent(symbol="BTCUSDT", side=Side.BUY, position_size_usd=Decimal(1), leverage=0)
    intent = TradeIntent(symbol="ethusdt", side="sell", quantity=Decimal("0.1"))
    assert (intent.symbol, intent.side, intent.is_long) == ("ETHUSDT", Side.SELL, False)


def test_intents_are_frozen() -> None:
    intent = intent_of()
    with pytest.raises(ValueError, match="frozen"):
        intent.symbol = "ETHUSDT"  # type: ignore[misc]


def test_close_has_no_direction() -> None:
    assert intent_of().is_long is True
    with pytest.raises(ValueError, match="CLOSE"):
        _ = intent_of(side="CLOSE").is_long


def test_intent_key_prefers_the_producer_id() -> None:
    assert intent_key(intent_of(intent_id="abc"), "1-0") == "abc"
    assert intent_key(intent_of(), "1766550734062-0") == "1766550734062-0"


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"symbol": ...}, "symbol"),
        ({"symbol": "BTC USDT"}, "symbol"),
        ({"symbol": "B"}, "symbol"),
        ({"symbol": "X" * 31}, "symbol"),
        ({"symbol": "BTC-USDT"}, "symbol"),
        ({"symbol": "bıtusdt"}, "symbol"),
        ({"symbol": 42}, "symbol"),
        ({"side": ...}, "side"),
        ({"side": "HOLD"}, "side"),
        ({"side": ..., "action": "hold"}, "action"),
        ({"side": 1}, "side"),
        ({"side": "BUY", "action": "SELL"}, "side"),
        ({"position_size_usd": ...}, "position_size_usd"),
        ({"side": "SELL", "position_size_usd": None}, "position_size_usd"),
        ({"position_size_usd": 0}, "position_size_usd"),
        ({"position_size_usd": -5}, "position_size_usd"),
        ({"position_size_usd": "-0.0"}, "position_size_usd"),
        ({"position_size_usd": True}, "position_size_usd"),
        ({"position_size_usd": float("nan")}, "position_size_usd"),
        ({"position_size_usd": float("inf")}, "position_size_usd"),
        ({"position_size_usd": Decimal("sNaN")}, "position_size_usd"),
        ({"position_size_usd": "NaN"}, "position_size_usd"),
        ({"position_size_usd": "Infinity"}, "position_size_usd"),
        ({"position_size_usd": "1_000"}, "position_size_usd"),
        ({"position_size_usd": "12abc"}, "position_size_usd"),
        ({"position_size_usd": ""}, "position_size_usd"),
        ({"position_size_usd": [200]}, "position_size_usd"),
        ({"position_size_usd": {"usd": 200}}, "position_size_usd"),
        ({"position_size_usd": 1e16}, "position_size_usd"),
        ({"position_size_usd": 10**16}, "position_size_usd"),
        ({"position_size_usd": "1000000000000000.01"}, "position_size_usd"),
        ({"position_size_usd": "1.0000000000000000000000001"}, "position_size_usd"),
        ({"position_size_usd": 1e-30}, "position_size_usd"),
        ({"position_size_usd": "1" * 60}, "position_size_usd"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"entry_price": -1}, "entry_price"),
        ({"entry_price": 0}, "entry_price"),
        ({"stop_loss": 0}, "stop_loss"),
        ({"take_profit": "-1"}, "take_profit"),
        ({"stop_loss_pct": 0}, "stop_loss_pct"),
        ({"stop_loss_pct": 100}, "stop_loss_pct"),
        ({"take_profit_pct": 150}, "take_profit_pct"),
        ({"take_profit_pct": -1}, "take_profit_pct"),
        ({"leverage": 0}, "leverage"),
        ({"leverage": 126}, "leverage"),
        ({"leverage": 2.5}, "leverage"),
        ({"leverage": "2.5"}, "leverage"),
        ({"leverage": True}, "leverage"),
        ({"leverage": "ten"}, "leverage"),
        ({"leverage": -3}, "leverage"),
        ({"margin_type": "PORTFOLIO"}, "margin_type"),
        ({"margin_type": 1}, "margin_type"),
        ({"reduce_only": "yes"}, "reduce_only"),
        ({"reduce_only": 1}, "reduce_only"),
        ({"intent_id": ""}, "intent_id"),
        ({"intent_id": "x" * 65}, "intent_id"),
        ({"intent_id": "has space"}, "intent_id"),
        ({"intent_id": "a/b"}, "intent_id"),
        ({"intent_id": True}, "intent_id"),
        ({"intent_id": 1.5}, "intent_id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2025-13-45T00:00:00"}, "timestamp"),
        ({"timestamp": "2025-12-24T04:32:14" + " " * 100}, "timestamp"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": 0}, "timestamp"),
        ({"timestamp": 1766550734062000}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": [2025]}, "timestamp"),
    ],
)
def test_rejections_name_the_field(fields: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 200}
    base.update(fields)
    error = rejection({k: v for k, v in base.items() if v is not ...})
    assert error.code == ReasonCode.INVALID_FIELD
    assert error.message.startswith(f"{field}: "), error.message
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"position_size_usd": -5}, "position_size_usd: must be greater than 0 (got -5)"),
        ({"leverage": 2.5}, "leverage: must be a whole number 1..125 (got 2.5)"),
        ({"leverage": 300}, "leverage: must be between 1 and 125 (got 300)"),
        ({"side": "HOLD"}, "side: must be BUY, SELL, CLOSE or MODIFY (got 'HOLD')"),
        ({"position_size_usd": True}, "position_size_usd: must be a number, not a boolean (got True)"),
        ({"position_size_usd": ...}, "position_size_usd: required for BUY (or quantity)"),
        ({"symbol": ...}, "symbol: required (e.g. BTCUSDT)"),
    ],
)
def test_rejection_messages(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 200}
    base.update(fields)
    assert rejection({k: v for k, v in base.items() if v is not ...}).message == message


def test_long_values_are_truncated_in_messages() -> None:
    error = rejection({"symbol": "Z" * 10_000, "side": "BUY", "position_size_usd": 1})
    assert error.message.startswith("symbol: ")
    assert len(error.message) < 120


@pytest.mark.parametrize("payload", [[], "BUY", None, 42])
def test_non_object_payload_is_invalid_payload(payload: Any) -> None:
    error = rejection(payload)
    assert error.code == ReasonCode.INVALID_PAYLOAD


# ---------------------------------------------------------------- results


def full_result() -> ExecutionResult:
    error = ResultError(code="-2021", source=ErrorSource.EXCHANGE, message="Order would immediately trigger.")
    return ExecutionResult(
        symbol="BTCUSDT",
        action=Side.BUY,
        entry_price=Decimal("95234.50"),
        position_size_usd=Decimal("190.469"),
        leverage=5,
        timestamp=datetime(2025, 12, 24, 4, 32, 15, 1234, tzinfo=UTC),
        order_id=8886774,
        status=ResultStatus.FILLED,
        slippage_pct=Decimal("0.0012345678901234567890"),
        fee_usd=Decimal("0.0952345"),
        intent_id="sig-1",
        stream_id="1766550734062-0",
        requested_quantity=Decimal("0.0021000000000000000001"),
        quantity=Decimal("0.002"),
        executed_quantity=Decimal("0.002"),
        avg_price=Decimal("95234.5"),
        notional=Decimal("190.469"),
        reference_price=Decimal("95230.10"),
        client_order_id="qxe-0123456789abcdef0123456789abcd",
        stop_loss=ProtectiveOrder(
            order_type="STOP_MARKET",
            side="SELL",
            algo_id=2000000001,
            client_algo_id="qxs-0123456789abcdef0123456789abcd",
            trigger_price=Decimal("93329.90"),
            quantity=Decimal("0.002"),
            state="NEW",
        ),
        take_profit=ProtectiveOrder(
            order_type="TAKE_PROFIT_MARKET",
            side="SELL",
            client_algo_id="qxt-0123456789abcdef0123456789abcd",
            trigger_price=Decimal("1E-7"),
            close_position=True,
            error=error,
        ),
        protection=ProtectionState.CLOSED_EMERGENCY,
        commission=Decimal("0.0952345"),
        commission_asset="USDT",
        realized_pnl=Decimal("-0.5"),
        emergency_close=CloseFill(
            order_id=8886775,
            client_order_id="qxf-0123456789abcdef0123456789abcd",
            side="SELL",
            quantity=Decimal("0.002"),
            executed_quantity=Decimal("0.002"),
            avg_price=Decimal("95200"),
            status="FILLED",
        ),
        error=error,
        environment=ExchangeEnv.SIM,
        received_at=datetime(2025, 12, 24, 4, 32, 14, tzinfo=UTC),
        completed_at=datetime(2025, 12, 24, 4, 32, 15, tzinfo=UTC),
        latency_ms=1000.25,
        meta={"confidence": Decimal("0.72"), "model": "ensemble", "nested": {"x": [Decimal("1.10"), None]}},
    )


def test_result_round_trips_exactly() -> None:
    result = full_result()
    fields = encode_result_fields(result)
    back = decode_result_fields(fields)
    assert back == result
    assert back.slippage_pct == Decimal("0.0012345678901234567890")
    assert str(back.requested_quantity) == "0.0021000000000000000001"
    assert str(back.entry_price) == "95234.50"
    # Also with str keys/values, as redis-py returns them with decode_responses=True.
    assert decode_result_fields({k: v.decode() for k, v in fields.items()}) == result


def test_result_envelope_and_wire_text() -> None:
    fields = encode_result_fields(full_result())
    assert fields["event_type"] == b"execution.result"
    assert fields["source"] == b"execution-service"
    assert fields["timestamp"] == b"2025-12-24T04:32:15.001234+00:00"
    text = fields["payload"].decode()
    assert '"entry_price":95234.50' in text  # exact number, not a string, not a float
    assert '"slippage_pct":0.0012345678901234567890' in text
    assert '"trigger_price":0.0000001' in text  # never exponent notation
    assert '"status":"filled"' in text
    assert '"action":"BUY"' in text
    assert '"received_at":"2025-12-24T04:32:14+00:00"' in text


def test_legacy_fields_come_first() -> None:
    legacy = [
        "symbol",
        "action",
        "entry_price",
        "position_size_usd",
        "leverage",
        "timestamp",
        "order_id",
        "status",
        "slippage_pct",
        "fee_usd",
    ]
    decoded = orjson.loads(encode_result_fields(full_result())["payload"])
    assert list(decoded)[: len(legacy)] == legacy
    minimal = ExecutionResult(symbol="X", status=ResultStatus.REJECTED, intent_id="k")
    assert set(legacy) <= set(orjson.loads(encode_result_fields(minimal)["payload"]))


def test_naive_result_times_are_written_as_utc() -> None:
    result = ExecutionResult(
        symbol="X", status=ResultStatus.FAILED, intent_id="k", timestamp=datetime(2025, 1, 1, 12, 0, 0)
    )
    fields = encode_result_fields(result)
    assert fields["timestamp"] == b"2025-01-01T12:00:00+00:00"
    assert '"timestamp":"2025-01-01T12:00:00+00:00"' in fields["payload"].decode()
    local = datetime(2025, 1, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert encode_result_fields(result.model_copy(update={"timestamp": local}))["timestamp"] == (
        b"2025-01-01T12:00:00+00:00"
    )


@pytest.mark.parametrize(
    "fields",
    [{}, {b"payload": b"{"}, {b"payload": b"[]"}, {b"payload": b'{"symbol": "X"}'}, {b"payload": b"\xff"}],
)
def test_bad_result_entries_raise_payload_error(fields: dict[Any, Any]) -> None:
    with pytest.raises(PayloadError):
        decode_result_fields(fields)


def test_submit_entry_decodes_back_to_the_same_intent() -> None:
    payload = {
        "symbol": "ETHUSDT",
        "side": "SELL",
        "quantity": Decimal("0.125"),
        "take_profit_pct": 2.5,
        "note": "x",
    }
    fields = encode_intent_fields(payload, source="quantum-exec-cli")
    assert fields["event_type"] == b"trade.intent"
    assert fields["source"] == b"quantum-exec-cli"
    datetime.fromisoformat(fields["timestamp"].decode())
    intent = parse_intent(decode_entry(fields))
    assert (intent.quantity, intent.take_profit_pct, intent.meta) == (
        Decimal("0.125"),
        Decimal("2.5"),
        {"note": "x"},
    )


# ---------------------------------------------------------------- schemas


def test_intent_schema_describes_every_accepted_field() -> None:
    schema = intent_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is True
    assert set(schema["properties"]) == {
        "intent_id",
        "symbol",
        "side",
        "action",
        "position_size_usd",
        "quantity",
        "entry_price",
        "leverage",
        "margin_type",
        "stop_loss",
        "take_profit",
        "stop_loss_pct",
        "take_profit_pct",
        "reduce_only",
        "timestamp",
        "order_type",
        "price",
        "limit_offset_pct",
        "time_in_force",
        "expire_after_s",
        "execution",
        "stop_price",
        "take_profits",
        "break_even_after",
        "trailing_stop",
        "close_pct",
    }
    assert schema["properties"]["execution"]["required"] == ["algo", "slices", "interval_s"]
    assert {"required": ["action"]} in schema["anyOf"]
    assert "number" in schema["properties"]["take_profit"]["type"]
    json.dumps(schema)


def test_result_schema_comes_from_the_model() -> None:
    schema = result_json_schema()
    json.dumps(schema)
    properties = schema["properties"]
    assert set(ExecutionResult.model_fields) == set(properties)
    assert {"symbol", "status", "intent_id"} <= set(schema["required"])
    assert {"type": "number"} in properties["entry_price"]["anyOf"]
    assert "$defs" in schema and {"ProtectiveOrder", "ResultError", "CloseFill"} <= set(schema["$defs"])


# ---------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        ["BUY", "sell", "Close", "LONG", "btcusdt", "CROSS", "true", "1e5", "-0", "2025-12-24T04:32:14"]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = (
    st.sampled_from(sorted(intent_json_schema()["properties"]))
    | st.text(max_size=12)
    | st.integers()
    | st.none()
)
payloads = st.dictionaries(field_names, json_values, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
def test_parse_intent_raises_only_intent_rejected(payload: dict[Any, Any]) -> None:
    try:
        intent = parse_intent(payload)
    except IntentRejected as exc:
        assert exc.code in {ReasonCode.INVALID_FIELD, ReasonCode.INVALID_PAYLOAD}
        # The field named first; a nested one as ``execution.slices`` or ``take_profits[2].pct``.
        named = exc.message.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]
        assert named in intent_json_schema()["properties"] or exc.message.startswith("payload")
        return
    result = ExecutionResult(
        symbol=intent.symbol, status=ResultStatus.REJECTED, intent_id="k", meta=intent.meta
    )
    assert len(encode_result_fields(result)["payload"]) < RESULT_LIMIT_BYTES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_entry_raises_only_payload_error_on_bytes(raw: bytes) -> None:
    for name in ("payload", b"data"):
        with contextlib.suppress(PayloadError):
            decode_entry({name: raw})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=8))
def test_any_json_object_decodes_and_parses_or_is_rejected(obj: dict[str, Any]) -> None:
    try:
        raw = json.dumps(obj, default=str).encode("utf-8", "surrogatepass")
    except ValueError:
        return
    try:
        decoded = decode_entry({b"payload": raw})
    except PayloadError:
        return  # e.g. lone surrogates
    with contextlib.suppress(IntentRejected):
        parse_intent(decoded)


def test_extreme_numbers_in_meta_stay_small_and_valid_json() -> None:
    payload = decode_entry(
        {
            b"payload": b'{"symbol": "BTCUSDT", "side": "CLOSE", "a": NaN, "b": 1e999999, "c": 1e-300, "d": '
            + b"9" * 5000
            + b"}"
        }
    )
    intent = parse_intent(payload)
    result = ExecutionResult(symbol="BTCUSDT", status=ResultStatus.REJECTED, intent_id="k", meta=intent.meta)
    text = encode_result_fields(result)["payload"]
    assert len(text) < 2048
    meta = json.loads(text, parse_float=Decimal)["meta"]
    assert meta["a"] == "NaN"
    assert meta["b"] == Decimal("1E+999999")
    assert meta["c"] == Decimal("1E-300")
    assert isinstance(meta["d"], str) and meta["d"].startswith("999")
    assert decode_result_fields(encode_result_fields(result)).meta == meta


def test_intent_digest_tells_another_intent_from_a_retry() -> None:
    from quantum_exec.contracts import intent_digest

    base = {"intent_id": "d-1", "symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 100}
    first = intent_digest(parse_intent({**base, "timestamp": 1_795_000_000_000}))
    assert intent_digest(parse_intent({**base, "timestamp": 1_795_000_009_000})) == first  # a retry
    assert intent_digest(parse_intent({**base, "position_size_usd": 100.0})) == first  # same number
    assert intent_digest(parse_intent({**base, "position_size_usd": 200})) != first
    assert intent_digest(parse_intent({**base, "side": "SELL"})) != first


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"order_type": "LIMIT"}, "price"),
        ({"order_type": "LIMIT", "price": "90000", "limit_offset_pct": "0.5"}, "price"),
        ({"price": "90000"}, "price"),
        ({"time_in_force": "GTX"}, "time_in_force"),
        ({"order_type": "STOP_MARKET"}, "stop_price"),
        ({"order_type": "STOP_MARKET", "stop_price": "99000", "price": "99100"}, "price"),
        ({"order_type": "STOP", "stop_price": "99000"}, "price"),
        ({"order_type": "LIMIT", "price": "1", "stop_price": "2"}, "stop_price"),
        ({"order_type": "STOP_MARKET", "stop_price": "99000", "reduce_only": True}, "reduce_only"),
        ({"order_type": "TRAILING_STOP_MARKET"}, "order_type"),
        (
            {
                "order_type": "LIMIT",
                "price": "1",
                "execution": {"algo": "twap", "slices": 2, "interval_s": 1},
            },
            "execution",
        ),
        ({"order_type": "LIMIT", "price": "1", "time_in_force": "DAY"}, "time_in_force"),
        ({"order_type": "LIMIT", "price": "1", "expire_after_s": "0"}, "expire_after_s"),
    ],
)
def test_limit_fields_that_disagree_are_rejected_by_name(extra: dict[str, str], field: str) -> None:
    payload = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", **extra}
    with pytest.raises(IntentRejected) as caught:
        parse_intent(payload)
    assert caught.value.code == "INVALID_FIELD" and caught.value.message.startswith(f"{field}:")


def test_a_limit_intent_parses() -> None:
    intent = parse_intent(
        {
            "symbol": "btcusdt",
            "side": "BUY",
            "quantity": "0.01",
            "order_type": "limit",
            "limit_offset_pct": "0.5",
            "time_in_force": "gtx",
            "expire_after_s": 30,
        }
    )
    assert (intent.order_type, intent.limit_offset_pct, intent.time_in_force) == (
        "LIMIT",
        Decimal("0.5"),
        "GTX",
    )
    assert intent.expire_after_s == Decimal(30) and intent.price is None
    with pytest.raises(IntentRejected) as caught:
        parse_intent({"symbol": "BTCUSDT", "side": "CLOSE", "order_type": "LIMIT"})
    assert "a CLOSE is always a MARKET order" in caught.value.message
