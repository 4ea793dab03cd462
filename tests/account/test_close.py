"""A CLOSE with the account followed live: its legs are cancelled while the close order travels."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_close_takes_one_round_trip_when_the_live_view_knows_the_legs(desk: Desk) -> None:
    await desk.service()
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    assert (await desk.result("open")).status is ResultStatus.FILLED
    assert len(desk.open_algos("ETHUSDT")) == 2
    before = dict(desk.sim.request_counts)
    desk.sim.config = dataclasses.replace(desk.sim.config, latency_ms=150)
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.2")
    assert desk.position("ETHUSDT") == 0 and not desk.open_algos("ETHUSDT")
    sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items() if v != before.get(k, 0)}
    # No listing of the open conditional orders: the live view had them.
    assert "GET /fapi/v1/openAlgoOrders" not in sent
    assert sent.get("POST /fapi/v1/order") == 1 and sent.get("DELETE /fapi/v1/algoOrder", 0) >= 2
    # Cancels and the close travelled together: well under two 150 ms round trips.
    assert closed.latency_ms is not None and closed.latency_ms < 280, closed.latency_ms
