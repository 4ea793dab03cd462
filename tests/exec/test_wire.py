"""Parsers of recorded Binance responses into typed records."""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.exchange.wire import AlgoOrder, Fees, Order, Position, Trade, parse_max_leverage

# Shapes as documented by Binance (USD-M futures), values from a MARKET order with RESULT.
ORDER_RESULT = {
    "orderId": 4079437915,
    "symbol": "BTCUSDT",
    "status": "FILLED",
    "clientOrderId": "qxe-abc",
    "price": "0.00",
    "avgPrice": "95240.10",
    "origQty": "0.010",
    "executedQty": "0.010",
    "cumQty": "0.010",
    "cumQuote": "952.40100",
    "timeInForce": "GTC",
    "type": "MARKET",
    "reduceOnly": False,
    "closePosition": False,
    "side": "BUY",
    "positionSide": "BOTH",
    "stopPrice": "0.00",
    "workingType": "CONTRACT_PRICE",
    "priceProtect": False,
    "origType": "MARKET",
    "priceMatch": "NONE",
    "selfTradePreventionMode": "EXPIRE_MAKER",
    "goodTillDate": 0,
    "updateTime": 1763683200123,
}
ORDER_ACK = {**ORDER_RESULT, "status": "NEW", "executedQty": "0", "avgPrice": "0.00", "cumQuote": "0.00000"}
ALGO = {
    "algoId": 3000000123,
    "clientAlgoId": "qxs-abc",
    "algoType": "CONDITIONAL",
    "orderType": "STOP_MARKET",
    "symbol": "BTCUSDT",
    "side": "SELL",
    "positionSide": "BOTH",
    "timeInForce": "GTC",
    "quantity": "0.010",
    "algoStatus": "NEW",
    "triggerPrice": "93000.00",
    "price": "0.00",
    "icebergQuantity": None,
    "selfTradePreventionMode": "EXPIRE_MAKER",
    "workingType": "MARK_PRICE",
    "priceMatch": "NONE",
    "closePosition": False,
    "priceProtect": True,
    "reduceOnly": True,
    "activatePrice": "",
    "callbackRate": "",
    "createTime": 1763683200200,
    "updateTime": 1763683200200,
    "triggerTime": 0,
    "goodTillDate": 0,
}
TRADE = {
    "buyer": True,
    "commission": "0.47620050",
    "commissionAsset": "USDT",
    "id": 698759,
    "maker": False,
    "orderId": 4079437915,
    "price": "95240.10",
    "qty": "0.010",
    "quoteQty": "952.40100",
    "realizedPnl": "0",
    "side": "BUY",
    "positionSide": "BOTH",
    "symbol": "BTCUSDT",
    "time": 1763683200123,
}


def test_order_result_parses_to_decimals() -> None:
    order = Order.parse(ORDER_RESULT)
    assert order.executed_qty == Decimal("0.010")
    assert order.avg_price == Decimal("95240.10")
    assert order.cum_quote == Decimal("952.40100")
    assert order.is_final


def test_ack_is_not_a_fill() -> None:
    order = Order.parse(ORDER_ACK)
    assert order.executed_qty == 0
    assert not order.is_final


def test_algo_order_reads_order_type_not_type() -> None:
    algo = AlgoOrder.parse(ALGO)
    assert algo.order_type == "STOP_MARKET"
    assert algo.trigger_price == Decimal("93000.00")
    assert algo.status.is_armed
    assert algo.reduce_only and not algo.close_position
    assert algo.actual_order_id == ""


def test_fees_sum_commission_over_trades() -> None:
    second = {**TRADE, "id": 698760, "commission": "0.1", "realizedPnl": "-1.5"}
    fees = Fees.from_trades([Trade.parse(TRADE), Trade.parse(second)])
    assert fees.commission == Decimal("0.57620050")
    assert fees.commission_asset == "USDT"
    assert fees.realized_pnl == Decimal("-1.5")


def test_mixed_commission_assets_are_not_summed_into_one() -> None:
    bnb = {**TRADE, "id": 2, "commissionAsset": "BNB"}
    assert Fees.from_trades([Trade.parse(TRADE), Trade.parse(bnb)]).commission_asset == "MIXED"


def test_position_margin_type_normalised() -> None:
    raw = {
        "symbol": "ETHUSDT",
        "positionAmt": "-0.500",
        "entryPrice": "3105.42",
        "leverage": "5",
        "marginType": "cross",
        "positionSide": "BOTH",
    }
    position = Position.parse(raw)
    assert position.amount == Decimal("-0.500")
    assert position.margin_type == "CROSSED" and position.leverage == 5


def test_leverage_bracket_object_or_list() -> None:
    entry = {
        "symbol": "BTCUSDT",
        "brackets": [{"bracket": 1, "initialLeverage": 125}, {"bracket": 2, "initialLeverage": 100}],
    }
    assert parse_max_leverage(entry, "BTCUSDT") == 125
    assert parse_max_leverage([entry], "BTCUSDT") == 125
    assert parse_max_leverage([entry], "ETHUSDT") is None
