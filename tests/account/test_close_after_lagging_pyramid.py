"""A CLOSE right after a pyramid whose fill events trail its REST answer (found by the adversarial
review): it closed only what the live view knew (0.2 of 0.4), said FILLED, and cancelled the legs it
took as if the symbol were flat (P3 when the second entry's legs were among them). The executor now
tells the view which orders it saw filled by REST, and the view asks REST until it has their fills."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Fills and position updates reach the service 1.5 s after the conditional orders' updates.
LAG = {"seed": 1, "max_delay_ms": 1, "type_delay_ms": {"ORDER_TRADE_UPDATE": 1500, "ACCOUNT_UPDATE": 1500}}
ENTRY = {
    "symbol": "ETHUSDT",
    "side": "BUY",
    "quantity": "0.2",
    "stop_loss_pct": "2",
    "take_profit_pct": "3",
}


def _covered(desk: Desk) -> bool:
    """P3 on the exchange: flat, or our SL and TP cover the whole position."""
    position = desk.position("ETHUSDT")
    if position == 0:
        return True
    legs = desk.open_algos("ETHUSDT")
    return all(
        any(a.get("closePosition") for a in legs if a["orderType"] == kind)
        or sum((Decimal(a["quantity"]) for a in legs if a["orderType"] == kind), Decimal(0)) >= abs(position)
        for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET")
    )


async def test_a_close_after_a_pyramid_whose_fill_lags_closes_all_of_it(desk: Desk) -> None:
    await desk.service()
    await desk.publish(intent_id="open", **ENTRY)
    assert (await desk.result("open")).status is ResultStatus.FILLED
    desk.sim.set_faults(stream_reorder=LAG)
    await desk.publish(intent_id="more", **ENTRY)
    assert (await desk.result("more")).status is ResultStatus.FILLED
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert _covered(desk), (desk.position("ETHUSDT"), desk.open_algos("ETHUSDT"), closed.executed_quantity)
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.4")
    assert desk.position("ETHUSDT") == 0
