"""Position events when Redis fails the publisher's call while this instance holds the account
lease: the batch is tried again (before, it was kept for a hand-over of the lease that never
came while the lease stayed here: the stop's event was never published, ``before_sent`` failed),
and an attempt whose answer was lost leaves the event published once (``answer_lost``), the
stopped intent's record dropped by the live OCO's cleanup of the flat symbol.

Redis's failure is injected at the store's call (a connection error before the call is sent, or
after it ran with its answer lost): the timing cannot be had from a real socket; everything
else is real (Redis, the simulator, the follower on its WebSocket)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from quantum_exec.account.positions import PositionEvent
from quantum_exec.account.store import AccountStore
from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _long(intent_id: str, mark: Decimal) -> dict[str, Any]:
    return {
        "intent_id": intent_id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": "0.010",
        "stop_loss": str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        "take_profit": str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    }


@pytest.mark.parametrize("lost", ["before_sent", "answer_lost"])
async def test_a_stop_fill_is_published_once_and_followed_up_when_redis_fails_the_publish(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    service = await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long(f"pub-{lost}", mark))
    result = await desk.result(f"pub-{lost}")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None

    real = AccountStore.publish_many
    failed: list[int] = []

    async def failing_once(self: AccountStore, events: list[Any]) -> list[int]:
        if not failed and any(e.kind.value == "closed" for e in events):
            failed.append(len(events))
            if lost == "answer_lost":
                await real(self, events)  # ran in Redis; its answer never came back
            raise RedisConnectionError("Connection closed by server.")
        return await real(self, events)

    monkeypatch.setattr(AccountStore, "publish_many", failing_once)
    desk.sim.set_mark_price("BTCUSDT", Decimal(str(result.stop_loss.trigger_price)) * Decimal("0.999"))

    async def closed() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["kind"] == "closed"]

    await wait_for(lambda: failed, 10, "the injected failure")
    await wait_for(closed, 10, "the stop's closed event")
    assert len(await closed()) == 1  # once, whatever the attempts
    follower = service.account
    assert follower is not None

    async def record_dropped() -> bool:
        records = await follower.store.records_of("BTCUSDT")
        return not [r for r in records if r.intent_id == f"pub-{lost}" and r.opened]

    await wait_for(record_dropped, 10, "the stopped intent's record dropped")


async def test_a_ladder_level_whose_publish_answer_was_lost_shrinks_the_record_once(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow-up of an event found "published before" (an attempt whose answer was lost)
    used to be skipped: a take-profit ladder's first level filled, the position held 0.005 and
    the intent's record still said 0.010 (the live OCO's cleanup only drops records of a flat
    symbol). The record now remembers the events it was shrunk by, so the follow-up runs for
    every published event and takes each fill off once."""
    service = await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="ladder-lost",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        take_profits=[{"pct": "1", "size_pct": 50}, {"pct": "3", "size_pct": 50}],
    )
    result = await desk.result("ladder-lost")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.take_profits is not None
    first = result.take_profits[0]
    assert first.trigger_price is not None and first.quantity == Decimal("0.005")
    follower = service.account
    assert follower is not None

    real = AccountStore.publish_many
    lost: list[int] = []

    async def answer_lost_once(self: AccountStore, events: list[Any]) -> list[int]:
        if not lost and any(e.reason.value == "take_profit" for e in events):
            lost.append(len(events))
            await real(self, events)  # ran in Redis; its answer never came back
            raise RedisConnectionError("Connection closed by server.")
        return await real(self, events)

    monkeypatch.setattr(AccountStore, "publish_many", answer_lost_once)
    desk.sim.set_mark_price("BTCUSDT", first.trigger_price + Decimal("0.5"))
    await wait_for(lambda: desk.position("BTCUSDT") == Decimal("0.005"), 10, "the first level filled")
    await wait_for(lambda: lost, 10, "the level's event published with its answer lost")

    async def record_quantity() -> Decimal | None:
        records = await follower.store.records_of("BTCUSDT")
        held = [r.quantity for r in records if r.intent_id == "ladder-lost" and r.opened]
        return held[0] if held else None

    async def shrunk() -> bool:
        return await record_quantity() == Decimal("0.005")

    await wait_for(shrunk, 10, "the record shrunk by the level's fill")
    tp_events = [e for e in await desk.events() if e["reason"] == "take_profit"]
    assert len(tp_events) == 1  # published once, whatever the attempts
    # Its follow-up run again (as after a hand-over's republish): nothing is taken off twice.
    await follower.publisher._after_published(PositionEvent.model_validate(tp_events[0]))
    assert await record_quantity() == Decimal("0.005")
    assert desk.position("BTCUSDT") == Decimal("0.005")
