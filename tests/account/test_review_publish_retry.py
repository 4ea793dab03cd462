"""Adversarial review of 63f2e3f (account/publishing.py ``_publish_built``): a holder's batch of
position events that meets Redis away is tried again while it holds the lease, and an event the
next attempt finds "published before" gets its follow-up (the record of a stop's/target's intent
shrinks by the fill) whenever any earlier attempt of the batch failed.

1. The follow-up runs twice: an instance that just took the lease republishes the events it kept
   while it was not the holder (``hand_over``); the old holder published them and shrank the
   record already. When that hand-over batch meets a connection error before it is sent, every
   event of it is "unknown", the retry answers 0 ("published before": by the old holder) and the
   record shrinks again. A take-profit ladder's first level filled (0.005 of 0.010): the record
   says 0.000 (dropped) while 0.005 is held; reconcile then sees the rest as not ours.
2. The holder still parks an event for a hand-over that never comes: the event is built before it
   is published, and building it names the intent from its record when memory does not know it
   (a fresh instance holding the lease). A connection error there (the same blip the commit
   handles one step later) puts the fill in ``_unpublished``, which only ``hand_over`` ever reads:
   the stop's closed event is never published while this instance keeps the lease.

Redis's failure is injected at the store's call (as tests/account/test_publish_retry.py does):
the timing cannot be had from a real socket; everything else is real."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from quantum_exec.account.positions import PositionEvent
from quantum_exec.account.publishing import Moved
from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal
SYMBOL = "BTCUSDT"


async def _record_quantity(store: Any, intent_id: str) -> Decimal | None:
    records = [r for r in await store.records_of(SYMBOL) if r.intent_id == intent_id and r.opened]
    return records[0].quantity if records else None


async def test_a_hand_over_batch_retried_after_a_connection_error_shrinks_the_record_twice(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await desk.service()
    old_account = old.account
    assert old_account is not None
    await wait_for(lambda: old_account.leader, 10, "the first instance holds the account lease")
    new = await desk.service()
    new_account = new.account
    assert new_account is not None
    assert not new_account.leader

    mark = desk.sim.engine.mark(SYMBOL)
    await desk.publish(
        intent_id="ladder",
        symbol=SYMBOL,
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=[{"pct": "1", "size_pct": 50}, {"pct": "3", "size_pct": 50}],
    )
    opened = await desk.result("ladder")
    assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert opened.take_profits is not None
    first = opened.take_profits[0]
    assert first.trigger_price is not None and first.quantity == D("0.005")

    desk.sim.set_mark_price(SYMBOL, first.trigger_price + D("0.5"))
    await wait_for(lambda: desk.position(SYMBOL) == D("0.005"), 10, "the first level filled")

    async def tp_events() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["reason"] == "take_profit"]

    await wait_for(tp_events, 10, "the old holder published the level's event")

    async def shrunk_once() -> bool:
        return await _record_quantity(old_account.store, "ladder") == D("0.005")

    await wait_for(shrunk_once, 10, "the old holder shrank the record by the level's fill")
    publisher = new_account.publisher
    kept = publisher._unpublished
    await wait_for(lambda: any(m.fill.symbol == SYMBOL for m in kept), 10, "the non-holder kept the event")

    # The new holder's first publish meets a connection error before it is sent.
    store = new_account.store
    real = store.publish_many
    calls: list[str] = []

    async def failing_once(events: list[PositionEvent]) -> list[int]:
        if not calls:
            calls.append("failed")
            raise RedisConnectionError("Connection reset by peer")
        outcomes = await real(events)
        calls.append(f"answered {outcomes}")
        return outcomes

    monkeypatch.setattr(store, "publish_many", failing_once)
    real_built = publisher._publish_built
    done: list[int] = []

    async def built(batch: list[tuple[Moved, PositionEvent]]) -> None:
        await real_built(batch)
        done.append(len(batch))

    monkeypatch.setattr(publisher, "_publish_built", built)

    await old.stop()
    desk.services.remove(old)
    await wait_for(lambda: new_account.leader, 10, "the survivor takes the lease")
    await wait_for(lambda: done, 10, "the hand-over batch published (after its retry)")

    assert calls[0] == "failed" and calls[1:], calls
    assert len(await tp_events()) == 1
    # The old holder ran the follow-up; the retry must not run it again (0.005 is still held).
    assert desk.position(SYMBOL) == D("0.005")
    assert await _record_quantity(store, "ladder") == D("0.005"), calls


async def test_a_holder_whose_event_build_meets_a_connection_error_still_publishes_it(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await desk.service()
    mark = desk.sim.engine.mark(SYMBOL)
    await desk.publish(
        intent_id="built",
        symbol=SYMBOL,
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.98")).quantize(D("0.1"))),
        take_profit=str((mark * D("1.04")).quantize(D("0.1"))),
    )
    result = await desk.result("built")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None
    # A fresh instance holds the lease: it names the stop's intent from its record, not memory.
    await first.stop()
    desk.services.remove(first)
    holder = await desk.service()
    account = holder.account
    assert account is not None
    await wait_for(lambda: account.leader, 10, "the fresh instance holds the account lease")

    store = account.store
    real = store.get_record
    failed: list[str] = []

    async def failing_once(symbol: str, digest: str) -> Any:
        if not failed:
            failed.append(digest)
            raise RedisConnectionError("Connection reset by peer")
        return await real(symbol, digest)

    monkeypatch.setattr(store, "get_record", failing_once)
    desk.sim.set_mark_price(SYMBOL, D(str(result.stop_loss.trigger_price)) * D("0.999"))
    await wait_for(lambda: desk.position(SYMBOL) == 0, 10, "the stop filled")
    await wait_for(lambda: failed, 10, "the injected failure")

    async def closed() -> list[dict[str, Any]]:
        return [e for e in await desk.events() if e["kind"] == "closed"]

    assert account.leader
    await wait_for(closed, 10, "the stop's closed event, published by the holder")
    assert len(await closed()) == 1
