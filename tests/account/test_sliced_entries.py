"""TWAP and maxQty-split entries and closes on the simulator, over HTTP and the user data stream."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import AlgoStatus
from quantum_exec.execution.entries import stop as stop_entry
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _children(desk: Desk, key: str, role: str = "entry") -> list[dict[str, Any]]:
    """The simulator's orders of the intent's children, in child order."""
    ids = {client_order_id(key, role, n): n for n in range(1, 100)}  # type: ignore[arg-type]
    found = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] in ids]
    return sorted(found, key=lambda o: ids[o["clientOrderId"]])


async def test_twap_of_five_slices_adds_up_exactly_and_is_protected_once(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="twap-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.011",  # 0.0022 a slice: to the 0.001 step the drift is carried
        execution={"algo": "twap", "slices": 5, "interval_s": 0.5},
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.03")).quantize(Decimal("0.1"))),
    )
    result = await desk.result("twap-1", timeout_s=30)
    orders = _children(desk, "twap-1")
    assert [Decimal(o["origQty"]) for o in orders] == [Decimal("0.002")] * 4 + [Decimal("0.003")]
    assert all(o["type"] == "MARKET" and o["status"] == "FILLED" for o in orders)
    # The schedule kept its pace: 4 intervals of 0.5 s between the first and the last slice.
    times = [int(o["updateTime"]) for o in orders]
    assert times[-1] - times[0] >= 1900
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.executed_quantity == Decimal("0.011") == desk.position("BTCUSDT")
    trades = [t for o in orders for t in desk.trades_of(int(o["orderId"]))]
    quote = sum(Decimal(t["quoteQty"]) for t in trades)
    assert result.avg_price == quote / Decimal("0.011")
    assert result.commission == sum(Decimal(t["commission"]) for t in trades)
    assert result.children is not None and [c.status for c in result.children] == ["FILLED"] * 5
    assert [c.client_order_id for c in result.children] == [o["clientOrderId"] for o in orders]
    # One protection for the whole of it: closePosition legs, armed once.
    legs = desk.open_algos("BTCUSDT")
    assert sorted(a["orderType"] for a in legs) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(a["closePosition"] is True and a["side"] == "SELL" for a in legs)
    assert len([a for a in desk.sim.state()["algoOrders"] if a["symbol"] == "BTCUSDT"]) == 2


async def test_an_entry_and_a_close_above_market_max_qty_go_out_in_compliant_parts(desk: Desk) -> None:
    desk.sim.set_balance("USDT", Decimal("1000000"))
    await desk.service(max_notional_usd=Decimal("10000000"))
    # DOTUSDT: MARKET_LOT_SIZE maxQty 120,000; twice that is 240,000 (~1.1 M USDT).
    await desk.publish(intent_id="big-open", symbol="DOTUSDT", side="SELL", quantity="240000", leverage=5)
    opened = await desk.result("big-open")
    assert opened.status is ResultStatus.FILLED, opened.error
    parts = _children(desk, "big-open")
    assert [Decimal(o["origQty"]) for o in parts] == [Decimal("120000")] * 2
    assert desk.position("DOTUSDT") == Decimal("-240000")

    await desk.publish(intent_id="big-close", symbol="DOTUSDT", side="CLOSE")
    closed = await desk.result("big-close")
    assert closed.status is ResultStatus.FILLED, closed.error
    parts = _children(desk, "big-close", "close")
    assert [(Decimal(o["origQty"]), o["side"], o["reduceOnly"]) for o in parts] == [
        (Decimal("120000"), "BUY", True)
    ] * 2
    assert desk.position("DOTUSDT") == 0
    assert closed.executed_quantity == Decimal("240000")
    assert closed.children is not None and len(closed.children) == 2


async def test_a_close_ends_a_working_twap_at_once(desk: Desk) -> None:
    await desk.service()
    await desk.publish(
        intent_id="slow-twap",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.5",
        execution={"algo": "twap", "slices": 5, "interval_s": 5},
        stop_loss_pct="3",
    )

    await wait_for(lambda: len(_children(desk, "slow-twap")) == 1, 10, "the first slice")
    await desk.publish(intent_id="close-it", symbol="ETHUSDT", side="CLOSE")
    twap = await desk.result("slow-twap", timeout_s=5)  # long before the 20 s schedule's end
    closed = await desk.result("close-it", timeout_s=10)
    assert twap.status is ResultStatus.PARTIAL and twap.error is not None
    assert twap.error.code == "ENTRY_ENDED_EARLY" and "CLOSE" in twap.error.message
    assert twap.children is not None
    assert [c.status for c in twap.children] == ["FILLED"] + ["NOT_SENT"] * 4
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.1")
    assert desk.position("ETHUSDT") == 0 and not desk.open_algos("ETHUSDT")
    assert len(_children(desk, "slow-twap")) == 1


async def test_a_close_cancels_a_resting_limit_entry_first(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="rest-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="LIMIT",
        price=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        expire_after_s=200,
    )
    entry_id = client_order_id("rest-1", "entry")
    orders = desk.sim.state
    await wait_for(lambda: any(o["clientOrderId"] == entry_id for o in orders()["orders"]), 10, "the LIMIT")
    await desk.publish(intent_id="close-rest", symbol="BTCUSDT", side="CLOSE")
    entry = await desk.result("rest-1", timeout_s=10)
    closed = await desk.result("close-rest", timeout_s=10)
    assert entry.status is ResultStatus.FAILED and entry.error is not None
    assert entry.error.code == "ENTRY_EXPIRED"
    [order] = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == entry_id]
    assert order["status"] == "CANCELED"
    assert closed.status is ResultStatus.REJECTED and closed.error is not None
    assert closed.error.code == "NO_POSITION"


async def test_a_twap_that_would_outlast_the_working_bound_is_rejected_naming_it(desk: Desk) -> None:
    await desk.service(working_order_max_s=10)
    await desk.publish(
        intent_id="too-long",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        execution={"algo": "twap", "slices": 4, "interval_s": 5},
    )
    result = await desk.result("too-long")
    assert result.status is ResultStatus.REJECTED and result.error is not None
    assert result.error.code == "INVALID_FIELD"
    assert "15" in result.error.message and "QUANTUM_WORKING_ORDER_MAX_S=10" in result.error.message
    assert not _children(desk, "too-long")


async def _twap_killed_mid_schedule(desk: Desk, worker: KillableService, intent_id: str) -> int:
    """Publish a 6-slice TWAP to the worker and SIGKILL it after 3 slices; how many were sent."""
    mark = desk.sim.engine.mark("BTCUSDT")
    worker.spawn()
    await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
    await desk.publish(
        intent_id=intent_id,
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.012",
        execution={"algo": "twap", "slices": 6, "interval_s": 0.6},
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
    )
    await wait_for(lambda: len(_children(desk, intent_id)) >= 3, 20, "three slices sent")
    worker.kill()
    sent_before = len(_children(desk, intent_id))
    assert sent_before < 6, "the kill came after the whole schedule"
    return sent_before


async def test_sigkill_in_the_middle_of_a_twap_resumes_the_schedule_without_a_duplicate_slice(
    desk: Desk, tmp_path: Path
) -> None:
    worker = KillableService(desk, tmp_path)
    try:
        await _twap_killed_mid_schedule(desk, worker, "twap-kill")
        worker.spawn()
        result = await desk.result("twap-kill", timeout_s=40)
    finally:
        worker.kill()
    orders = _children(desk, "twap-kill")
    ids = [o["clientOrderId"] for o in orders]
    assert len(ids) == len(set(ids)) == 6, ids  # every slice exactly once
    assert [Decimal(o["origQty"]) for o in orders] == [Decimal("0.002")] * 6
    assert result.status is ResultStatus.FILLED and result.executed_quantity == Decimal("0.012")
    assert desk.position("BTCUSDT") == Decimal("0.012")
    assert result.protection is ProtectionState.PROTECTED
    stops = [a for a in desk.sim.state()["algoOrders"] if a["symbol"] == "BTCUSDT"]
    assert len(stops) == 1 and stops[0]["closePosition"] is True  # protected once, across the kill
    rows = await desk.redis.xrange(desk.names["result_stream"])
    assert len(rows) == 1


async def test_a_twap_whose_plan_was_lost_in_a_failover_finds_its_slices_and_sends_none_twice(
    desk: Desk, tmp_path: Path
) -> None:
    """Hole 2 of the order-core review: a plan lost with Redis writes was planned again, and the
    slices already filled were sent again under the same client ids (a double position)."""
    worker = KillableService(desk, tmp_path)
    try:
        sent_before = await _twap_killed_mid_schedule(desk, worker, "twap-lost")
        # What a failover that dropped the last acknowledged writes leaves: no plan.
        assert await desk.redis.delete(f"{desk.names['key_prefix']}:plan:twap-lost") == 1
        worker.spawn()
        result = await desk.result("twap-lost", timeout_s=40)
    finally:
        worker.kill()
    orders = _children(desk, "twap-lost")
    ids = [o["clientOrderId"] for o in orders]
    assert len(ids) == len(set(ids)), f"a slice was placed twice: {ids}"  # P2, from the exchange
    held = sum((Decimal(o["executedQty"]) for o in orders), Decimal(0))
    assert desk.position("BTCUSDT") == held
    # P5: the result says every slice the exchange filled, and that the schedule ended early.
    assert result.executed_quantity == held and len(orders) >= sent_before
    assert result.status is ResultStatus.PARTIAL
    assert result.error is not None and "plan was lost" in result.error.message
    assert [c.client_order_id for c in result.children] == ids
    # P3: the position is protected on the exchange.
    assert result.protection is ProtectionState.PROTECTED
    stops = [
        a for a in desk.sim.state()["algoOrders"] if a["symbol"] == "BTCUSDT" and a["algoStatus"] == "NEW"
    ]
    assert len(stops) == 1 and stops[0]["closePosition"] is True
    assert len(await desk.redis.xrange(desk.names["result_stream"])) == 1  # P1


async def test_a_stop_market_entry_opens_when_the_market_breaks_out_and_is_protected(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    trigger = (mark * Decimal("1.01")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="breakout",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str(trigger),
        stop_loss_pct="2",
        take_profit_pct="4",
    )
    entry_id = client_order_id("breakout", "entry")
    await wait_for(lambda: desk.algo_status(entry_id) == "NEW", 10, "the stop entry armed")
    assert desk.position("BTCUSDT") == 0
    algo = desk.algo(entry_id)
    assert algo is not None and algo["orderType"] == "STOP_MARKET" and algo["reduceOnly"] is False
    desk.sim.set_mark_price("BTCUSDT", trigger + Decimal("5"))
    result = await desk.result("breakout")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.executed_quantity == Decimal("0.01") == desk.position("BTCUSDT")
    assert result.reference_price == trigger and result.client_order_id == entry_id
    [trade] = desk.trades_of(result.order_id or 0)
    assert result.avg_price == Decimal(trade["price"]) and result.commission == Decimal(trade["commission"])
    legs = [a for a in desk.open_algos("BTCUSDT") if a["clientAlgoId"] != entry_id]
    assert sorted(a["orderType"] for a in legs) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(Decimal(a["quantity"]) == Decimal("0.01") and a["side"] == "SELL" for a in legs)


async def test_a_stop_limit_sell_entry_triggers_and_fills_at_its_limit(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("ETHUSDT")
    trigger = (mark * Decimal("0.99")).quantize(Decimal("0.01"))
    limit = (trigger - Decimal("2")).quantize(Decimal("0.01"))
    await desk.publish(
        intent_id="breakdown",
        symbol="ETHUSDT",
        side="SELL",
        quantity="0.1",
        order_type="STOP",
        stop_price=str(trigger),
        price=str(limit),
        stop_loss=str((mark * Decimal("1.03")).quantize(Decimal("0.01"))),
    )
    entry_id = client_order_id("breakdown", "entry")
    await wait_for(lambda: desk.algo_status(entry_id) == "NEW", 10, "the stop entry armed")
    algo = desk.algo(entry_id)
    assert algo is not None and algo["orderType"] == "STOP" and Decimal(algo["price"]) == limit
    desk.sim.set_mark_price("ETHUSDT", trigger - Decimal("1"))
    result = await desk.result("breakdown")
    assert result.status is ResultStatus.FILLED, result.error
    assert desk.position("ETHUSDT") == Decimal("-0.1") and result.protection is ProtectionState.PROTECTED
    assert result.avg_price is not None and result.avg_price >= limit  # a SELL fills at its limit or better


async def test_an_untriggered_stop_entry_expires_and_is_cancelled(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="never",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str((mark * Decimal("1.02")).quantize(Decimal("0.1"))),
        expire_after_s=1,
    )
    result = await desk.result("never")
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "ENTRY_EXPIRED" and "untriggered" in result.error.message
    assert desk.algo_status(client_order_id("never", "entry")) == "CANCELED"
    assert desk.position("BTCUSDT") == 0


@pytest.mark.serial  # a latency bound (woken within 1 s)
async def test_an_armed_stop_entry_waits_on_its_algo_update_not_on_rest_reads(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLOSE check out of the way: only the ALGO_UPDATE can end a wait before the REST check.
    monkeypatch.setattr(stop_entry, "CLOSE_CHECK_S", 60.0)
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    trigger = (mark * Decimal("1.01")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="quiet",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str(trigger),
        expire_after_s=60,
    )
    entry_id = client_order_id("quiet", "entry")
    await wait_for(lambda: desk.algo_status(entry_id) == "NEW", 10, "the stop entry armed")

    def reads() -> int:
        return desk.sim.request_counts["GET /fapi/v1/algoOrder"]

    # Armed for 2 s: a REST poll every 0.25 s would read the order 8 times; the stream needs none.
    with pytest.raises(AssertionError, match="timed out"):
        await wait_for(lambda: reads() > 2, 2.0, "more than two reads of the armed stop entry")
    armed_reads = reads()
    moved_at = time.monotonic()
    desk.sim.set_mark_price("BTCUSDT", trigger + Decimal("5"))
    result = await desk.result("quiet")
    # Woken by the ALGO_UPDATE, not by the REST check due CHECK_S after the entry armed.
    assert time.monotonic() - moved_at < 1.0 < stop_entry.CHECK_S - 2.0
    assert result.status is ResultStatus.FILLED and result.executed_quantity == Decimal("0.01")
    assert desk.position("BTCUSDT") == Decimal("0.01") and desk.algo_status(entry_id) == "FINISHED"
    assert armed_reads <= 2 and reads() - armed_reads == 1  # one authoritative read once triggered


async def test_an_armed_stop_entry_is_read_by_rest_once_the_stream_drops(desk: Desk) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None
    mark = desk.sim.engine.mark("BTCUSDT")
    trigger = (mark * Decimal("1.01")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="dropped",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str(trigger),
        expire_after_s=60,
    )
    entry_id = client_order_id("dropped", "entry")
    view = await account.algo_changed(entry_id, 10)  # its NEW, from the stream
    assert view is not None and view.status is AlgoStatus.NEW
    # The socket goes down and stays down (listenKey refused): no ALGO_UPDATE will come.
    desk.sim.set_faults(
        faults=[{"kind": "unavailable", "method": "POST", "path": "/fapi/v1/listenKey", "count": None}],
        actions=["drop_user_streams"],
    )
    await wait_for(lambda: not account.stream.connected, 5, "the stream down")
    assert await account.algo_changed(entry_id, 10, view) is None  # stale: at once, not in 10 s
    desk.sim.set_mark_price("BTCUSDT", trigger + Decimal("5"))
    result = await desk.result("dropped", timeout_s=stop_entry.CHECK_S - 1)
    assert result.status is ResultStatus.FILLED and desk.position("BTCUSDT") == Decimal("0.01")
    desk.sim.set_faults(faults=[])


async def test_a_stop_entry_without_the_user_stream_is_read_by_rest_and_triggers(desk: Desk) -> None:
    await desk.service(user_stream=False)
    mark = desk.sim.engine.mark("ETHUSDT")
    trigger = (mark * Decimal("0.99")).quantize(Decimal("0.01"))
    await desk.publish(
        intent_id="no-stream",
        symbol="ETHUSDT",
        side="SELL",
        quantity="0.1",
        order_type="STOP_MARKET",
        stop_price=str(trigger),
        expire_after_s=60,
    )
    entry_id = client_order_id("no-stream", "entry")
    await wait_for(lambda: desk.algo_status(entry_id) == "NEW", 10, "the stop entry armed")
    desk.sim.set_mark_price("ETHUSDT", trigger - Decimal("1"))
    result = await desk.result("no-stream", timeout_s=5)
    assert result.status is ResultStatus.FILLED, result.error
    assert desk.position("ETHUSDT") == Decimal("-0.1")
    assert desk.sim.request_counts["GET /fapi/v1/algoOrder"] >= 1


async def test_a_close_ends_an_armed_stop_entry_at_once(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="armed-then-closed",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str((mark * Decimal("1.02")).quantize(Decimal("0.1"))),
        expire_after_s=200,
    )
    entry_id = client_order_id("armed-then-closed", "entry")
    await wait_for(lambda: desk.algo_status(entry_id) == "NEW", 10, "the stop entry armed")
    await desk.publish(intent_id="close-armed", symbol="BTCUSDT", side="CLOSE")
    entry = await desk.result("armed-then-closed", timeout_s=5)  # long before its 200 s
    closed = await desk.result("close-armed", timeout_s=10)
    assert entry.status is ResultStatus.FAILED and entry.error is not None
    assert entry.error.code == "ENTRY_EXPIRED" and "untriggered" in entry.error.message
    assert desk.algo_status(entry_id) == "CANCELED" and desk.position("BTCUSDT") == 0
    assert closed.status is ResultStatus.REJECTED and closed.error is not None
    assert closed.error.code == "NO_POSITION"


async def test_a_stop_entry_that_would_trigger_at_once_is_rejected_with_the_exchange_code(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="late",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str((mark * Decimal("0.99")).quantize(Decimal("0.1"))),  # already below the mark
    )
    result = await desk.result("late")
    assert result.status is ResultStatus.REJECTED and result.error is not None
    assert result.error.code == "-2021"
    assert desk.algo(client_order_id("late", "entry")) is None


async def test_protection_with_the_entry_arms_close_position_legs_in_the_same_round_trip(desk: Desk) -> None:
    await desk.service(protection_timing="with_entry")
    # 150 ms each way: legs sent after the fill would be created a round trip after the entry.
    desk.sim.config = dataclasses.replace(desk.sim.config, latency_ms=150)
    mark = desk.sim.engine.mark("BTCUSDT")
    sl, tp = (
        (mark * Decimal("0.98")).quantize(Decimal("0.1")),
        (mark * Decimal("1.02")).quantize(Decimal("0.1")),
    )
    before = dict(desk.sim.request_counts)
    await desk.publish(
        intent_id="beside",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        stop_loss=str(sl),
        take_profit=str(tp),
    )
    result = await desk.result("beside")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert (
        result.stop_loss is not None
        and result.stop_loss.close_position
        and result.stop_loss.trigger_price == sl
    )
    assert (
        result.take_profit is not None
        and result.take_profit.close_position
        and result.take_profit.trigger_price == tp
    )
    legs = desk.open_algos("BTCUSDT")
    assert sorted((a["orderType"], a["closePosition"]) for a in legs) == [
        ("STOP_MARKET", True),
        ("TAKE_PROFIT_MARKET", True),
    ]
    [order] = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == result.client_order_id]
    # The legs reached the exchange with the entry (well inside the 150 ms a round trip takes).
    assert all(abs(int(a["createTime"]) - int(order["time"])) < 100 for a in legs), (legs, order)
    sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items() if v != before.get(k, 0)}
    assert sent.get("POST /fapi/v1/algoOrder") == 2 and sent.get("POST /fapi/v1/order") == 1
    # A percentage trigger needs the fill: such an intent keeps the after-fill path (sized legs).
    await desk.publish(intent_id="pct", symbol="ETHUSDT", side="SELL", quantity="0.1", stop_loss_pct="2")
    pct = await desk.result("pct")
    assert pct.stop_loss is not None and not pct.stop_loss.close_position


async def test_legs_sent_beside_an_entry_that_is_refused_are_withdrawn(desk: Desk) -> None:
    desk.sim.set_balance("USDT", Decimal("5"))  # the entry is refused for margin (-2019)
    await desk.service(protection_timing="with_entry")
    mark = desk.sim.engine.mark("ETHUSDT")
    await desk.publish(
        intent_id="refused",
        symbol="ETHUSDT",
        side="BUY",
        quantity="1",
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.01"))),
        take_profit=str((mark * Decimal("1.02")).quantize(Decimal("0.01"))),
    )
    result = await desk.result("refused")
    assert (
        result.status is ResultStatus.REJECTED and result.error is not None and result.error.code == "-2019"
    )
    assert not desk.open_algos("ETHUSDT") and desk.position("ETHUSDT") == 0
    placed = [a for a in desk.sim.state()["algoOrders"] if a["symbol"] == "ETHUSDT"]
    assert len(placed) == 2 and {a["algoStatus"] for a in placed} == {"CANCELED"}
