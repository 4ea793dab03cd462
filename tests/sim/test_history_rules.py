"""allOrders and userTrades: their windows, limits and the combinations Binance refuses."""

from __future__ import annotations

import pytest

from binance_sim.engine import Engine
from binance_sim.market import load_market
from binance_sim.params import Params

from .conftest import FakeClock
from .rest_models import QueriedOrder, UserTrade, check
from .test_engine import code_of, order

pytestmark = pytest.mark.timeout(30)

DAY = 24 * 3_600_000


def _engine() -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    return Engine(load_market(), clock), clock


def test_all_orders_takes_an_optional_symbol_and_a_window_of_at_most_7_days() -> None:
    engine, clock = _engine()
    first = order(engine, side="BUY", quantity="0.010")
    engine.new_order(Params({"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.100"}))
    both = check(QueriedOrder, engine.list_all_orders(Params({})))  # no symbol since 2026-08-25
    assert [o["symbol"] for o in both] == ["BTCUSDT", "ETHUSDT"]
    clock.now_ms += 8 * DAY
    assert engine.list_all_orders(Params({"symbol": "BTCUSDT"})) == []  # the last 7 days by default
    start = str(clock.now_ms - 9 * DAY)
    found = engine.list_all_orders(Params({"symbol": "BTCUSDT", "startTime": start}))
    assert [o["orderId"] for o in found] == [first["orderId"]]
    too_long = {"symbol": "BTCUSDT", "startTime": start, "endTime": str(clock.now_ms)}
    assert code_of(lambda: engine.list_all_orders(Params(too_long))) == -1127
    reversed_window = {"startTime": str(clock.now_ms), "endTime": start}
    assert code_of(lambda: engine.list_all_orders(Params(reversed_window))) == -1023
    assert code_of(lambda: engine.list_all_orders(Params({"limit": "1001"}))) == -1130


def test_unfilled_canceled_orders_drop_out_of_all_orders_after_3_days() -> None:
    engine, clock = _engine()
    resting = engine.new_order(
        Params(
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.010",
                "price": "90000",
                "timeInForce": "GTC",
            }
        )
    )
    engine.cancel_order(Params({"symbol": "BTCUSDT", "orderId": str(resting["orderId"])}))
    clock.now_ms += 3 * DAY
    assert [o["status"] for o in engine.list_all_orders(Params({"symbol": "BTCUSDT"}))] == ["CANCELED"]
    clock.now_ms += 1
    assert engine.list_all_orders(Params({"symbol": "BTCUSDT"})) == []


def test_user_trades_rules() -> None:
    engine, clock = _engine()
    order(engine, side="BUY", quantity="0.010")
    (trade,) = check(UserTrade, engine.user_trades(Params({"symbol": "BTCUSDT"})))
    both = {"symbol": "BTCUSDT", "fromId": str(trade["id"]), "startTime": str(clock.now_ms - DAY)}
    assert code_of(lambda: engine.user_trades(Params(both))) == -1128
    assert engine.user_trades(Params({"symbol": "BTCUSDT", "fromId": str(trade["id"])})) == [trade]
    clock.now_ms += 8 * DAY
    assert engine.user_trades(Params({"symbol": "BTCUSDT"})) == []  # the last 7 days by default
    assert engine.user_trades(Params({"symbol": "BTCUSDT", "fromId": "0"})) == [trade]
    clock.now_ms += 90 * DAY
    assert engine.user_trades(Params({"symbol": "BTCUSDT", "fromId": "0"})) == []  # 3 months back at most
