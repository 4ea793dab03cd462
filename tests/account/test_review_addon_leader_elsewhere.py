"""Adversarial review: QUANTUM_PROTECTION_TIMING=with_entry with the account lease on another
instance. The legs an add-on sends beside its entry are held from the live OCO of the instance
executing it only; the account lease holder's OCO sees them armed while the entry is still held by
the exchange, confirms the position before the fill by REST and shrinks them to it under their
other ids (make before break). The executing instance then reads its legs back CANCELED after the
fill: it must not arm a second copy beside the shrunk one, but place each leg again at the add-on's
size and cancel the copy (execution/leg_copies.py), with the fills late on the stream or not.
Checked from the simulator's own conditional orders: one armed copy of each leg, the one the result
names, at the add-on's size (P3, once)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.account.record import Record
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


@pytest.mark.parametrize("lag", [{}, {"ORDER_TRADE_UPDATE": 6000}], ids=["in-order", "fills-late"])
async def test_an_add_on_whose_legs_another_instance_shrank_arms_each_once(
    desk: Desk, lag: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = desk.names["intent_stream"]
    # The account lease holder, consuming an idle stream: its live OCO is the only one that acts.
    leader = await desk.service(
        protection_timing="with_entry", intent_stream=f"{tag}:idle", consumer_group=f"{tag}:idle-group"
    )
    account = leader.account
    assert account is not None
    await wait_for(lambda: account.leader, 10, "the first instance holds the account lease")
    await desk.service(protection_timing="with_entry")  # executes the intents
    # The leader reads no record (a lost write): its OCO cannot tell the add-on's entry is still in
    # flight (account/live_oco.py waits for it where the record says so), and shrinks its legs.
    records_of = account.store.records_of

    async def lost(symbol: str) -> list[Record]:
        return [r for r in await records_of(symbol) if r.intent_key != "addon"]

    monkeypatch.setattr(account.store, "records_of", lost)
    mark = desk.sim.engine.mark(SYMBOL)
    sl, tp = (mark * Decimal("0.98")).quantize(TENTH), (mark * Decimal("1.02")).quantize(TENTH)
    triggers = {"stop_loss": str(sl), "take_profit": str(tp)}
    await desk.publish(intent_id="first", symbol=SYMBOL, side="BUY", quantity=str(FIRST), **triggers)
    assert (await desk.result("first")).protection is ProtectionState.PROTECTED
    await wait_for(lambda: account.position_amount(SYMBOL) == FIRST, 10, "the leader sees the first fill")
    if lag:
        desk.sim.set_faults(stream_reorder={"seed": 1, "max_delay_ms": 1, "type_delay_ms": lag})
    # The add-on's entry is held 1.5 s by the exchange (past the legs' settle grace of 0.5 s).
    desk.sim.set_faults(
        faults=[{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order", "count": 1}]
    )
    await desk.publish(intent_id="addon", symbol=SYMBOL, side="BUY", quantity=str(ADD), **triggers)

    result = await desk.result("addon")

    assert result.status is ResultStatus.FILLED and result.executed_quantity == ADD
    assert result.protection is ProtectionState.PROTECTED
    legs = _legs_of(desk, "addon")
    shrunk = [a for a in legs if Decimal(a["quantity"]) < ADD]
    assert shrunk, legs  # the scenario happened: the leader's OCO shrank them before the fill
    armed = [a for a in legs if a["algoStatus"] == "NEW"]
    assert len(armed) == 2 and all(Decimal(a["quantity"]) == ADD for a in armed), legs  # P3, once
    assert result.stop_loss is not None and result.take_profit is not None
    assert {result.stop_loss.algo_id, result.take_profit.algo_id} == {a["algoId"] for a in armed}
    assert desk.position(SYMBOL) == FIRST + ADD
