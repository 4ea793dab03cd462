"""A native trailing stop (issue #27) over the real service, simulator and user stream: placed as a
TRAILING_STOP_MARKET through the Algo Order API beside a stop and a target, it activates at its
activation price (the follower's view follows ``ia`` from ALGO_UPDATE), follows the mark up,
triggers at the callback, closes the position, and the sibling target (and the stop) are cancelled."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.protection_history import protection_events
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_a_trailing_stop_activates_follows_the_mark_triggers_and_the_target_goes(desk: Desk) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="trail-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profit=str((mark * D("1.05")).quantize(D("0.1"))),
        trailing_stop={"callback_pct": "1", "activation_pct": "1"},
    )
    opened = await desk.result("trail-open")
    assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED, opened
    trail = opened.trailing_stop
    assert trail is not None and opened.avg_price is not None
    activation = (opened.avg_price * D("1.01")).quantize(D("0.1"), rounding=ROUND_CEILING)
    assert trail.order_type == "TRAILING_STOP_MARKET" and trail.client_algo_id == client_order_id(
        "trail-open", "trail"
    )
    assert (trail.callback_pct, trail.activation_price, trail.activated) == (D(1), activation, False)
    assert trail.quantity == D("0.010") and trail.state == "NEW"
    placed = desk.algo(trail.client_algo_id)
    assert placed is not None and placed["orderType"] == "TRAILING_STOP_MARKET" and placed["reduceOnly"]
    assert D(placed["callbackRate"]) == D(1) and D(placed["activatePrice"]) == activation

    def activated() -> bool | None:
        view = account.state.algo_order(trail.client_algo_id)
        return view.activated if view is not None else None

    await wait_for(lambda: activated() is False, 10, "the view holds ia=false")
    desk.sim.set_mark_price("BTCUSDT", activation + D("0.1"))
    await wait_for(lambda: activated() is True, 10, "ia=true from ALGO_UPDATE")

    async def announced() -> list[dict[str, object]]:
        return [e for e in await protection_events(desk) if e["reason"] == "trailing_activated"]

    await wait_for(announced, 10, "trailing_activated on the position stream")
    [event] = await announced()
    assert [(leg["client_algo_id"], leg["activated"]) for leg in event["after"]] == [
        (trail.client_algo_id, True)
    ]
    high = (activation * D("1.02")).quantize(D("0.1"))  # up 2 % more, still below the target
    desk.sim.set_mark_price("BTCUSDT", high)
    desk.sim.set_mark_price("BTCUSDT", (high * D("0.992")).quantize(D("0.1")))  # 0.8 % back: holds
    assert desk.position("BTCUSDT") == D("0.010")
    fire_at = (high * D("0.99")).quantize(D("0.1"), rounding=ROUND_FLOOR)
    desk.sim.set_mark_price("BTCUSDT", fire_at)  # 1 % below the high: the callback
    await wait_for(lambda: desk.position("BTCUSDT") == 0, 10, "closed by the trailing stop")
    fired = desk.algo(trail.client_algo_id)
    assert fired is not None and fired["algoStatus"] == "FINISHED" and D(fired["triggerPrice"]) == fire_at
    await wait_for(lambda: not desk.open_algos("BTCUSDT"), 15, "the target and the stop cancelled")
    assert opened.take_profit is not None and opened.stop_loss is not None
    assert desk.algo_status(opened.take_profit.client_algo_id) == "CANCELED"
    assert desk.algo_status(opened.stop_loss.client_algo_id) == "CANCELED"
