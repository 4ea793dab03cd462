"""GTD, priceMatch and priceProtect as Binance's "New Order" / "New Algo Order" pages define them."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from binance_sim.book import BookConfig
from binance_sim.engine import Engine
from binance_sim.params import Params

from .conftest import FakeClock
from .test_engine import algo, code_of, order

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]


def _limit(engine: Engine, **fields: str) -> dict:
    body = engine.new_order(
        Params(
            {
                "symbol": "BTCUSDT",
                "type": "LIMIT",
                "quantity": "0.010",
                "newOrderRespType": "RESULT",
                **fields,
            }
        )
    )
    assert isinstance(body, dict)
    return body


def test_gtd_needs_a_date_over_600_s_ahead_and_expires_then() -> None:
    from binance_sim.market import load_market

    clock = FakeClock()
    engine = Engine(load_market(), clock)
    gtd = dict(side="BUY", price="90000", timeInForce="GTD")
    assert code_of(lambda: _limit(engine, **gtd)) == -1102  # goodTillDate is mandatory with GTD
    assert code_of(lambda: _limit(engine, **gtd, goodTillDate=str(clock.now_ms + 600_000))) == -1130
    placed = _limit(engine, **gtd, goodTillDate=str(clock.now_ms + 600_001 + 999))
    assert placed["goodTillDate"] == clock.now_ms + 601_000  # kept to the second
    clock.now_ms += 600_999
    assert (
        engine.query_order(Params({"symbol": "BTCUSDT", "orderId": str(placed["orderId"])}))["status"]
        == "NEW"
    )
    clock.now_ms += 1
    expired = engine.query_order(Params({"symbol": "BTCUSDT", "orderId": str(placed["orderId"])}))
    assert expired["status"] == "EXPIRED" and not engine.open_orders


def test_price_match_sets_the_price_from_the_book_and_refuses_a_price(engine_factory: EngineFactory) -> None:
    # Spread 20 bps around 95234.50: best ask 95329.80 (rounded up), best bid 95139.20 (rounded down);
    # levels one tick apart.
    engine = engine_factory(book=BookConfig(spread_bps=Decimal(20)))
    queue = _limit(engine, side="BUY", timeInForce="GTC", priceMatch="QUEUE")
    assert (queue["price"], queue["priceMatch"], queue["status"]) == ("95139.20", "QUEUE", "NEW")
    queue5 = _limit(engine, side="BUY", timeInForce="GTC", priceMatch="QUEUE_5")
    assert queue5["price"] == "95138.80"
    opponent = _limit(engine, side="BUY", timeInForce="IOC", priceMatch="OPPONENT")
    assert (opponent["price"], opponent["status"]) == ("95329.80", "FILLED")
    assert (
        code_of(lambda: _limit(engine, side="BUY", timeInForce="GTC", price="90000", priceMatch="QUEUE"))
        == -1106
    )
    assert code_of(lambda: _limit(engine, side="BUY", timeInForce="GTC", priceMatch="BEST")) == -1130
    assert code_of(lambda: order(engine, side="BUY", quantity="0.010", priceMatch="OPPONENT")) == -1106


def test_price_protect_holds_a_trigger_while_mark_and_last_are_apart(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010")
    fields = dict(side="SELL", type="STOP_MARKET", triggerPrice="94000", quantity="0.010", reduceOnly="true")
    guarded = algo(engine, **fields, workingType="MARK_PRICE", priceProtect="TRUE")
    plain = algo(engine, **fields, workingType="MARK_PRICE")
    # triggerProtect 0.05: mark 93000 with the last price at 98000 (5.4 % apart) holds the guarded one.
    engine.set_reference_prices("BTCUSDT", index=None, last=Decimal(98000))
    engine.set_mark_price("BTCUSDT", Decimal(93000))
    assert engine.algo_orders[plain["algoId"]].algo_status == "FINISHED"  # fired and closed the long
    assert engine.algo_orders[guarded["algoId"]].algo_status == "NEW"
    engine.set_reference_prices("BTCUSDT", index=None, last=Decimal(93100))
    engine.set_mark_price("BTCUSDT", Decimal(93000))
    # Fires now; with the position already closed by the other, it is rejected (Reduce Only reject).
    assert engine.algo_orders[guarded["algoId"]].algo_status == "REJECTED"
