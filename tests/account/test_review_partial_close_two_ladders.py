"""Adversarial review (P3 broken): a partial CLOSE of a pyramid whose entry and add-on each have a
take-profit ladder must leave what is left of the position behind its targets.

``stops/partial.py`` ``shrink_ladder`` keys the levels by their number only (``by_level``, and the
``target`` dict built from :func:`stops.ladder.shrink` over the levels of both intents): the
entry's level 1 and the add-on's level 1 collapse into one rung, and every leg of a level is
resized to the share computed for whichever of them was listed last. With ladders of 0.006 and
0.004 (two levels of 50 % each), closing 30 % leaves 0.007 behind 0.006 of target; the ladders
no longer close "exactly their share" (stops/ladder.py). Checked from the simulator's own orders.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal
SYMBOL = "BTCUSDT"
LADDER = [{"pct": 2, "size_pct": 50}, {"pct": 3, "size_pct": 50}]


def _covered(desk: Desk, order_type: str) -> Decimal:
    """What our armed legs of ``order_type`` close on the exchange (closePosition: everything)."""
    position = abs(desk.position(SYMBOL))
    return sum(
        (
            position if a["closePosition"] else D(a["quantity"])
            for a in desk.open_algos(SYMBOL)
            if str(a["clientAlgoId"]).startswith("qx") and a["orderType"] == order_type
        ),
        D(0),
    )


async def test_a_partial_close_of_two_ladders_keeps_the_rest_behind_its_targets(desk: Desk) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None
    mark = desk.sim.engine.mark(SYMBOL)
    for intent_id, quantity in (("lad-1", "0.006"), ("lad-2", "0.004")):
        await desk.publish(
            intent_id=intent_id,
            symbol=SYMBOL,
            side="BUY",
            quantity=quantity,
            stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
            take_profits=LADDER,
        )
        opened = await desk.result(intent_id)
        assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert desk.position(SYMBOL) == D("0.010")
    assert _covered(desk, "TAKE_PROFIT_MARKET") == D("0.010")  # 0.003 + 0.003 + 0.002 + 0.002

    await desk.publish(intent_id="lad-part", symbol=SYMBOL, side="CLOSE", close_pct=30)
    closed = await desk.result("lad-part")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == D("0.003")
    assert desk.position(SYMBOL) == D("0.007")

    def settled() -> bool:
        stops = [D(a["quantity"]) for a in desk.open_algos(SYMBOL) if a["orderType"] == "STOP_MARKET"]
        return account.oco.idle(SYMBOL) and bool(stops) and max(stops) <= D("0.007")

    await wait_for(settled, 15, "no stop larger than what is left, the OCO idle")
    legs = sorted((a["clientAlgoId"], a["orderType"], a["quantity"]) for a in desk.open_algos(SYMBOL))
    # P3: what is left stands behind our targets (the ladders sum to 100 %: exactly, in fact).
    assert _covered(desk, "TAKE_PROFIT_MARKET") >= D("0.007"), legs
    assert _covered(desk, "TAKE_PROFIT_MARKET") == D("0.007"), legs
