"""The pure engine: fills, fees, PnL, rule checks, algo triggers, position modes (no HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from binance_sim.engine import Engine
from binance_sim.errors import SimError
from binance_sim.params import Params

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]


def order(engine: Engine, **fields: str) -> dict:
    return engine.new_order(
        Params({"symbol": "BTCUSDT", "type": "MARKET", "newOrderRespType": "RESULT", **fields})
    )


def algo(engine: Engine, **fields: str) -> dict:
    return engine.new_algo_order(Params({"symbol": "BTCUSDT", "algoType": "CONDITIONAL", **fields}))


def code_of(call: Callable[[], object]) -> int:
    with pytest.raises(SimError) as info:
        call()
    return info.value.code


def position(engine: Engine, symbol: str = "BTCUSDT", side: str = "BOTH") -> Decimal:
    pos = engine.positions.get((symbol, side))
    return pos.amount if pos else Decimal(0)


def test_market_result_fills_at_mark_and_books_taker_fee(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    wallet_before = engine.account.wallet["USDT"]
    result = order(engine, side="BUY", quantity="0.010")
    assert result["status"] == "FILLED"
    assert result["avgPrice"] == "95234.50"
    assert result["executedQty"] == "0.010"
    assert Decimal(result["cumQuote"]) == Decimal("952.345")
    assert "commission" not in result and "fills" not in result
    (trade,) = engine.trades
    assert trade.commission == Decimal("0.47617250")  # 952.345 * 0.0005
    assert engine.account.wallet["USDT"] == wallet_before - trade.commission
    assert position(engine) == Decimal("0.010")


def test_ack_response_is_not_a_fill_but_the_order_is(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    result = engine.new_order(
        Params({"symbol": "BTCUSDT", "type": "MARKET", "side": "BUY", "quantity": "0.01"})
    )
    assert (result["status"], result["executedQty"], result["avgPrice"]) == ("NEW", "0", "0.00")
    queried = engine.query_order(Params({"symbol": "BTCUSDT", "orderId": str(result["orderId"])}))
    assert queried["status"] == "FILLED"


def test_slippage_moves_market_fill_against_the_taker(engine_factory: EngineFactory) -> None:
    engine = engine_factory(slippage_bps=Decimal(10))
    buy = order(engine, side="BUY", quantity="0.010")
    sell = order(engine, side="SELL", quantity="0.010")
    assert Decimal(buy["avgPrice"]) == Decimal("95329.80")  # 95234.5 * 1.001 rounded up to the tick
    assert Decimal(sell["avgPrice"]) == Decimal("95139.20")  # rounded down


def test_realized_pnl_on_close_and_flip(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010")
    engine.set_mark_price("BTCUSDT", Decimal("96234.50"))
    order(engine, side="SELL", quantity="0.030")
    closing = engine.trades[-1]
    assert closing.realized_pnl == Decimal("10.00000000")  # (96234.5 - 95234.5) * 0.010
    assert position(engine) == Decimal("-0.020")
    assert engine.positions[("BTCUSDT", "BOTH")].entry_price == Decimal("96234.50")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"quantity": "0.0001"}, -1111),
        ({"quantity": "0"}, -4003),
        ({"quantity": "121"}, -4005),  # MARKET_LOT_SIZE max 120 although LOT_SIZE allows 1000
        ({"quantity": "0.001"}, -4164),  # 95 USDT < 100
        ({"quantity": "abc"}, -1100),
        ({"quantity": ""}, -1102),
        ({"quantity": "0.01", "type": "STOP_MARKET"}, -4120),
        ({"quantity": "0.01", "type": "TAKE_PROFIT"}, -4120),
        ({"quantity": "0.01", "type": "TRAILING_STOP_MARKET"}, -4120),
        ({"quantity": "0.01", "type": "FOO"}, -1116),
        ({"quantity": "0.01", "side": "UP"}, -1117),
        ({"quantity": "0.01", "symbol": "NOPEUSDT"}, -1121),
        ({"quantity": "1", "symbol": "SRMUSDT"}, -1122),
        ({"quantity": "0.01", "positionSide": "LONG"}, -4061),
        ({"quantity": "0.01", "reduceOnly": "true"}, -2022),
        ({"quantity": "0.01", "newClientOrderId": "has space"}, -1100),
        ({"quantity": "0.01", "price": "95000"}, -1106),
    ],
)
def test_market_order_rejections(engine_factory: EngineFactory, fields: dict[str, str], code: int) -> None:
    engine = engine_factory()
    assert code_of(lambda: order(engine, **{"side": "BUY", **fields})) == code
    assert not engine.orders and not engine.trades


def test_min_notional_message_names_the_filter_value(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    with pytest.raises(SimError) as info:
        order(engine, side="BUY", quantity="0.001")
    assert info.value.msg == "Order's notional must be no smaller than 100 (unless you choose reduce only)."


def test_limit_rules_tick_step_and_percent_price(engine_factory: EngineFactory) -> None:
    engine = engine_factory()

    def limit(price: str, qty: str = "0.010", side: str = "BUY") -> dict:
        return order(engine, type="LIMIT", side=side, price=price, quantity=qty, timeInForce="GTC")

    assert code_of(lambda: limit("95000.05")) == -4014
    assert code_of(lambda: limit("95000.055")) == -1111
    assert code_of(lambda: limit("95000.0", qty="0.0105")) == -1111
    assert code_of(lambda: limit("100100.0")) == -4016  # above mark * 1.05
    assert code_of(lambda: limit("90000.0", side="SELL")) == -4024  # below mark * 0.95
    assert code_of(lambda: order(engine, type="LIMIT", side="BUY", price="95000", quantity="0.01")) == -1102


def test_resting_limit_fills_as_maker_when_the_mark_crosses(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    resting = order(engine, type="LIMIT", side="BUY", price="94000.0", quantity="0.010", timeInForce="GTC")
    assert resting["status"] == "NEW"
    assert len(engine.list_open_orders(Params({"symbol": "BTCUSDT"}))) == 1
    engine.set_mark_price("BTCUSDT", Decimal("94500"))
    assert not engine.trades
    engine.set_mark_price("BTCUSDT", Decimal("93900"))
    (trade,) = engine.trades
    assert (trade.price, trade.maker, trade.commission) == (Decimal("94000.0"), True, Decimal("0.18800000"))
    assert not engine.open_orders


def test_marketable_gtx_is_rejected_and_ioc_expires(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    assert (
        code_of(
            lambda: order(
                engine, type="LIMIT", side="BUY", price="96000.0", quantity="0.01", timeInForce="GTX"
            )
        )
        == -5022
    )
    ioc = order(engine, type="LIMIT", side="BUY", price="94000.0", quantity="0.010", timeInForce="IOC")
    assert ioc["status"] == "EXPIRED"


def test_duplicate_client_id_only_among_open_orders(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010", newClientOrderId="dup-1")
    order(engine, side="BUY", quantity="0.010", newClientOrderId="dup-1")  # filled one does not block
    order(
        engine,
        type="LIMIT",
        side="BUY",
        price="94000.0",
        quantity="0.010",
        timeInForce="GTC",
        newClientOrderId="dup-2",
    )
    assert code_of(lambda: order(engine, side="BUY", quantity="0.010", newClientOrderId="dup-2")) == -4116


def test_unknown_orders(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    assert (
        code_of(lambda: engine.query_order(Params({"symbol": "BTCUSDT", "origClientOrderId": "nope"})))
        == -2013
    )
    assert code_of(lambda: engine.cancel_order(Params({"symbol": "BTCUSDT", "orderId": "1"}))) == -2011
    filled = order(engine, side="BUY", quantity="0.010")
    assert (
        code_of(lambda: engine.cancel_order(Params({"symbol": "BTCUSDT", "orderId": str(filled["orderId"])})))
        == -2011
    )
    assert code_of(lambda: engine.query_order(Params({"symbol": "BTCUSDT"}))) == -1102


def test_insufficient_margin(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.set_balance("USDT", Decimal("40"))  # 0.010 BTC at 20x needs ~47.6 USDT
    assert code_of(lambda: order(engine, side="BUY", quantity="0.010")) == -2019
    engine.set_balance("USDT", Decimal("50"))
    order(engine, side="BUY", quantity="0.010")
    assert position(engine) == Decimal("0.010")


def test_leverage_and_margin_type(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    assert engine.leverage_of("BTCUSDT") == 20
    assert code_of(lambda: engine.change_leverage(Params({"symbol": "BTCUSDT", "leverage": "126"}))) == -4028
    assert code_of(lambda: engine.change_leverage(Params({"symbol": "XAUUSDT", "leverage": "21"}))) == -4028
    result = engine.change_leverage(Params({"symbol": "BTCUSDT", "leverage": "125"}))
    assert result == {"leverage": 125, "maxNotionalValue": "50000", "symbol": "BTCUSDT"}
    assert (
        code_of(lambda: engine.change_margin_type(Params({"symbol": "BTCUSDT", "marginType": "CROSSED"})))
        == -4046
    )
    engine.change_margin_type(Params({"symbol": "BTCUSDT", "marginType": "ISOLATED"}))
    order(engine, side="BUY", quantity="0.010")
    assert (
        code_of(lambda: engine.change_margin_type(Params({"symbol": "BTCUSDT", "marginType": "CROSSED"})))
        == -4048
    )


def test_stop_loss_fires_take_profit_stays_open(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010")
    sl = algo(
        engine, side="SELL", type="STOP_MARKET", triggerPrice="94000", closePosition="true", clientAlgoId="sl"
    )
    tp = algo(
        engine,
        side="SELL",
        type="TAKE_PROFIT_MARKET",
        triggerPrice="97000",
        closePosition="true",
        clientAlgoId="tp",
    )
    assert (sl["algoStatus"], sl["orderType"], tp["algoStatus"]) == ("NEW", "STOP_MARKET", "NEW")
    engine.set_mark_price("BTCUSDT", Decimal("94000.1"))
    assert engine.open_algo and len(engine.trades) == 1  # not crossed yet
    engine.set_mark_price("BTCUSDT", Decimal("94000"))  # SELL stop fires at price <= trigger
    fired = engine.query_algo_order(Params({"clientAlgoId": "sl"}))
    assert fired["algoStatus"] == "FINISHED" and fired["actualOrderId"] != ""
    child = engine.query_order(Params({"symbol": "BTCUSDT", "orderId": fired["actualOrderId"]}))
    assert (child["type"], child["origType"], child["status"]) == ("MARKET", "STOP_MARKET", "FILLED")
    assert position(engine) == 0
    assert engine.trades[-1].realized_pnl == Decimal("-12.34500000")
    still_open = engine.query_algo_order(Params({"clientAlgoId": "tp"}))
    assert still_open["algoStatus"] == "NEW" and still_open["actualOrderId"] == ""


def test_triggered_close_position_on_flat_position_opens_nothing(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    algo(
        engine,
        side="SELL",
        type="TAKE_PROFIT_MARKET",
        triggerPrice="96000",
        closePosition="true",
        clientAlgoId="tp",
    )
    algo(
        engine,
        side="SELL",
        type="TAKE_PROFIT_MARKET",
        triggerPrice="96000",
        quantity="0.010",
        reduceOnly="true",
    )
    engine.set_mark_price("BTCUSDT", Decimal("96500"))
    assert position(engine) == 0 and not engine.trades
    # Binance rejects such a trigger in the algo service: no order is placed behind it.
    assert not engine.orders
    assert {(a.algo_status, a.reject_reason) for a in engine.algo_orders.values()} == {
        ("REJECTED", "Reduce Only reject")
    }
    assert not engine.open_algo


@pytest.mark.parametrize(
    ("order_type", "side", "trigger"),
    [
        ("STOP_MARKET", "BUY", "95000"),  # BUY stop fires when price >= trigger: already true
        ("STOP_MARKET", "SELL", "95300"),
        ("TAKE_PROFIT_MARKET", "BUY", "95300"),
        ("TAKE_PROFIT_MARKET", "SELL", "95000"),
        ("STOP_MARKET", "SELL", "95234.5"),  # equal counts as crossed
    ],
)
def test_would_immediately_trigger(
    engine_factory: EngineFactory, order_type: str, side: str, trigger: str
) -> None:
    engine = engine_factory()
    assert (
        code_of(lambda: algo(engine, side=side, type=order_type, triggerPrice=trigger, quantity="0.010"))
        == -2021
    )


def test_algo_rules(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    base = {"side": "SELL", "type": "STOP_MARKET", "triggerPrice": "90000"}
    assert code_of(lambda: algo(engine, **base, closePosition="true", quantity="0.01")) == -1106
    assert code_of(lambda: algo(engine, **base, closePosition="true", reduceOnly="true")) == -1106
    assert code_of(lambda: algo(engine, **base, quantity="0.01", clientAlgoId="bad id")) == -1100
    assert code_of(lambda: algo(engine, **{**base, "type": "MARKET"}, quantity="0.01")) == -1116
    assert code_of(lambda: algo(engine, **{**base, "triggerPrice": "90000.05"}, quantity="0.01")) == -4014
    assert (
        code_of(lambda: engine.new_algo_order(Params({"symbol": "BTCUSDT", **base, "quantity": "0.01"})))
        == -1102
    )
    algo(engine, **base, quantity="0.010", clientAlgoId="same")
    assert code_of(lambda: algo(engine, **base, quantity="0.010", clientAlgoId="same")) == -4116


def test_algo_cancel_query_and_limit(engine_factory: EngineFactory) -> None:
    # The per-symbol MAX_NUM_ALGO_ORDERS filter lifted so that the 200-per-account limit is what bites.
    engine = engine_factory(max_algo_orders_per_symbol=1000)
    placed = algo(
        engine, side="SELL", type="STOP_MARKET", triggerPrice="90000", quantity="0.010", clientAlgoId="a1"
    )
    cancel = engine.cancel_algo_order(Params({"algoId": str(placed["algoId"])}))
    assert cancel == {"algoId": placed["algoId"], "clientAlgoId": "a1", "code": "200", "msg": "success"}
    assert code_of(lambda: engine.cancel_algo_order(Params({"algoId": str(placed["algoId"])}))) == -2011
    assert code_of(lambda: engine.query_algo_order(Params({"algoId": "1"}))) == -2013
    for i in range(200):
        algo(engine, side="SELL", type="STOP_MARKET", triggerPrice=str(80000 + i), quantity="0.010")
    assert (
        code_of(lambda: algo(engine, side="SELL", type="STOP_MARKET", triggerPrice="79000", quantity="0.010"))
        == -4045
    )
    engine.cancel_all_algo_orders(Params({"symbol": "BTCUSDT"}))
    assert engine.list_open_algo_orders(Params({})) == []
    assert len(engine.list_all_algo_orders(Params({"symbol": "BTCUSDT", "limit": "1000"}))) == 201


def test_hedge_mode(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.change_position_mode(Params({"dualSidePosition": "true"}))
    assert code_of(lambda: engine.change_position_mode(Params({"dualSidePosition": "true"}))) == -4059
    assert code_of(lambda: order(engine, side="BUY", quantity="0.010")) == -4061
    assert (
        code_of(lambda: order(engine, side="BUY", quantity="0.010", positionSide="LONG", reduceOnly="true"))
        == -1106
    )
    order(engine, side="BUY", quantity="0.010", positionSide="LONG")
    order(engine, side="SELL", quantity="0.020", positionSide="SHORT")
    assert position(engine, side="LONG") == Decimal("0.010")
    assert position(engine, side="SHORT") == Decimal("-0.020")
    assert code_of(lambda: order(engine, side="SELL", quantity="0.020", positionSide="LONG")) == -2022
    assert code_of(lambda: engine.change_position_mode(Params({"dualSidePosition": "false"}))) == -4068


def test_trailing_stop_fires_after_the_callback(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010")
    algo(
        engine,
        side="SELL",
        type="TRAILING_STOP_MARKET",
        quantity="0.010",
        callbackRate="1",
        reduceOnly="true",
    )
    engine.set_mark_price("BTCUSDT", Decimal("100000"))
    engine.set_mark_price("BTCUSDT", Decimal("99100"))
    assert position(engine) == Decimal("0.010")
    engine.set_mark_price("BTCUSDT", Decimal("99000"))  # 1% below the 100000 high
    assert position(engine) == 0


def test_state_and_reset(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010")
    state = engine.state()
    assert len(state["orders"]) == 1 and len(state["trades"]) == 1 and len(state["positions"]) == 1
    engine.reset()
    state = engine.state()
    assert state["orders"] == [] and state["positions"] == [] and state["markPrices"]["BTCUSDT"] == "95234.50"


def test_takers_fill_a_resting_limit_in_pieces_at_its_price(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="SELL", quantity="0.010")  # a short for the BUY to net against
    resting = order(
        engine,
        side="BUY",
        type="LIMIT",
        quantity="0.020",
        price="90000",
        timeInForce="GTC",
        newClientOrderId="r1",
    )
    assert resting["status"] == "NEW"
    piece = engine.trade_against("BTCUSDT", "r1", Decimal("0.005"))
    assert piece["status"] == "PARTIALLY_FILLED" and piece["executedQty"] == "0.005"
    assert position(engine) == Decimal("-0.005")
    last = engine.trade_against("BTCUSDT", "r1", Decimal("1"))  # at most the remainder fills
    assert last["status"] == "FILLED" and last["executedQty"] == "0.020"
    assert position(engine) == Decimal("0.010")
    maker_fills = [t for t in engine.trades if t.order_id == resting["orderId"]]
    assert [t.price for t in maker_fills] == [Decimal("90000")] * 2 and all(t.maker for t in maker_fills)
    assert code_of(lambda: engine.trade_against("BTCUSDT", "r1", Decimal("0.001"))) == -2011  # no longer open


def test_hedge_mode_closing_orders_and_triggers_without_a_position_are_refused(
    engine_factory: EngineFactory,
) -> None:
    """In hedge mode a SELL of LONG (a BUY of SHORT) only closes: with no position it is refused (an
    order: -2022; a trigger: REJECTED "Reduce Only reject"), never a negative LONG position."""
    engine = engine_factory()
    engine.change_position_mode(Params({"dualSidePosition": "true"}))
    assert code_of(lambda: order(engine, side="SELL", quantity="0.010", positionSide="LONG")) == -2022
    assert code_of(lambda: order(engine, side="BUY", quantity="0.010", positionSide="SHORT")) == -2022
    assert position(engine, side="LONG") == 0 and position(engine, side="SHORT") == 0
    placed = algo(
        engine, side="SELL", positionSide="LONG", type="STOP_MARKET", triggerPrice="94000", quantity="0.010"
    )
    engine.set_mark_price("BTCUSDT", Decimal("93000"))
    engine.complete_triggers()
    [fired] = [a for a in engine.algo_orders.values() if a.algo_id == placed["algoId"]]
    assert (fired.algo_status, fired.reject_reason) == ("REJECTED", "Reduce Only reject")
    assert position(engine, side="LONG") == 0 and not engine.trades
