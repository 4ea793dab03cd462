"""MODIFY of an open position's protection (issue #27), over the real service, simulator and user
stream; checked from the simulator's own order history.

* a MODIFY moves the stop make before break, carries the target over, and answers once with the
  legs before and after;
* three MODIFYs in a row, the service SIGKILLed inside each (after the new stop, before the old
  one's cancel): a stop covers the whole position at every moment, exactly one stop is left, one
  result per MODIFY;
* refusals before anything is sent: no position, a trigger on the wrong side of the mark.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.killable import KillableService
from support.protection_history import covered_at_every_moment, protection_events, stops_history
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

D = Decimal


def price(mark: Decimal, factor: str) -> str:
    return str((mark * D(factor)).quantize(D("0.1")))


async def test_a_modify_moves_the_stop_make_before_break_and_answers_with_the_legs(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="mod-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=price(mark, "0.97"),
        take_profit=price(mark, "1.05"),
    )
    opened = await desk.result("mod-open")
    assert opened.protection is ProtectionState.PROTECTED
    assert opened.stop_loss is not None and opened.take_profit is not None
    new_stop = price(mark, "0.985")
    await desk.publish(intent_id="mod-1", symbol="BTCUSDT", action="MODIFY", stop_loss=new_stop)
    result = await desk.result("mod-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED, result
    assert result.legs_before is not None and result.legs_after is not None
    assert {leg.client_algo_id for leg in result.legs_before} == {
        opened.stop_loss.client_algo_id,
        opened.take_profit.client_algo_id,
    }
    after = {leg.order_type: leg for leg in result.legs_after}
    assert after["STOP_MARKET"].trigger_price == D(new_stop)
    assert after["STOP_MARKET"].client_algo_id == client_order_id("mod-1", "sl")
    # The target is carried over at its trigger under the MODIFY's id (one coherent set).
    assert after["TAKE_PROFIT_MARKET"].trigger_price == opened.take_profit.trigger_price
    assert after["TAKE_PROFIT_MARKET"].client_algo_id == client_order_id("mod-1", "tp")
    # On the exchange: the old legs cancelled after the new ones were placed, the new ones armed.
    await wait_for(lambda: len(desk.open_algos("BTCUSDT")) == 2, 10, "one set of legs")
    assert desk.algo_status(opened.stop_loss.client_algo_id) == "CANCELED"
    assert desk.algo_status(opened.take_profit.client_algo_id) == "CANCELED"
    stop = desk.algo(client_order_id("mod-1", "sl"))
    assert stop is not None and stop["algoStatus"] == "NEW" and D(stop["triggerPrice"]) == D(new_stop)
    assert D(stop["quantity"]) == D("0.010")
    covered_at_every_moment(desk)
    # The position stream says what changed and why, once.
    [changed] = [e for e in await protection_events(desk) if e["reason"] == "modify"]
    assert changed["intent_id"] == "mod-1" and changed["symbol"] == "BTCUSDT"
    assert {leg["client_algo_id"] for leg in changed["before"]} == {
        opened.stop_loss.client_algo_id,
        opened.take_profit.client_algo_id,
    }
    assert {leg["client_algo_id"] for leg in changed["after"]} == {
        client_order_id("mod-1", "sl"),
        client_order_id("mod-1", "tp"),
    }
    # The moved stop does its work: the mark falls through it and the position is closed.
    desk.sim.set_mark_price("BTCUSDT", D(new_stop) - D(1))
    await wait_for(lambda: desk.position("BTCUSDT") == 0, 10, "closed by the moved stop")
    await wait_for(lambda: not desk.open_algos("BTCUSDT"), 10, "the target cancelled by the OCO")


async def test_modify_refusals_name_the_numbers_and_send_nothing(desk: Desk) -> None:
    await desk.service()
    await desk.publish(intent_id="mod-none", symbol="BTCUSDT", action="MODIFY", stop_loss="1000")
    nothing = await desk.result("mod-none")
    assert nothing.status is ResultStatus.REJECTED and nothing.error is not None
    assert nothing.error.code == "NO_POSITION" and "BTCUSDT" in nothing.error.message

    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="mod-open2", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss=price(mark, "0.97")
    )
    assert (await desk.result("mod-open2")).protection is ProtectionState.PROTECTED
    placed = len(desk.sim.state()["algoOrders"])
    above = price(mark, "1.01")  # a long's stop above the mark would fire at once
    await desk.publish(intent_id="mod-wrong", symbol="BTCUSDT", action="MODIFY", stop_loss=above)
    wrong = await desk.result("mod-wrong")
    assert wrong.status is ResultStatus.REJECTED and wrong.error is not None
    assert wrong.error.code == "SL_TP_WRONG_SIDE"
    assert above in wrong.error.message and "the mark" in wrong.error.message
    assert len(desk.sim.state()["algoOrders"]) == placed  # nothing sent


async def test_three_modifies_with_a_sigkill_inside_each_leave_one_stop_and_one_result_each(
    desk: Desk, tmp_path: Path
) -> None:
    worker = KillableService(desk, tmp_path, consumer_name="stops-worker")
    mark = desk.sim.engine.mark("BTCUSDT")
    triggers = [price(mark, f) for f in ("0.975", "0.98", "0.985")]
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await desk.publish(
            intent_id="kill-open",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.010",
            stop_loss=price(mark, "0.97"),
        )
        assert (await desk.result("kill-open", timeout_s=30)).protection is ProtectionState.PROTECTED
        for n, trigger in enumerate(triggers, start=1):
            # Cancels held back: the kill lands after the new stop is placed, before the old one goes.
            desk.sim.set_faults(
                faults=[{"kind": "latency", "method": "DELETE", "path": "/fapi/v1/algoOrder", "ms": 3000}]
            )
            intent_id = f"kill-mod-{n}"
            await desk.publish(intent_id=intent_id, symbol="BTCUSDT", action="MODIFY", stop_loss=trigger)
            new_id = client_order_id(intent_id, "sl")
            await wait_for(lambda new_id=new_id: desk.algo_status(new_id) == "NEW", 30, f"{intent_id} placed")
            worker.kill()
            # Killed between the steps: the new stop armed beside the old one, not yet cancelled.
            assert len([s for s in stops_history(desk) if s["algoStatus"] == "NEW"]) == 2
            desk.sim.set_faults(faults=[])
            worker.spawn()
            await wait_for(lambda n=n: worker.started() == n + 1, 30, "the worker ready again")
            result = await desk.result(intent_id, timeout_s=40)
            assert result.status is ResultStatus.FILLED, result
            assert result.stop_loss is not None and result.stop_loss.trigger_price == D(trigger)

        def one_stop() -> bool:
            return [s["clientAlgoId"] for s in stops_history(desk) if s["algoStatus"] == "NEW"] == [
                client_order_id("kill-mod-3", "sl")
            ]

        await wait_for(one_stop, 20, "exactly one stop left")
    finally:
        worker.kill()
    [last] = [s for s in stops_history(desk) if s["algoStatus"] == "NEW"]
    assert D(last["triggerPrice"]) == D(triggers[-1]) and D(last["quantity"]) == desk.position("BTCUSDT")
    covered_at_every_moment(desk)
    # Each MODIFY placed its stop once (no duplicate across the kill), and answered once.
    placed = [s["clientAlgoId"] for s in stops_history(desk)]
    assert len(placed) == len(set(placed)) == 4, placed
    rows = await desk.redis.xrange(desk.names["result_stream"])
    answered = [
        r for r in (await desk.results()).values() if r.intent_id and r.intent_id.startswith("kill-mod")
    ]
    assert len(rows) == 4 and len(answered) == 3


async def test_a_modify_of_close_position_legs_moves_them_without_a_second_close_position_leg(
    desk: Desk,
) -> None:
    # QUANTUM_PROTECTION_MODE=close_position: the legs are closePosition orders, and Binance keeps one
    # closePosition stop (and target) per side (-4130), so make before break cannot place a second
    # one: the new set is reduce-only, sized to the position, and the old closePosition legs go after.
    await desk.service(protection_mode="close_position")
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="modcp-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=price(mark, "0.97"),
        take_profit=price(mark, "1.05"),
    )
    opened = await desk.result("modcp-open")
    assert opened.protection is ProtectionState.PROTECTED
    assert all(a["closePosition"] for a in desk.open_algos("BTCUSDT"))
    new_stop = price(mark, "0.985")
    await desk.publish(intent_id="modcp-1", symbol="BTCUSDT", action="MODIFY", stop_loss=new_stop)
    result = await desk.result("modcp-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED, result
    await wait_for(lambda: len(desk.open_algos("BTCUSDT")) == 2, 10, "one set of legs")
    stop = desk.algo(client_order_id("modcp-1", "sl"))
    assert stop is not None and stop["algoStatus"] == "NEW" and D(stop["triggerPrice"]) == D(new_stop)
    assert (stop["closePosition"], D(stop["quantity"])) == (False, D("0.010"))
    covered_at_every_moment(desk)


async def test_a_modify_adds_a_trailing_stop_and_a_later_one_leaves_it_tracking(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="mt-open", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss=price(mark, "0.97")
    )
    assert (await desk.result("mt-open")).protection is ProtectionState.PROTECTED
    await desk.publish(
        intent_id="mt-trail", symbol="BTCUSDT", action="MODIFY", trailing_stop={"callback_pct": "0.5"}
    )
    added = await desk.result("mt-trail")
    assert added.status is ResultStatus.FILLED and added.trailing_stop is not None, added
    trail_id = client_order_id("mt-trail", "trail")
    assert added.trailing_stop.client_algo_id == trail_id and added.trailing_stop.callback_pct == D("0.5")
    trail = desk.algo(trail_id)
    assert trail is not None and trail["orderType"] == "TRAILING_STOP_MARKET" and trail["algoStatus"] == "NEW"
    assert D(trail["quantity"]) == D("0.010")
    # A MODIFY of the stop alone replaces the stop and leaves the trailing stop as it is (tracking).
    await desk.publish(intent_id="mt-sl", symbol="BTCUSDT", action="MODIFY", stop_loss=price(mark, "0.985"))
    moved = await desk.result("mt-sl")
    assert moved.status is ResultStatus.FILLED, moved
    assert desk.algo_status(trail_id) == "NEW"
    assert moved.trailing_stop is not None and moved.trailing_stop.client_algo_id == trail_id
    await wait_for(lambda: len(desk.open_algos("BTCUSDT")) == 2, 10, "one stop and the trailing stop")
    kinds = sorted(a["orderType"] for a in desk.open_algos("BTCUSDT"))
    assert kinds == ["STOP_MARKET", "TRAILING_STOP_MARKET"]
