"""Adversarial review of e18fc0d ('opened' merge by what the entry filled further).

A BUY of 0.004 against a short of 0.006 only reduces it: the first attempt reads the position
before (-0.006), opens nothing (size 0), so its ``opened`` write drops the intent's record, and
dies before its result is committed. The redelivered attempt resumes without ``position_before``
("a resumed entry is taken to open all it executes"): its ``opened`` write says 0.004 long
(``entry_filled`` 0.004). There is no opened record to merge with (the first attempt's was
dropped), so ``put_opened`` writes it whole: the intent claims a 0.004 long on a 0.002 short.
``entry_filled`` exists to make a resumed netting entry's write harmless; the case where the
first attempt opened nothing escapes it (and a reduced-to-flat entry the same way). The resumed
attempt also protected the whole fill (a SELL stop, cancelled by the live OCO: it protected
nothing) and said ``protected``.

Fixed: the intent's record carries the position its entry met (written before the entry is
sent; kept at size 0 when the entry opened nothing), and a resumed attempt reads it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.dying import die_after_opened
from support.sim_state import algo_orders
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_a_resumed_reducing_entry_records_nothing(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    hung = die_after_opened(monkeypatch, "red-r8")
    first = await desk.service(consumer_name="leaving", shutdown_grace_s=0.5)
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="short-r8",
        symbol="BTCUSDT",
        side="SELL",
        quantity="0.006",
        stop_loss=str((mark * D("1.03")).quantize(D("0.1"))),
    )
    await desk.result("short-r8")
    assert desk.position("BTCUSDT") == D("-0.006")
    await desk.publish(
        intent_id="red-r8",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.004",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
    )
    await wait_for(lambda: bool(hung), 15, "the first attempt's opened write")
    assert hung == [D("0")]
    follower = first.account
    assert follower is not None
    before = [r for r in await follower.store.records_of("BTCUSDT") if r.opened and r.intent_key == "red-r8"]
    # It opened nothing: a record of size 0 keeps the position it met, for a resumed attempt.
    assert [(r.quantity, r.position_before) for r in before] == [(D(0), D("-0.006"))], before
    await first.stop()
    await desk.service(consumer_name="arriving")
    result = await desk.result("red-r8", timeout_s=40)

    assert desk.position("BTCUSDT") == D("-0.002"), "the simulator's own position"
    assert result.executed_quantity == D("0.004")
    follower = desk.services[-1].account
    assert follower is not None
    records = [r for r in await follower.store.records_of("BTCUSDT") if r.opened and r.intent_key == "red-r8"]
    ids = {client_order_id("red-r8", kind) for kind in ("sl", "tp")}
    legs = [
        (a["side"], a["algoStatus"])
        for a in algo_orders(desk.sim, symbol="BTCUSDT")
        if a["clientAlgoId"] in ids
    ]
    claims = [(r.long, r.quantity) for r in records if r.quantity > 0]
    assert claims == [] and legs == [], (
        "the reducing BUY opened nothing (a 0.002 short is left), yet after its redelivery its "
        f"record claims {claims}: the resumed attempt (no position_before) took its whole fill as "
        f"opened; its legs on the simulator: {legs}; result protection {result.protection.value}"
    )
    # As the first attempt would have said: nothing opened, nothing to protect.
    assert result.protection is ProtectionState.NOT_REQUESTED, result.protection
