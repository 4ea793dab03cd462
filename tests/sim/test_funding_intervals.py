"""Funding on each symbol's own interval: Binance runs most perpetuals on 8 h and some on 4 h
("Get Funding Rate Info": fundingIntervalHours); the fixture puts RENDERUSDT on 4 h."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from importlib import resources

import pytest

from binance_sim.engine import Engine
from binance_sim.funding import FundingConfig, next_settlement
from binance_sim.market import load_market, parse_market
from binance_sim.options import build_parser, config_from_args
from binance_sim.params import Params

from .conftest import FakeClock, Raw
from .rest_models import FundingInfo, PremiumIndex

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]
HOUR = 3_600_000
START = 1_763_683_200_000  # FakeClock's start: 2025-11-21 00:00 UTC


def _market(engine: Engine, symbol: str, side: str, quantity: str) -> None:
    engine.new_order(Params({"symbol": symbol, "side": side, "type": "MARKET", "quantity": quantity}))


def test_funding_info_and_premium_index_show_each_symbols_interval() -> None:
    engine = Engine(load_market(), FakeClock(START + HOUR))  # 01:00 UTC
    info = {m.symbol: m for m in (FundingInfo.model_validate(r) for r in engine.funding_info(Params({})))}
    assert (info["BTCUSDT"].fundingIntervalHours, info["RENDERUSDT"].fundingIntervalHours) == (8, 4)
    rows = engine.premium_index(Params({}))
    assert isinstance(rows, list)
    premium = {m.symbol: m for m in (PremiumIndex.model_validate(r) for r in rows)}
    assert premium["RENDERUSDT"].nextFundingTime == START + 4 * HOUR
    assert premium["BTCUSDT"].nextFundingTime == START + 8 * HOUR


def test_a_configured_interval_puts_every_symbol_on_it(engine_factory: EngineFactory) -> None:
    engine = engine_factory(funding=FundingConfig(interval_ms=HOUR))
    info = {r["symbol"]: r["fundingIntervalHours"] for r in engine.funding_info(Params({}))}
    assert (info["BTCUSDT"], info["RENDERUSDT"]) == (1, 1)


def test_market_state_chooses_the_interval_and_unknown_symbols_are_ignored() -> None:
    fixtures = resources.files("binance_sim") / "fixtures"
    state = json.loads((fixtures / "market_state.json").read_text())
    state["fundingIntervalHours"] = {"ETHUSDT": 1, "NOSUCHUSDT": 4}
    market = parse_market(json.loads((fixtures / "exchange_info.json").read_text()), state)
    assert market.funding_interval_hours == {"ETHUSDT": 1}
    engine = Engine(market, FakeClock())
    row = engine.premium_index(Params({"symbol": "ETHUSDT"}))
    assert isinstance(row, dict) and row["nextFundingTime"] == START + HOUR
    info = {r["symbol"]: r["fundingIntervalHours"] for r in engine.funding_info(Params({}))}
    assert (info["ETHUSDT"], info["RENDERUSDT"]) == (1, 8)


def test_schedule_settles_the_4h_symbol_twice_per_8h_settlement() -> None:
    intervals = {"BTCUSDT": 8 * HOUR, "RENDERUSDT": 4 * HOUR}
    last: dict[str, int] = {}
    seen: list[tuple[int, list[str]]] = []
    now = START + 1
    for _ in range(4):
        due, symbols = next_settlement(now, intervals, last)
        seen.append((due - START, symbols))
        last |= dict.fromkeys(symbols, due)
        now = due  # the timer wakes exactly at the due time
    assert seen == [
        (4 * HOUR, ["RENDERUSDT"]),
        (8 * HOUR, ["BTCUSDT", "RENDERUSDT"]),
        (12 * HOUR, ["RENDERUSDT"]),
        (16 * HOUR, ["BTCUSDT", "RENDERUSDT"]),
    ]


def test_a_settlement_of_some_symbols_leaves_the_others_alone(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    _market(engine, "BTCUSDT", "BUY", "0.010")
    _market(engine, "RENDERUSDT", "BUY", "100")
    rows = engine.settle_funding(START + 4 * HOUR, ["RENDERUSDT"])
    # A long pays mark × amount × rate: 1.254 × 100 × 0.0001.
    assert [(r.symbol, r.income) for r in rows] == [("RENDERUSDT", Decimal("-0.01254000"))]
    history = engine.funding_rate_history(Params({}))
    assert {h["symbol"] for h in history} == {"RENDERUSDT"}
    both = engine.settle_funding(START + 8 * HOUR)  # POST /_sim/funding: every symbol now
    assert sorted(r.symbol for r in both) == ["BTCUSDT", "RENDERUSDT"]


def test_cli_default_is_per_symbol_and_the_flag_sets_every_symbol() -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args([])).funding.interval_ms is None
    assert config_from_args(parser.parse_args(["--funding-interval", "60"])).funding.interval_ms == 60_000


async def test_sim_state_lists_each_symbols_next_funding_time(raw: Raw) -> None:
    status, state, _ = await raw.request("GET", "/_sim/state", api_key=None)
    assert status == 200
    btc, render = state["nextFundingTime"]["BTCUSDT"], state["nextFundingTime"]["RENDERUSDT"]
    assert btc % (8 * HOUR) == 0 and render % (4 * HOUR) == 0 and render <= btc
    status, info, _ = await raw.request("GET", "/fapi/v1/fundingInfo", api_key=None)
    assert status == 200
    hours = {FundingInfo.model_validate(r).symbol: r["fundingIntervalHours"] for r in info}
    assert (hours["BTCUSDT"], hours["RENDERUSDT"]) == (8, 4)
