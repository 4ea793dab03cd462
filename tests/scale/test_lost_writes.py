"""Acknowledged writes lost in a failover: the intent comes back as new, its orders are found.

An asynchronous Sentinel failover can promote a replica that never received the last writes: the
intent's begin record, its result, its ack and the group's last-delivered id. The outage and the
rollback are made here in one MULTI on a real Redis (the clients are cut at the same instant the
records vanish), so the service meets exactly what a promoted replica would show it.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.ids import client_order_id
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def _results(desk: Desk) -> list[Any]:
    rows = await desk.redis.xrange(desk.names["result_stream"])
    return [(sid, decode_result_fields(fields)) for sid, fields in rows]


async def test_intent_whose_records_a_failover_lost_is_found_on_the_exchange_not_placed_again(
    desk: Desk,
) -> None:
    names = desk.names
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="lost-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    )
    first = await desk.result("lost-1")
    assert first.status is ResultStatus.FILLED and first.protection is ProtectionState.PROTECTED
    [(result_id, _)] = await _results(desk)

    async with desk.redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"{names['key_prefix']}:idem:lost-1")
        pipe.xdel(names["result_stream"], result_id)
        pipe.xgroup_setid(names["intent_stream"], names["consumer_group"], "0")
        pipe.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await pipe.execute()

    async def answered_again() -> bool:
        return len(await _results(desk)) == 1

    await wait_for(answered_again, 30, "the intent answered again")
    [(_, again)] = await _results(desk)
    # The same orders, found by their client ids: re-published, not re-placed.
    assert again.status is ResultStatus.FILLED and again.protection is ProtectionState.PROTECTED
    assert again.order_id == first.order_id and again.executed_quantity == first.executed_quantity
    assert again.stop_loss is not None and first.stop_loss is not None
    assert again.take_profit is not None and first.take_profit is not None
    assert again.stop_loss.algo_id == first.stop_loss.algo_id
    assert again.take_profit.algo_id == first.take_profit.algo_id
    state = desk.sim.state()
    assert Counter(o["clientOrderId"] for o in state["orders"])[client_order_id("lost-1", "entry")] == 1
    legs = Counter(a["clientAlgoId"] for a in state["algoOrders"])
    assert legs[client_order_id("lost-1", "sl")] == legs[client_order_id("lost-1", "tp")] == 1
    assert desk.position("BTCUSDT") == Decimal("0.010")
