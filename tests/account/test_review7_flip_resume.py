"""Adversarial review of df72d36 (an 'opened' write over an opened record merges).

A BUY of 0.010 against a short of 0.004 flips it: the first attempt reads the position before
(-0.004), protects and records what the fill opened (0.006), and dies before its result is
committed. The redelivered attempt resumes: it never reads ``position_before`` (a resumed entry is
"taken to open all it executes"), so its ``opened`` write says 0.010. At 862be4a the first
write was kept (0.006, right); df72d36 merges ``there.quantity + (0.010 - 0.006)``: the record
claims 0.010 of a 0.006 long. Reconciliation sizes a missing leg of this intent from it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from support.desk import Desk
from support.dying import die_after_opened
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_a_resumed_flip_records_only_what_it_opened(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = die_after_opened(monkeypatch, "flip-r7")
    first = await desk.service(consumer_name="leaving", shutdown_grace_s=0.5)
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="short-r7",
        symbol="BTCUSDT",
        side="SELL",
        quantity="0.004",
        stop_loss=str((mark * D("1.03")).quantize(D("0.1"))),
    )
    await desk.result("short-r7")
    assert desk.position("BTCUSDT") == D("-0.004")
    await desk.publish(
        intent_id="flip-r7",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
    )
    await wait_for(lambda: bool(hung), 15, "the first attempt's opened write")
    assert hung == [D("0.006")]
    follower = first.account
    assert follower is not None
    before = [r for r in await follower.store.records_of("BTCUSDT") if r.opened]
    assert sum((r.quantity for r in before), D(0)) == D("0.006"), before
    await first.stop()
    await desk.service(consumer_name="arriving")
    result = await desk.result("flip-r7", timeout_s=40)

    assert desk.position("BTCUSDT") == D("0.006"), "the simulator's own position"
    assert result.executed_quantity == D("0.010")
    follower = desk.services[-1].account
    assert follower is not None
    records = [r for r in await follower.store.records_of("BTCUSDT") if r.opened]
    held = sum((r.quantity for r in records), D(0))
    assert held == D("0.006"), (
        f"the flip's record claims {held} of a 0.006 long it opened (the exchange's position): the "
        "resumed attempt (no position_before) wrote 0.010 and the merge added 0.010 - 0.006"
    )
