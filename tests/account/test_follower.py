"""Account awareness as a user sees it: the service follows the simulator's real user data stream.

The service runs whole (real Redis, the executor over real HTTP, the follower over the simulator's
real WebSocket); intents go in on the stream, the simulator's mark is moved, and what is checked is
the exchange's own state (algo orders, trades) and the position events on their stream.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.account.roles import replacement_of
from quantum_exec.app.service import Service
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import OrderSide, OrderType
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SIM_KEY = "quantum-sim-key"
SIM_SECRET = "quantum-sim-secret"


def _long(intent_id: str, mark: Decimal, quantity: str = "0.010", **extra: Any) -> dict[str, Any]:
    return {
        "intent_id": intent_id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": quantity,
        "stop_loss": str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        "take_profit": str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
        **extra,
    }


@pytest.mark.serial  # a latency bound (the target cancelled within 1 s), and no REST read meanwhile
async def test_a_fired_stop_cancels_the_target_and_is_published_once(desk: Desk) -> None:
    service = await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-stop-1", mark))
    result = await desk.result("acc-stop-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None and result.take_profit is not None
    target_id = result.take_profit.client_algo_id
    assert desk.algo_status(target_id) == "NEW"

    polled_before = {k: v for k, v in desk.sim.request_counts.items() if k.startswith("GET ")}
    desk.sim.set_mark_price("BTCUSDT", Decimal(str(result.stop_loss.trigger_price)) * Decimal("0.999"))
    # RTT 0 here: one round trip after the event is milliseconds; a second is the acceptance bound.
    await wait_for(lambda: desk.algo_status(target_id) == "CANCELED", 1.0, "the target cancelled")

    async def closed() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["kind"] == "closed"]

    await wait_for(closed, 5, "the closed event")
    [event] = await closed()
    stop = desk.algo(result.stop_loss.client_algo_id)
    assert stop is not None and stop["algoStatus"] == "FINISHED"
    trades = desk.trades_of(int(stop["actualOrderId"]))
    assert event["reason"] == "stop_loss" and event["intent_id"] == "acc-stop-1"
    assert event["realized_pnl"] == sum(Decimal(t["realizedPnl"]) for t in trades)
    assert event["commission"] == sum(Decimal(t["commission"]) for t in trades)
    assert event["position_amount"] == 0 and event["quantity"] == Decimal("0.010")
    # No REST reads were needed to notice the stop: the stream told everything.
    polled_after = {k: v for k, v in desk.sim.request_counts.items() if k.startswith("GET ")}
    assert polled_after == polled_before
    # The entry's own event, and nothing twice.
    events = await desk.events()
    assert [e["kind"] for e in events] == ["opened", "closed"]
    assert len({e["event_id"] for e in events}) == len(events)
    assert service.account is not None and service.account.leader


async def test_an_open_with_the_stream_up_costs_no_request_weight(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-w-1", mark, entry_price=str(mark)))
    await desk.result("acc-w-1")  # leverage and margin type are set now
    before = dict(desk.sim.request_counts)
    await desk.publish(**_long("acc-w-2", mark, entry_price=str(mark)))
    result = await desk.result("acc-w-2")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.commission is not None and result.commission > 0
    sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items() if v != before.get(k, 0)}
    # Exactly the three orders: no positionRisk, no userTrades, no openAlgoOrders.
    assert sent == {"POST /fapi/v1/order": 1, "POST /fapi/v1/algoOrder": 2}
    [trade] = desk.trades_of(result.order_id or 0)
    assert result.commission == Decimal(trade["commission"])
    assert result.realized_pnl == Decimal(trade["realizedPnl"])


async def test_an_account_update_ahead_of_its_fill_is_not_taken_for_drift(desk: Desk) -> None:
    """Binance orders events within one type only: here every ORDER_TRADE_UPDATE comes 200 ms after
    the ACCOUNT_UPDATE of its own fill. The stop still cancels its target and is published once,
    and nothing is resynced by REST: a pushed position ahead of the fills is not drift."""
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-ahead-1", mark))
    result = await desk.result("acc-ahead-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None and result.take_profit is not None
    desk.sim.set_faults(
        stream_reorder={"seed": 1, "max_delay_ms": 0, "type_delay_ms": {"ORDER_TRADE_UPDATE": 200}}
    )
    polled_before = {k: v for k, v in desk.sim.request_counts.items() if k.startswith("GET ")}
    desk.sim.set_mark_price("BTCUSDT", Decimal(str(result.stop_loss.trigger_price)) * Decimal("0.999"))
    target_id = result.take_profit.client_algo_id
    await wait_for(lambda: desk.algo_status(target_id) == "CANCELED", 5, "the target cancelled")

    async def closed() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["kind"] == "closed"]

    await wait_for(closed, 5, "the closed event")
    [event] = await closed()
    assert event["reason"] == "stop_loss" and event["intent_id"] == "acc-ahead-1"
    assert [e["kind"] for e in await desk.events()] == ["opened", "closed"]
    polled_after = {k: v for k, v in desk.sim.request_counts.items() if k.startswith("GET ")}
    # Not taken for drift: no resync (no open orders, conditional orders or account read). The live
    # OCO may confirm the position once by positionRisk before it lowers protection on a view
    # whose fill is still on the way (it never shrinks legs on a lagging view).
    confirm = "GET /fapi/v2/positionRisk"
    assert polled_after.get(confirm, 0) - polled_before.get(confirm, 0) <= 1
    assert {k: v for k, v in polled_after.items() if k != confirm} == {
        k: v for k, v in polled_before.items() if k != confirm
    }


async def test_pyramided_opens_leave_no_conditional_orders_after_the_stop(desk: Desk) -> None:
    await desk.service()
    limit = 200  # open conditional orders per account (Binance, since 2025-12-29 none per symbol)
    for cycle in range(50):
        mark = desk.sim.engine.mark("BTCUSDT")
        ids = [f"acc-pyr-{cycle}-{n}" for n in range(3)]
        for intent_id in ids:
            await desk.publish(**_long(intent_id, mark))
        for intent_id in ids:
            result = await desk.result(intent_id)
            assert result.protection is ProtectionState.PROTECTED, (cycle, result.error)
        assert len(desk.open_algos("BTCUSDT")) == 6 <= limit
        desk.sim.set_mark_price("BTCUSDT", mark * Decimal("0.97"))
        await wait_for(
            lambda: not desk.open_algos("BTCUSDT"), 5, f"no open conditional orders (cycle {cycle})"
        )
        assert desk.position("BTCUSDT") == 0
        desk.sim.set_mark_price("BTCUSDT", mark)
    results = await desk.results()
    assert all(r.error is None or r.error.code != "-4045" for r in results.values())

    # The last stop's event is published a moment after its fill (more under the reorder fault).
    async def fifty_closed() -> bool:
        return sum(1 for e in await desk.events() if e["kind"] == "closed") >= 50

    await wait_for(fifty_closed, 10, "an event for every stop")
    closed = [e for e in await desk.events() if e["kind"] == "closed"]
    assert len(closed) == 50 and all(e["reason"] == "stop_loss" for e in closed)


async def test_a_stop_fired_while_the_socket_was_down_is_found_by_the_resync(desk: Desk) -> None:
    service = await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-gap-1", mark))
    result = await desk.result("acc-gap-1")
    assert result.stop_loss is not None and result.take_profit is not None
    account = service.account
    assert account is not None
    # The socket goes down and stays down (listenKey refused) while the stop fires.
    desk.sim.set_faults(
        faults=[{"kind": "unavailable", "method": "POST", "path": "/fapi/v1/listenKey", "count": None}],
        actions=["drop_user_streams"],
    )
    await wait_for(lambda: not account.stream.connected, 5, "the stream down")
    desk.sim.set_mark_price("BTCUSDT", Decimal(str(result.stop_loss.trigger_price)) * Decimal("0.999"))
    await wait_for(lambda: desk.position("BTCUSDT") == 0, 5, "the stop filled on the exchange")
    assert desk.algo_status(result.take_profit.client_algo_id) == "NEW"  # nobody knew yet
    assert account.position_amount("BTCUSDT") is None  # stale: the executor would ask REST
    desk.sim.set_faults(faults=[])
    await wait_for(lambda: account.stream.connected, 10, "the reconnect")
    await wait_for(
        lambda: desk.algo_status(result.take_profit.client_algo_id) == "CANCELED", 5, "the sibling cancelled"
    )

    async def closed() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["kind"] == "closed"]

    await wait_for(closed, 5, "the closed event")
    # Another reconnect replays nothing: the event stays single.
    desk.sim.set_faults(actions=["drop_user_streams"])
    await wait_for(
        lambda: account.stream.reconnects >= 2 and account.stream.connected, 10, "a second reconnect"
    )
    [event] = await closed()
    assert event["reason"] == "stop_loss" and event["intent_id"] == "acc-gap-1"
    stop = desk.algo(result.stop_loss.client_algo_id)
    assert stop is not None
    trades = desk.trades_of(int(stop["actualOrderId"]))
    assert event["realized_pnl"] == sum(Decimal(t["realizedPnl"]) for t in trades)


async def test_start_cancels_an_orphan_and_rearms_a_cancelled_stop_before_the_first_intent(
    desk: Desk, sim: Simulator
) -> None:
    first = await desk.service()
    mark = sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-rec-1", mark))
    result = await desk.result("acc-rec-1")
    assert result.stop_loss is not None
    await first.stop()
    desk.services.remove(first)

    # While it is down: its stop is cancelled by hand, and one of our legs is left on a flat symbol.
    settings = desk.settings()
    gateway = BinanceGateway(settings, sim.base_url)
    await gateway.start()
    try:
        assert await gateway.cancel_algo(result.stop_loss.algo_id or 0)
        orphan_id = client_order_id("acc-rec-orphan", "sl")
        eth = sim.engine.mark("ETHUSDT")
        await gateway.place_market("ETHUSDT", OrderSide.BUY, Decimal("0.100"), "manual-eth-open")
        orphan = await gateway.place_algo(
            "ETHUSDT",
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            (eth * Decimal("0.9")).quantize(Decimal("0.01")),
            orphan_id,
            quantity=Decimal("0.100"),
            working_type="MARK_PRICE",
            price_protect=False,
        )
        await gateway.place_market("ETHUSDT", OrderSide.SELL, Decimal("0.100"), "manual-eth-close")
    finally:
        await gateway.close()
    assert desk.algo_status(orphan_id) == "NEW" and desk.position("ETHUSDT") == 0

    seen_at_first_intent: dict[str, str | None] = {}
    second = Service(settings, operations=False)
    desk.services.append(second)
    await second.start()  # returns once consuming: the reconciliation ran before
    seen_at_first_intent["orphan"] = desk.algo_status(orphan_id)
    seen_at_first_intent["stop"] = desk.algo_status(result.stop_loss.client_algo_id)
    assert seen_at_first_intent == {"orphan": "CANCELED", "stop": "NEW"}
    rearmed = desk.algo(result.stop_loss.client_algo_id)
    assert rearmed is not None and rearmed["algoId"] != orphan.algo_id
    assert Decimal(rearmed["triggerPrice"]) == result.stop_loss.trigger_price
    assert Decimal(rearmed["quantity"]) == Decimal("0.010") and rearmed["side"] == "SELL"


async def test_a_reduced_position_gets_legs_resized_to_what_is_left(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-rs-1", mark, quantity="0.020"))
    opened = await desk.result("acc-rs-1")
    assert opened.stop_loss is not None and opened.take_profit is not None
    await desk.publish(
        intent_id="acc-rs-2", symbol="BTCUSDT", side="SELL", quantity="0.008", reduce_only=True
    )
    reduced = await desk.result("acc-rs-2")
    assert reduced.status is ResultStatus.FILLED and desk.position("BTCUSDT") == Decimal("0.012")
    # Each leg's replacement is placed under its alternate id before the leg is cancelled.
    legs = tuple(replacement_of(leg.client_algo_id) for leg in (opened.stop_loss, opened.take_profit))

    def resized() -> bool:
        found = [desk.algo(leg) for leg in legs]
        return all(
            a is not None and a["algoStatus"] == "NEW" and Decimal(a["quantity"]) == Decimal("0.012")
            for a in found
        ) and all(
            desk.algo_status(leg.client_algo_id) != "NEW" for leg in (opened.stop_loss, opened.take_profit)
        )

    # The old leg is cancelled one round trip after its replacement is armed: wait for both.
    await wait_for(resized, 5, "both legs resized to 0.012 and the old ones gone")
    for leg, was in zip(legs, (opened.stop_loss, opened.take_profit), strict=True):
        now = desk.algo(leg)
        assert now is not None and Decimal(now["triggerPrice"]) == was.trigger_price and now["side"] == "SELL"
    assert len(desk.open_algos("BTCUSDT")) == 2
    assert desk.algo_status(opened.stop_loss.client_algo_id) == "CANCELED"
    assert desk.algo_status(opened.take_profit.client_algo_id) == "CANCELED"
    [reduce_event] = [e for e in await desk.events() if e["kind"] == "reduced"]
    assert reduce_event["reason"] == "reduce_intent" and reduce_event["intent_id"] == "acc-rs-2"


async def test_a_sell_larger_than_the_long_flips_and_only_the_short_is_protected(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("acc-flip-1", mark, quantity="0.010"))
    long_result = await desk.result("acc-flip-1")
    assert long_result.stop_loss is not None and long_result.take_profit is not None
    await desk.publish(
        intent_id="acc-flip-2",
        symbol="BTCUSDT",
        side="SELL",
        quantity="0.025",
        stop_loss=str((mark * Decimal("1.02")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("0.96")).quantize(Decimal("0.1"))),
    )
    flip = await desk.result("acc-flip-2")
    assert flip.status is ResultStatus.FILLED and flip.protection is ProtectionState.PROTECTED
    assert flip.meta["_position"]["netting"] == "opposite_larger"
    assert Decimal(str(flip.meta["_position"]["after"])) == Decimal("-0.015")
    assert desk.position("BTCUSDT") == Decimal("-0.015")
    await wait_for(lambda: len(desk.open_algos("BTCUSDT")) == 2, 5, "only the short's two legs open")
    legs = desk.open_algos("BTCUSDT")
    assert {a["side"] for a in legs} == {"BUY"} and {Decimal(a["quantity"]) for a in legs} == {
        Decimal("0.015")
    }
    assert desk.algo_status(long_result.stop_loss.client_algo_id) == "CANCELED"
    assert desk.algo_status(long_result.take_profit.client_algo_id) == "CANCELED"

    async def flipped() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["kind"] == "flipped"]

    await wait_for(flipped, 5, "the flipped event")
    [event] = await flipped()
    assert event["intent_id"] == "acc-flip-2" and event["reason"] == "entry"
    assert event["position_amount"] == Decimal("-0.015") and event["quantity"] == Decimal("0.025")


async def test_a_position_opened_by_hand_is_reported_and_never_touched(desk: Desk, sim: Simulator) -> None:
    settings = desk.settings()
    gateway = BinanceGateway(settings, sim.base_url)
    await gateway.start()
    try:
        await gateway.place_market("ETHUSDT", OrderSide.SELL, Decimal("0.200"), "by-hand-1")
    finally:
        await gateway.close()
    await desk.service()

    async def external() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["reason"] == "external"]

    await wait_for(external, 5, "the external position reported")
    [event] = await external()
    assert event["symbol"] == "ETHUSDT" and event["position_amount"] == Decimal("-0.200")
    assert desk.position("ETHUSDT") == Decimal("-0.200") and not desk.open_algos("ETHUSDT")
