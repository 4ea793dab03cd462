"""Funding the income history lists late (Binance's is eventually consistent) is still booked, to
the trade that was open at the settlement, exactly, and the operator's CLI shows it.

The simulator's ``income_delay_ms`` fault keeps a FUNDING_FEE row out of ``GET /fapi/v1/income``
after its ACCOUNT_UPDATE went out, as Binance can; setting it back to 0 lists the row.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from binance_sim import Simulator
from binance_sim.income import IncomeRow
from quantum_exec.app.service import Service
from quantum_exec.contracts import ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "ledger-late-funding-token-0123"
INCOME = "GET /fapi/v1/income"
HOUR_MS = 3_600_000


async def _service(desk: Desk) -> Service:
    settings = desk.settings(metrics_port=0, metrics_host="127.0.0.1", watchdog=False, api_token=TOKEN)
    service = Service(settings)
    desk.services.append(service)
    await service.start()
    return service


async def _trades(service: Service) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{service.metrics_port}/api/trades"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response,
    ):
        assert response.status == 200
        body = json.loads(await response.read(), parse_float=Decimal)
    trades: list[dict[str, Any]] = body["trades"]
    return trades


async def _trade(service: Service, intent_id: str) -> dict[str, Any] | None:
    found = [t for t in await _trades(service) if t["intent_ids"][0] == intent_id]
    assert len(found) <= 1, found  # a trade is listed once, whatever was booked on it later
    return found[0] if found else None


async def _filled(desk: Desk, **payload: Any) -> int:
    await desk.publish(**payload)
    result = await desk.result(payload["intent_id"])
    assert result.status is ResultStatus.FILLED and result.order_id, result
    return result.order_id


async def _short_settled_unlisted(desk: Desk, sim: Simulator, intent_id: str) -> tuple[int, IncomeRow]:
    """A short that pays funding the income history does not list yet; waits until the ledger has
    asked the history after the stream reported the settlement (and found nothing)."""
    sim.set_funding_rate("BTCUSDT", "-0.0007")  # negative: shorts pay
    sim.set_faults(income_delay_ms=HOUR_MS)
    entry = await _filled(desk, intent_id=intent_id, symbol="BTCUSDT", side="SELL", quantity="0.010")
    asked = sim.request_counts[INCOME]
    [row] = sim.settle_funding()
    await wait_for(lambda: sim.request_counts[INCOME] > asked, 10, "the ledger asking the income history")
    return entry, row


def _money(desk: Desk, *order_ids: int) -> tuple[Decimal, Decimal]:
    """Realized PnL and commission of the orders' fills, from the simulator's own trades."""
    fills = [f for order_id in order_ids for f in desk.trades_of(order_id)]
    realized = sum((Decimal(f["realizedPnl"]) for f in fills), Decimal(0))
    return realized, sum((Decimal(f["commission"]) for f in fills), Decimal(0))


async def _cli(service: Service, *args: str) -> str:
    env = {
        **os.environ,
        "QUANTUM_METRICS_PORT": str(service.metrics_port),
        "QUANTUM_METRICS_HOST": "127.0.0.1",
        "QUANTUM_API_TOKEN": TOKEN,
    }
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "quantum_exec.app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_a_funding_row_listed_after_the_stream_reported_it_is_booked(
    desk: Desk, sim: Simulator
) -> None:
    service = await _service(desk)
    entry, row = await _short_settled_unlisted(desk, sim, "late-open")
    # The history catches up: the ledger must ask again, though the stream reports nothing new.
    asked = sim.request_counts[INCOME]
    sim.set_faults(income_delay_ms=0)
    await wait_for(lambda: sim.request_counts[INCOME] > asked, 20, "the ledger asking the history again")
    close = await _filled(desk, intent_id="late-close", symbol="BTCUSDT", side="CLOSE")

    async def closed() -> bool:
        trade = await _trade(service, "late-open")
        return trade is not None and trade["status"] == "closed"

    await wait_for(closed, 10, "the trade closed in the ledger")
    trade = await _trade(service, "late-open")
    assert trade is not None
    realized, commission = _money(desk, entry, close)
    assert row.income < 0 and trade["funding"] == row.income
    assert (trade["realized_pnl"], trade["commission"]) == (realized, commission)
    assert trade["net_pnl"] == realized - commission + row.income
    summary = json.loads(await _cli(service, "summary", "--json"), parse_float=Decimal)
    assert (summary["funding"], summary["net_pnl"]) == (row.income, trade["net_pnl"])


async def test_a_funding_row_listed_after_its_trade_closed_is_booked_to_that_trade(
    desk: Desk, sim: Simulator
) -> None:
    service = await _service(desk)
    entry, row = await _short_settled_unlisted(desk, sim, "gone-open")
    close = await _filled(desk, intent_id="gone-close", symbol="BTCUSDT", side="CLOSE")

    async def closed_unfunded() -> bool:
        trade = await _trade(service, "gone-open")
        return trade is not None and trade["status"] == "closed"

    await wait_for(closed_unfunded, 10, "the trade closed in the ledger")
    before = await _trade(service, "gone-open")
    assert before is not None and before["funding"] == 0  # nothing listed yet: nothing invented
    # The history lists the row only now; a new trade on the symbol must not take it.
    sim.set_faults(income_delay_ms=0)
    await _filled(desk, intent_id="after-open", symbol="BTCUSDT", side="BUY", quantity="0.020")

    async def funded() -> bool:
        trade = await _trade(service, "gone-open")
        return trade is not None and trade["funding"] != 0

    await wait_for(funded, 30, "the late funding booked to the closed trade")
    trade = await _trade(service, "gone-open")
    later = await _trade(service, "after-open")
    assert trade is not None and later is not None and later["status"] == "open"
    realized, commission = _money(desk, entry, close)
    assert row.income < 0 and trade["funding"] == row.income and later["funding"] == 0
    assert (trade["realized_pnl"], trade["commission"]) == (realized, commission)
    assert trade["net_pnl"] == realized - commission + row.income
    assert {k: v for k, v in trade.items() if k not in ("funding", "net_pnl")} == {
        k: v for k, v in before.items() if k not in ("funding", "net_pnl")
    }

    # What the operator reads: the JSON, the CSV and the summary all carry it, the trade once.
    listed = json.loads(await _cli(service, "trades", "--json"), parse_float=Decimal)["trades"]
    assert [t["funding"] for t in listed if t["trade_id"] == trade["trade_id"]] == [row.income]
    rows = list(csv.DictReader(io.StringIO(await _cli(service, "trades", "--csv"))))
    assert [(r["funding"], r["net_pnl"]) for r in rows if r["trade_id"] == trade["trade_id"]] == [
        (str(row.income), str(trade["net_pnl"]))
    ]
    summary = json.loads(await _cli(service, "summary", "--json"), parse_float=Decimal)
    assert (summary["total_trades"], summary["funding"], summary["net_pnl"]) == (
        1,
        row.income,
        trade["net_pnl"],
    )


async def test_a_settlement_still_unlisted_at_a_restart_is_asked_for_by_the_next_leader(
    desk: Desk, sim: Simulator
) -> None:
    first = await _service(desk)
    entry, row = await _short_settled_unlisted(desk, sim, "restart-open")
    asked = sim.request_counts[INCOME]
    # A second request: the ledger committed what the first one found (nothing) before it.
    await wait_for(lambda: sim.request_counts[INCOME] > asked, 10, "the ledger asking the history again")
    await asyncio.wait_for(first.stop(), 30)
    desk.services.remove(first)
    sim.set_faults(income_delay_ms=0)  # listed while no ledger runs; the stream will not report it again
    second = await _service(desk)
    close = await _filled(desk, intent_id="restart-close", symbol="BTCUSDT", side="CLOSE")

    async def funded() -> bool:
        trade = await _trade(second, "restart-open")
        return trade is not None and trade["status"] == "closed" and trade["funding"] != 0

    await wait_for(funded, 30, "the funding booked after the restart")
    trade = await _trade(second, "restart-open")
    assert trade is not None
    realized, commission = _money(desk, entry, close)
    assert trade["funding"] == row.income and trade["net_pnl"] == realized - commission + row.income
