"""Adversarial review of stop management (issue #27): ``break_even_after`` and MODIFY. FAILS on
main (review/three), checked from the simulator's own order history: a MODIFY that only moves the
stop drops the position's ``break_even_after`` (the MODIFY "carries over what it does not change",
yet after TP1 fills the stop stays below the entry, the rest of the position can close at a loss).
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
LADDER = [{"pct": "1", "size_pct": 40}, {"pct": "2", "size_pct": 40}, {"pct": "3", "size_pct": 20}]


def _stops(desk: Desk) -> list[dict[str, Any]]:
    return [
        a
        for a in desk.sim.state()["algoOrders"]
        if a["symbol"] == "BTCUSDT"
        and a["algoStatus"] == "NEW"
        and a["orderType"] == "STOP_MARKET"
        and a["clientAlgoId"].startswith("qx")
    ]


async def _tp1_then_stop(desk: Desk, modify: dict[str, Any], **entry: Any) -> tuple[Decimal, list[Any]]:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="be-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=LADDER,
        **entry,
    )
    opened = await desk.result("be-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.avg_price is not None
    await desk.publish(intent_id="be-mod", symbol="BTCUSDT", side="MODIFY", **modify)
    modified = await desk.result("be-mod")
    assert modified.error is None, modified.error
    assert modified.take_profits is not None
    tp1 = modified.take_profits[0].trigger_price
    assert tp1 is not None
    desk.sim.set_mark_price("BTCUSDT", tp1 + D("0.5"))
    await wait_for(lambda: desk.position("BTCUSDT") == D("0.006"), 10, "TP1 filled")

    def moved() -> bool:
        stops = _stops(desk)
        return len(stops) == 1 and D(stops[0]["triggerPrice"]) > opened.avg_price  # type: ignore[operator]

    await happens_within(moved, 15)
    return opened.avg_price, [(s["clientAlgoId"], s["quantity"], s["triggerPrice"]) for s in _stops(desk)]


async def test_a_modify_of_the_stop_keeps_the_break_even_move(desk: Desk) -> None:
    entry, stops = await _tp1_then_stop(desk, {"stop_loss_pct": 2}, break_even_after=1)
    assert len(stops) == 1 and D(stops[0][2]) > entry, (
        f"break_even_after=1 lost by a MODIFY of the stop: after TP1 the stop is {stops}, entry {entry}"
    )
