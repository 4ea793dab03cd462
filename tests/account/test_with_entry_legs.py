"""QUANTUM_PROTECTION_TIMING=with_entry: legs sent beside an entry still travelling are what the
result says they are on the exchange once the entry filled."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ExecutionResult, ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import OrderSide, OrderType
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOL = "BTCUSDT"
TENTH = Decimal("0.1")


async def _send_slow_entry(desk: Desk, intent_id: str) -> tuple[Decimal, Decimal, Decimal]:
    """Publish a BUY whose entry travels 1.5 s, and wait until its two legs are NEW on the simulator;
    returns the mark, SL and TP."""
    mark = desk.sim.engine.mark(SYMBOL)
    sl, tp = (mark * Decimal("0.98")).quantize(TENTH), (mark * Decimal("1.02")).quantize(TENTH)
    desk.sim.set_faults(faults=[{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order"}])
    await desk.publish(
        intent_id=intent_id,
        symbol=SYMBOL,
        side="BUY",
        quantity="0.01",
        stop_loss=str(sl),
        take_profit=str(tp),
    )
    legs = [client_order_id(intent_id, "sl"), client_order_id(intent_id, "tp")]
    await wait_for(
        lambda: all(desk.algo_status(leg) == "NEW" for leg in legs), 10, "the legs NEW beside the entry"
    )
    return mark, sl, tp


def _assert_true_on_the_exchange(desk: Desk, result: ExecutionResult) -> None:
    """A result that says protected has both legs NEW on the simulator, with its triggers."""
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert desk.position(SYMBOL) == Decimal("0.01")
    for leg in (result.stop_loss, result.take_profit):
        assert leg is not None and leg.state == "NEW"
        on_exchange = desk.algo(leg.client_algo_id)
        assert on_exchange is not None and on_exchange["algoStatus"] == "NEW", on_exchange
        assert Decimal(on_exchange["triggerPrice"]) == leg.trigger_price
        assert on_exchange["algoId"] == leg.algo_id


async def test_the_live_oco_leaves_the_legs_of_an_entry_in_flight(desk: Desk) -> None:
    service = await desk.service(protection_timing="with_entry")
    assert service.executor is not None
    gateway = service.executor.gateway
    mark, _sl, _tp = await _send_slow_entry(desk, "in-flight")
    # Somebody's conditional order on the symbol ends while the symbol is still flat: the live OCO
    # runs for it and sees our legs on a flat symbol.
    foreign = await gateway.place_algo(
        SYMBOL,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        (mark * Decimal("0.5")).quantize(TENTH),
        "manual-stop-3",
        quantity=Decimal("0.01"),
        working_type="MARK_PRICE",
        price_protect=False,
    )
    await gateway.cancel_algo(foreign.algo_id)
    result = await desk.result("in-flight")
    _assert_true_on_the_exchange(desk, result)


async def test_a_leg_rejected_while_the_entry_travelled_is_placed_again(desk: Desk) -> None:
    await desk.service(protection_timing="with_entry")
    mark, sl, _tp = await _send_slow_entry(desk, "dipped")
    # The mark dips through the stop and back while the entry travels: the closePosition stop fires
    # on a flat symbol and the exchange rejects it (Reduce Only reject).
    desk.sim.set_mark_price(SYMBOL, sl - 10)
    await wait_for(lambda: desk.algo_status(client_order_id("dipped", "sl")) == "REJECTED", 5, "SL rejected")
    desk.sim.set_mark_price(SYMBOL, mark)
    result = await desk.result("dipped")
    _assert_true_on_the_exchange(desk, result)
    assert result.stop_loss is not None and result.stop_loss.trigger_price == sl


async def test_a_leg_rejected_with_the_mark_still_past_it_applies_the_failure_policy(desk: Desk) -> None:
    await desk.service(protection_timing="with_entry")
    _mark, sl, _tp = await _send_slow_entry(desk, "crossed")
    desk.sim.set_mark_price(SYMBOL, sl - 10)
    await wait_for(lambda: desk.algo_status(client_order_id("crossed", "sl")) == "REJECTED", 5, "SL rejected")
    result = await desk.result("crossed")
    # Policy close (the default): the position the entry opened is closed at market, and said so.
    assert result.status is ResultStatus.FAILED
    assert result.protection is ProtectionState.CLOSED_EMERGENCY, result
    assert result.emergency_close is not None
    assert desk.position(SYMBOL) == 0
    assert not desk.open_algos(SYMBOL)


async def test_a_leg_rejected_with_the_mark_still_past_it_is_reported_failed_by_policy_keep(
    desk: Desk,
) -> None:
    await desk.service(protection_timing="with_entry", protection_failure_policy="keep")
    _mark, sl, _tp = await _send_slow_entry(desk, "kept")
    desk.sim.set_mark_price(SYMBOL, sl - 10)
    await wait_for(lambda: desk.algo_status(client_order_id("kept", "sl")) == "REJECTED", 5, "SL rejected")
    result = await desk.result("kept")
    assert result.protection is ProtectionState.PARTIAL, result
    assert result.error is not None and result.error.code == "PROTECTION_FAILED"
    assert result.stop_loss is not None and result.stop_loss.state == "FAILED"
    assert desk.algo_status(client_order_id("kept", "sl")) == "REJECTED"
    assert result.take_profit is not None and result.take_profit.state == "NEW"
    assert desk.algo_status(client_order_id("kept", "tp")) == "NEW"
    assert desk.position(SYMBOL) == Decimal("0.01")
