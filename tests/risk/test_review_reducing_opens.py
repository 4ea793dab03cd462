"""Adversarial review of the risk governor (issue #28), review four: "REDUCING executes only intents
that reduce exposure".

FAILS on feat/riskfix2: a BUY against a short is admitted in REDUCING as reducing (the position read
before admission), and is sent as a plain order (no ``reduceOnly``). The short's stop-loss fires
while the BUY travels (its leverage call is slow): the BUY then opens a new long while REDUCING.
Checked from the simulator's positions.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_reducing_buy_does_not_open_a_long_once_its_short_closed(desk: Desk) -> None:
    service = await desk.service(risk_stream=f"{desk.names['intent_stream']}:risk")
    sim = desk.sim
    await desk.publish(
        intent_id="short", symbol="BNBUSDT", side="SELL", quantity="0.50", leverage=3, stop_loss_pct=2
    )
    opened = await desk.result("short")
    assert opened.status.value == "filled" and desk.position("BNBUSDT") == Decimal("-0.50")
    await RiskStore(desk.redis, service.settings).transition(
        Request(TradingState.REDUCING, "review: reduce", "operator:review")
    )
    # The BUY's leverage call (between its admission and its order) is held 2 s at the simulator.
    sim.set_faults(
        faults=[{"kind": "latency", "ms": 2000, "method": "POST", "path": "/fapi/v1/leverage", "count": 1}]
    )
    await desk.publish(intent_id="cover", symbol="BNBUSDT", side="BUY", quantity="0.50", leverage=7)
    await wait_for(
        lambda: not sim.state()["faults"]["faults"], 15, "the BUY admitted, its leverage call held"
    )
    # Meanwhile the short's stop-loss fires: the short is closed by the exchange.
    sim.set_mark_price("BNBUSDT", sim.engine.mark("BNBUSDT") * Decimal("1.03"))
    assert desk.position("BNBUSDT") == 0
    result = await desk.result("cover", timeout_s=30)
    assert desk.position("BNBUSDT") <= 0, (
        f"the BUY admitted as reducing opened a long of {desk.position('BNBUSDT')} while REDUCING "
        f"(result {result.status.value}, {result.error})"
    )
