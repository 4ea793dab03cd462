"""Adversarial review of 862be4a (an intent's record becomes 'opened' once, first write wins).

A TWAP's first attempt ends its schedule early (a later child refused by the exchange), writes
its record ``opened`` with what the children it sent filled, and dies before its result is
committed. The redelivered attempt resumes the schedule: the child the first attempt never placed
is not found on the exchange, so it is sent now and fills. The intent now holds every child's
fill, but its record keeps the first attempt's smaller quantity: the second ``opened`` write,
which carries the true size, is dropped by the script ("a record already opened is kept"). Before
862be4a the second write replaced it. The record claims less of the position than is the
intent's; reconciliation sizes a missing leg of this intent from that record.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.dying import die_after_opened
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


def _children(desk: Desk, key: str) -> list[dict[str, Any]]:
    ids = {client_order_id(key, "entry", n): n for n in range(1, 100)}
    found = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] in ids]
    return sorted(found, key=lambda o: ids[o["clientOrderId"]])


async def test_a_resumed_twap_that_sends_the_child_the_first_attempt_did_not_is_recorded_whole(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = die_after_opened(monkeypatch)
    first = await desk.service(consumer_name="leaving", shutdown_grace_s=0.5)
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="twap-r6",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        execution={"algo": "twap", "slices": 2, "interval_s": 1.5},
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
    )
    await wait_for(lambda: len(_children(desk, "twap-r6")) == 1, 10, "the first child sent")
    # The second child is refused (-2019): the first attempt ends the schedule early.
    desk.sim.set_faults(faults=[{"kind": "insufficient_margin", "count": 1}])
    await wait_for(lambda: bool(hung), 15, "the first attempt's opened write")
    assert hung == [D("0.005")]
    await first.stop()
    desk.sim.set_faults(faults=[])
    await desk.service(consumer_name="arriving")
    result = await desk.result("twap-r6", timeout_s=40)

    # The simulator's own history: both children filled, the position is the whole intent's.
    orders = _children(desk, "twap-r6")
    assert [o["status"] for o in orders] == ["FILLED", "FILLED"], orders
    assert desk.position("BTCUSDT") == D("0.010")
    assert result.executed_quantity == D("0.010") and result.status is not ResultStatus.REJECTED

    follower = desk.services[-1].account
    assert follower is not None
    records = [r for r in await follower.store.records_of("BTCUSDT") if r.opened]
    held = sum((r.quantity for r in records), D(0))
    assert held == D("0.010"), (
        f"the intent's record claims {held} of the 0.010 its two children filled on the exchange: "
        "the resumed attempt's 'opened' write (the whole fill) was dropped as a second write"
    )
