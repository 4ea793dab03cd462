"""Adversarial review, REGRESSION GUARD (passes on main): a STOP entry whose
``expire_after_s`` window ran out while no process ran, and whose stop triggered and filled
meanwhile, is protected and reported whole by the restarted process (P3, P5): the window kept
from the first receipt (Run.working_deadline) must not end the entry unseen. Checked from the
simulator's own orders."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SYMBOL = "BTCUSDT"
TENTH = Decimal("0.1")


async def test_a_stop_entry_that_filled_after_its_window_while_dead_is_protected_and_reported(
    desk: Desk, tmp_path: Path
) -> None:
    worker = KillableService(desk, tmp_path, "window-worker")
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        mark = desk.sim.engine.mark(SYMBOL)
        stop = (mark * Decimal("1.002")).quantize(TENTH)
        await desk.publish(
            intent_id="late-stop",
            symbol=SYMBOL,
            side="BUY",
            quantity="0.010",
            order_type="STOP_MARKET",
            stop_price=str(stop),
            expire_after_s=4,
            stop_loss=str((mark * Decimal("0.97")).quantize(TENTH)),
            take_profit=str((mark * Decimal("1.05")).quantize(TENTH)),
        )
        entry = client_order_id("late-stop", "entry")
        await wait_for(lambda: desk.algo(entry) is not None, 10, "the stop entry armed")
        worker.kill()
        desk.sim.set_mark_price(SYMBOL, mark * Decimal("1.004"))  # triggers while no process runs
        await wait_for(lambda: desk.position(SYMBOL) == Decimal("0.010"), 10, "the triggered order filled")
        await asyncio.sleep(5)  # the window (4 s from the first receipt) is over before the restart
        worker.spawn()
        result = await desk.result("late-stop", timeout_s=60)
    finally:
        worker.kill()
    assert desk.position(SYMBOL) == Decimal("0.010")
    assert result.executed_quantity == Decimal("0.010"), result  # P5
    assert result.status is ResultStatus.FILLED, result
    assert result.protection is ProtectionState.PROTECTED, result  # P3, and true there:
    for leg in (result.stop_loss, result.take_profit):
        assert leg is not None
        found = desk.algo(leg.client_algo_id)
        assert found is not None and found["algoStatus"] == "NEW", found
