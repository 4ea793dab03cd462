"""A MODIFY carrying ``break_even_after`` (issue #27), end to end (real service, simulator, user
stream), checked from the simulator's own order history: the rule is recorded so that after TP
level n of the current ladder fills the stop moves to the fee-adjusted entry; when level n filled
already, the MODIFY's own set moves the stop at once; no level n is refused naming the value; a
SIGKILL inside the MODIFY (its new stop armed, the old one not yet cancelled) places nothing twice."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.killable import KillableService
from support.protection_history import covered_at_every_moment
from support.waiting import happens_within, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

D = Decimal
LADDER = [{"pct": "1", "size_pct": 40}, {"pct": "2", "size_pct": 40}, {"pct": "3", "size_pct": 20}]


def _stops(desk: Desk, status: str | None = "NEW") -> list[dict[str, Any]]:
    return [
        a
        for a in desk.sim.state()["algoOrders"]
        if a["symbol"] == "BTCUSDT"
        and (status is None or a["algoStatus"] == status)
        and a["orderType"] == "STOP_MARKET"
        and a["clientAlgoId"].startswith("qx")
    ]


def _break_even(desk: Desk, entry: Decimal) -> Decimal:
    """The fee-adjusted entry: the taker rate paid on the entry and again on the stop's exit,
    rounded up to the tick (a long's safe side)."""
    rate = desk.sim.engine.ledger.market.taker_rate
    tick = D("0.1")
    return (entry * (1 + 2 * rate) / tick).to_integral_value(rounding=ROUND_CEILING) * tick


async def _open(desk: Desk) -> Decimal:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="be-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=LADDER,
    )
    opened = await desk.result("be-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.avg_price is not None
    assert opened.take_profits is not None and opened.take_profits[0].trigger_price is not None
    return opened.avg_price


async def _fill_tp1(desk: Desk) -> None:
    tp1 = min(
        D(a["triggerPrice"]) for a in desk.open_algos("BTCUSDT") if a["orderType"] == "TAKE_PROFIT_MARKET"
    )
    desk.sim.set_mark_price("BTCUSDT", tp1 + D("0.5"))
    await wait_for(lambda: desk.position("BTCUSDT") == D("0.006"), 15, "TP1 filled")


def _moved_to(desk: Desk, trigger: Decimal) -> bool:
    stops = _stops(desk)
    return (
        len(stops) == 1
        and D(stops[0]["triggerPrice"]) == trigger
        and (stops[0].get("closePosition") in (True, "true") or D(stops[0]["quantity"]) >= D("0.006"))
    )


async def test_a_modify_with_break_even_after_moves_the_stop_once_tp1_fills(desk: Desk) -> None:
    entry = await _open(desk)
    await desk.publish(intent_id="be-mod", symbol="BTCUSDT", side="MODIFY", break_even_after=1)
    modified = await desk.result("be-mod")
    assert modified.error is None, modified.error
    assert modified.take_profits is not None and len(modified.take_profits) == 3
    assert modified.stop_loss is not None and modified.stop_loss.trigger_price is not None
    assert modified.stop_loss.trigger_price < entry  # not moved yet: TP1 has not filled
    await _fill_tp1(desk)
    target = _break_even(desk, entry)
    await happens_within(lambda: _moved_to(desk, target), 20)
    # Once, make before break: one stop ever placed at the break-even trigger.
    at_target = [s for s in _stops(desk, None) if D(s["triggerPrice"]) == target]
    assert len(at_target) == 1, at_target


async def test_a_modify_after_the_level_filled_moves_the_stop_at_once(desk: Desk) -> None:
    entry = await _open(desk)
    await _fill_tp1(desk)
    await wait_for(lambda: sum(D(s["quantity"]) for s in _stops(desk)) == D("0.006"), 15, "stop resized")
    await desk.publish(intent_id="be-late", symbol="BTCUSDT", side="MODIFY", break_even_after=1)
    modified = await desk.result("be-late")
    assert modified.error is None, modified.error
    target = _break_even(desk, entry)
    assert modified.stop_loss is not None and modified.stop_loss.trigger_price == target
    await wait_for(lambda: _moved_to(desk, target), 15, "stop at break-even")
    at_target = [s for s in _stops(desk, None) if D(s["triggerPrice"]) == target]
    assert len(at_target) == 1, at_target


async def test_a_modify_naming_a_level_the_ladder_lacks_is_refused(desk: Desk) -> None:
    await _open(desk)
    before = [s["clientAlgoId"] for s in desk.open_algos("BTCUSDT")]
    await desk.publish(intent_id="be-bad", symbol="BTCUSDT", side="MODIFY", break_even_after=4)
    refused = await desk.result("be-bad")
    assert refused.error is not None and refused.error.code == "INVALID_FIELD", refused.error
    assert "break_even_after: 4" in refused.error.message
    assert [s["clientAlgoId"] for s in desk.open_algos("BTCUSDT")] == before


async def _killed_inside(desk: Desk, worker: KillableService, intent_id: str, new_sl: str) -> None:
    """Publish the MODIFY with its cancels held back; SIGKILL once its new stop is armed (the old
    one not yet cancelled); start the service again."""
    desk.sim.set_faults(
        faults=[{"kind": "latency", "method": "DELETE", "path": "/fapi/v1/algoOrder", "ms": 3000}]
    )
    await desk.publish(intent_id=intent_id, symbol="BTCUSDT", side="MODIFY", break_even_after=1)
    await wait_for(lambda: desk.algo_status(new_sl) == "NEW", 30, f"{intent_id} placed its stop")
    worker.kill()
    assert len(_stops(desk)) == 2  # killed between the steps: both stops armed
    desk.sim.set_faults(faults=[])
    worker.spawn()


async def test_killed_inside_a_late_break_even_modify_it_moves_the_stop_exactly_once(
    desk: Desk, tmp_path: Path
) -> None:
    worker = KillableService(desk, tmp_path, consumer_name="be-worker")
    mark = desk.sim.engine.mark("BTCUSDT")
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await desk.publish(
            intent_id="be-kill-open",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.010",
            stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
            take_profits=LADDER,
        )
        opened = await desk.result("be-kill-open", timeout_s=30)
        assert opened.protection is ProtectionState.PROTECTED and opened.avg_price is not None
        await _fill_tp1(desk)
        await wait_for(lambda: sum(D(s["quantity"]) for s in _stops(desk)) == D("0.006"), 15, "stop resized")
        await _killed_inside(desk, worker, "be-kill-mod", client_order_id("be-kill-mod", "sl"))
        await wait_for(lambda: worker.started() == 2, 30, "the worker ready again")
        result = await desk.result("be-kill-mod", timeout_s=40)
        target = _break_even(desk, opened.avg_price)
        assert result.error is None and result.status is ResultStatus.FILLED, result
        assert result.stop_loss is not None and result.stop_loss.trigger_price == target
        await wait_for(lambda: _moved_to(desk, target), 20, "one stop, at break-even")
    finally:
        worker.kill()
    covered_at_every_moment(desk)
    at_target = [s["clientAlgoId"] for s in _stops(desk, None) if D(s["triggerPrice"]) == target]
    assert at_target == [client_order_id("be-kill-mod", "sl")], at_target
    answered = [r for r in (await desk.results()).values() if r.intent_id == "be-kill-mod"]
    assert len(answered) == 1


async def test_killed_inside_a_break_even_modify_the_move_after_tp1_still_happens_once(
    desk: Desk, tmp_path: Path
) -> None:
    worker = KillableService(desk, tmp_path, consumer_name="be-worker")
    mark = desk.sim.engine.mark("BTCUSDT")
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await desk.publish(
            intent_id="be-kill-open",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.010",
            stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
            take_profits=LADDER,
        )
        opened = await desk.result("be-kill-open", timeout_s=30)
        assert opened.protection is ProtectionState.PROTECTED and opened.avg_price is not None
        await _killed_inside(desk, worker, "be-kill-mod", client_order_id("be-kill-mod", "sl"))
        await wait_for(lambda: worker.started() == 2, 30, "the worker ready again")
        result = await desk.result("be-kill-mod", timeout_s=40)
        assert result.error is None and result.status is ResultStatus.FILLED, result
        await wait_for(lambda: len(_stops(desk)) == 1, 20, "the old stop cancelled")
        await _fill_tp1(desk)
        target = _break_even(desk, opened.avg_price)
        await wait_for(lambda: _moved_to(desk, target), 20, "the stop at break-even after TP1")
    finally:
        worker.kill()
    covered_at_every_moment(desk)
    at_target = [s for s in _stops(desk, None) if D(s["triggerPrice"]) == target]
    assert len(at_target) == 1, at_target


async def test_a_short_moves_its_stop_down_to_the_fee_adjusted_entry(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="be-short",
        symbol="BTCUSDT",
        side="SELL",
        quantity="0.010",
        stop_loss=str((mark * D("1.03")).quantize(D("0.1"))),
        take_profits=LADDER,
    )
    opened = await desk.result("be-short")
    assert opened.protection is ProtectionState.PROTECTED and opened.avg_price is not None
    tp1 = max(
        D(a["triggerPrice"]) for a in desk.open_algos("BTCUSDT") if a["orderType"] == "TAKE_PROFIT_MARKET"
    )
    desk.sim.set_mark_price("BTCUSDT", tp1 - D("0.5"))
    await wait_for(lambda: desk.position("BTCUSDT") == D("-0.006"), 15, "TP1 filled")
    await desk.publish(intent_id="be-short-mod", symbol="BTCUSDT", side="MODIFY", break_even_after=1)
    modified = await desk.result("be-short-mod")
    assert modified.error is None, modified.error
    rate, tick = desk.sim.engine.ledger.market.taker_rate, D("0.1")
    target = (opened.avg_price * (1 - 2 * rate) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    assert modified.stop_loss is not None and modified.stop_loss.trigger_price == target
    await wait_for(lambda: _moved_to(desk, target), 15, "the short's stop at break-even")
