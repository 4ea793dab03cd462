"""Adversarial review of stop management (issue #27): a MODIFY racing a take-profit fill or a stop
trigger, checked from the simulator's own order history. Both FAIL on main (review/three): "exactly
one stop remains at the end" / "the stop never exceeds the position", and P5 (a MODIFY answering
protected for a position its old stop had already closed).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState
from support.desk import Desk
from support.waiting import happens_within, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


def _armed_ours(desk: Desk, symbol: str) -> list[dict[str, Any]]:
    return [
        a
        for a in desk.sim.state()["algoOrders"]
        if a["symbol"] == symbol and a["algoStatus"] == "NEW" and a["clientAlgoId"].startswith("qx")
    ]


async def test_a_tp_fill_during_a_modify_still_shrinks_the_stop_to_the_position(desk: Desk) -> None:
    await desk.service()
    sim = desk.sim
    mark = sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="race-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=[
            {"pct": "1", "size_pct": 40},
            {"pct": "2", "size_pct": 40},
            {"pct": "3", "size_pct": 20},
        ],
    )
    opened = await desk.result("race-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.take_profits is not None
    assert opened.avg_price is not None
    tp1 = opened.take_profits[0].trigger_price
    assert tp1 is not None
    # The MODIFY has read the position and its legs, and waits for the mark (a slow exchange).
    sim.set_faults(
        faults=[{"kind": "latency", "ms": 2500, "method": "GET", "path": "/fapi/v1/premiumIndex", "count": 1}]
    )
    await desk.publish(intent_id="race-mod", symbol="BTCUSDT", side="MODIFY", stop_loss_pct=2)
    await wait_for(lambda: not sim.state()["faults"]["faults"], 15, "the MODIFY reading the mark")
    # Meanwhile TP1 fills (0.004 of 0.010), and the mark comes back under the other levels.
    sim.set_mark_price("BTCUSDT", tp1 + D("0.5"))
    await wait_for(lambda: desk.position("BTCUSDT") == D("0.006"), 10, "TP1 filled")
    sim.set_mark_price("BTCUSDT", opened.avg_price)
    modified = await desk.result("race-mod", timeout_s=30)

    def settled() -> bool:
        stops = [a for a in _armed_ours(desk, "BTCUSDT") if a["orderType"] == "STOP_MARKET"]
        return len(stops) == 1 and D(stops[0]["quantity"]) <= desk.position("BTCUSDT")

    await happens_within(settled, 20)  # the live OCO's last word; the asserts below say what stands
    position = desk.position("BTCUSDT")
    legs = _armed_ours(desk, "BTCUSDT")
    stops = [a for a in legs if a["orderType"] == "STOP_MARKET"]
    targets = [a for a in legs if a["orderType"] == "TAKE_PROFIT_MARKET"]
    described = [(a["clientAlgoId"], a["orderType"], a["quantity"], a["triggerPrice"]) for a in legs]
    # Issue #27: "exactly one stop remains at the end"; the MODIFY read the legs before the live OCO
    # resized the old stop under its alternate id, and cancelled only the copy it had read.
    assert len(stops) == 1, f"position {position}, armed legs {described}; MODIFY result {modified.status}"
    assert D(stops[0]["quantity"]) <= position, (
        f"the stop ({stops[0]['quantity']}) exceeds the position ({position}) 20 s after the MODIFY "
        f"that raced TP1; armed legs {described}; MODIFY result {modified.status} {modified.error}"
    )
    assert sum((D(a["quantity"]) for a in targets), D(0)) <= position, (
        f"the take-profits ({described}) exceed the position ({position}): TP1 placed again after it filled"
    )


async def test_a_modify_racing_the_stop_does_not_answer_protected_for_a_closed_position(desk: Desk) -> None:
    """P5 / P3: the old stop fires while the MODIFY waits for the mark; the MODIFY then places a new
    set of legs for a position already gone, and answers FILLED / protected for 0.010."""
    await desk.service()
    sim = desk.sim
    mark = sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="stop-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profit_pct=5,
    )
    opened = await desk.result("stop-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.stop_loss is not None
    sim.set_faults(
        faults=[{"kind": "latency", "ms": 2500, "method": "GET", "path": "/fapi/v1/premiumIndex", "count": 1}]
    )
    await desk.publish(intent_id="stop-mod", symbol="BTCUSDT", side="MODIFY", stop_loss_pct=2)
    await wait_for(lambda: not sim.state()["faults"]["faults"], 15, "the MODIFY reading the mark")
    sim.set_mark_price("BTCUSDT", mark * D("0.96"))  # through the old stop
    await wait_for(lambda: desk.position("BTCUSDT") == 0, 10, "closed by the old stop")
    sim.set_mark_price("BTCUSDT", mark)
    result = await desk.result("stop-mod", timeout_s=30)
    algos = {a["clientAlgoId"]: a for a in sim.state()["algoOrders"]}
    fired = algos[opened.stop_loss.client_algo_id]
    assert fired["algoStatus"] == "FINISHED"
    placed_after = [
        (cid, a["createTime"]) for cid, a in algos.items() if a["createTime"] > fired["updateTime"]
    ]
    assert not (placed_after and result.protection is ProtectionState.PROTECTED and result.error is None), (
        f"the position was closed by {opened.stop_loss.client_algo_id} at {fired['updateTime']}, "
        f"then the MODIFY placed {placed_after} and answered "
        f"{result.status.value}/{result.protection.value} for {result.quantity} with no word of the close"
    )
