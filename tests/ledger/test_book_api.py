"""The ledger as an operator reads it: wins and losses scripted on the simulator, checked over HTTP.

A target fills, a stop fills (after a funding settlement), a CLOSE at a loss, a flip; every field
of ``/api/trades`` and ``/api/trades/summary`` is checked against the simulator's own trades and
income, to the last decimal, and ``quantum-exec summary`` prints the same figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from redis import asyncio as aioredis

from binance_sim import Simulator
from quantum_exec.app.service import Service
from quantum_exec.contracts import ExecutionResult, ResultStatus, encode_intent_fields
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.core.rules import fmt
from quantum_exec.core.settings import Settings
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "ledger-test-token-0123456789"


class Desk:
    def __init__(self, sim: Simulator, redis: aioredis.Redis, names: dict[str, Any], redis_url: str) -> None:
        self.sim, self.redis, self.names = sim, redis, names
        self.settings = Settings(
            redis_url=redis_url,
            **names,
            binance_base_url=sim.base_url,
            api_key="quantum-sim-key",
            api_secret="quantum-sim-secret",
            block_ms=100,
            order_lookup_interval_s=0.05,
            recv_window_ms=2000,
            account_lease_ttl_s=1.0,
            metrics_port=0,
            metrics_host="127.0.0.1",
            watchdog=False,
            api_token=TOKEN,
        )
        self.service: Service | None = None

    @property
    def url(self) -> str:
        assert self.service is not None and self.service.metrics_port is not None
        return f"http://127.0.0.1:{self.service.metrics_port}"

    async def get(self, path: str, *, token: str | None = TOKEN, **params: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, params=params, headers=headers) as response,
        ):
            return response.status, json.loads(await response.read(), parse_float=Decimal)

    async def run(self, **payload: Any) -> ExecutionResult:
        await self.redis.xadd(self.names["intent_stream"], encode_intent_fields(payload, "test"))  # type: ignore[arg-type]
        wanted = payload["intent_id"]

        async def found() -> ExecutionResult | None:
            for _sid, fields in await self.redis.xrange(self.names["result_stream"]):
                result = decode_result_fields(fields)
                if result.intent_id == wanted:
                    return result
            return None

        await wait_for(found, 20, f"the result of {wanted}")
        result = await found()
        assert result is not None and result.status is ResultStatus.FILLED, result
        return result

    def trades_of(self, *order_ids: int) -> list[dict[str, Any]]:
        return [t for t in self.sim.state()["trades"] if t["orderId"] in order_ids]

    def algo(self, client_algo_id: str) -> dict[str, Any]:
        return next(a for a in self.sim.state()["algoOrders"] if a["clientAlgoId"] == client_algo_id)

    async def closed_count(self) -> int:
        _, body = await self.get("/api/trades")
        return sum(1 for t in body["trades"] if t["status"] == "closed")


@pytest.fixture
async def desk(sim: Simulator, redis_url: str, unique_names: dict[str, Any]) -> AsyncIterator[Desk]:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    desk = Desk(sim, client, unique_names, redis_url)
    desk.service = Service(desk.settings)
    await desk.service.start()
    try:
        yield desk
    finally:
        await asyncio.wait_for(desk.service.stop(), 30)
        await client.aclose()


def _sum(rows: list[dict[str, Any]], key: str) -> Decimal:
    return sum((Decimal(r[key]) for r in rows), Decimal(0))


def _vwap(rows: list[dict[str, Any]]) -> Decimal:
    return _sum([{"v": Decimal(r["price"]) * Decimal(r["qty"])} for r in rows], "v") / _sum(rows, "qty")


async def test_wins_losses_and_a_flip_are_booked_to_the_last_decimal(desk: Desk, sim: Simulator) -> None:
    eth, btc = sim.engine.mark("ETHUSDT"), sim.engine.mark("BTCUSDT")
    q = Decimal("0.1")

    # 1. A long whose target fills: a win.
    win = await desk.run(
        intent_id="led-win",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.500",
        model="m-alpha",
        stop_loss=str((eth * Decimal("0.97")).quantize(q)),
        take_profit=str((eth * Decimal("1.02")).quantize(q)),
    )
    assert win.take_profit is not None
    sim.set_mark_price("ETHUSDT", eth * Decimal("1.03"))
    await wait_for(
        lambda: desk.algo(win.take_profit.client_algo_id)["algoStatus"] == "FINISHED", 5, "target filled"
    )
    await wait_for(lambda: desk.closed_count(), 10, "the first trade closed")

    # 2. A short that pays funding, then its stop fills: a loss.
    sim.set_funding_rate("BTCUSDT", "-0.0005")  # negative rate: shorts pay longs
    loss = await desk.run(
        intent_id="led-loss",
        symbol="BTCUSDT",
        side="SELL",
        quantity="0.010",
        model="m-beta",
        stop_loss=str((btc * Decimal("1.01")).quantize(q)),
        take_profit=str((btc * Decimal("0.95")).quantize(q)),
    )
    assert loss.stop_loss is not None
    [funding_row] = [r for r in sim.settle_funding() if r.symbol == "BTCUSDT"]
    sim.set_mark_price("BTCUSDT", btc * Decimal("1.02"))
    await wait_for(
        lambda: desk.algo(loss.stop_loss.client_algo_id)["algoStatus"] == "FINISHED", 5, "stop filled"
    )

    async def closed(n: int) -> bool:
        return await desk.closed_count() >= n

    await wait_for(lambda: closed(2), 10, "the second trade closed")

    # 3. A long closed by a CLOSE at a loss.
    eth_now = sim.engine.mark("ETHUSDT")
    opened = await desk.run(
        intent_id="led-cl-open", symbol="ETHUSDT", side="BUY", quantity="0.300", model="m-alpha"
    )
    sim.set_mark_price("ETHUSDT", eth_now * Decimal("0.99"))
    closing = await desk.run(intent_id="led-cl-close", symbol="ETHUSDT", side="CLOSE")
    await wait_for(lambda: closed(3), 10, "the third trade closed")

    # 4. A flip: long 0.010 BTC, then SELL 0.025 closes it and opens a 0.015 short.
    btc_now = sim.engine.mark("BTCUSDT")
    flip_open = await desk.run(
        intent_id="led-fl-open", symbol="BTCUSDT", side="BUY", quantity="0.010", model="m-gamma"
    )
    sim.set_mark_price("BTCUSDT", btc_now * Decimal("1.005"))
    flip = await desk.run(
        intent_id="led-fl-sell", symbol="BTCUSDT", side="SELL", quantity="0.025", model="m-delta"
    )
    await wait_for(lambda: closed(4), 10, "the flipped trade closed")

    status, body = await desk.get("/api/trades")
    assert status == 200 and body["count"] == len(body["trades"]) == 5
    by_intent = {t["intent_ids"][0]: t for t in body["trades"]}
    assert [t["status"] for t in body["trades"]] == ["open", "closed", "closed", "closed", "closed"]

    # 1: the win
    tp_order = int(desk.algo(win.take_profit.client_algo_id)["actualOrderId"])
    entry, exits = desk.trades_of(win.order_id or 0), desk.trades_of(tp_order)
    t = by_intent["led-win"]
    assert (t["symbol"], t["side"], t["exit_reason"], t["model"]) == (
        "ETHUSDT",
        "LONG",
        "take_profit",
        "m-alpha",
    )
    assert t["entry_price"] == _vwap(entry) and t["exit_price"] == _vwap(exits)
    assert t["max_quantity"] == t["closing_quantity"] == Decimal("0.500")
    assert t["realized_pnl"] == _sum(exits, "realizedPnl")
    assert t["commission"] == _sum(entry + exits, "commission")
    assert t["funding"] == 0 and t["net_pnl"] == t["realized_pnl"] - t["commission"] > 0

    # 2: the loss, with its funding
    sl_order = int(desk.algo(loss.stop_loss.client_algo_id)["actualOrderId"])
    entry, exits = desk.trades_of(loss.order_id or 0), desk.trades_of(sl_order)
    t = by_intent["led-loss"]
    assert (t["side"], t["exit_reason"], t["model"]) == ("SHORT", "stop_loss", "m-beta")
    assert t["realized_pnl"] == _sum(exits, "realizedPnl") < 0
    assert t["commission"] == _sum(entry + exits, "commission")
    assert t["funding"] == funding_row.income < 0
    assert t["net_pnl"] == t["realized_pnl"] - t["commission"] + t["funding"]

    # 3: the CLOSE at a loss
    entry, exits = desk.trades_of(opened.order_id or 0), desk.trades_of(closing.order_id or 0)
    t = by_intent["led-cl-open"]
    assert t["exit_reason"] == "close_intent" and t["intent_ids"] == ["led-cl-open", "led-cl-close"]
    assert t["realized_pnl"] == _sum(exits, "realizedPnl") < 0
    assert t["commission"] == _sum(entry + exits, "commission")

    # 4: the flip: the closed long gets the realized PnL, the new short the rest of the commission
    entry, flip_fills = desk.trades_of(flip_open.order_id or 0), desk.trades_of(flip.order_id or 0)
    t, short = by_intent["led-fl-open"], by_intent["led-fl-sell"]
    assert t["exit_reason"] == "flip" and t["closing_quantity"] == Decimal("0.010")
    assert t["realized_pnl"] == _sum(flip_fills, "realizedPnl")
    assert t["commission"] + short["commission"] == _sum(entry + flip_fills, "commission")
    assert (short["status"], short["side"], short["max_quantity"], short["model"]) == (
        "open",
        "SHORT",
        Decimal("0.015"),
        "m-delta",
    )

    # The summary over the four closed trades.
    status, summary = await desk.get("/api/trades/summary")
    closed_trades = [x for x in body["trades"] if x["status"] == "closed"]
    nets = [x["net_pnl"] for x in closed_trades]
    assert status == 200 and summary["total_trades"] == 4
    assert summary["winning_trades"] == sum(1 for n in nets if n > 0)
    assert summary["losing_trades"] == sum(1 for n in nets if n < 0)
    assert summary["net_pnl"] == sum(nets, Decimal(0))
    assert summary["gross_pnl"] == sum((x["realized_pnl"] for x in closed_trades), Decimal(0))
    assert summary["commission"] == sum((x["commission"] for x in closed_trades), Decimal(0))
    assert summary["funding"] == funding_row.income
    assert set(summary["by_symbol"]) == {"ETHUSDT", "BTCUSDT"}
    assert summary["by_model"]["m-alpha"]["total_trades"] == 2

    # Filters, errors, authorization.
    status, eth_only = await desk.get("/api/trades", symbol="ETHUSDT")
    assert (
        status == 200 and {x["symbol"] for x in eth_only["trades"]} == {"ETHUSDT"} and eth_only["count"] == 2
    )
    status, error = await desk.get("/api/trades", limit="0")
    assert status == 400 and error["error"]["parameter"] == "limit"
    status, error = await desk.get("/api/trades", colour="red")
    assert status == 400 and error["error"]["parameter"] == "colour"
    status, _ = await desk.get("/api/trades", token="wrong")
    assert status == 401
    status, error = await desk.get("/api/nothing")
    assert status == 404

    # The operator's CLI prints the same net PnL.
    env = {
        **os.environ,
        "QUANTUM_METRICS_PORT": str(desk.service.metrics_port if desk.service else 0),
        "QUANTUM_METRICS_HOST": "127.0.0.1",
        "QUANTUM_API_TOKEN": TOKEN,
    }
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "quantum_exec.app.cli", "summary", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout, parse_float=Decimal)["net_pnl"] == summary["net_pnl"]
    table = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "quantum_exec.app.cli", "summary"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert table.returncode == 0 and f"net pnl {fmt(summary['net_pnl'])} " in table.stdout, (
        table.stdout + table.stderr
    )


async def test_positions_and_orders_show_the_protection(desk: Desk, sim: Simulator) -> None:
    mark = sim.engine.mark("ETHUSDT")
    result = await desk.run(
        intent_id="led-pos",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.200",
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.01"))),
        take_profit=str((mark * Decimal("1.03")).quantize(Decimal("0.01"))),
    )
    status, body = await desk.get("/api/positions")
    assert status == 200 and body["count"] == 1
    [position] = body["positions"]
    [row] = [p for p in sim.state()["positions"] if p["symbol"] == "ETHUSDT"]
    assert position["position_amount"] == Decimal(row["positionAmt"]) == Decimal("0.200")
    assert position["entry_price"] == Decimal(row["entryPrice"])
    assert position["unrealized_pnl"] == Decimal(row["unRealizedProfit"])
    legs = {leg["type"]: leg for leg in position["protective_orders"]}
    assert result.stop_loss is not None and result.take_profit is not None
    assert legs["STOP_MARKET"]["trigger_price"] == result.stop_loss.trigger_price
    assert legs["TAKE_PROFIT_MARKET"]["quantity"] == Decimal("0.200") and legs["STOP_MARKET"]["ours"]
    status, orders = await desk.get("/api/orders", symbol="ETHUSDT")
    assert status == 200 and orders["orders"] == [] and len(orders["conditional_orders"]) == 2
    status, error = await desk.get("/api/orders", symbol="not a symbol!")
    assert status == 400 and error["error"]["parameter"] == "symbol"
