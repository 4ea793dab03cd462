"""Closes the exchange makes: liquidation as the stream and REST show it, MARGIN_CALL ahead of it,
GET /fapi/v1/forceOrders, ADL ("adl_autoclose") and settlement ("settlement_autoclose-").

Every event is parsed with the strict stream models and every REST row with the strict REST models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from binance_sim import Simulator

from .conftest import Raw
from .rest_models import ForceOrder, QueriedOrder, check
from .test_user_stream import connect, listen_key

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _mark(raw: Raw, symbol: str, price: str) -> None:
    status, body, _ = await raw.request(
        "POST", "/_sim/markPrice", body=f'{{"symbol": "{symbol}", "price": "{price}"}}', api_key=None
    )
    assert status == 200, body


async def test_a_liquidation_is_called_first_then_calculated_in_the_stream_and_limit_ioc_in_rest(
    sim: Simulator, client: AsyncClient, raw: Raw, session: aiohttp.ClientSession
) -> None:
    await client.futures_change_margin_type(symbol="ETHUSDT", marginType="ISOLATED")
    await client.futures_create_order(symbol="ETHUSDT", side="BUY", type="MARKET", quantity="10")
    await client.futures_create_order(
        symbol="ETHUSDT", side="SELL", type="LIMIT", quantity="1", price="3200", timeInForce="GTC"
    )
    listener = await connect(session, sim, f"/private/ws?listenKey={await listen_key(raw)}")
    # Liquidation price 2964.97386935 (test_liquidation). At 2967 the margin ratio is
    # 148.35 / (1552.71 - 1384.20) = 0.88, a margin call; at 2960 the position is liquidated.
    await _mark(raw, "ETHUSDT", "2967")
    await listener.wait("the margin call", lambda e: e["e"] == "MARGIN_CALL")
    (call,) = listener.of("MARGIN_CALL")
    assert "cw" not in call  # an isolated position's call carries its isolated wallet instead
    assert [(r["s"], r["mt"], r["pa"], r["iw"]) for r in call["p"]] == [
        ("ETHUSDT", "ISOLATED", "10.000", "1552.71000000")
    ]
    await _mark(raw, "ETHUSDT", "2960")
    await listener.wait(
        "the liquidation fill",
        lambda e: (
            e["e"] == "ORDER_TRADE_UPDATE"
            and e["o"]["X"] == "FILLED"
            and e["o"]["c"].startswith("autoclose-")
        ),
    )
    assert len(listener.of("MARGIN_CALL")) == 1  # called once per crossing, not at every move
    updates = [e["o"] for e in listener.of("ORDER_TRADE_UPDATE")]
    expired = [o for o in updates if o["X"] == "EXPIRED"]
    assert [(o["o"], o["er"]) for o in expired] == [("LIMIT", "5")]  # expired by the liquidation
    liquidation = [o for o in updates if o["c"].startswith("autoclose-")]
    assert [(o["o"], o["f"], o["x"], o["X"]) for o in liquidation] == [
        ("LIQUIDATION", "IOC", "NEW", "NEW"),
        ("LIQUIDATION", "IOC", "CALCULATED", "FILLED"),
    ]
    order_id = liquidation[-1]["i"]
    queried = check(QueriedOrder, await client.futures_get_order(symbol="ETHUSDT", orderId=order_id))
    assert (queried["type"], queried["origType"], queried["timeInForce"]) == ("LIMIT", "LIMIT", "IOC")
    forced = check(ForceOrder, await client.futures_liquidation_orders(symbol="ETHUSDT"))
    assert [(f["orderId"], f["type"], f["timeInForce"], f["status"]) for f in forced] == [
        (order_id, "LIMIT", "IOC", "FILLED")
    ]
    assert await client.futures_liquidation_orders(autoCloseType="ADL") == []
    await listener.close()


async def test_force_orders_rules(sim: Simulator, client: AsyncClient, raw: Raw) -> None:
    assert await client.futures_liquidation_orders() == []
    for params, code in (
        ({"autoCloseType": "SETTLEMENT"}, -1130),
        ({"limit": "101"}, -1130),
        ({"startTime": "2000", "endTime": "1000"}, -1023),
    ):
        with pytest.raises(BinanceAPIException) as info:
            await client.futures_liquidation_orders(**params)
        assert info.value.code == code, params
    # 20 weight with a symbol, 50 without (the docs' "Request Weight").
    _, _, headers = await raw.signed("GET", "/fapi/v1/forceOrders", {"symbol": "BTCUSDT"})
    used = int(headers["X-MBX-USED-WEIGHT-1M"])
    _, _, headers = await raw.signed("GET", "/fapi/v1/forceOrders", {})
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) - used == 50


async def test_adl_and_settlement_close_with_their_client_ids(
    sim: Simulator, client: AsyncClient, raw: Raw, session: aiohttp.ClientSession
) -> None:
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.300")
    await client.futures_create_order(symbol="ETHUSDT", side="SELL", type="MARKET", quantity="2")
    await client.futures_create_order(
        symbol="ETHUSDT", side="BUY", type="LIMIT", quantity="1", price="3000", timeInForce="GTC"
    )
    listener = await connect(session, sim, f"/private/ws?listenKey={await listen_key(raw)}")
    status, adl, _ = await raw.request(
        "POST", "/_sim/adl", body='{"symbol": "BTCUSDT", "quantity": "0.100", "price": "96000"}', api_key=None
    )
    assert status == 200, adl
    check(QueriedOrder, adl)
    assert (adl["clientOrderId"], adl["type"], adl["timeInForce"], adl["executedQty"]) == (
        "adl_autoclose",
        "LIMIT",
        "GTC",
        "0.100",
    )
    (position,) = await client.futures_position_information(symbol="BTCUSDT")
    assert position["positionAmt"] == "0.200"
    forced = check(ForceOrder, await client.futures_liquidation_orders(autoCloseType="ADL"))
    assert [f["clientOrderId"] for f in forced] == ["adl_autoclose"]

    status, settled, _ = await raw.request(
        "POST", "/_sim/settle", body='{"symbol": "ETHUSDT", "price": "3050"}', api_key=None
    )
    assert status == 200, settled
    (close,) = settled["orders"]
    assert close["clientOrderId"].startswith("settlement_autoclose-") and close["side"] == "BUY"
    assert await client.futures_position_information(symbol="ETHUSDT") == []
    assert await client.futures_get_open_orders(symbol="ETHUSDT") == []
    await listener.wait(
        "the settlement fill",
        lambda e: (
            e["e"] == "ORDER_TRADE_UPDATE"
            and e["o"]["c"].startswith("settlement_autoclose-")
            and e["o"]["X"] == "FILLED"
        ),
    )
    fills = [e["o"] for e in listener.of("ORDER_TRADE_UPDATE") if e["o"]["X"] == "FILLED"]
    assert [(o["c"].split("-")[0], o["x"]) for o in fills] == [
        ("adl_autoclose", "CALCULATED"),
        ("settlement_autoclose", "CALCULATED"),
    ]
    await listener.close()
