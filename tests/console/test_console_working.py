"""The console in a real browser (headless Chromium) for what the first console test does not
cover: a working LIMIT entry listed in "Last results" as working (from ``/api/results``), and
prices and quantities at each symbol's tick and step (``/api/symbols``), exactly, never rounded."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from console.test_console import Served, _json
from console.test_console import served as served
from quantum_exec.contracts import encode_intent_fields
from support.cdp import Browser, browser_binary
from support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        browser_binary() is None,
        reason="no chromium on this machine (apt-get install chromium; .ci/run installs it as root)",
    ),
]

INTENTS = "quantum:stream:trade.intent"


def at_step(value: Decimal, step: Decimal) -> str:
    """What a person reads: the exact value, with at least the step's places (none rounded off)."""
    places = max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]
    whole, _, frac = format(value.normalize(), "f").partition(".")
    frac = frac.ljust(places, "0")
    return f"{whole}.{frac}" if frac else whole


async def test_a_working_limit_and_prices_at_the_tick(served: Served, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        symbols = (await _json(session, f"{served.url}/api/symbols"))["symbols"]
        assert symbols["DOGEUSDT"] == {"tick_size": Decimal("0.000010"), "step_size": Decimal("1")}
        assert symbols["BTCUSDT"]["tick_size"] == Decimal("0.10")
        marks = await _json(session, f"{served.exchange_url}/fapi/v1/premiumIndex")
        btc = {m["symbol"]: Decimal(m["markPrice"]) for m in marks}["BTCUSDT"]
        # A BTC position with a stop on the 0.1 tick, and a DOGE LIMIT resting below the mark.
        stop = (btc * Decimal("0.98")).quantize(Decimal("0.1"))
        opened = {
            "intent_id": "tick-btc",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "0.010",
            "stop_loss": str(stop),
        }
        resting = {
            "intent_id": "tick-doge",
            "symbol": "DOGEUSDT",
            "side": "BUY",
            "quantity": "100",
            "order_type": "LIMIT",
            "price": "0.15997",
        }
        for payload in (opened, resting):
            await served.redis.xadd(INTENTS, encode_intent_fields(payload, "test"))  # type: ignore[arg-type]

        async def both_shown() -> bool:
            body = await _json(session, f"{served.url}/api/results")
            done = [r["intent_id"] for r in body["results"]]
            working = [w["intent_id"] for w in body["working"]]
            return "tick-btc" in done and working == ["tick-doge"] and "tick-doge" not in done

        await wait_for(both_shown, 60, "the BTC result and the DOGE LIMIT working")
        [working] = (await _json(session, f"{served.url}/api/results"))["working"]
        assert working["status"] == "working" and working["price"] == Decimal("0.15997")
        positions = (await _json(session, f"{served.url}/api/positions"))["positions"]
        [position] = [p for p in positions if p["symbol"] == "BTCUSDT"]

    profile = tmp_path / "browser"
    profile.mkdir()
    async with Browser(profile) as browser:
        await browser.goto(served.url + "/")

        async def loaded() -> bool:
            script = "!!document.body && document.body.dataset.loaded === 'true'"
            return await browser.evaluate(script) is True

        await wait_for(loaded, 20, "the page showing the data")

        async def rows() -> dict[str, Any]:
            return dict(
                await browser.evaluate(
                    """({
                      results: [...document.querySelectorAll('#results tbody tr')]
                                 .map(r => [...r.cells].map(c => c.textContent)),
                      orders: [...document.querySelectorAll('#orders tbody tr')]
                                 .map(r => [...r.cells].map(c => c.textContent)),
                      positions: [...document.querySelectorAll('#positions tbody tr')]
                                 .map(r => [...r.cells].map(c => c.textContent)),
                    })"""
                )
            )

        async def steps_known() -> bool:  # the first refresh may have drawn before /api/symbols
            shown = await rows()
            return any(r[0] == "DOGEUSDT" and r[3] == "0.15997" for r in shown["orders"])

        await wait_for(steps_known, 20, "the DOGE LIMIT at its tick in the orders panel")
        shown = await rows()
    # "Last results": the working LIMIT first, as working, at the tick; then the BTC result.
    [doge] = [r for r in shown["results"] if r[2] == "DOGEUSDT"]
    assert doge[4] == "working" and "LIMIT at 0.15997, qty 100: no result yet" in doge[-1], doge
    assert shown["results"][0] is not None and shown["results"][0][2] == "DOGEUSDT"
    assert any(r[2] == "BTCUSDT" and r[4] == "filled" for r in shown["results"]), shown["results"]
    # The open orders: the DOGE LIMIT at 0.15997 (not 0.16), its quantity at the step 1.
    [order] = [r for r in shown["orders"] if r[0] == "DOGEUSDT"]
    assert order[3] == "0.15997" and order[4] == "100" and order[5].startswith("working entry"), order
    # The BTC position: entry and mark at the 0.1 tick, the amount at the 0.001 step, the stop too.
    [row] = [r for r in shown["positions"] if r[0] == "BTCUSDT"]
    tick, step = Decimal("0.10"), Decimal("0.001")
    assert row[2] == at_step(position["position_amount"], step) == "0.010"
    assert row[3] == at_step(position["entry_price"], tick) and row[4] == at_step(
        position["mark_price"], tick
    )
    assert row[6].startswith(at_step(stop, tick) + " (") and row[6].endswith("× 0.010"), row[6]
    assert browser.errors == [], browser.errors
