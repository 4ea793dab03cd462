"""Adversarial review (P3): a MODIFY of a pyramid (an entry and a same-side add-on, each with its
own reduce-only stop and target, ``QUANTUM_PROTECTION_MODE=quantity``, the default) that changes
only the stop must keep the whole position behind a target.

``stops/modify.py`` ``plan_set`` carries the pyramid's single targets over as one leg ("a pyramid's
single targets become one") sized ``min(target.quantity, size)`` of the *first* target it meets
(the oldest algo id: the first entry's), then cancels every old target. The add-on's share of the
target is lost: the position stands with a target for a third of it, and the MODIFY's result says
``protected``. Checked from the simulator's own conditional orders.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOL = "BTCUSDT"
TENTH = Decimal("0.1")
FIRST = Decimal("0.010")
ADD = Decimal("0.020")


def _covered(desk: Desk, order_type: str) -> Decimal:
    """What our armed legs of ``order_type`` close on the exchange (closePosition: everything)."""
    position = abs(desk.position(SYMBOL))
    return sum(
        (
            position if a["closePosition"] else Decimal(a["quantity"])
            for a in desk.open_algos(SYMBOL)
            if str(a["clientAlgoId"]).startswith("qx") and a["orderType"] == order_type
        ),
        Decimal(0),
    )


async def test_a_modify_of_the_stop_of_a_pyramid_keeps_the_whole_position_behind_a_target(desk: Desk) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None
    mark = desk.sim.engine.mark(SYMBOL)
    for intent_id, quantity in (("pyr-1", FIRST), ("pyr-2", ADD)):
        await desk.publish(
            intent_id=intent_id,
            symbol=SYMBOL,
            side="BUY",
            quantity=str(quantity),
            stop_loss=str((mark * Decimal("0.97")).quantize(TENTH)),
            take_profit=str((mark * Decimal("1.03")).quantize(TENTH)),
        )
        opened = await desk.result(intent_id)
        assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert desk.position(SYMBOL) == FIRST + ADD
    # Before: each entry's reduce-only legs of its own size cover the position together.
    assert _covered(desk, "STOP_MARKET") == _covered(desk, "TAKE_PROFIT_MARKET") == FIRST + ADD

    new_stop = str((mark * Decimal("0.96")).quantize(TENTH))
    await desk.publish(intent_id="pyr-mod", symbol=SYMBOL, action="MODIFY", stop_loss=new_stop)
    modified = await desk.result("pyr-mod")
    assert modified.status is ResultStatus.FILLED and modified.protection is ProtectionState.PROTECTED
    await wait_for(lambda: account.oco.idle(SYMBOL), 10, "the OCO idle")
    assert desk.position(SYMBOL) == FIRST + ADD
    legs = [(a["clientAlgoId"], a["orderType"], a["quantity"]) for a in desk.open_algos(SYMBOL)]
    # P3: the result says protected; the whole position stands behind our stop and our target.
    assert _covered(desk, "STOP_MARKET") >= FIRST + ADD, legs
    assert _covered(desk, "TAKE_PROFIT_MARKET") >= FIRST + ADD, legs
