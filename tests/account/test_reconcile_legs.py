"""The reconcile arms legs through the one leg placer, under its policy (execution/legs.py).

The service runs whole over real Redis and the simulator; what is checked is the simulator's own
history of conditional orders.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from binance_sim import Simulator
from quantum_exec.app.service import Service
from quantum_exec.contracts import ProtectionState
from quantum_exec.exchange.gateway import BinanceGateway
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TICK = Decimal("0.1")


async def test_a_stop_rearmed_past_its_trigger_is_rerounded_against_the_mark(
    desk: Desk, sim: Simulator
) -> None:
    """The reconcile re-arms a missing stop with the recorded trigger; when the mark has passed it
    (-2021) the leg is placed one tick inside the mark, as protection does after a fill. Before,
    the reconcile's placer took -2021 for a failure and the position stayed without its stop."""
    first = await desk.service()
    mark = sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="rr-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.98")).quantize(TICK)),
        take_profit=str((mark * Decimal("1.04")).quantize(TICK)),
    )
    opened = await desk.result("rr-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.stop_loss is not None
    await first.stop()
    desk.services.remove(first)

    # While it is down: the stop is cancelled by hand, then the mark falls past its trigger.
    gateway = BinanceGateway(desk.settings(), sim.base_url)
    await gateway.start()
    try:
        assert await gateway.cancel_algo(opened.stop_loss.algo_id or 0)
    finally:
        await gateway.close()
    below = (opened.stop_loss.trigger_price * Decimal("0.995")).quantize(TICK)
    sim.set_mark_price("BTCUSDT", below)
    assert desk.position("BTCUSDT") == Decimal("0.010")

    second = Service(desk.settings(), operations=False)
    desk.services.append(second)
    await second.start()  # returns once consuming: the reconciliation ran before
    rearmed = desk.algo(opened.stop_loss.client_algo_id)
    assert rearmed is not None and rearmed["algoStatus"] == "NEW", rearmed
    assert Decimal(rearmed["triggerPrice"]) == below - TICK
    assert Decimal(rearmed["quantity"]) == Decimal("0.010") and rearmed["side"] == "SELL"
