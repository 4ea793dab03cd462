"""batchOrders (place and modify, per-order errors in place) and countdownCancelAll."""

from __future__ import annotations

import pytest
from binance import AsyncClient

from binance_sim import Simulator
from binance_sim.engine import Engine
from binance_sim.market import load_market
from binance_sim.params import Params

from .conftest import FakeClock, Raw
from .rest_models import PlacedOrder, check
from .test_user_stream import order as rest_order

pytestmark = pytest.mark.timeout(30)


async def test_a_batch_answers_each_order_in_place(sim: Simulator, client: AsyncClient) -> None:
    limit = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "timeInForce": "GTC"}
    answers = await client.futures_place_batch_order(
        batchOrders=[{**limit, "price": "90000"}, {**limit, "price": "90000.05"}, {**limit, "price": "91000"}]
    )
    assert [a.get("code") for a in answers] == [None, -4014, None]  # the middle one is off the tick
    check(PlacedOrder, [answers[0], answers[2]])
    assert len(await client.futures_get_open_orders(symbol="BTCUSDT")) == 2


async def test_a_batch_holds_five_at_most(raw: Raw) -> None:
    one = (
        '{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"0.010",'
        '"price":"90000","timeInForce":"GTC"}'
    )
    status, body, _ = await raw.signed(
        "POST", "/fapi/v1/batchOrders", {"batchOrders": "[" + ",".join([one] * 6) + "]"}
    )
    assert (status, body["code"]) == (400, -1130)
    status, body, _ = await raw.signed("PUT", "/fapi/v1/batchOrders", {"batchOrders": "not json"})
    assert (status, body["code"]) == (400, -1130)
    placed = await rest_order(
        raw, side="BUY", type="LIMIT", quantity="0.010", price="90000", timeInForce="GTC"
    )
    change = (
        f'[{{"symbol":"BTCUSDT","orderId":{placed["orderId"]},'
        '"side":"BUY","quantity":"0.020","price":"90000"}]'
    )
    status, body, _ = await raw.signed("PUT", "/fapi/v1/batchOrders", {"batchOrders": change})
    assert status == 200 and body[0]["origQty"] == "0.020"


def test_countdown_cancels_the_open_orders_unless_renewed() -> None:
    clock = FakeClock()
    engine = Engine(load_market(), clock)
    fields = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "timeInForce": "GTC"}
    engine.new_order(Params({**fields, "price": "90000"}))
    answer = engine.countdown_cancel_all(Params({"symbol": "BTCUSDT", "countdownTime": "10000"}))
    assert answer == {"symbol": "BTCUSDT", "countdownTime": "10000"}
    clock.now_ms += 9_999
    engine.tick()
    engine.countdown_cancel_all(Params({"symbol": "BTCUSDT", "countdownTime": "10000"}))  # the heartbeat
    clock.now_ms += 9_999
    engine.tick()
    assert len(engine.open_orders) == 1
    clock.now_ms += 1
    engine.tick()
    assert not engine.open_orders
    engine.new_order(Params({**fields, "price": "90000"}))
    engine.countdown_cancel_all(Params({"symbol": "BTCUSDT", "countdownTime": "10"}))
    engine.countdown_cancel_all(Params({"symbol": "BTCUSDT", "countdownTime": "0"}))  # switched off
    clock.now_ms += 60_000
    engine.tick()
    assert len(engine.open_orders) == 1
