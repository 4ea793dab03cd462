"""LIMIT entries on the simulator over HTTP and the user data stream: rest, fill, protect, expire."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.waiting import happens_within, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _orders(sim: Simulator, client_id: str) -> list[dict[str, Any]]:
    return [o for o in sim.state()["orders"] if o["clientOrderId"] == client_id]


async def test_a_resting_limit_buy_fills_when_the_market_comes_down_and_is_protected(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    price = (mark * Decimal("0.995")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="lim-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="LIMIT",
        price=str(price + Decimal("0.07")),  # off the tick: a BUY rounds down to it
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.03")).quantize(Decimal("0.1"))),
    )

    def resting() -> list[dict[str, Any]]:
        return [o for o in desk.sim.state()["orders"] if o["type"] == "LIMIT" and o["status"] == "NEW"]

    await wait_for(resting, 10, "the LIMIT resting on the book")
    [order] = resting()
    assert Decimal(order["price"]) == price and order["timeInForce"] == "GTC"
    assert desk.position("BTCUSDT") == 0 and not desk.open_algos("BTCUSDT")
    desk.sim.set_mark_price("BTCUSDT", price - Decimal("10"))
    result = await desk.result("lim-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.avg_price == price and result.executed_quantity == Decimal("0.010")
    assert desk.position("BTCUSDT") == Decimal("0.010")
    legs = desk.open_algos("BTCUSDT")
    assert {a["orderType"] for a in legs} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    # Filled whole by the time it was seen: legs sized to the fill (a partial one is covered by
    # closePosition legs armed at once, see execution/working.py).
    assert all(Decimal(a["quantity"]) == Decimal("0.010") and a["side"] == "SELL" for a in legs)
    [trade] = desk.trades_of(result.order_id or 0)
    assert trade["maker"] is True and result.commission == Decimal(trade["commission"])


async def test_post_only_that_would_take_is_rejected_with_the_exchange_code(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("ETHUSDT")
    await desk.publish(
        intent_id="lim-gtx",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.100",
        order_type="LIMIT",
        price=str((mark * Decimal("1.002")).quantize(Decimal("0.01"))),
        time_in_force="GTX",
    )
    result = await desk.result("lim-gtx")
    assert result.status is ResultStatus.REJECTED and result.error is not None
    assert result.error.code == "-5022" and desk.position("ETHUSDT") == 0


async def test_an_unfilled_limit_expires_and_nothing_is_left(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("ETHUSDT")
    await desk.publish(
        intent_id="lim-exp",
        symbol="ETHUSDT",
        side="SELL",
        quantity="0.100",
        order_type="LIMIT",
        limit_offset_pct="1",
        expire_after_s="1.5",
        stop_loss=str((mark * Decimal("1.05")).quantize(Decimal("0.01"))),
    )
    result = await desk.result("lim-exp")
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "ENTRY_EXPIRED" and "nothing filled" in result.error.message
    [order] = _orders(desk.sim, result.client_order_id or "")
    assert order["status"] == "CANCELED" and Decimal(order["price"]) >= mark * Decimal("1.01")
    assert desk.position("ETHUSDT") == 0 and not desk.open_algos("ETHUSDT")


async def test_ioc_fills_at_once_at_or_better_than_its_price(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="lim-ioc",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.005",
        order_type="LIMIT",
        price=str((mark * Decimal("1.001")).quantize(Decimal("0.1"))),
        time_in_force="IOC",
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    result = await desk.result("lim-ioc")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.avg_price is not None and result.avg_price <= mark * Decimal("1.001")
    assert desk.position("BTCUSDT") == Decimal("0.005")


async def test_a_limit_that_nets_a_short_away_in_pieces_is_protected_on_its_own_side(desk: Desk) -> None:
    """Hole 6 of the order-core review: a LIMIT against an opposite position armed its legs at its
    first fill, which only reduced the short; at flat the OCO cancelled them as orphans, and the
    long it opened had none while its result said ``protected``."""
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    tick = Decimal("0.1")
    await desk.publish(
        intent_id="net-short",
        symbol="BTCUSDT",
        side="SELL",
        quantity="0.010",
        stop_loss=str((mark * Decimal("1.03")).quantize(tick)),
        take_profit=str((mark * Decimal("0.97")).quantize(tick)),
    )
    short = await desk.result("net-short")
    assert short.protection is ProtectionState.PROTECTED and desk.position("BTCUSDT") == Decimal("-0.010")
    await desk.publish(
        intent_id="net-limit",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.020",
        order_type="LIMIT",
        price=str((mark * Decimal("0.995")).quantize(tick)),
        stop_loss=str((mark * Decimal("0.97")).quantize(tick)),
        take_profit=str((mark * Decimal("1.03")).quantize(tick)),
    )

    def resting() -> list[dict[str, Any]]:
        return [
            o
            for o in desk.sim.state()["orders"]
            if o["type"] == "LIMIT" and o["status"] in ("NEW", "PARTIALLY_FILLED")
        ]

    await wait_for(resting, 10, "the LIMIT resting on the book")
    [limit] = resting()

    def long_side_legs() -> list[dict[str, Any]]:
        return [a for a in desk.open_algos("BTCUSDT") if a["side"] == "SELL"]

    # Takers meet the resting BUY in pieces: the short shrinks, goes flat, then flips long. The
    # service reads a working order at least once a second: each piece is given that long to be
    # seen (the waits end early when legs appear or go, as they did before the fix).
    desk.sim.engine.trade_against("BTCUSDT", limit["clientOrderId"], Decimal("0.005"))
    assert desk.position("BTCUSDT") == Decimal("-0.005")
    armed = await happens_within(lambda: bool(long_side_legs()), 3.0)
    assert not armed, "legs of the long armed while the position was still short"
    desk.sim.engine.trade_against("BTCUSDT", limit["clientOrderId"], Decimal("0.005"))
    assert desk.position("BTCUSDT") == 0
    desk.sim.engine.trade_against("BTCUSDT", limit["clientOrderId"], Decimal("0.010"))
    result = await desk.result("net-limit")
    assert desk.position("BTCUSDT") == Decimal("0.010")
    assert result.status is ResultStatus.FILLED and result.executed_quantity == Decimal("0.020")
    # P3 on the exchange: the long has a stop and a target, and nothing of the short's is left.
    assert result.protection is ProtectionState.PROTECTED
    await wait_for(lambda: len(desk.open_algos("BTCUSDT")) == 2, 10, "only the long's legs open")
    legs = desk.open_algos("BTCUSDT")
    assert {(a["orderType"], a["side"]) for a in legs} == {
        ("STOP_MARKET", "SELL"),
        ("TAKE_PROFIT_MARKET", "SELL"),
    }


async def _caught_triggering(desk: Desk, intent_id: str, expire_after_s: float) -> str:
    """A STOP_MARKET entry crossed and held TRIGGERING until the service was told to end it: its
    cancel refused (-2011) and the read after it said TRIGGERING. Its client algo id."""
    mark = desk.sim.engine.mark("BTCUSDT")
    trigger = (mark * Decimal("1.01")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id=intent_id,
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        order_type="STOP_MARKET",
        stop_price=str(trigger),
        stop_loss_pct="2",
        take_profit_pct="4",
        expire_after_s=expire_after_s,
    )
    entry_id = client_order_id(intent_id, "entry")
    await wait_for(lambda: desk.algo_status(entry_id) == "NEW", 10, "the stop entry armed")
    desk.sim.set_faults(hold_triggering=True)
    desk.sim.set_mark_price("BTCUSDT", trigger + Decimal("5"))
    assert desk.algo_status(entry_id) == "TRIGGERING"
    return entry_id


async def _refused_while_triggering(desk: Desk, entry_id: str) -> None:
    counts = desk.sim.request_counts

    def cancelled_and_read() -> bool:
        return (
            counts["DELETE /fapi/v1/algoOrder"] >= 1
            and counts["GET /fapi/v1/algoOrder"] >= 1
            and desk.sim.requests_in_progress == 0
        )

    await wait_for(cancelled_and_read, 10, "the cancel of the entry and the read after it")
    assert desk.algo_status(entry_id) == "TRIGGERING"
    desk.sim.set_faults(hold_triggering=False)  # the exchange places the triggered order now


def _triggered_order(desk: Desk, entry_id: str) -> dict[str, Any]:
    algo = desk.algo(entry_id)
    assert algo is not None and algo["algoStatus"] == "FINISHED"
    [placed] = [o for o in desk.sim.state()["orders"] if o["orderId"] == int(algo["actualOrderId"])]
    assert placed["status"] == "FILLED" and Decimal(placed["executedQty"]) == Decimal("0.01")
    return placed


async def test_a_stop_entry_whose_deadline_passes_while_triggering_is_followed_and_protected(
    desk: Desk,
) -> None:
    # Binance can hold a crossed algo order in TRIGGERING, where a cancel answers -2011: the
    # order the trigger places still comes, and it must be followed, filled and protected.
    await desk.service()
    entry_id = await _caught_triggering(desk, "late-trigger", expire_after_s=2)
    await _refused_while_triggering(desk, entry_id)  # cancelled at its deadline
    result = await desk.result("late-trigger")
    placed = _triggered_order(desk, entry_id)
    assert desk.position("BTCUSDT") == Decimal("0.01")
    legs = [a for a in desk.open_algos("BTCUSDT") if a["clientAlgoId"] != entry_id]
    assert sorted((a["orderType"], a["algoStatus"]) for a in legs) == [
        ("STOP_MARKET", "NEW"),
        ("TAKE_PROFIT_MARKET", "NEW"),
    ]
    assert result.status is ResultStatus.FILLED, result.error
    assert result.protection is ProtectionState.PROTECTED
    assert result.executed_quantity == Decimal("0.01") and result.order_id == placed["orderId"]


async def test_a_close_that_comes_while_a_stop_entry_triggers_closes_what_it_filled(desk: Desk) -> None:
    await desk.service()
    entry_id = await _caught_triggering(desk, "close-in-trigger", expire_after_s=60)
    await desk.publish(intent_id="close-after", symbol="BTCUSDT", side="CLOSE")
    await _refused_while_triggering(desk, entry_id)  # cancelled for the waiting CLOSE
    opened = await desk.result("close-in-trigger")
    placed = _triggered_order(desk, entry_id)
    assert opened.status is ResultStatus.FILLED, opened.error
    assert opened.protection is ProtectionState.PROTECTED and opened.order_id == placed["orderId"]
    closed = await desk.result("close-after")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.01")
    assert desk.position("BTCUSDT") == 0 and not desk.open_algos("BTCUSDT")


@pytest.mark.parametrize("outcome", ["unknown_after", "timeout_after", "garbled_after"])
async def test_a_limit_entry_whose_cancel_at_its_deadline_loses_its_answer_ends_at_once(
    desk: Desk, outcome: str
) -> None:
    """The cancel of a LIMIT's unfilled remainder is asked again when its answer is lost: the
    intent is answered at its deadline, not left pending (and the order, had the cancel not been
    processed, resting with nobody following it) until it is claimed again a minute later."""
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    desk.sim.set_faults(faults=[{"kind": outcome, "method": "DELETE", "path": "/fapi/v1/order", "count": 1}])
    await desk.publish(
        intent_id="lim-lost-cancel",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="LIMIT",
        price=str((mark * Decimal("0.99")).quantize(Decimal("0.1"))),
        expire_after_s=1,
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    result = await desk.result("lim-lost-cancel", timeout_s=10)
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "ENTRY_EXPIRED"
    [order] = _orders(desk.sim, client_order_id("lim-lost-cancel", "entry"))
    assert order["status"] == "CANCELED" and desk.position("BTCUSDT") == 0
    assert not desk.sim.faults.rules, "the lost answer was not met"


@pytest.mark.parametrize("outcome", ["unknown_after", "timeout_after", "garbled_after"])
async def test_a_stop_entry_whose_cancel_at_its_deadline_loses_its_answer_ends_at_once(
    desk: Desk, outcome: str
) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    desk.sim.set_faults(
        faults=[{"kind": outcome, "method": "DELETE", "path": "/fapi/v1/algoOrder", "count": 1}]
    )
    await desk.publish(
        intent_id="stop-lost-cancel",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="STOP_MARKET",
        stop_price=str((mark * Decimal("1.01")).quantize(Decimal("0.1"))),
        expire_after_s=1,
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    result = await desk.result("stop-lost-cancel", timeout_s=10)
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "ENTRY_EXPIRED"
    assert desk.algo_status(client_order_id("stop-lost-cancel", "entry")) == "CANCELED"
    assert not desk.sim.faults.rules, "the lost answer was not met"
