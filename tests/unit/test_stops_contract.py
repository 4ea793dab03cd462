"""The stop-management fields of an intent (issue #27): take-profit ladder, break-even, trailing
stop, MODIFY, partial CLOSE; their validation, the JSON Schema, and old payloads unchanged."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import Side, TradeIntent, intent_json_schema, parse_intent
from quantum_exec.contracts.codec import dumps
from quantum_exec.contracts.intent import intent_digest
from quantum_exec.core.errors import IntentRejected, ReasonCode

BUY: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "stop_loss": 90000}
LADDER = [{"pct": 1, "size_pct": 40}, {"price": "105000", "size_pct": 40}, {"pct": 3, "size_pct": 20}]


def rejected(payload: dict[str, Any]) -> IntentRejected:
    with pytest.raises(IntentRejected) as caught:
        parse_intent(payload)
    return caught.value


def test_a_ladder_with_break_even_and_a_trailing_stop_parses_and_round_trips() -> None:
    intent = parse_intent(
        {
            **BUY,
            "take_profits": LADDER,
            "break_even_after": 1,
            "trailing_stop": {"callback_pct": "1.5", "activation_pct": 2},
        }
    )
    assert intent.take_profits is not None
    assert [(lv.price, lv.pct, lv.size_pct) for lv in intent.take_profits] == [
        (None, Decimal(1), Decimal(40)),
        (Decimal(105000), None, Decimal(40)),
        (None, Decimal(3), Decimal(20)),
    ]
    assert intent.break_even_after == 1
    assert intent.trailing_stop is not None
    assert intent.trailing_stop.callback_pct == Decimal("1.5")
    assert intent.trailing_stop.activation_pct == Decimal(2)
    again = TradeIntent(**intent.model_dump())
    assert again == intent
    assert intent_digest(again) == intent_digest(intent)


def test_old_payloads_keep_their_meaning_and_their_digest() -> None:
    old = parse_intent({**BUY, "take_profit": 110000})
    assert old.take_profits is None and old.trailing_stop is None and old.close_pct is None
    # The digest of an intent without the new fields is the one it had before they existed
    # (a redelivered intent is not taken for an INTENT_ID_CONFLICT after an upgrade).
    new = {"take_profits", "break_even_after", "trailing_stop", "close_pct"}
    before = {
        name: format(value.normalize(), "f") if isinstance(value, Decimal) else value
        for name, value in old.model_dump(exclude={"timestamp", *new}).items()
    }
    assert intent_digest(old) == hashlib.sha256(dumps(before, sort_keys=True)).hexdigest()[:32]
    assert intent_digest(old) != intent_digest(parse_intent({**BUY, "take_profits": LADDER}))


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"take_profits": []}, "take_profits", "1..5 levels"),
        ({"take_profits": [{"pct": 1, "size_pct": 10}] * 6}, "take_profits", "1..5 levels"),
        ({"take_profits": [{"pct": 1, "size_pct": 60}, {"pct": 2, "size_pct": 41}]}, "take_profits", "101 %"),
        ({"take_profits": [{"pct": 1, "price": 5, "size_pct": 10}]}, "take_profits[1]", "exactly one"),
        ({"take_profits": [{"pct": 1}]}, "take_profits[1].size_pct", "required"),
        ({"take_profits": [{"pct": 1, "size_pct": 0}]}, "take_profits[1].size_pct", "greater than 0"),
        ({"take_profits": [{"pct": 100, "size_pct": 5}]}, "take_profits[1].pct", "below 100"),
        ({"take_profits": [{"pct": 1, "size_pct": 5, "qty": 1}]}, "take_profits[1].qty", "unknown key"),
        ({"take_profits": LADDER, "take_profit": 110000}, "take_profit", "either"),
        ({"take_profits": LADDER[:1], "break_even_after": 2}, "break_even_after", "at least 2"),
        ({"break_even_after": 1}, "break_even_after", "at least 1"),
        ({"break_even_after": 0}, "break_even_after", "1..5"),
        ({"trailing_stop": {"callback_pct": "0.05"}}, "trailing_stop.callback_pct", "between 0.1 and 20"),
        ({"trailing_stop": {"callback_pct": 21}}, "trailing_stop.callback_pct", "between 0.1 and 20"),
        ({"trailing_stop": {"callback_pct": "1.25"}}, "trailing_stop.callback_pct", "one decimal"),
        ({"trailing_stop": {"activation_pct": 1}}, "trailing_stop.callback_pct", "required"),
        (
            {"trailing_stop": {"callback_pct": 1, "activation_pct": 1, "activation_price": 5}},
            "trailing_stop",
            "at most one",
        ),
        ({"close_pct": 30}, "close_pct", "only for CLOSE"),
    ],
)
def test_bad_stop_fields_name_the_field(extra: dict[str, Any], field: str, words: str) -> None:
    error = rejected({**BUY, **extra})
    assert error.code == ReasonCode.INVALID_FIELD
    assert error.message.startswith(f"{field}:"), error.message
    assert words in error.message


def test_modify_needs_a_symbol_and_a_protection_and_nothing_of_an_entry() -> None:
    intent = parse_intent({"symbol": "btcusdt", "action": "modify", "stop_loss_pct": 2})
    assert intent.side is Side.MODIFY and intent.stop_loss_pct == Decimal(2)
    with pytest.raises(ValueError, match="MODIFY intent has no direction"):
        _ = intent.is_long
    assert "at least one of stop_loss" in rejected({"symbol": "BTCUSDT", "side": "MODIFY"}).message
    assert rejected(
        {"symbol": "BTCUSDT", "side": "MODIFY", "stop_loss": 1, "quantity": 1}
    ).message.startswith("quantity:")
    assert rejected({"side": "MODIFY", "stop_loss": 1}).message.startswith("symbol:")
    both = rejected({"symbol": "BTCUSDT", "side": "MODIFY", "stop_loss": 1, "stop_loss_pct": 1})
    assert both.message.startswith("stop_loss_pct:")
    # break_even_after alone is a MODIFY of the position's existing ladder.
    assert parse_intent({"symbol": "BTCUSDT", "side": "MODIFY", "break_even_after": 2}).break_even_after == 2


def test_partial_close_takes_quantity_or_close_pct() -> None:
    assert parse_intent({"symbol": "BTCUSDT", "side": "CLOSE", "close_pct": 30}).close_pct == Decimal(30)
    assert parse_intent({"symbol": "BTCUSDT", "side": "CLOSE", "quantity": "0.002"}).quantity == Decimal(
        "0.002"
    )
    assert rejected(
        {"symbol": "BTCUSDT", "side": "CLOSE", "close_pct": 30, "quantity": 1}
    ).message.startswith("close_pct:")
    assert "at most 100" in rejected({"symbol": "BTCUSDT", "side": "CLOSE", "close_pct": "100.5"}).message
    assert rejected({"symbol": "BTCUSDT", "side": "CLOSE", "take_profits": LADDER}).message.startswith(
        "take_profits:"
    )


def test_the_schema_publishes_the_new_fields_and_accepts_what_the_parser_accepts() -> None:
    schema = intent_json_schema()
    props = schema["properties"]
    assert {"take_profits", "break_even_after", "trailing_stop", "close_pct"} <= set(props)
    assert props["take_profits"]["maxItems"] == 5
    assert props["trailing_stop"]["properties"]["callback_pct"]["maximum"] == 20
    assert "MODIFY" in props["side"]["examples"]
    level = props["take_profits"]["items"]
    assert level["required"] == ["size_pct"] and level["additionalProperties"] is False
    assert set(level["properties"]) == {"price", "pct", "size_pct"}
    assert props["trailing_stop"]["required"] == ["callback_pct"]
    assert set(props["trailing_stop"]["properties"]) == {"callback_pct", "activation_price", "activation_pct"}


def test_submit_flags_build_the_new_fields_and_refuse_bad_ones() -> None:
    from quantum_exec.app.cli import build_parser
    from quantum_exec.app.commands.intents import build_intent
    from quantum_exec.core.errors import ConfigError

    def payload(*argv: str) -> dict[str, Any]:
        return build_intent(build_parser().parse_args(["submit", "--symbol", "BTCUSDT", *argv]))

    entry = payload(
        "--side", "BUY", "--quantity", "0.01", "--sl-pct", "1",
        "--take-profits", "1%:40,2%:40,105000:20", "--break-even-after", "1", "--trailing", "1.5@2%",
    )  # fmt: skip
    assert entry["take_profits"] == [
        {"pct": "1", "size_pct": "40"},
        {"pct": "2", "size_pct": "40"},
        {"price": "105000", "size_pct": "20"},
    ]
    assert entry["break_even_after"] == 1
    assert entry["trailing_stop"] == {"callback_pct": "1.5", "activation_pct": "2"}
    assert payload("--side", "CLOSE", "--close-pct", "30")["close_pct"] == Decimal(30)
    assert payload("--side", "MODIFY", "--sl", "95000")["side"] == "MODIFY"
    with pytest.raises(ConfigError, match="not submitted: INVALID_FIELD: take_profits: sizes sum to 110 %"):
        payload("--side", "BUY", "--quantity", "1", "--take-profits", "1%:60,2%:50")
    with pytest.raises(SystemExit):
        payload("--side", "BUY", "--quantity", "1", "--take-profits", "1%")
