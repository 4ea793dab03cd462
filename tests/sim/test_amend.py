"""PUT /fapi/v1/order ("Modify Order"), GET /fapi/v1/orderAmendment, and the stream events of an
amendment and of a self-trade prevention expiry, parsed with the strict models."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from binance_sim import SimConfig, Simulator
from binance_sim.book import BookConfig

from .conftest import Raw
from .rest_models import PlacedOrder, check
from .test_user_stream import connect, listen_key

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sim_config() -> SimConfig:
    from decimal import Decimal

    return SimConfig(rate_limits=False, book=BookConfig(spread_bps=Decimal(20)))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_modify_a_resting_limit(
    sim: Simulator, client: AsyncClient, raw: Raw, session: aiohttp.ClientSession
) -> None:
    listener = await connect(session, sim, f"/private/ws?listenKey={await listen_key(raw)}")
    placed = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.010", price="90000", timeInForce="GTC"
    )
    modified = await client.futures_modify_order(
        symbol="BTCUSDT", orderId=placed["orderId"], side="BUY", quantity="0.020", price="90100"
    )
    check(PlacedOrder, modified)
    assert (modified["price"], modified["origQty"], modified["status"]) == ("90100.00", "0.020", "NEW")
    with pytest.raises(BinanceAPIException) as same:
        await client.futures_modify_order(
            symbol="BTCUSDT", orderId=placed["orderId"], side="BUY", quantity="0.020", price="90100"
        )
    assert same.value.code == -5027
    (amendment,) = await client.futures_v1_get_order_amendment(symbol="BTCUSDT", orderId=placed["orderId"])
    assert amendment["amendment"] == {
        "price": {"before": "90000.00", "after": "90100.00"},
        "origQty": {"before": "0.010", "after": "0.020"},
        "count": 1,
    }
    await listener.wait(
        "the amendment", lambda e: e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "AMENDMENT"
    )
    # Our SELL inside the spread is the top of the book: the BUY taker expires it (EXPIRE_MAKER).
    maker = await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="LIMIT", quantity="0.010", price="95300", timeInForce="GTC"
    )
    await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.010", price="95400", timeInForce="GTC"
    )
    await listener.wait(
        "the maker's expiry",
        lambda e: e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["i"] == maker["orderId"] and e["o"]["X"] != "NEW",
    )
    (expiry,) = [e["o"] for e in listener.of("ORDER_TRADE_UPDATE") if e["o"]["i"] == maker["orderId"]][1:]
    assert (expiry["x"], expiry["X"], expiry["er"]) == ("EXPIRED", "EXPIRED_IN_MATCH", "1")
    await listener.close()
