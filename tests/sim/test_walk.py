"""The seeded mark walk, and index / last prices apart from the mark."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from binance import AsyncClient

from binance_sim import SimConfig, Simulator
from binance_sim.engine import Engine
from binance_sim.params import Params
from binance_sim.walk import PriceWalk, WalkConfig

from .conftest import API_KEY, API_SECRET, Raw

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]
WALK = WalkConfig(volatility=Decimal("0.002"), seed=42)


def _walked(engine: Engine, config: WalkConfig, steps: int) -> list[dict[str, tuple[Decimal, ...]]]:
    walk = PriceWalk(config)
    path = []
    for _ in range(steps):
        walk.step(engine)
        path.append({s: (engine.mark(s), engine.index_price(s), engine.last_price(s)) for s in engine.marks})
    return path


def test_same_seed_same_path_other_seed_other_path(engine_factory: EngineFactory) -> None:
    first = _walked(engine_factory(), WALK, 25)
    again = _walked(engine_factory(), WALK, 25)
    other = _walked(engine_factory(), WalkConfig(volatility=Decimal("0.002"), seed=43), 25)
    assert first == again
    assert first != other
    start = engine_factory().marks
    assert all(first[-1][s][0] != start[s] for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT"))


def test_walked_prices_stay_on_the_tick_and_apart(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    path = _walked(engine, WALK, 10)
    for symbol, (mark, index, last) in path[-1].items():
        tick = engine.spec(symbol).tick_size
        assert mark > 0 and mark % tick == index % tick == last % tick == 0
    mark, index, last = path[-1]["BTCUSDT"]
    assert len({mark, index, last}) == 3
    row = engine.premium_index(Params({"symbol": "BTCUSDT"}))
    ticker = engine.ticker_price(Params({"symbol": "BTCUSDT"}))
    assert isinstance(row, dict) and isinstance(ticker, dict)
    assert (Decimal(row["markPrice"]), Decimal(row["indexPrice"]), Decimal(ticker["price"])) == (
        mark,
        index,
        last,
    )


def _stop(engine: Engine, working_type: str) -> int:
    body = engine.new_algo_order(
        Params(
            {
                "algoType": "CONDITIONAL",
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "triggerPrice": "94000",
                "quantity": "0.002",
                "workingType": working_type,
            }
        )
    )
    return int(body["algoId"])


def test_contract_price_triggers_watch_the_last_price(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    on_mark = _stop(engine, "MARK_PRICE")
    on_last = _stop(engine, "CONTRACT_PRICE")
    engine.set_reference_prices("BTCUSDT", index=Decimal("95010"), last=Decimal("93990"))
    engine.set_mark_price("BTCUSDT", Decimal("95000"))
    assert engine.algo_orders[on_last].algo_status != "NEW"
    assert engine.algo_orders[on_mark].algo_status == "NEW"
    engine.set_reference_prices("BTCUSDT", index=None, last=None)
    engine.set_mark_price("BTCUSDT", Decimal("93999.9"))
    assert engine.algo_orders[on_mark].algo_status != "NEW"


async def test_mark_price_control_sets_index_and_last(sim: Simulator, client: AsyncClient, raw: Raw) -> None:
    body = '{"symbol": "ETHUSDT", "price": "3100", "indexPrice": "3101.5", "lastPrice": "3098.25"}'
    status, _, _ = await raw.request("POST", "/_sim/markPrice", body=body, api_key=None)
    assert status == 200
    premium = await client.futures_mark_price(symbol="ETHUSDT")
    ticker = await client.futures_symbol_ticker(symbol="ETHUSDT")
    assert (premium["markPrice"], premium["indexPrice"], ticker["price"]) == ("3100.00", "3101.50", "3098.25")
    sim.set_mark_price("ETHUSDT", "3090")  # without them, both follow the mark again
    premium = await client.futures_mark_price(symbol="ETHUSDT")
    ticker = await client.futures_symbol_ticker(symbol="ETHUSDT")
    assert (premium["indexPrice"], ticker["price"]) == ("3090.00", "3090.00")


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(
        rate_limits=False, walk=WalkConfig(volatility=Decimal("0.002"), seed=42, interval_s=3600)
    )


async def test_walk_control_steps_the_seeded_walk(
    sim: Simulator, raw: Raw, engine_factory: EngineFactory
) -> None:
    expected = _walked(engine_factory(), WALK, 3)[-1]
    status, body, _ = await raw.request("POST", "/_sim/walk", body='{"steps": 3}', api_key=None)
    assert status == 200
    assert Decimal(body["markPrices"]["BTCUSDT"]) == expected["BTCUSDT"][0]
    sim.reset()  # back to the fixtures and to the start of the seeded path
    sim.walk_step(3)
    assert sim.engine.mark("BTCUSDT") == expected["BTCUSDT"][0]
    status, body, _ = await raw.request("POST", "/_sim/walk", body='{"steps": 0}', api_key=None)
    assert (status, body["code"]) == (400, -1130)


async def test_walk_timer_fires_stops_and_targets_by_itself() -> None:
    sim = Simulator(
        SimConfig(rate_limits=False, walk=WalkConfig(volatility=Decimal("0.003"), interval_s=0.01, seed=5))
    )
    engine = sim.engine
    engine.new_order(Params({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}))
    for order_type, trigger in (("STOP_MARKET", "94282.1"), ("TAKE_PROFIT_MARKET", "96186.9")):  # 1% away
        engine.new_algo_order(
            Params(
                {
                    "algoType": "CONDITIONAL",
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": order_type,
                    "triggerPrice": trigger,
                    "closePosition": "true",
                    "workingType": "MARK_PRICE",
                }
            )
        )
    await sim.start()
    client = AsyncClient(API_KEY, API_SECRET)
    client.FUTURES_URL = sim.base_url + "/fapi"
    try:
        deadline = time.monotonic() + 15
        algos: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            algos = await client.futures_get_all_algo_orders(symbol="BTCUSDT")
            if any(a["algoStatus"] != "NEW" for a in algos):
                break
            await asyncio.sleep(0.05)
        fired = [a for a in algos if a["algoStatus"] != "NEW"]
        assert fired and fired[0]["actualOrderId"]
        assert await client.futures_position_information(symbol="BTCUSDT") == []
    finally:
        await client.close_connection()
        await sim.stop()
