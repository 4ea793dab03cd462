"""Adversarial review, REGRESSION GUARD: QUANTUM_PROTECTION_TIMING=with_entry, an add-on whose
instance stalls (SIGSTOP) with its entry in flight and its reduce-only legs beside it; another
instance takes the intent over once the lease expired, then the stalled one wakes (SIGCONT)
believing it still owns it, within FENCE_FRESH_S of nothing (its clock ran on while it was stopped).

The taking-over instance holds the account lease too: when it starts before the held entry fills,
its live OCO shrinks the add-on's legs to the position REST confirms (the first one) under their
other ids; its resume then finds the legs CANCELED under the intent's ids. It once placed them
again there, beside the shrunk copies (two armed copies, seen with the stream reordered,
``QUANTUM_TEST_STREAM_REORDER``); it now replaces each copy make before break
(execution/leg_copies.py). Checked from the simulator's own orders, in the plain and the reordered
run: one entry (P2), one armed copy of each of the add-on's legs, at its size, the ones the result
names, and the first position's untouched (P3), one result (P1)."""

from __future__ import annotations

import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.core.ids import client_order_id, replacement_of
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SYMBOL = "BTCUSDT"
TENTH = Decimal("0.1")
FIRST = Decimal("0.010")
ADD = Decimal("0.020")


def _legs_of(desk: Desk, intent_id: str) -> list[dict[str, Any]]:
    ids = set()
    for kind in ("sl", "tp"):
        plain = client_order_id(intent_id, kind)
        ids |= {plain, replacement_of(plain)}
    return [a for a in desk.sim.state()["algoOrders"] if a["clientAlgoId"] in ids]


def _worker(desk: Desk, tmp_path: Path, name: str, recv_window_ms: int) -> KillableService:
    (tmp_path / name).mkdir()
    return KillableService(
        desk,
        tmp_path / name,
        name,
        protection_timing="with_entry",
        claim_idle_ms=1000,
        recv_window_ms=recv_window_ms,
    )


# How long the exchange holds the add-on's entry, and the recvWindow it is sent with (the entry
# must still be valid when the exchange takes it): the taker starts (about 1-2 s) after the fill,
# or before it, when its live OCO shrinks the legs to the first position first.
HOLDS = {"taker-after-fill": (1500, 2000), "taker-before-fill": (4000, 6000)}


@pytest.mark.parametrize("hold", list(HOLDS))
async def test_a_stalled_add_on_taken_over_then_woken_acts_on_nothing(
    desk: Desk, tmp_path: Path, hold: str
) -> None:
    latency_ms, recv_window_ms = HOLDS[hold]
    a, b = (_worker(desk, tmp_path, name, recv_window_ms) for name in ("stall-a", "stall-b"))
    try:
        a.spawn()
        await wait_for(lambda: a.started() == 1, 30, "instance a ready")
        mark = desk.sim.engine.mark(SYMBOL)
        sl, tp = (mark * Decimal("0.98")).quantize(TENTH), (mark * Decimal("1.02")).quantize(TENTH)
        await desk.publish(
            intent_id="first",
            symbol=SYMBOL,
            side="BUY",
            quantity=str(FIRST),
            stop_loss=str(sl),
            take_profit=str(tp),
        )
        assert (await desk.result("first")).protection is ProtectionState.PROTECTED
        # The add-on's entry is held by the exchange; its legs go beside it at once.
        desk.sim.set_faults(
            faults=[
                {"kind": "latency", "ms": latency_ms, "method": "POST", "path": "/fapi/v1/order", "count": 1}
            ]
        )
        await desk.publish(
            intent_id="addon",
            symbol=SYMBOL,
            side="BUY",
            quantity=str(ADD),
            stop_loss=str(sl),
            take_profit=str(tp),
        )
        await wait_for(
            lambda: (
                sum(x["algoStatus"] == "NEW" for x in _legs_of(desk, "addon")) == 2
                and desk.sim.requests_in_progress > 0
            ),
            10,
            "the add-on's legs armed, its entry in flight",
        )
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        b.spawn()
        result = await desk.result("addon", timeout_s=60)  # b took it over
        # Once the result says protected, each leg is armed once (no copy left for an OCO to find).
        at_result = [x for x in _legs_of(desk, "addon") if x["algoStatus"] == "NEW"]
        assert len(at_result) == 2, _legs_of(desk, "addon")
        a.proc.send_signal(signal.SIGCONT)
        # The woken instance finishes what it held (its entry's answer): give it time to act.
        # Fenced out: its commit refused, or (since a lost lease is one line, no traceback) the
        # intent left pending for the instance that holds it.
        fenced = ("commit_fenced", "intent.left_pending")
        await wait_for(
            lambda: any(word in (tmp_path / "stall-a" / "worker.log").read_text() for word in fenced),
            20,
            "the woken instance fenced out",
        )
    finally:
        a.kill()
        b.kill()
    entries = [
        o for o in desk.sim.state()["orders"] if o["clientOrderId"] == client_order_id("addon", "entry")
    ]
    assert len(entries) == 1, entries  # P2
    assert result.status is ResultStatus.FILLED and result.executed_quantity == ADD  # P5
    assert result.protection is ProtectionState.PROTECTED
    armed = [x for x in _legs_of(desk, "addon") if x["algoStatus"] == "NEW"]
    assert len(armed) == 2 and all(Decimal(x["quantity"]) == ADD for x in armed), _legs_of(desk, "addon")
    assert {x["orderType"] for x in armed} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}  # P3, once each
    assert result.stop_loss is not None and result.take_profit is not None
    assert {result.stop_loss.algo_id, result.take_profit.algo_id} == {x["algoId"] for x in armed}
    first = [x for x in _legs_of(desk, "first") if x["algoStatus"] == "NEW"]
    assert len(first) == 2, _legs_of(desk, "first")
    assert desk.position(SYMBOL) == FIRST + ADD
    rows = await desk.redis.xrange(desk.names["result_stream"])
    assert sorted(decode_result_fields(f).intent_id or "" for _s, f in rows) == ["addon", "first"]  # P1
