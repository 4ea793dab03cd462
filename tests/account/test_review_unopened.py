"""Adversarial review of 6d7b434 (session 5, second review): a take-profit level that fills before the entry's
record says ``opened``.

The executor writes the record ``opened`` (with the entry's whole size) only after protection and
after the fees (a REST lookup while the stream's fill events are late). A ladder level placed by
the protection can fill in between: its event's follow-up skips the record (``not
record.opened``), then the executor writes the whole size. The record says 0.010 is the intent's
while the position holds 0.005 - the level is never taken off (nothing runs the follow-up again:
the event is published).

The delay is injected at the fee lookup (a slow userTrades); everything else is real."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import quantum_exec.execution.executor as executor_module
from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_level_filled_before_the_record_is_opened_is_never_taken_off(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await desk.service()
    follower = service.account
    assert follower is not None
    mark = desk.sim.engine.mark("BTCUSDT")
    followed: list[str] = []
    after_published = follower.publisher._after_published

    async def tracked(event: Any, **kwargs: Any) -> Any:
        outcome = await after_published(event, **kwargs)
        followed.append(event.reason.value)
        return outcome

    monkeypatch.setattr(follower.publisher, "_after_published", tracked)
    real_fees = executor_module.record_fees

    async def slow_fees(gateway: Any, run: Any, *args: Any, **kwargs: Any) -> None:
        # The fees take a while (REST, the stream late); meanwhile the first level fills.
        first = run.out.take_profits[0]
        desk.sim.set_mark_price("BTCUSDT", first.trigger_price + Decimal("0.5"))
        await wait_for(lambda: desk.position("BTCUSDT") == Decimal("0.005"), 10, "the first level filled")
        await wait_for(lambda: "take_profit" in followed, 10, "the level's follow-up ran")
        await real_fees(gateway, run, *args, **kwargs)

    monkeypatch.setattr(executor_module, "record_fees", slow_fees)
    await desk.publish(
        intent_id="early-level",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        take_profits=[{"pct": "1", "size_pct": 50}, {"pct": "3", "size_pct": 50}],
    )
    result = await desk.result("early-level")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert desk.position("BTCUSDT") == Decimal("0.005")

    async def record_quantity() -> Decimal | None:
        records = await follower.store.records_of("BTCUSDT")
        held = [r.quantity for r in records if r.intent_id == "early-level" and r.opened]
        return held[0] if held else None

    await wait_for(record_quantity, 10, "the record opened")

    async def corrected() -> bool:
        return await record_quantity() == Decimal("0.005")

    # The level's follow-up found the record not opened yet and runs again once it is.
    await wait_for(corrected, 10, "the record shrunk to what is held (it held the filled level too)")
    assert desk.position("BTCUSDT") == Decimal("0.005")
