"""Parsing user data stream events from the documented samples."""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal

import pytest

from account.samples import ACCOUNT_UPDATE, ALGO_UPDATE, LISTEN_KEY_EXPIRED, ORDER_TRADE_UPDATE, fill_message
from quantum_exec.account.events import (
    AccountUpdate,
    AlgoUpdate,
    EventError,
    ExecutionType,
    ListenKeyExpired,
    OrderTradeUpdate,
    PositionSide,
    parse_event,
)
from quantum_exec.exchange.wire import AlgoStatus, OrderSide, OrderStatus


def test_order_trade_update_documented_sample() -> None:
    event = parse_event(ORDER_TRADE_UPDATE)
    assert isinstance(event, OrderTradeUpdate)
    assert event.event_time_ms == 1568879465651
    assert event.transaction_time_ms == 1568879465650
    assert event.symbol == "BTCUSDT"
    assert event.client_order_id == "TEST"
    assert event.side is OrderSide.SELL
    assert event.order_type == "TRAILING_STOP_MARKET"
    assert event.original_type == "TRAILING_STOP_MARKET"
    assert event.execution_type is ExecutionType.NEW
    assert event.status is OrderStatus.NEW
    assert event.order_id == 8886774
    assert event.orig_qty == Decimal("0.001")
    assert event.stop_price == Decimal("7103.04")
    assert event.commission == Decimal(0)
    assert event.commission_asset == "USDT"
    assert event.position_side is PositionSide.LONG
    assert event.maker is False
    assert event.reduce_only is False
    assert event.close_position is False
    assert not event.is_fill


def test_fill_fields_are_exact() -> None:
    raw = fill_message(side="SELL", qty="0.003", price="61234.50", commission="0.07348140", realized="3.5")
    event = parse_event(raw)
    assert isinstance(event, OrderTradeUpdate)
    assert event.is_fill
    assert event.last_qty == Decimal("0.003")
    assert event.signed_last_qty == Decimal("-0.003")
    assert event.last_price == Decimal("61234.50")
    assert event.commission == Decimal("0.07348140")
    assert event.realized_profit == Decimal("3.5")
    assert event.trade_id == 1
    assert event.trade_time_ms == 1_700_000_000_000


def test_commission_absent_means_zero() -> None:
    raw = fill_message()
    del raw["o"]["n"], raw["o"]["N"]
    event = parse_event(raw)
    assert isinstance(event, OrderTradeUpdate)
    assert event.commission == Decimal(0)
    assert event.commission_asset == ""


def test_account_update_documented_sample() -> None:
    event = parse_event(ACCOUNT_UPDATE)
    assert isinstance(event, AccountUpdate)
    assert event.reason == "ORDER"
    assert [b.asset for b in event.balances] == ["USDT", "BUSD"]
    assert event.balances[0].wallet_balance == Decimal("122624.12345678")
    assert event.balances[1].balance_change == Decimal("-49.12345678")
    short = event.positions[2]
    assert short.amount == Decimal("-10")
    assert short.entry_price == Decimal("6563.86000")
    assert short.unrealized_pnl == Decimal("-1423.15600000")
    assert short.margin_type == "ISOLATED"
    assert short.position_side is PositionSide.SHORT


def test_funding_fee_update_without_positions() -> None:
    raw = deepcopy(ACCOUNT_UPDATE)
    raw["a"] = {"m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "10", "cw": "10", "bc": "0"}]}
    event = parse_event(raw)
    assert isinstance(event, AccountUpdate)
    assert event.positions == ()


def test_algo_update_documented_sample() -> None:
    event = parse_event(ALGO_UPDATE)
    assert isinstance(event, AlgoUpdate)
    assert event.event_time_ms == 1750515742303
    assert event.client_algo_id == "Q5xaq5EGKgXXa0fD7fs0Ip"
    assert event.algo_id == 2148719
    assert event.algo_type == "CONDITIONAL"
    assert event.order_type == "TAKE_PROFIT"
    assert event.side is OrderSide.SELL
    assert event.quantity == Decimal("0.01")
    assert event.status is AlgoStatus.CANCELED
    assert event.status.is_final
    assert event.actual_order_id == ""
    assert event.trigger_price == Decimal("750")
    assert event.reject_reason == "Reduce Only reject"


@pytest.mark.parametrize("status", [s.value for s in AlgoStatus])
def test_every_algo_status_parses(status: str) -> None:
    raw = deepcopy(ALGO_UPDATE)
    raw["o"]["X"] = status
    event = parse_event(raw)
    assert isinstance(event, AlgoUpdate)
    assert event.status.value == status
    assert event.status.is_final == (status in {"FINISHED", "CANCELED", "REJECTED", "EXPIRED"})


def test_algo_actual_order_id_as_number() -> None:
    raw = deepcopy(ALGO_UPDATE)
    raw["o"]["ai"] = 123456789
    event = parse_event(raw)
    assert isinstance(event, AlgoUpdate)
    assert event.actual_order_id == "123456789"


def test_listen_key_expired_with_string_time() -> None:
    event = parse_event(LISTEN_KEY_EXPIRED)
    assert event == ListenKeyExpired(event_time_ms=1736996475556, listen_key=LISTEN_KEY_EXPIRED["listenKey"])


def test_combined_stream_wrapper_is_unwrapped() -> None:
    event = parse_event({"stream": "abc", "data": ALGO_UPDATE})
    assert isinstance(event, AlgoUpdate)


@pytest.mark.parametrize(
    "event_type", ["TRADE_LITE", "ACCOUNT_CONFIG_UPDATE", "MARGIN_CALL", "STRATEGY_UPDATE"]
)
def test_unused_event_types_are_none(event_type: str) -> None:
    assert parse_event({"e": event_type, "E": 1}) is None


def test_message_without_type_is_none() -> None:
    assert parse_event({"result": None, "id": 1}) is None


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("o", "L"), "abc", "o.L"),
        (("o", "l"), None, "o.l"),
        (("o", "i"), "x1", "o.i"),
        (("o", "S"), "HOLD", "o.S"),
        (("o", "x"), "WHATEVER", "o.x"),
        (("o", "R"), "maybe", "o.R"),
        (("o", "n"), "NaN", "o.n"),
        (("o",), "not an object", "o"),
        (("E",), None, "E"),
    ],
)
def test_malformed_order_update_names_the_field(path: tuple[str, ...], value: object, field: str) -> None:
    raw = fill_message()
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(EventError) as info:
        parse_event(raw)
    assert info.value.field == field
    assert info.value.event_type == "ORDER_TRADE_UPDATE"
    assert field in str(info.value)


def test_malformed_account_position_names_the_index() -> None:
    raw = deepcopy(ACCOUNT_UPDATE)
    raw["a"]["P"][1]["pa"] = "twenty"
    with pytest.raises(EventError) as info:
        parse_event(raw)
    assert info.value.field == "a.P[1].pa"


def test_malformed_algo_status() -> None:
    raw = deepcopy(ALGO_UPDATE)
    raw["o"]["X"] = "PENDING"
    with pytest.raises(EventError) as info:
        parse_event(raw)
    assert info.value.field == "o.X"


def test_non_object_message_is_an_error() -> None:
    with pytest.raises(EventError):
        parse_event([1, 2])  # type: ignore[arg-type]


def test_numbers_decoded_as_floats_stay_exact() -> None:
    raw = fill_message()
    raw["o"]["L"] = 60000.1
    raw["o"]["l"] = 3
    event = parse_event(raw)
    assert isinstance(event, OrderTradeUpdate)
    assert event.last_price == Decimal("60000.1")
    assert event.last_qty == Decimal(3)
