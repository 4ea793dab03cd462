"""Exchange rules: parsing exchangeInfo, sizing, trigger rounding and protection checks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.rules import (
    SymbolRules,
    TriggerKind,
    ceil_to_step,
    check_protection,
    floor_to_step,
    fmt,
    parse_exchange_info,
    round_trigger,
    size_quantity,
    trigger_from_pct,
)
from quantum_exec.core.settings import MaxQtyPolicy

D = Decimal


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("symbol", "tick", "step", "min_qty", "market_max", "lot_max", "min_notional"),
    [
        ("BTCUSDT", "0.10", "0.001", "0.001", "120", "1000", "100"),
        ("ETHUSDT", "0.01", "0.001", "0.001", "2000", "10000", "20"),
        ("SOLUSDT", "0.0100", "1", "1", "5000", "1000000", "5"),
        ("XRPUSDT", "0.0001", "0.1", "0.1", "2000000", "10000000", "5"),
        ("DOGEUSDT", "0.000010", "1", "1", "30000000", "50000000", "5"),
        ("1000PEPEUSDT", "0.0000001", "1", "1", "80000000", "800000000", "5"),
        ("NEARUSDT", "0.001", "1", "1", "250000", "10000000", "5"),
    ],
)
def test_fixture_rules(
    symbol_rules: dict[str, SymbolRules],
    symbol: str,
    tick: str,
    step: str,
    min_qty: str,
    market_max: str,
    lot_max: str,
    min_notional: str,
) -> None:
    rules = symbol_rules[symbol]
    assert rules.tick_size == D(tick)
    assert rules.market_step_size == rules.step_size == D(step)
    assert rules.market_min_qty == D(min_qty)
    assert rules.market_max_qty == D(market_max)
    assert rules.max_qty == D(lot_max)
    assert rules.min_notional == D(min_notional)


def test_symbol_metadata(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    assert (btc.status, btc.contract_type, btc.base_asset, btc.quote_asset, btc.margin_asset) == (
        "TRADING",
        "PERPETUAL",
        "BTC",
        "USDT",
        "USDT",
    )
    assert (btc.min_price, btc.max_price) == (D("556.80"), D("4529764"))
    assert (btc.multiplier_up, btc.multiplier_down, btc.multiplier_decimal) == (D("1.05"), D("0.95"), 4)
    # pricePrecision is 2 for BTCUSDT; the tick is 0.10 and nothing else.
    assert btc.tick_size == D("0.1")
    assert btc.trading
    assert not symbol_rules["SRMUSDT"].trading
    assert symbol_rules["XAUUSDT"].contract_type == "TRADIFI_PERPETUAL"
    assert symbol_rules["BTCUSDT_260327"].contract_type == "CURRENT_QUARTER"


def synthetic(**overrides: Any) -> dict[str, Any]:
    filters: dict[str, dict[str, Any]] = {
        "PRICE_FILTER": {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01",
            "maxPrice": "1000",
            "tickSize": "0.01",
        },
        "LOT_SIZE": {"filterType": "LOT_SIZE", "minQty": "0.5", "maxQty": "900", "stepSize": "0.5"},
        "MARKET_LOT_SIZE": {"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "0", "stepSize": "0"},
        "SOMETHING_NEW": {"filterType": "SOMETHING_NEW", "whatever": [1, 2]},
    }
    for name, value in overrides.items():
        if value is None:
            filters.pop(name)
        else:
            filters[name] = {"filterType": name, **value}
    return {"symbol": "TESTUSDT", "status": "TRADING", "filters": list(filters.values())}


def test_market_lot_size_zero_falls_back_to_lot_size_and_unknown_filters_are_ignored() -> None:
    rules = SymbolRules.from_exchange_info(synthetic())
    assert (rules.market_min_qty, rules.market_max_qty, rules.market_step_size) == (
        D("0.5"),
        D(900),
        D("0.5"),
    )
    assert rules.min_notional == 0  # no MIN_NOTIONAL filter
    assert rules.multiplier_up is None


def test_missing_market_lot_size_falls_back_to_lot_size() -> None:
    rules = SymbolRules.from_exchange_info(synthetic(MARKET_LOT_SIZE=None))
    assert (rules.market_min_qty, rules.market_max_qty, rules.market_step_size) == (
        D("0.5"),
        D(900),
        D("0.5"),
    )


def test_market_lot_size_partially_set() -> None:
    rules = SymbolRules.from_exchange_info(
        synthetic(MARKET_LOT_SIZE={"minQty": "1", "maxQty": "50", "stepSize": "0"})
    )
    assert (rules.market_min_qty, rules.market_max_qty, rules.market_step_size) == (D(1), D(50), D("0.5"))


def test_malformed_symbols_are_skipped_not_fatal(exchange_info: dict[str, Any]) -> None:
    broken = [
        synthetic(PRICE_FILTER=None),
        {
            **synthetic(),
            "symbol": "ZEROSTEP",
            "filters": synthetic(LOT_SIZE={"minQty": "1", "maxQty": "9", "stepSize": "0"})["filters"],
        },
        {
            **synthetic(),
            "symbol": "NANUSDT",
            "filters": synthetic(LOT_SIZE={"minQty": "NaN", "maxQty": "9", "stepSize": "1"})["filters"],
        },
        "not a symbol",
    ]
    rules = parse_exchange_info({"symbols": [*exchange_info["symbols"], *broken]})
    assert set(rules) == {s["symbol"] for s in exchange_info["symbols"]}


# ---------------------------------------------------------------- fmt and steps


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1E-7", "0.0000001"),
        ("95234.50", "95234.5"),
        ("100", "100"),
        ("1E+2", "100"),
        ("0.10", "0.1"),
        ("0.0", "0"),
        ("-0", "0"),
        ("-1.500", "-1.5"),
        ("120.000", "120"),
        ("0.0059123", "0.0059123"),
        ("123456789012345678.123456789", "123456789012345678.123456789"),
    ],
)
def test_fmt(value: str, text: str) -> None:
    assert fmt(D(value)) == text


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_fmt_refuses_non_finite(value: str) -> None:
    with pytest.raises(ValueError, match="cannot format"):
        fmt(D(value))


@pytest.mark.parametrize(
    ("value", "step", "floor", "ceil"),
    [
        ("1.2345", "0.001", "1.234", "1.235"),
        ("1.234", "0.001", "1.234", "1.234"),
        ("95234.56", "0.10", "95234.5", "95234.6"),
        ("7", "5", "5", "10"),
        ("0.75", "0.5", "0.5", "1"),
        ("0.0000000999", "0.0000001", "0", "0.0000001"),
        ("-1.25", "0.1", "-1.3", "-1.2"),
        ("3.14159", "0", "3.14159", "3.14159"),
    ],
)
def test_floor_and_ceil_to_step(value: str, step: str, floor: str, ceil: str) -> None:
    assert floor_to_step(D(value), D(step)) == D(floor)
    assert ceil_to_step(D(value), D(step)) == D(ceil)


# ---------------------------------------------------------------- sizing


@pytest.mark.parametrize(
    ("symbol", "price", "notional", "expected"),
    [
        ("BTCUSDT", "95234.50", "200", "0.002"),
        ("ETHUSDT", "3105.42", "200", "0.064"),
        ("SOLUSDT", "141.2300", "200", "1"),
        ("XRPUSDT", "2.0730", "200", "96.4"),
        ("1000PEPEUSDT", "0.0059123", "200", "33827"),
        ("DOGEUSDT", "0.162340", "200", "1231"),
        ("NEARUSDT", "1.465", "200.0", "136"),
        ("BTCUSDT", "100000", "100", "0.001"),  # exactly one step, exactly the minimum notional
        ("SOLUSDT", "5", "5", "1"),  # exactly minQty and exactly min notional
    ],
)
def test_size_from_notional(
    symbol_rules: dict[str, SymbolRules], symbol: str, price: str, notional: str, expected: str
) -> None:
    qty = size_quantity(symbol_rules[symbol], price=D(price), notional_usd=D(notional))
    assert qty == D(expected)
    assert fmt(qty) == expected


def test_explicit_quantity_wins_and_is_floored(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    assert size_quantity(btc, price=D("95234.5"), quantity=D("0.0159"), notional_usd=D(100_000)) == D("0.015")


def test_quantity_below_min_message(symbol_rules: dict[str, SymbolRules]) -> None:
    with pytest.raises(IntentRejected) as caught:
        size_quantity(symbol_rules["BTCUSDT"], price=D("95234.5"), quantity=D("0.0001"))
    assert caught.value.code == ReasonCode.QTY_BELOW_MIN
    assert caught.value.message == "quantity 0.0001 below minQty 0.001 for BTCUSDT at 95234.5"


def test_notional_too_small_for_one_step(symbol_rules: dict[str, SymbolRules]) -> None:
    with pytest.raises(IntentRejected) as caught:
        size_quantity(symbol_rules["BTCUSDT"], price=D("95234.5"), notional_usd=D(10))
    assert caught.value.code == ReasonCode.QTY_BELOW_MIN
    assert (
        caught.value.message == "quantity 0.0001050039638 (10 USDT) below minQty 0.001 for BTCUSDT at 95234.5"
    )


@pytest.mark.parametrize(
    ("symbol", "price", "notional", "message"),
    [
        # 0.001 x 99999.9 = 99.9999 < 100: one tick below BTCUSDT's minimum of 100 (not 5).
        (
            "BTCUSDT",
            "99999.9",
            "100",
            "notional 99.9999 (quantity 0.001) below minimum 100 for BTCUSDT at 99999.9",
        ),
        # 150 USD floors to 0.001 BTC = 95.2345 USD: a minimum assumed to be 5 would let it through.
        (
            "BTCUSDT",
            "95234.5",
            "150",
            "notional 95.2345 (quantity 0.001) below minimum 100 for BTCUSDT at 95234.5",
        ),
        (
            "ETHUSDT",
            "3105.42",
            "21",
            "notional 18.63252 (quantity 0.006) below minimum 20 for ETHUSDT at 3105.42",
        ),
        ("SOLUSDT", "4.99", "5", "notional 4.99 (quantity 1) below minimum 5 for SOLUSDT at 4.99"),
    ],
)
def test_min_notional_boundary(
    symbol_rules: dict[str, SymbolRules], symbol: str, price: str, notional: str, message: str
) -> None:
    with pytest.raises(IntentRejected) as caught:
        size_quantity(symbol_rules[symbol], price=D(price), notional_usd=D(notional))
    assert caught.value.code == ReasonCode.NOTIONAL_BELOW_MIN
    assert caught.value.message == message


def test_market_max_qty_not_lot_size_max(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    assert size_quantity(btc, price=D(95000), quantity=D(120)) == D(120)
    with pytest.raises(IntentRejected) as caught:
        size_quantity(btc, price=D(95000), quantity=D("120.001"))
    assert caught.value.code == ReasonCode.QTY_ABOVE_MAX
    assert caught.value.message == "quantity 120.001 above maxQty 120 for BTCUSDT at 95000"
    # 500 BTC is within LOT_SIZE (1000) but a MARKET order is bound by MARKET_LOT_SIZE (120).
    with pytest.raises(IntentRejected, match="maxQty 120 "):
        size_quantity(btc, price=D(95000), quantity=D(500))


def test_clamp_policy(symbol_rules: dict[str, SymbolRules]) -> None:
    btc = symbol_rules["BTCUSDT"]
    assert size_quantity(btc, price=D(95000), quantity=D(500), max_qty_policy=MaxQtyPolicy.CLAMP) == D(120)
    assert size_quantity(btc, price=D(1000), notional_usd=D(10**9), max_qty_policy=MaxQtyPolicy.CLAMP) == D(
        120
    )


def test_clamp_refloors_a_max_that_is_off_the_step() -> None:
    rules = SymbolRules.from_exchange_info(
        synthetic(MARKET_LOT_SIZE={"minQty": "0.5", "maxQty": "10.7", "stepSize": "0.5"})
    )
    assert size_quantity(rules, price=D(1), quantity=D(50), max_qty_policy=MaxQtyPolicy.CLAMP) == D("10.5")


def test_price_must_be_positive(symbol_rules: dict[str, SymbolRules]) -> None:
    with pytest.raises(IntentRejected) as caught:
        size_quantity(symbol_rules["BTCUSDT"], price=D(0), notional_usd=D(200))
    assert caught.value.code == ReasonCode.INVALID_FIELD


def test_needs_a_size() -> None:
    rules = SymbolRules.from_exchange_info(synthetic())
    with pytest.raises(ValueError, match="notional_usd or quantity"):
        size_quantity(rules, price=D(1))


def test_sizing_is_exact_where_float_would_not_be() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in float, which floors to 2.
    rules = SymbolRules.from_exchange_info(
        synthetic(LOT_SIZE={"minQty": "1", "maxQty": "900", "stepSize": "1"})
    )
    assert size_quantity(rules, price=D("0.1"), notional_usd=D("0.3")) == D(3)


# ---------------------------------------------------------------- triggers


@pytest.mark.parametrize(
    ("symbol", "raw", "long", "kind", "expected"),
    [
        ("BTCUSDT", "95000.05", True, "SL", "95000.1"),
        ("BTCUSDT", "95000.05", True, "TP", "95000.0"),
        ("BTCUSDT", "95000.05", False, "SL", "95000.0"),
        ("BTCUSDT", "95000.05", False, "TP", "95000.1"),
        ("BTCUSDT", "95000.1", True, "SL", "95000.1"),
        ("BTCUSDT", "95000.1", False, "SL", "95000.1"),
        ("XRPUSDT", "2.03154", True, "SL", "2.0316"),
        ("XRPUSDT", "2.03154", True, "TP", "2.0315"),
        ("1000PEPEUSDT", "0.00579405", True, "SL", "0.0057941"),
        ("1000PEPEUSDT", "0.00579405", False, "SL", "0.005794"),
        ("DOGEUSDT", "0.1590932", False, "TP", "0.15910"),
        ("NEARUSDT", "1.4943000000000002", True, "TP", "1.494"),
        ("NEARUSDT", "1.4357", True, "SL", "1.436"),
    ],
)
def test_round_trigger_toward_the_safe_side(
    symbol_rules: dict[str, SymbolRules], symbol: str, raw: str, long: bool, kind: TriggerKind, expected: str
) -> None:
    assert round_trigger(symbol_rules[symbol], D(raw), long=long, kind=kind) == D(expected)


def test_round_trigger_pulls_into_the_price_range_only_toward_safety(
    symbol_rules: dict[str, SymbolRules],
) -> None:
    btc = symbol_rules["BTCUSDT"]  # minPrice 556.80, maxPrice 4529764
    assert round_trigger(btc, D(100), long=True, kind="SL") == D("556.8")
    assert round_trigger(btc, D(10**8), long=True, kind="TP") == D(4529764)
    assert round_trigger(btc, D(10**8), long=False, kind="SL") == D(4529764)
    assert round_trigger(btc, D(100), long=False, kind="TP") == D("556.8")
    with pytest.raises(IntentRejected, match=r"take_profit 100 below minPrice 556\.8 for BTCUSDT"):
        round_trigger(btc, D(100), long=True, kind="TP")
    with pytest.raises(IntentRejected, match="stop_loss 100000000 above maxPrice 4529764 for BTCUSDT"):
        round_trigger(btc, D(10**8), long=True, kind="SL")


@pytest.mark.parametrize(
    ("reference", "pct", "long", "kind", "expected"),
    [
        ("100", "2", True, "SL", "98"),
        ("100", "2", True, "TP", "102"),
        ("100", "2", False, "SL", "102"),
        ("100", "2", False, "TP", "98"),
        ("1.465", "2", True, "SL", "1.4357"),
        ("1.465", "2", True, "TP", "1.4943"),
        ("95234.5", "0.5", True, "SL", "94758.3275"),
    ],
)
def test_trigger_from_pct(reference: str, pct: str, long: bool, kind: TriggerKind, expected: str) -> None:
    assert trigger_from_pct(D(reference), D(pct), long=long, kind=kind) == D(expected)


@pytest.mark.parametrize("pct", ["0", "100", "-1"])
def test_trigger_from_pct_bounds(pct: str) -> None:
    with pytest.raises(IntentRejected):
        trigger_from_pct(D(100), D(pct), long=True, kind="SL")


# ---------------------------------------------------------------- protection checks


@pytest.mark.parametrize(
    ("long", "sl", "tp"),
    [
        (True, "94000", "96000"),
        (True, "95000.0", "95000.2"),  # exactly one tick each side of 95000.1
        (True, None, "96000"),
        (True, "94000", None),
        (True, None, None),
        (False, "96000", "94000"),
        (False, "95000.2", "95000.0"),
    ],
)
def test_protection_accepted(
    symbol_rules: dict[str, SymbolRules], long: bool, sl: str | None, tp: str | None
) -> None:
    check_protection(
        symbol_rules["BTCUSDT"],
        long=long,
        reference=D("95000.1"),
        sl=None if sl is None else D(sl),
        tp=None if tp is None else D(tp),
    )


@pytest.mark.parametrize(
    ("long", "sl", "tp", "code", "message"),
    [
        (
            True,
            "96000",
            "97000",
            ReasonCode.SL_TP_WRONG_SIDE,
            "stop_loss 96000 must be below the reference 95000.1 for a long BTCUSDT",
        ),
        (
            True,
            "94000",
            "94500",
            ReasonCode.SL_TP_WRONG_SIDE,
            "take_profit 94500 must be above the reference 95000.1 for a long BTCUSDT",
        ),
        (
            True,
            "95000.1",
            None,
            ReasonCode.SL_TP_WRONG_SIDE,
            "stop_loss 95000.1 must be below the reference 95000.1 for a long BTCUSDT",
        ),
        (
            False,
            "94000",
            None,
            ReasonCode.SL_TP_WRONG_SIDE,
            "stop_loss 94000 must be above the reference 95000.1 for a short BTCUSDT",
        ),
        (
            False,
            None,
            "96000",
            ReasonCode.SL_TP_WRONG_SIDE,
            "take_profit 96000 must be below the reference 95000.1 for a short BTCUSDT",
        ),
        (
            True,
            "95000.05",
            None,
            ReasonCode.SL_TP_TOO_CLOSE,
            "stop_loss 95000.05 is less than one tick (0.1) from the reference 95000.1 for BTCUSDT",
        ),
        (
            False,
            "96000",
            "95000.01",
            ReasonCode.SL_TP_TOO_CLOSE,
            "take_profit 95000.01 is less than one tick (0.1) from the reference 95000.1 for BTCUSDT",
        ),
    ],
)
def test_protection_rejected(
    symbol_rules: dict[str, SymbolRules],
    long: bool,
    sl: str | None,
    tp: str | None,
    code: ReasonCode,
    message: str,
) -> None:
    with pytest.raises(IntentRejected) as caught:
        check_protection(
            symbol_rules["BTCUSDT"],
            long=long,
            reference=D("95000.1"),
            sl=None if sl is None else D(sl),
            tp=None if tp is None else D(tp),
        )
    assert (caught.value.code, caught.value.message) == (code, message)


# ---------------------------------------------------------------- properties

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "1000PEPEUSDT", "NEARUSDT", "BNBUSDT"]
positive = st.decimals(min_value=D("0.0000001"), max_value=D("1000000"), places=7, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), price=positive, notional=positive, clamp=st.booleans())
def test_sized_quantity_is_a_valid_market_quantity(
    symbol_rules: dict[str, SymbolRules], symbol: str, price: Decimal, notional: Decimal, clamp: bool
) -> None:
    rules = symbol_rules[symbol]
    policy = MaxQtyPolicy.CLAMP if clamp else MaxQtyPolicy.REJECT
    try:
        qty = size_quantity(rules, price=price, notional_usd=notional, max_qty_policy=policy)
    except IntentRejected as exc:
        assert exc.code in {ReasonCode.QTY_BELOW_MIN, ReasonCode.QTY_ABOVE_MAX, ReasonCode.NOTIONAL_BELOW_MIN}
        assert symbol in exc.message
        return
    assert qty % rules.market_step_size == 0
    assert qty * price <= notional  # never more than asked
    assert rules.market_min_qty <= qty <= rules.market_max_qty
    assert qty * price >= rules.min_notional
    if not clamp:
        # Flooring loses less than one step.
        assert notional - qty * price < rules.market_step_size * price


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), quantity=positive)
def test_given_quantity_is_floored_never_raised(
    symbol_rules: dict[str, SymbolRules], symbol: str, quantity: Decimal
) -> None:
    rules = symbol_rules[symbol]
    try:
        qty = size_quantity(rules, price=D(1000), quantity=quantity)
    except IntentRejected:
        return
    assert qty % rules.market_step_size == 0
    assert qty <= quantity
    assert qty >= rules.market_min_qty


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), raw=positive, long=st.booleans(), kind=st.sampled_from(["SL", "TP"]))
def test_rounded_trigger_is_on_the_tick_and_on_the_safe_side(
    symbol_rules: dict[str, SymbolRules], symbol: str, raw: Decimal, long: bool, kind: TriggerKind
) -> None:
    rules = symbol_rules[symbol]
    try:
        trigger = round_trigger(rules, raw, long=long, kind=kind)
    except IntentRejected as exc:
        assert exc.code == ReasonCode.INVALID_FIELD
        return
    assert trigger % rules.tick_size == 0
    assert rules.min_price <= trigger <= rules.max_price
    if long == (kind == "SL"):
        assert trigger >= raw
    else:
        assert trigger <= raw
    if rules.min_price <= raw <= rules.max_price:
        assert abs(trigger - raw) < rules.tick_size


@settings(max_examples=200, deadline=None)
@given(
    reference=positive,
    pct=st.decimals(min_value=D("0.01"), max_value=D("99.99"), places=2),
    long=st.booleans(),
)
def test_pct_triggers_bracket_the_reference(reference: Decimal, pct: Decimal, long: bool) -> None:
    sl = trigger_from_pct(reference, pct, long=long, kind="SL")
    tp = trigger_from_pct(reference, pct, long=long, kind="TP")
    assert (sl < reference < tp) if long else (tp < reference < sl)
    assert abs(sl - reference) == abs(tp - reference) == reference * pct / 100
