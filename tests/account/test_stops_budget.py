"""The account's budget of 200 open conditional orders (issue #27): with 199 open (somebody else's),
a two-leg entry is refused with ``CONDITIONAL_BUDGET`` before any order is sent, and a one-leg entry
takes the 200th; the count is the live view's, in the gauge beside the budget."""

from __future__ import annotations

from decimal import Decimal

import pytest

from binance_sim.params import Params
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.ops import metrics
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


def foreign_stops(desk: Desk, count: int) -> None:
    """``count`` conditional orders of another program on the account (not ours: no ``qx`` id)."""
    for n in range(count):
        desk.sim.engine.new_algo_order(
            Params(
                {
                    "algoType": "CONDITIONAL",
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": "STOP_MARKET",
                    "triggerPrice": "50000",
                    "quantity": "0.003",
                    "clientAlgoId": f"other-bot-{n}",
                }
            )
        )


async def test_a_two_leg_entry_is_refused_at_199_open_and_a_one_leg_entry_takes_the_200th(desk: Desk) -> None:
    foreign_stops(desk, 199)
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    stop = str((mark * D("0.97")).quantize(D("0.1")))
    target = str((mark * D("1.04")).quantize(D("0.1")))
    await desk.publish(
        intent_id="budget-two",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.002",
        stop_loss=stop,
        take_profit=target,
    )
    refused = await desk.result("budget-two")
    assert refused.status is ResultStatus.REJECTED and refused.error is not None
    assert refused.error.code == "CONDITIONAL_BUDGET"
    assert "199 conditional orders open" in refused.error.message and "2 more needed" in refused.error.message
    assert metrics.CONDITIONAL_OPEN._value.get() == 199
    assert metrics.CONDITIONAL_BUDGET._value.get() == 200
    # Nothing was sent for it: no order, no conditional order, not even a leverage change.
    assert not [o for o in desk.sim.state()["orders"] if o["symbol"] == "BTCUSDT"]
    assert len(desk.sim.state()["algoOrders"]) == 199
    assert desk.sim.request_counts["POST /fapi/v1/order"] == 0
    assert desk.position("BTCUSDT") == 0

    await desk.publish(intent_id="budget-one", symbol="BTCUSDT", side="BUY", quantity="0.002", stop_loss=stop)
    taken = await desk.result("budget-one")
    assert taken.status is ResultStatus.FILLED and taken.protection is ProtectionState.PROTECTED
    assert len([a for a in desk.sim.state()["algoOrders"] if a["algoStatus"] == "NEW"]) == 200
