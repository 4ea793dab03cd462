"""Regression guard from the adversarial review (passes on main; issue #27): a partial CLOSE of a
ladder, the service SIGKILLed in the middle of the ladder's resize (a level's new leg armed, its old
one not cancelled yet). Promise: "the legs shrink to what is left, a ladder keeps its remaining
levels in proportion", exactly once across kills; checked from the simulator's own order history."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.killable import KillableService
from support.waiting import happens_within, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

D = Decimal


async def test_a_partial_close_killed_mid_resize_leaves_the_ladder_in_proportion(
    desk: Desk, tmp_path: Path
) -> None:
    worker = KillableService(desk, tmp_path, consumer_name="partial-worker")
    mark = desk.sim.engine.mark("BTCUSDT")
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await desk.publish(
            intent_id="pk-open",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.010",
            stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
            take_profits=[{"pct": 2, "size_pct": 40}, {"pct": 3, "size_pct": 40}, {"pct": 4, "size_pct": 20}],
        )
        opened = await desk.result("pk-open", timeout_s=30)
        assert opened.protection is ProtectionState.PROTECTED
        # Cancels held back: the kill lands after a level's new leg is armed, before its old one goes.
        desk.sim.set_faults(
            faults=[{"kind": "latency", "method": "DELETE", "path": "/fapi/v1/algoOrder", "ms": 4000}]
        )
        await desk.publish(intent_id="pk-close", symbol="BTCUSDT", side="CLOSE", close_pct=30)

        def twins() -> bool:
            levels = [a for a in desk.open_algos("BTCUSDT") if a["orderType"] == "TAKE_PROFIT_MARKET"]
            return desk.position("BTCUSDT") == D("0.007") and len(levels) >= 4

        await wait_for(twins, 30, "a level's new leg armed beside its old one")
        worker.kill()
        desk.sim.set_faults(faults=[])
        worker.spawn()
        await wait_for(lambda: worker.started() == 2, 30, "the worker ready again")
        closed = await desk.result("pk-close", timeout_s=40)
        assert closed.status is ResultStatus.FILLED, closed

        def legs() -> dict[str, list[Decimal]]:
            shown: dict[str, list[Decimal]] = {}
            for a in sorted(desk.open_algos("BTCUSDT"), key=lambda a: D(a["triggerPrice"])):
                shown.setdefault(a["orderType"], []).append(D(a["quantity"]))
            return shown

        want = {"STOP_MARKET": [D("0.007")], "TAKE_PROFIT_MARKET": [D("0.002"), D("0.002"), D("0.003")]}
        await happens_within(lambda: legs() == want, 20)
    finally:
        worker.kill()
    assert desk.position("BTCUSDT") == D("0.007")
    closes = [o for o in desk.sim.state()["orders"] if o.get("reduceOnly") and o["type"] == "MARKET"]
    assert len(closes) == 1, closes  # the partial close sent once
    assert legs() == want, f"after the kill mid-resize the legs are {legs()}, wanted {want}"
