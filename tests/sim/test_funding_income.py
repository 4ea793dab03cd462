"""Funding settlements and GET /fapi/v1/income."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from binance_sim import SimConfig, Simulator
from binance_sim.engine import Engine
from binance_sim.funding import FundingConfig
from binance_sim.ledger import Ledger
from binance_sim.market import load_market, parse_market
from binance_sim.notify import Notifier
from binance_sim.params import Params

from .conftest import API_KEY, API_SECRET, FakeClock, Raw

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]
INCOME_KEYS = {"symbol", "incomeType", "income", "asset", "info", "time", "tranId", "tradeId"}


class RecordingNotifier(Notifier):
    """Records the account events the engine announces."""

    def __init__(self, ledger: Ledger) -> None:
        self.account_events: list[tuple[str, tuple[str, ...], tuple[str, ...], Decimal]] = []
        super().__init__(ledger)

    def account_update(
        self,
        reason: str,
        symbols: Iterable[str] = (),
        assets: Iterable[str] = ("USDT",),
        balance_change: Decimal = Decimal(0),
    ) -> None:
        self.account_events.append((reason, tuple(symbols), tuple(assets), balance_change))


def _market(engine: Engine, symbol: str, side: str, quantity: str) -> None:
    engine.new_order(Params({"symbol": symbol, "side": side, "type": "MARKET", "quantity": quantity}))


def test_longs_pay_and_shorts_receive_mark_times_amount_times_rate() -> None:
    clock = FakeClock()
    engine = Engine(load_market(), clock, notifier=RecordingNotifier)
    notes = engine.notify
    assert isinstance(notes, RecordingNotifier)
    _market(engine, "BTCUSDT", "BUY", "0.500")  # long at 95234.50, default rate 0.0001: pays
    _market(engine, "SOLUSDT", "SELL", "10")  # short at 141.23, default rate: receives
    _market(engine, "ETHUSDT", "SELL", "2.000")  # short at 3105.42, negative rate: pays
    engine.funding_rates["ETHUSDT"] = Decimal("-0.0002")
    wallet = engine.account.wallet["USDT"]
    clock.now_ms += 60_000
    notes.account_events.clear()  # the fills' ORDER updates; only the settlement's are asserted

    rows = engine.settle_funding(clock.now_ms)

    # 95234.50 * 0.5 * 0.0001 = 4.761725; 141.23 * 10 * 0.0001 = 0.14123; 3105.42 * 2 * 0.0002 = 1.242168
    assert {r.symbol: r.income for r in rows} == {
        "BTCUSDT": Decimal("-4.76172500"),
        "SOLUSDT": Decimal("0.14123000"),
        "ETHUSDT": Decimal("-1.24216800"),
    }
    assert engine.account.wallet["USDT"] == wallet - Decimal("4.761725") + Decimal("0.14123") - Decimal(
        "1.242168"
    )
    # Cross positions: the balance alone (no P), its bc the funding paid in all.
    assert notes.account_events == [("FUNDING_FEE", (), ("USDT",), Decimal("-5.86266300"))]
    assert {r.time for r in rows} == {clock.now_ms}


def test_flat_positions_and_delivery_contracts_do_not_fund(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    _market(engine, "BTCUSDT", "BUY", "0.010")
    _market(engine, "BTCUSDT", "SELL", "0.010")
    _market(engine, "BTCUSDT_260327", "BUY", "0.010")
    assert engine.settle_funding(1) == []
    (row,) = [r for r in engine.premium_index(Params({})) if r["symbol"] == "BTCUSDT_260327"]  # type: ignore[union-attr]
    assert (row["lastFundingRate"], row["nextFundingTime"]) == ("", 0)


def test_premium_index_shows_the_rate_and_next_settlement(engine_factory: EngineFactory) -> None:
    engine = engine_factory(funding=FundingConfig(interval_ms=4 * 3_600_000))
    engine.funding_rates["BTCUSDT"] = Decimal("0.00025")
    row = engine.premium_index(Params({"symbol": "BTCUSDT"}))
    assert isinstance(row, dict)
    # FakeClock starts at 2025-11-21 00:00 UTC exactly: the next 4-hour settlement is 04:00.
    assert (row["lastFundingRate"], row["nextFundingTime"]) == ("0.00025000", 1_763_683_200_000 + 14_400_000)
    row = engine.premium_index(Params({"symbol": "ETHUSDT"}))
    assert isinstance(row, dict)
    assert row["lastFundingRate"] == "0.00010000"


def test_market_state_may_carry_funding_rates() -> None:
    fixtures = resources.files("binance_sim") / "fixtures"
    state = json.loads((fixtures / "market_state.json").read_text())
    state["fundingRates"] = {"BTCUSDT": "-0.00005", "NOSUCHUSDT": "1"}
    market = parse_market(json.loads((fixtures / "exchange_info.json").read_text()), state)
    engine = Engine(market, FakeClock())
    assert (engine.funding_rate("BTCUSDT"), engine.funding_rate("ETHUSDT")) == (
        Decimal("-0.00005"),
        Decimal("0.0001"),
    )
    assert "NOSUCHUSDT" not in market.funding_rates


async def _income(client: AsyncClient, **params: Any) -> list[dict[str, Any]]:
    rows = await client.futures_income_history(**params)
    assert isinstance(rows, list)
    return rows


async def test_income_history_records_pnl_commission_funding_and_transfers(
    sim: Simulator, client: AsyncClient, raw: Raw
) -> None:
    sim.set_balance("USDT", "20000")  # +9144.55 from the fixtures' 10855.45
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    sim.set_mark_price("BTCUSDT", "96234.50")
    status, body, _ = await raw.request("POST", "/_sim/funding", body="{}", api_key=None)
    assert status == 200 and [r["income"] for r in body["rows"]] == ["-0.09623450"]
    close = await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010", reduceOnly="true"
    )
    trades = await client.futures_account_trades(symbol="BTCUSDT")

    rows = await _income(client)
    assert all(set(r) == INCOME_KEYS for r in rows)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_type.setdefault(row["incomeType"], []).append(row)
    (transfer,) = by_type["TRANSFER"]
    assert (transfer["symbol"], transfer["income"], transfer["asset"], transfer["tradeId"]) == (
        "",
        "9144.55000000",
        "USDT",
        "",
    )
    assert [(r["income"], r["tradeId"]) for r in by_type["COMMISSION"]] == [
        ("-0.47617250", str(trades[0]["id"])),
        ("-0.48117250", str(trades[1]["id"])),
    ]
    (pnl,) = by_type["REALIZED_PNL"]
    assert (pnl["income"], pnl["tradeId"], pnl["symbol"]) == ("10.00000000", str(trades[1]["id"]), "BTCUSDT")
    (funding,) = by_type["FUNDING_FEE"]
    assert (funding["income"], funding["info"], funding["tradeId"]) == ("-0.09623450", "FUNDING_FEE", "")
    assert isinstance(funding["tranId"], int) and isinstance(funding["time"], int)
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    assert close["orderId"] == trades[1]["orderId"]

    commissions = await _income(client, incomeType="COMMISSION", limit=1, page=2)
    assert [r["income"] for r in commissions] == ["-0.48117250"]
    assert await _income(client, symbol="ETHUSDT") == []
    later = int(time.time() * 1000) + 60_000
    assert await _income(client, startTime=later, endTime=later + 1) == []
    with pytest.raises(BinanceAPIException) as bad:
        await _income(client, incomeType="SALARY")
    assert bad.value.code == -1130
    _, _, first = await raw.signed("GET", "/fapi/v1/income", {})
    _, _, second = await raw.signed("GET", "/fapi/v1/income", {})
    assert int(second["X-MBX-USED-WEIGHT-1M"]) - int(first["X-MBX-USED-WEIGHT-1M"]) == 30


async def test_the_income_delay_lists_a_funding_row_late_as_binance_can(
    sim: Simulator, client: AsyncClient, raw: Raw
) -> None:
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    body = '{"income_delay_ms": 3600000}'
    status, faults, _ = await raw.request("POST", "/_sim/faults", body=body, api_key=None)
    assert status == 200 and faults["income_delay_ms"] == 3_600_000
    (row,) = sim.settle_funding()
    # Booked (the wallet moved, the ACCOUNT_UPDATE went out) but not listed yet, nor its trade's rows.
    assert await _income(client, incomeType="FUNDING_FEE") == []
    assert await _income(client) == []
    sim.set_faults(income_delay_ms=0)  # the history catches up: everything is listed at once
    (funding,) = await _income(client, incomeType="FUNDING_FEE")
    assert (funding["tranId"], funding["time"]) == (row.tran_id, row.time)
    assert Decimal(funding["income"]) == row.income
    assert sim.state()["faults"]["income_delay_ms"] == 0
    status, error, _ = await raw.request("POST", "/_sim/faults", body='{"income_delay_ms": -1}', api_key=None)
    assert status == 400 and "income_delay_ms" in error["msg"]


async def test_funding_rate_control_shows_in_premium_index_and_state(
    sim: Simulator, client: AsyncClient, raw: Raw
) -> None:
    body = '{"symbol": "BTCUSDT", "rate": "-0.00031"}'
    status, _, _ = await raw.request("POST", "/_sim/fundingRate", body=body, api_key=None)
    assert status == 200
    premium = await client.futures_mark_price(symbol="BTCUSDT")
    assert premium["lastFundingRate"] == "-0.00031000"
    assert premium["nextFundingTime"] % 28_800_000 == 0 and premium["nextFundingTime"] > premium["time"]
    status, state, _ = await raw.request("GET", "/_sim/state", api_key=None)
    assert (state["fundingRates"]["BTCUSDT"], state["nextFundingTime"]["BTCUSDT"]) == (
        "-0.00031",
        premium["nextFundingTime"],
    )
    await client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010")
    (row,) = sim.settle_funding()
    assert row.income == Decimal("-0.29522695")  # a short pays a negative rate: 95234.50 * 0.01 * 0.00031


async def test_funding_timer_settles_on_its_interval() -> None:
    sim = Simulator(SimConfig(rate_limits=False, funding=FundingConfig(interval_ms=200, auto=True)))
    await sim.start()
    client = AsyncClient(API_KEY, API_SECRET)
    client.FUTURES_URL = sim.base_url + "/fapi"
    try:
        await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
        deadline = time.monotonic() + 10
        rows: list[dict[str, Any]] = []
        while len(rows) < 2 and time.monotonic() < deadline:
            rows = await _income(client, incomeType="FUNDING_FEE")
            await asyncio.sleep(0.05)
        assert len(rows) >= 2
        # 95234.50 * 0.010 * 0.0001, booked at the settlement times themselves (multiples of 200 ms).
        assert {r["income"] for r in rows} == {"-0.09523450"}
        assert all(r["time"] % 200 == 0 for r in rows)
        assert len({r["time"] for r in rows}) == len(rows)
    finally:
        await client.close_connection()
        await sim.stop()


def test_funding_from_the_premium_with_its_history_and_info() -> None:
    clock = FakeClock()
    engine = Engine(load_market(), clock, funding=FundingConfig(premium=True))
    # Mark equal to the index: F = 0 + clamp(0.0001 - 0) = the interest, 0.0001.
    assert engine.funding_rate("BTCUSDT") == Decimal("0.0001")
    # Mark 0.2 % over the index: P = 0.002, F = 0.002 + clamp(0.0001 - 0.002, +-0.0005) = 0.0015.
    engine.set_mark_price("BTCUSDT", Decimal("95190"))
    engine.set_reference_prices("BTCUSDT", index=Decimal("95000"), last=None)
    assert engine.funding_rate("BTCUSDT") == Decimal("0.00150000")
    # 5 % over: capped at the 2 % cap.
    engine.set_reference_prices("BTCUSDT", index=Decimal("90000"), last=None)
    assert engine.funding_rate("BTCUSDT") == Decimal("0.02000000")
    engine.funding_rates["BTCUSDT"] = Decimal("-0.0003")  # a rate set through /_sim/fundingRate wins
    engine.settle_funding(clock.now_ms)
    history = engine.funding_rate_history(Params({"symbol": "BTCUSDT"}))
    assert history == [
        {
            "symbol": "BTCUSDT",
            "fundingRate": "-0.00030000",
            "fundingTime": clock.now_ms,
            "markPrice": "95190.00000000",
        }
    ]
    info = {row["symbol"]: row for row in engine.funding_info(Params({}))}
    assert info["BTCUSDT"]["adjustedFundingRateCap"] == "0.02000000"
    assert info["BTCUSDT"]["fundingIntervalHours"] == 8
