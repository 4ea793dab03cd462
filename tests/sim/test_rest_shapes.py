"""The main REST answers through python-binance, each validated with the strict REST models."""

from __future__ import annotations

import pytest
from binance import AsyncClient

from binance_sim import Simulator

from .rest_models import AlgoOrderQueried, BalanceV3, PlacedOrder, PositionV3, QueriedOrder, UserTrade, check

pytestmark = pytest.mark.timeout(30)


async def test_order_algo_position_balance_and_trade_shapes(sim: Simulator, client: AsyncClient) -> None:
    placed = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newOrderRespType="RESULT"
    )
    check(PlacedOrder, placed)
    check(QueriedOrder, await client.futures_get_order(symbol="BTCUSDT", orderId=placed["orderId"]))
    resting = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.010", price="90000", timeInForce="GTC"
    )
    check(QueriedOrder, await client.futures_get_open_orders(symbol="BTCUSDT"))
    check(PlacedOrder, await client.futures_cancel_order(symbol="BTCUSDT", orderId=resting["orderId"]))
    stop = await client.futures_create_algo_order(
        symbol="BTCUSDT", side="SELL", type="STOP_MARKET", triggerPrice="90000", closePosition="true"
    )
    check(AlgoOrderQueried, await client.futures_get_algo_order(algoId=stop["algoId"]))
    check(AlgoOrderQueried, await client.futures_get_open_algo_orders(symbol="BTCUSDT"))
    (position,) = check(PositionV3, await client.futures_position_information(symbol="BTCUSDT"))
    assert position["positionAmt"] == "0.010"
    check(BalanceV3, await client.futures_account_balance(version=3))
    check(UserTrade, await client.futures_account_trades(symbol="BTCUSDT"))
    check(QueriedOrder, await client.futures_get_all_orders(symbol="BTCUSDT"))
