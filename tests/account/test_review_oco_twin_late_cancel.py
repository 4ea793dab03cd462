"""Adversarial review of execution/leg_copies.py with the account lease on another instance
(QUANTUM_PROTECTION_TIMING=with_entry): the lease holder's OCO shrinks an add-on's legs to the
position it confirmed before the entry filled (make before break, under their other ids), and
the cancel of the old leg is slow to land. The executing instance reads its legs back after the
fill while the old ones still stand: nothing to look for under the other id. Then the old legs
go, and only the shrunk copies are left. Checked from the simulator's own conditional orders:
the add-on's legs armed cover what it filled, and the result names armed legs (P3, P5). On main
the leader shrank both legs to 0.010 and the result named the cancelled ones; now the leader's OCO
leaves a leg alone while its intent's record says the entry has not filled (account/live_oco.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id, replacement_of
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

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


async def test_an_add_on_whose_old_leg_is_cancelled_after_its_read_back_stays_covered(desk: Desk) -> None:
    tag = desk.names["intent_stream"]
    leader = await desk.service(
        protection_timing="with_entry", intent_stream=f"{tag}:idle", consumer_group=f"{tag}:idle-group"
    )
    account = leader.account
    assert account is not None
    await wait_for(lambda: account.leader, 10, "the first instance holds the account lease")
    await desk.service(protection_timing="with_entry")  # executes the intents
    mark = desk.sim.engine.mark(SYMBOL)
    sl, tp = (mark * Decimal("0.98")).quantize(TENTH), (mark * Decimal("1.02")).quantize(TENTH)
    triggers = {"stop_loss": str(sl), "take_profit": str(tp)}
    await desk.publish(intent_id="first", symbol=SYMBOL, side="BUY", quantity=str(FIRST), **triggers)
    assert (await desk.result("first")).protection is ProtectionState.PROTECTED
    await wait_for(lambda: account.position_amount(SYMBOL) == FIRST, 10, "the leader sees the first fill")
    # The add-on's entry is held 1.5 s (past the legs' settle grace); the leader's first cancel
    # (of an old leg it shrank) lands 3 s after it is sent: after the fill and the read-back.
    desk.sim.set_faults(
        faults=[
            {"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order", "count": 1},
            {"kind": "latency", "ms": 3000, "method": "DELETE", "path": "/fapi/v1/algoOrder", "count": 1},
        ]
    )
    await desk.publish(intent_id="addon", symbol=SYMBOL, side="BUY", quantity=str(ADD), **triggers)

    result = await desk.result("addon")

    assert result.status is ResultStatus.FILLED and result.executed_quantity == ADD
    assert result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None and result.take_profit is not None
    named = {result.stop_loss.algo_id, result.take_profit.algo_id}

    def quiet() -> bool:
        return account.oco.idle(SYMBOL)

    await wait_for(quiet, 15, "the leader's OCO idle (a cancel it sent landed)")
    await wait_for(lambda: desk.position(SYMBOL) == FIRST + ADD, 5, "the position")
    legs = _legs_of(desk, "addon")
    armed = [a for a in legs if a["algoStatus"] == "NEW"]
    for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
        covered = sum((Decimal(a["quantity"]) for a in armed if a["orderType"] == kind), Decimal(0))
        assert covered == ADD, (kind, legs, named)  # P3: what the add-on filled, once
    assert named <= {a["algoId"] for a in armed}, (named, legs)  # P5: the result names armed legs
