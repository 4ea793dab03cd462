"""Adversarial review of stop management (issue #27): a partial CLOSE with the account at its
budget of 200 open conditional orders (199 of another program, our stop the 200th). FAILS on main
(review/three): the CLOSE is sent, but its make-before-break resize needs a 201st conditional order,
so the stop is left larger than the position ("the legs shrink to what is left"; "refuse what would
exceed 200 before sending anything") and the result says nothing of it (P5)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from binance_sim.params import Params
from quantum_exec.contracts import ProtectionState
from support.desk import Desk
from support.waiting import happens_within

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


def foreign_stops(desk: Desk, count: int) -> None:
    """``count`` conditional orders of another program on BTCUSDT (no ``qx`` id)."""
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


async def test_a_partial_close_at_the_budget_does_not_leave_the_stop_above_the_position(desk: Desk) -> None:
    foreign_stops(desk, 199)
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="full-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
    )
    opened = await desk.result("full-open")
    assert opened.protection is ProtectionState.PROTECTED
    assert len([a for a in desk.sim.state()["algoOrders"] if a["algoStatus"] == "NEW"]) == 200
    await desk.publish(intent_id="part", symbol="BTCUSDT", side="CLOSE", close_pct=30)
    result = await desk.result("part", timeout_s=30)
    closes = [o for o in desk.sim.state()["orders"] if o["symbol"] == "BTCUSDT" and o.get("reduceOnly")]
    if not closes:  # refused before anything was sent: what the budget promises
        assert result.error is not None and result.error.code == "CONDITIONAL_BUDGET"
        return

    def ours() -> list[dict[str, str]]:
        return [
            a
            for a in desk.sim.state()["algoOrders"]
            if a["algoStatus"] == "NEW"
            and a["clientAlgoId"].startswith("qx")
            and a["orderType"] == "STOP_MARKET"
        ]

    await happens_within(lambda: [D(a["quantity"]) for a in ours()] == [desk.position("BTCUSDT")], 15)
    position = desk.position("BTCUSDT")
    stops = [(a["clientAlgoId"], a["quantity"]) for a in ours()]
    assert [D(q) for _, q in stops] == [position], (
        f"partial CLOSE sent at the budget ({result.status}, error {result.error}): position {position}, "
        f"our stops {stops}"
    )
