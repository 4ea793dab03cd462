"""Endpoints the service does not call yet, through python-binance: allOpenOrders, commissionRate,
accountConfig, symbolConfig, rateLimit/order, fundingRate and fundingInfo."""

from __future__ import annotations

import aiohttp
import pytest
from binance import AsyncClient

from binance_sim import Simulator

from .conftest import Raw
from .rest_models import QueriedOrder, check
from .test_user_stream import connect, listen_key

pytestmark = pytest.mark.timeout(30)


async def test_cancel_all_open_orders_leaves_algo_orders(sim: Simulator, client: AsyncClient) -> None:
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    for price in ("90000", "91000"):
        await client.futures_create_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.010", price=price, timeInForce="GTC"
        )
    await client.futures_create_algo_order(
        symbol="BTCUSDT", side="SELL", type="STOP_MARKET", triggerPrice="90000", closePosition="true"
    )
    answer = await client.futures_cancel_all_open_orders(symbol="BTCUSDT")
    assert answer == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert await client.futures_get_open_orders(symbol="BTCUSDT") == []
    statuses = [
        o["status"] for o in check(QueriedOrder, await client.futures_get_all_orders(symbol="BTCUSDT"))
    ]
    assert statuses == ["FILLED", "CANCELED", "CANCELED"]
    assert len(await client.futures_get_open_algo_orders(symbol="BTCUSDT")) == 1  # the algo service's


async def test_account_reads(sim: Simulator, client: AsyncClient, raw: Raw) -> None:
    async with aiohttp.ClientSession() as session:
        listener = await connect(session, sim, f"/private/ws?listenKey={await listen_key(raw)}")
        await client.futures_change_leverage(symbol="ETHUSDT", leverage=5)
        await client.futures_change_margin_type(symbol="ETHUSDT", marginType="ISOLATED")
        await listener.wait("the margin type change", lambda e: e["e"] == "ACCOUNT_UPDATE")
        (config,) = listener.of("ACCOUNT_CONFIG_UPDATE")
        assert config["ac"] == {"s": "ETHUSDT", "l": 5}
        (update,) = listener.of("ACCOUNT_UPDATE")
        assert update["a"]["m"] == "MARGIN_TYPE_CHANGE"
        assert [(p["s"], p["mt"]) for p in update["a"]["P"]] == [("ETHUSDT", "isolated")]
        await listener.close()
    (config,) = await client.futures_symbol_config(symbol="ETHUSDT")
    assert (config["marginType"], config["leverage"], config["isAutoAddMargin"]) == ("ISOLATED", 5, "false")
    account = await client.futures_account_config()
    assert account["dualSidePosition"] is False and account["canTrade"] is True
    rate = await client.futures_commission_rate(symbol="BTCUSDT")
    assert rate == {"symbol": "BTCUSDT", "makerCommissionRate": "0.0002", "takerCommissionRate": "0.0005"}
    limits = await client.futures_v1_get_rate_limit_order()
    assert [(r["interval"], r["intervalNum"]) for r in limits] == [("SECOND", 10), ("MINUTE", 1)]


async def test_funding_rate_history_and_info(sim: Simulator, client: AsyncClient) -> None:
    assert await client.futures_funding_rate(symbol="BTCUSDT") == []
    sim.settle_funding()
    (row,) = await client.futures_funding_rate(symbol="BTCUSDT")
    assert set(row) == {"symbol", "fundingRate", "fundingTime", "markPrice"}
    assert row["fundingRate"] == "0.00010000"
    info = await client._request_futures_api("get", "fundingInfo", signed=False, data={})
    assert {r["symbol"] for r in info} >= {"BTCUSDT", "ETHUSDT"}
