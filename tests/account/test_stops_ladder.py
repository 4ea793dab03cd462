"""A take-profit ladder on the exchange (issue #27): a long with three levels (40/40/20 %) and a
stop; the mark walks up through each level. Checked from the simulator's own history of orders:
the levels are reduce-only TAKE_PROFIT_MARKET legs of the stepped sizes; after each fill the stop
is resized make-before-break to what is left, never leaving part of the position uncovered; the
last level closes the position and no leg is left. With ``break_even_after: 1`` the stop sits at
the fee-adjusted entry from the first level's fill on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.protection_history import covered_at_every_moment, protection_events, stops_history
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_a_ladder_fills_level_by_level_and_the_stop_follows_the_position(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="ladder-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=[
            {"pct": "1", "size_pct": 40},
            {"pct": "2", "size_pct": 40},
            {"pct": "3", "size_pct": 20},
        ],
        break_even_after=1,
    )
    opened = await desk.result("ladder-open")
    assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert opened.take_profits is not None and opened.stop_loss is not None
    levels = opened.take_profits
    assert [lv.level for lv in levels] == [1, 2, 3]
    assert [lv.quantity for lv in levels] == [D("0.004"), D("0.004"), D("0.002")]
    assert opened.avg_price is not None
    assert [lv.trigger_price for lv in levels] == [
        (opened.avg_price * (1 + pct / D(100))).quantize(D("0.1"), rounding="ROUND_FLOOR")
        for pct in (D(1), D(2), D(3))
    ]
    # On the exchange: three reduce-only TAKE_PROFIT_MARKET legs of those sizes and one stop of all.
    for level in levels:
        algo = desk.algo(level.client_algo_id)
        assert algo is not None and algo["orderType"] == "TAKE_PROFIT_MARKET" and algo["reduceOnly"]
        assert D(algo["quantity"]) == level.quantity and algo["algoStatus"] == "NEW"
    assert D(desk.algo(opened.stop_loss.client_algo_id)["quantity"]) == D("0.010")  # type: ignore[index]

    assert opened.order_id is not None
    entry_trades = desk.trades_of(opened.order_id)
    assert {t["commissionAsset"] for t in entry_trades} == {"USDT"}
    fee = sum((D(t["commission"]) for t in entry_trades), D(0))
    break_even = (opened.avg_price + 2 * fee / D("0.010")).quantize(D("0.1"), rounding="ROUND_CEILING")
    assert break_even > opened.avg_price  # the fees move it above the entry
    remaining = D("0.010")
    for level in levels:
        assert level.trigger_price is not None and level.quantity is not None
        desk.sim.set_mark_price("BTCUSDT", level.trigger_price + D("0.5"))
        remaining -= level.quantity
        left = remaining
        await wait_for(lambda left=left: desk.position("BTCUSDT") == left, 10, f"level {level.level} filled")
        if left:

            def resized(left: Decimal = left) -> bool:
                armed = [s for s in stops_history(desk) if s["algoStatus"] == "NEW"]
                return len(armed) == 1 and D(armed[0]["quantity"]) == left

            await wait_for(resized, 15, f"one stop of {left} after level {level.level}")
            # From TP1 on, the stop sits at the entry adjusted for the fees: the entry's commission
            # per unit, twice (the exit pays the same rate), rounded up to the tick for a long.
            [armed] = [s for s in stops_history(desk) if s["algoStatus"] == "NEW"]
            assert D(armed["triggerPrice"]) == break_even, (armed, break_even)
    # The last level closed the position: nothing of ours is left armed.
    await wait_for(lambda: not desk.open_algos("BTCUSDT"), 15, "no leg left")
    assert desk.position("BTCUSDT") == 0
    covered_at_every_moment(desk)

    # Announced on the position stream: each resize after a level filled, and the break-even move.
    async def reasons() -> list[str]:
        return [e["reason"] for e in await protection_events(desk)]

    await wait_for(lambda: _has(reasons, "tp_filled"), 10, "tp_filled announced")
    assert {"break_even", "tp_filled"} <= set(await reasons())
    [moved] = [e for e in await protection_events(desk) if e["reason"] == "break_even"]
    [stop_before] = moved["before"]
    assert stop_before["order_type"] == "STOP_MARKET" and D(stop_before["trigger_price"]) < break_even
    filled = [desk.algo(lv.client_algo_id) for lv in levels]
    assert [a["algoStatus"] for a in filled if a] == ["FINISHED"] * 3


async def _has(reasons: Callable[[], Awaitable[list[str]]], reason: str) -> bool:
    return reason in await reasons()


async def test_a_resize_after_a_level_names_in_after_only_the_legs_left_armed(desk: Desk) -> None:
    """The ``tp_filled`` event's ``after`` is the legs once the change is made: the replaced stop,
    cancelled on the exchange before the event is built, is not among them (the view may not have
    seen its cancel yet), and the resized stop and the level left are."""
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="ladder-after",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=[{"pct": "1", "size_pct": 50}, {"pct": "3", "size_pct": 50}],
    )
    opened = await desk.result("ladder-after")
    assert opened.protection is ProtectionState.PROTECTED and opened.take_profits and opened.stop_loss
    first, second = opened.take_profits
    assert first.trigger_price is not None
    desk.sim.set_mark_price("BTCUSDT", first.trigger_price + D("0.5"))

    async def announced() -> list[dict[str, object]]:
        return [e for e in await protection_events(desk) if e["reason"] == "tp_filled"]

    await wait_for(lambda: _any(announced), 15, "tp_filled announced")
    [event] = await announced()
    [old] = event["before"]  # type: ignore[misc]
    assert old["client_algo_id"] == opened.stop_loss.client_algo_id
    assert desk.algo(old["client_algo_id"])["algoStatus"] == "CANCELED"  # type: ignore[index]
    after = {leg["client_algo_id"]: leg for leg in event["after"]}  # type: ignore[attr-defined]
    assert old["client_algo_id"] not in after, f"the cancelled stop is still in after: {event['after']}"
    stops = [leg for leg in after.values() if leg["order_type"] == "STOP_MARKET"]
    assert len(stops) == 1 and D(stops[0]["quantity"]) == D("0.005"), event["after"]
    assert second.client_algo_id in after and first.client_algo_id not in after


async def _any(items: Callable[[], Awaitable[list[dict[str, object]]]]) -> bool:
    return bool(await items())
