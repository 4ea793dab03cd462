"""python-binance 1.0.37, unchanged, against the simulator over real HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from binance_sim import Simulator

pytestmark = pytest.mark.timeout(30)


async def test_market_entry_stop_fires_take_profit_stays_open(sim: Simulator, client: AsyncClient) -> None:
    server_time = (await client.futures_time())["serverTime"]
    assert isinstance(server_time, int)
    info = await client.futures_exchange_info()
    assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT"}
    mark = await client.futures_mark_price(symbol="BTCUSDT")
    assert mark["markPrice"] == "95234.50"

    entry = await client.futures_create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="MARKET",
        quantity="0.010",
        newOrderRespType="RESULT",
        newClientOrderId="entry-1",
    )
    assert (entry["status"], entry["executedQty"], entry["avgPrice"]) == ("FILLED", "0.010", "95234.50")
    assert Decimal(entry["cumQuote"]) == Decimal("952.345")

    stop = await client.futures_create_algo_order(
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        triggerPrice="94000",
        closePosition="true",
        workingType="MARK_PRICE",
        clientAlgoId="sl-1",
    )
    take = await client.futures_create_algo_order(
        symbol="BTCUSDT",
        side="SELL",
        type="TAKE_PROFIT_MARKET",
        triggerPrice="97000",
        closePosition="true",
        workingType="MARK_PRICE",
        clientAlgoId="tp-1",
    )
    assert stop["algoStatus"] == take["algoStatus"] == "NEW"
    assert {o["clientAlgoId"] for o in await client.futures_get_open_algo_orders(symbol="BTCUSDT")} == {
        "sl-1",
        "tp-1",
    }
    assert await client.futures_get_open_orders(symbol="BTCUSDT") == []  # algo orders are not regular orders

    sim.walk_mark_price("BTCUSDT", ["94500", "93900"])

    positions = await client.futures_position_information(symbol="BTCUSDT")
    assert [Decimal(p["positionAmt"]) for p in positions] == [] or all(
        Decimal(p["positionAmt"]) == 0 for p in positions
    )
    fired = await client.futures_get_algo_order(clientAlgoId="sl-1")
    assert fired["algoStatus"] == "FINISHED" and fired["actualOrderId"]
    tp = await client.futures_get_algo_order(clientAlgoId="tp-1")
    assert (tp["algoStatus"], tp["actualOrderId"]) == ("NEW", "")
    child = await client.futures_get_order(symbol="BTCUSDT", orderId=int(fired["actualOrderId"]))
    assert (child["status"], child["type"], child["origType"]) == ("FILLED", "MARKET", "STOP_MARKET")
    # "Query Algo Order": actualPrice is the triggered order's price once it filled ("0.00000" before).
    assert (fired["actualPrice"], tp["actualPrice"]) == (child["avgPrice"], "0.00000")
    all_orders = await client.futures_get_all_orders(symbol="BTCUSDT")
    assert [o["orderId"] for o in all_orders] == [entry["orderId"], child["orderId"]]

    trades = await client.futures_account_trades(symbol="BTCUSDT")
    assert len(trades) == 2
    assert all(t["commissionAsset"] == "USDT" and Decimal(t["commission"]) > 0 for t in trades)
    closing = next(t for t in trades if t["orderId"] == child["orderId"])
    assert Decimal(closing["realizedPnl"]) == (Decimal("93900") - Decimal("95234.5")) * Decimal("0.010")
    assert closing["side"] == "SELL" and closing["buyer"] is False and closing["maker"] is False

    balance = {b["asset"]: b for b in await client.futures_account_balance()}
    fees = sum(Decimal(t["commission"]) for t in trades)
    expected = Decimal("10855.45") + Decimal(closing["realizedPnl"]) - fees
    assert Decimal(balance["USDT"]["balance"]) == expected
    account = await client.futures_account()
    assert Decimal(account["totalWalletBalance"]) == expected


async def test_conditional_type_on_order_endpoint_is_rerouted_by_python_binance(client: AsyncClient) -> None:
    # python-binance sends STOP_MARKET to algoOrder itself; the -4120 path is covered by raw HTTP tests.
    result = await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="90000", quantity="0.010"
    )
    assert result["orderType"] == "STOP_MARKET" and result["algoStatus"] == "NEW"


async def test_errors_surface_as_binance_api_exceptions(client: AsyncClient) -> None:
    with pytest.raises(BinanceAPIException) as info:
        await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001")
    assert (info.value.status_code, info.value.code) == (400, -4164)
    with pytest.raises(BinanceAPIException) as info:
        await client.futures_get_order(symbol="BTCUSDT", origClientOrderId="missing")
    assert info.value.code == -2013
    with pytest.raises(BinanceAPIException) as info:
        await client.futures_change_leverage(symbol="BTCUSDT", leverage=200)
    assert info.value.code == -4028


async def test_account_endpoints(client: AsyncClient) -> None:
    assert await client.futures_get_position_mode() == {"dualSidePosition": False}
    assert (await client.futures_change_leverage(symbol="ETHUSDT", leverage=5))["leverage"] == 5
    assert await client.futures_change_margin_type(symbol="ETHUSDT", marginType="ISOLATED") == {
        "code": 200,
        "msg": "success",
    }
    brackets = await client.futures_leverage_bracket(symbol="ETHUSDT")
    assert brackets["brackets"][0]["initialLeverage"] == 100
    await client.futures_create_order(symbol="ETHUSDT", side="SELL", type="MARKET", quantity="1.000")
    (pos,) = await client.futures_position_information(symbol="ETHUSDT")
    assert (pos["positionAmt"], pos["positionSide"]) == ("-1.000", "BOTH")
    account = await client.futures_account()
    assert Decimal(account["availableBalance"]) < Decimal("10855.45")
    with pytest.raises(BinanceAPIException) as info:
        await client.futures_change_position_mode(dualSidePosition="true")
    assert info.value.code == -4068  # refused while a position is open
    await client.futures_create_order(
        symbol="ETHUSDT", side="BUY", type="MARKET", quantity="1.000", reduceOnly="true"
    )
    assert await client.futures_change_position_mode(dualSidePosition="true") == {
        "code": 200,
        "msg": "success",
    }
    assert await client.futures_get_position_mode() == {"dualSidePosition": True}


async def test_algo_cancel_paths(client: AsyncClient) -> None:
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    for index, trigger in enumerate(("90000", "91000", "92000")):
        await client.futures_create_algo_order(
            symbol="BTCUSDT",
            side="SELL",
            type="STOP_MARKET",
            triggerPrice=trigger,
            quantity="0.010",
            reduceOnly="true",
            clientAlgoId=f"sl-{index}",
        )
    canceled = await client.futures_cancel_algo_order(clientAlgoId="sl-0")
    assert (canceled["clientAlgoId"], canceled["code"], canceled["msg"]) == ("sl-0", "200", "success")
    with pytest.raises(BinanceAPIException) as info:
        await client.futures_cancel_algo_order(clientAlgoId="sl-0")
    assert info.value.code == -2011
    await client.futures_cancel_all_algo_open_orders(symbol="BTCUSDT")
    assert await client.futures_get_open_algo_orders() == []
    history = await client.futures_get_all_algo_orders(symbol="BTCUSDT")
    assert [a["algoStatus"] for a in history] == ["CANCELED"] * 3
