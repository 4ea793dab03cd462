"""A CLOSE read against a live view whose fills lag (events of different types in swapped order):
an open position the view has not seen yet is not "no position"."""

from __future__ import annotations

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


async def test_a_close_right_after_its_entry_closes_the_position_the_view_has_not_seen(desk: Desk) -> None:
    await desk.service()
    desk.sim.set_faults(stream_reorder=LAG)
    await desk.publish(intent_id="open", **ENTRY)
    assert (await desk.result("open")).status is ResultStatus.FILLED
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert closed.status is ResultStatus.FILLED, (closed.status, closed.error, desk.position("ETHUSDT"))
    assert desk.position("ETHUSDT") == 0
