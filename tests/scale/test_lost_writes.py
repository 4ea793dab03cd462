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
from quantum_exec.core.ids import client_order_id
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


async def test_an_intent_read_inside_the_window_is_looked_up_however_long_it_waits_for_a_slot(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read back inside the lost-writes window, then waiting for the one slot past its end (an
    entry on another symbol holds it, its order request held 4 s by the exchange): the intent
    still looks its orders up before sending any. (A resting LIMIT no longer holds a slot: it is
    parked while it rests.)"""
    monkeypatch.setattr("quantum_exec.stream.link.LOST_WRITES_WINDOW_S", 1.0)
    names = desk.names
    service = await desk.service(max_concurrency=1)
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="wait-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    )
    first = await desk.result("wait-1")
    assert first.status is ResultStatus.FILLED and first.protection is ProtectionState.PROTECTED
    [(result_id, _)] = await _results(desk)
    desk.sim.set_faults(
        faults=[{"kind": "latency", "ms": 4000, "method": "POST", "path": "/fapi/v1/order", "count": 1}]
    )
    await desk.publish(intent_id="wait-holder", symbol="ETHUSDT", side="BUY", quantity="0.100")
    holder_id = client_order_id("wait-holder", "entry")

    async def holder_in_flight() -> bool:
        state = await desk.redis.hget(f"{names['key_prefix']}:idem:wait-holder", "state")
        return state is not None and desk.sim.requests_in_progress > 0

    await wait_for(
        holder_in_flight, 10, "the other entry's order held by the exchange (holding the one slot)"
    )

    async with desk.redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"{names['key_prefix']}:idem:wait-1")
        pipe.xdel(names["result_stream"], result_id)
        pipe.xgroup_setid(names["intent_stream"], names["consumer_group"], "0")
        pipe.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await pipe.execute()

    assert service.consumer is not None
    link = service.consumer._link

    async def read_back_and_window_over() -> bool:
        pending = await desk.redis.xpending(names["intent_stream"], names["consumer_group"])
        return (
            int(pending["pending"]) == 2
            and link.lost_at is not None
            and link.writes_maybe_lost_since() is None
        )

    await wait_for(read_back_and_window_over, 3, "wait-1 read back, then the window over while it waits")
    assert not any(o["clientOrderId"] == holder_id for o in desk.sim.state()["orders"])  # still held

    async def answered_again() -> bool:
        return {r.intent_id for _, r in await _results(desk)} == {"wait-1", "wait-holder"}

    await wait_for(answered_again, 30, "wait-1 answered again once the slot was free")
    [again] = [r for _, r in await _results(desk) if r.intent_id == "wait-1"]
    assert again.status is ResultStatus.FILLED and again.order_id == first.order_id
    state = desk.sim.state()
    assert Counter(o["clientOrderId"] for o in state["orders"])[client_order_id("wait-1", "entry")] == 1
    legs = Counter(a["clientAlgoId"] for a in state["algoOrders"])
    assert legs[client_order_id("wait-1", "sl")] == legs[client_order_id("wait-1", "tp")] == 1
    assert desk.position("BTCUSDT") == Decimal("0.010")


async def test_an_instance_started_after_the_failover_looks_up_a_claimed_intent_that_waited_for_a_slot(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failover lost the record and the ack of an intent its dead consumer had executed; an
    instance started after it (it saw no outage) claims the entry (a redelivery) while a resting
    LIMIT holds its one slot, and runs it past any window: the orders are found, not placed again."""
    monkeypatch.setattr("quantum_exec.stream.link.LOST_WRITES_WINDOW_S", 1.0)
    names = desk.names
    stream, group = names["intent_stream"], names["consumer_group"]
    first_instance = await desk.service(consumer_name="inst-a")
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="late-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    )
    first = await desk.result("late-1")
    assert first.status is ResultStatus.FILLED and first.protection is ProtectionState.PROTECTED
    [(result_id, _)] = await _results(desk)
    assert await first_instance.stop() is True

    # What the promoted replica holds: the entry delivered to inst-a (now dead), no record, no result.
    async with desk.redis.pipeline(transaction=True) as pipe:
        pipe.delete(f"{names['key_prefix']}:idem:late-1")
        pipe.xdel(names["result_stream"], result_id)
        pipe.xgroup_setid(stream, group, "0")
        pipe.xreadgroup(group, "inst-a", {stream: ">"}, count=1)
        await pipe.execute()

    service = await desk.service(consumer_name="inst-b", max_concurrency=1, claim_idle_ms=2000)
    eth = desk.sim.engine.mark("ETHUSDT")
    limit_price = (eth * Decimal("0.995")).quantize(Decimal("0.01"))
    await desk.publish(
        intent_id="late-limit",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.100",
        order_type="LIMIT",
        price=str(limit_price),
    )
    limit_id = client_order_id("late-limit", "entry")
    await wait_for(
        lambda: any(
            o["clientOrderId"] == limit_id and o["status"] == "NEW" for o in desk.sim.state()["orders"]
        ),
        10,
        "the LIMIT resting on the book (holding the one slot)",
    )

    async def claimed_while_the_slot_is_held() -> bool:
        rows = await desk.redis.xpending_range(stream, group, min="-", max="+", count=10)
        return {r["consumer"] for r in rows} == {b"inst-b"} and len(rows) == 2

    await wait_for(claimed_while_the_slot_is_held, 15, "late-1 claimed by inst-b behind the LIMIT")
    assert service.consumer is not None and service.consumer._link.lost_at is None  # saw no outage
    desk.sim.set_mark_price("ETHUSDT", limit_price - Decimal("5"))

    async def answered_again() -> bool:
        return {r.intent_id for _, r in await _results(desk)} == {"late-1", "late-limit"}

    await wait_for(answered_again, 30, "late-1 answered again once the slot was free")
    [again] = [r for _, r in await _results(desk) if r.intent_id == "late-1"]
    assert again.status is ResultStatus.FILLED and again.order_id == first.order_id
    state = desk.sim.state()
    assert Counter(o["clientOrderId"] for o in state["orders"])[client_order_id("late-1", "entry")] == 1
    assert desk.position("BTCUSDT") == Decimal("0.010")
