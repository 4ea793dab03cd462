"""MARKET orders walk the synthetic book: several trades, a VWAP avgPrice, the marketTakeBound."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from binance import AsyncClient

from binance_sim import SimConfig, Simulator
from binance_sim.book import BookConfig, best_price
from binance_sim.engine import Engine
from binance_sim.params import Params

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]

# 100,000 USDT a level, levels 1% apart: BTCUSDT (mark 95234.50, tick 0.10, step 0.001) gets a gap of
# 952.345 -> 952.40 and level quantities 100000 / price rounded down to the step.
DEEP_1PCT = BookConfig(depth_notional=Decimal(100_000), level_bps=Decimal(100))


def _market(engine: Engine, side: str, quantity: str) -> dict[str, object]:
    result = engine.new_order(
        Params(
            {
                "symbol": "BTCUSDT",
                "side": side,
                "type": "MARKET",
                "quantity": quantity,
                "newOrderRespType": "RESULT",
            }
        )
    )
    assert isinstance(result, dict)
    return result


def test_market_order_walks_levels_to_an_exact_vwap(engine_factory: EngineFactory) -> None:
    engine = engine_factory(book=DEEP_1PCT)
    engine.set_balance("USDT", Decimal(100_000))
    result = _market(engine, "BUY", "2.500")
    assert [(t.price, t.qty) for t in engine.trades] == [
        (Decimal("95234.50"), Decimal("1.050")),
        (Decimal("96186.90"), Decimal("1.039")),
        (Decimal("97139.30"), Decimal("0.411")),
    ]
    assert result["status"] == "FILLED"
    assert result["executedQty"] == "2.500"
    assert Decimal(str(result["cumQuote"])) == Decimal("239858.6664")
    assert Decimal(str(result["avgPrice"])) == Decimal("95943.46656")
    # Each trade pays its own taker fee (0.05%), booked to 8 places.
    assert [t.commission for t in engine.trades] == [
        Decimal("49.99811250"),
        Decimal("49.96909455"),
        Decimal("19.96212615"),
    ]


def test_market_order_stops_at_market_take_bound_and_expires(engine_factory: EngineFactory) -> None:
    engine = engine_factory(book=DEEP_1PCT)
    engine.set_balance("USDT", Decimal(100_000))
    result = _market(engine, "BUY", "6.000")
    # The sixth level (99996.50) lies beyond 95234.50 * 1.05 = 99996.225: not taken, the rest expires.
    assert [t.price for t in engine.trades][-1] == Decimal("99044.10")
    assert len(engine.trades) == 5
    assert (result["status"], result["executedQty"], result["origQty"]) == ("EXPIRED", "5.146", "6.000")
    assert Decimal(str(result["cumQuote"])) == Decimal("499781.6930")
    assert engine.positions[("BTCUSDT", "BOTH")].amount == Decimal("5.146")


def test_without_depth_one_trade_at_the_best_price(engine_factory: EngineFactory) -> None:
    engine = engine_factory(book=BookConfig(spread_bps=Decimal(2)))
    engine.set_balance("USDT", Decimal(100_000))
    result = _market(engine, "BUY", "3.000")
    # Half the 2 bps spread above the mark, rounded up to the tick: 95244.02345 -> 95244.10.
    assert [(t.price, t.qty) for t in engine.trades] == [(Decimal("95244.10"), Decimal("3.000"))]
    assert result["avgPrice"] == "95244.10"


def test_best_prices_round_away_from_the_mark_on_each_side(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    spec = engine.spec("BTCUSDT")
    config = BookConfig(spread_bps=Decimal(2))
    mark = Decimal("95234.50")
    assert best_price(spec, "BUY", mark, config, Decimal(0)) == Decimal("95244.10")
    assert best_price(spec, "SELL", mark, config, Decimal(0)) == Decimal("95224.90")
    # Slippage adds to half the spread: 1 + 10 bps away.
    assert best_price(spec, "SELL", mark, config, Decimal(10)) == Decimal("95129.70")


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(rate_limits=False, book=DEEP_1PCT)


async def test_python_binance_sees_partial_fill_expired_and_every_trade(
    sim: Simulator, client: AsyncClient
) -> None:
    sim.set_balance("USDT", "100000")
    result = await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="6", newOrderRespType="RESULT"
    )
    # Down from 95234.50 in steps of 952.40 until 90472.50 < 95234.50 * 0.95 = 90472.775.
    assert (result["status"], result["executedQty"]) == ("EXPIRED", "5.356")
    assert Decimal(result["cumQuote"]) == Decimal("499771.0140")
    trades = await client.futures_account_trades(symbol="BTCUSDT", orderId=result["orderId"])
    assert [(t["price"], t["qty"]) for t in trades] == [
        ("95234.50", "1.050"),
        ("94282.10", "1.060"),
        ("93329.70", "1.071"),
        ("92377.30", "1.082"),
        ("91424.90", "1.093"),
    ]
    query = await client.futures_get_order(symbol="BTCUSDT", orderId=result["orderId"])
    assert (query["status"], query["executedQty"], query["type"]) == ("EXPIRED", "5.356", "MARKET")
    (position,) = await client.futures_position_information(symbol="BTCUSDT")
    assert position["positionAmt"] == "-5.356"
