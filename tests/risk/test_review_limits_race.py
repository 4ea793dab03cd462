"""Adversarial review of the risk governor (issue #28): "an intent that would cross a limit is
refused before any order". FAILS on main (review/three): the exposure limits are checked against
the positions the exchange reports at admission; two entries of different symbols run concurrently
(one instance, max_concurrency > 1), each admitted while the other's order is still travelling, and
together they cross QUANTUM_RISK_MAX_GROSS_NOTIONAL_USD (and QUANTUM_RISK_MAX_OPEN_POSITIONS)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_two_concurrent_entries_do_not_cross_the_gross_notional_limit(desk: Desk) -> None:
    limit = D(2000)
    await desk.service(
        risk_stream=f"{desk.names['intent_stream']}:risk",
        risk_max_gross_notional_usd=limit,
        risk_max_open_positions=1,
    )
    sim = desk.sim
    # Each entry alone is 60 % of the gross limit; the two together 120 %.
    btc = (limit * D("0.6") / sim.engine.mark("BTCUSDT")).quantize(D("0.001"))
    eth = (limit * D("0.6") / sim.engine.mark("ETHUSDT")).quantize(D("0.001"))
    # A slow exchange: each entry order takes a second to be answered.
    sim.set_faults(
        faults=[{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order", "count": 2}]
    )
    await desk.publish(
        intent_id="gross-btc", symbol="BTCUSDT", side="BUY", quantity=str(btc), stop_loss_pct=5
    )
    await desk.publish(
        intent_id="gross-eth", symbol="ETHUSDT", side="BUY", quantity=str(eth), stop_loss_pct=5
    )
    results = [await desk.result("gross-btc", timeout_s=30), await desk.result("gross-eth", timeout_s=30)]

    def answered() -> bool:
        # Every entry order sent has been answered: each took one of the two held answers (an entry
        # refused before any order takes none).
        state = sim.state()
        held = sum(f["count"] for f in state["faults"]["faults"])
        return 2 - held == sum(1 for o in state["orders"] if o["type"] == "MARKET")

    await wait_for(answered, 5, "every entry order sent answered")
    state = sim.state()
    gross = sum(
        (
            abs(D(p["positionAmt"])) * D(p["markPrice"])
            for p in state["positions"]
            if D(p["positionAmt"]) != 0
        ),
        D(0),
    )
    opened = [p["symbol"] for p in state["positions"] if D(p["positionAmt"]) != 0]
    codes = [(r.intent_id, r.status.value, r.error.code if r.error else None) for r in results]
    assert gross <= limit and len(opened) <= 1, (
        f"gross notional {gross:.2f} USD over the limit {limit} and {len(opened)} positions {opened} over "
        f"max_open_positions 1: both entries admitted while the other was travelling: {codes}"
    )
    assert any(r.status is ResultStatus.REJECTED for r in results)
