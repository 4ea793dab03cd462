"""A CLOSE with the account followed live: our legs are cancelled once the close filled, no others."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.exchange.wire import OrderSide, OrderType
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_close_lists_nothing_when_the_live_view_knows_the_legs(desk: Desk) -> None:
    service = await desk.service()
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    assert (await desk.result("open")).status is ResultStatus.FILLED
    assert len(desk.open_algos("ETHUSDT")) == 2
    before = dict(desk.sim.request_counts)
    desk.sim.config = dataclasses.replace(desk.sim.config, latency_ms=150)
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.2")
    assert desk.position("ETHUSDT") == 0 and not desk.open_algos("ETHUSDT")
    # Let the follower see the legs cancelled and its live OCO (woken by the close's fill) finish.
    account = service.account
    assert account is not None

    async def settled() -> bool:
        armed = [a for a in account.state.open_algo_orders("ETHUSDT") if a.is_armed]
        return not armed and account.oco.idle("ETHUSDT")

    await wait_for(settled, 10, "the legs seen cancelled and the OCO idle")
    sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items() if v != before.get(k, 0)}
    # No listing of the open conditional orders: the live view had them.
    assert "GET /fapi/v1/openAlgoOrders" not in sent
    # One DELETE per leg: the live OCO leaves the legs the close is cancelling alone.
    assert sent.get("POST /fapi/v1/order") == 1 and sent.get("DELETE /fapi/v1/algoOrder") == 2, sent
    # The legs go once the close filled (never while it travels): two 150 ms round trips, no third.
    assert closed.latency_ms is not None and 300 <= closed.latency_ms < 430, closed.latency_ms


async def test_each_leg_is_cancelled_once_when_the_close_fills_before_its_cancels(desk: Desk) -> None:
    """With no latency the close's fill reaches the live OCO while the close's own cancels are on
    the way: the OCO must leave those legs alone (a second DELETE only earns -2011)."""
    service = await desk.service()
    account = service.account
    assert account is not None
    for n in range(3):
        await desk.publish(
            intent_id=f"open-{n}",
            symbol="ETHUSDT",
            side="BUY",
            quantity="0.2",
            stop_loss_pct="2",
            take_profit_pct="3",
        )
        assert (await desk.result(f"open-{n}")).status is ResultStatus.FILLED
        before = dict(desk.sim.request_counts)
        await desk.publish(intent_id=f"close-{n}", symbol="ETHUSDT", side="CLOSE")
        assert (await desk.result(f"close-{n}")).status is ResultStatus.FILLED

        async def settled() -> bool:
            armed = [a for a in account.state.open_algo_orders("ETHUSDT") if a.is_armed]
            return not desk.open_algos("ETHUSDT") and not armed and account.oco.idle("ETHUSDT")

        await wait_for(settled, 10, "the legs seen cancelled and the OCO idle")
        sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items()}
        assert sent.get("DELETE /fapi/v1/algoOrder") == 2, sent


async def test_a_close_cancels_only_our_legs_and_leaves_orders_of_others(desk: Desk) -> None:
    service = await desk.service()
    assert service.executor is not None
    gateway = service.executor.gateway
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    opened = await desk.result("open")
    assert opened.protection is ProtectionState.PROTECTED
    assert opened.stop_loss is not None and opened.take_profit is not None
    mark = desk.sim.engine.mark("ETHUSDT")
    # Somebody else's stop and bid on the symbol (placed by hand, not qx ids).
    await gateway.place_algo(
        "ETHUSDT",
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        (mark * Decimal("0.8")).quantize(Decimal("0.01")),
        "manual-stop-1",
        quantity=Decimal("0.1"),
        working_type="MARK_PRICE",
        price_protect=False,
    )
    await gateway.place_limit(
        "ETHUSDT",
        OrderSide.BUY,
        Decimal("0.1"),
        (mark * Decimal("0.8")).quantize(Decimal("0.01")),
        "manual-bid-1",
        time_in_force="GTC",
    )
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert closed.status is ResultStatus.FILLED and desk.position("ETHUSDT") == 0
    assert desk.algo_status(opened.stop_loss.client_algo_id) == "CANCELED"
    assert desk.algo_status(opened.take_profit.client_algo_id) == "CANCELED"
    assert desk.algo_status("manual-stop-1") == "NEW"
    [bid] = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == "manual-bid-1"]
    assert bid["status"] == "NEW"


async def test_a_close_the_exchange_refuses_leaves_the_position_protected(desk: Desk) -> None:
    await desk.service()
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    opened = await desk.result("open")
    assert opened.stop_loss is not None and opened.take_profit is not None
    desk.sim.set_faults(
        faults=[
            {
                "kind": "error",
                "method": "POST",
                "path": "/fapi/v1/order",
                "code": -2022,
                "msg": "ReduceOnly Order is rejected.",
                "count": 1,
            }
        ]
    )
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert closed.status is ResultStatus.REJECTED and closed.error is not None
    assert closed.error.code == "-2022"
    # Nothing was closed: the position keeps both legs on the exchange.
    assert desk.position("ETHUSDT") == Decimal("0.2")
    assert desk.algo_status(opened.stop_loss.client_algo_id) == "NEW"
    assert desk.algo_status(opened.take_profit.client_algo_id) == "NEW"


async def test_a_close_cancels_the_legs_whose_algo_update_has_not_come_yet(desk: Desk) -> None:
    """Events of different types are not ordered: the ALGO_UPDATEs of the legs placed for the open
    come a second late, after the close has filled. The close still cancels them (it placed them),
    once each: the live OCO, seeing them armed on a flat symbol later, leaves them alone."""
    service = await desk.service()
    account = service.account
    assert account is not None
    desk.sim.set_faults(stream_reorder={"seed": 1, "max_delay_ms": 0, "type_delay_ms": {"ALGO_UPDATE": 1000}})
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    opened = await desk.result("open")
    assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert account.state.open_algo_orders("ETHUSDT") == []  # not seen yet
    before = dict(desk.sim.request_counts)
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.2")
    assert desk.position("ETHUSDT") == 0 and not desk.open_algos("ETHUSDT")

    async def settled() -> bool:
        seen = account.state.algo_order(opened.stop_loss.client_algo_id) if opened.stop_loss else None
        armed = [a for a in account.state.open_algo_orders("ETHUSDT") if a.is_armed]
        return seen is not None and not armed and account.oco.idle("ETHUSDT")

    await wait_for(settled, 10, "the legs' updates seen and the OCO idle")
    sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items() if v != before.get(k, 0)}
    assert "GET /fapi/v1/openAlgoOrders" not in sent
    assert sent.get("DELETE /fapi/v1/algoOrder") == 2, sent


@pytest.mark.parametrize("outcome", ["unknown_after", "garbled_after", "truncated_after"])
async def test_a_filled_close_answers_at_once_when_a_leg_cancel_has_an_unknown_outcome(
    desk: Desk, outcome: str
) -> None:
    """The close filled: a leg cancel whose answer is lost (503 after processing, an unreadable
    200) leaves at worst an orphan the live OCO cancels; it must not hold the close's result back
    until the intent is claimed again (``claim_idle_ms``, a minute by default)."""
    await desk.service()
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    opened = await desk.result("open")
    assert opened.stop_loss is not None and opened.take_profit is not None
    desk.sim.set_faults(
        faults=[{"kind": outcome, "method": "DELETE", "path": "/fapi/v1/algoOrder", "count": 1}]
    )
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    closed = await desk.result("close", timeout_s=10)
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.2")
    assert desk.position("ETHUSDT") == 0
    await wait_for(lambda: not desk.open_algos("ETHUSDT"), 10, "no leg left on the flat symbol")
