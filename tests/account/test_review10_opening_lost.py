"""Tenth review (on 95becbe): a resumed attempt that finds its entry filled and reads its record
absent writes no "opened" record, taking "absent" for "its position was taken off whole". But the
record is also absent when the first attempt's opening write never landed: it is issued while the
entry travels (execution/entries/shared.py ``record_opening``), so an instance that dies with it
in flight, or a Redis blip across its three retries (``account.record_failed``, the attempt goes
on), leaves a filled entry with no record. Before 95becbe the resumed attempt wrote the record;
now the intent's protected position is unrecorded, and reconcile (account/resync.py) counts it
as external.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from quantum_exec.account import store as store_module
from quantum_exec.contracts import ProtectionState
from quantum_exec.execution import executor as executor_module
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def _claims(desk: Desk, service: Any, key: str) -> list[Decimal]:
    assert service.account is not None
    return [
        r.quantity
        for r in await service.account.store.records_of("BTCUSDT")
        if r.opened and r.intent_key == key and r.quantity > 0
    ]


async def _publish(desk: Desk, intent_id: str) -> None:
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id=intent_id,
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profit=str((mark * D("1.03")).quantize(D("0.1"))),
    )


async def test_died_with_the_opening_write_in_flight_leaves_the_position_unrecorded(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first instance dies after sending the entry, its opening write still in flight."""
    real = store_module.AccountStore.put_record
    stuck: list[str] = []

    async def put_record(self: Any, record: Any, labels: Any = None) -> None:
        if record.intent_key == "lost-r10" and not stuck:
            stuck.append(record.intent_key)
            await asyncio.Event().wait()  # the instance dies before it lands
        await real(self, record, labels)

    monkeypatch.setattr(store_module.AccountStore, "put_record", put_record)
    first = await desk.service(consumer_name="leaving", shutdown_grace_s=0.5)
    await _publish(desk, "lost-r10")
    await wait_for(lambda: desk.position("BTCUSDT") == D("0.010"), 15, "the entry filled")
    assert stuck, "the opening write was in flight"
    await first.stop()
    second = await desk.service(consumer_name="arriving")
    result = await desk.result("lost-r10", timeout_s=30)
    assert result.executed_quantity == D("0.010")
    assert result.protection is ProtectionState.PROTECTED
    assert desk.position("BTCUSDT") == D("0.010"), "the simulator's own position: still open"
    # The record is written before the result is committed: what it holds now is final.
    claims = await _claims(desk, second, "lost-r10")
    assert claims == [D("0.010")], (
        f"lost-r10 holds 0.010 BTCUSDT (protected) but its record claims {claims}: "
        "the resumed attempt took a record that never landed for one its own legs dropped"
    )


async def test_opening_write_failed_then_died_before_opened_leaves_the_position_unrecorded(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refuses the opening write through its retries (logged, the attempt goes on); the
    attempt then dies after protecting, before its opened write."""
    real = store_module.AccountStore.put_record
    refused: list[int] = []

    async def put_record(self: Any, record: Any, labels: Any = None) -> None:
        if record.intent_key == "blip-r10" and not record.opened and len(refused) < 3:
            refused.append(1)
            raise RedisConnectionError("redis away (test)")
        await real(self, record, labels)

    hung: list[Decimal] = []
    real_opened = executor_module.record_opened

    async def die_before_opened(account: Any, run: Any, rules: Any, size: Decimal, *, long: bool) -> None:
        if run.key == "blip-r10" and not hung:
            hung.append(size)
            await asyncio.Event().wait()
        await real_opened(account, run, rules, size, long=long)

    monkeypatch.setattr(store_module.AccountStore, "put_record", put_record)
    monkeypatch.setattr(executor_module, "record_opened", die_before_opened)
    first = await desk.service(consumer_name="leaving", shutdown_grace_s=0.5)
    await _publish(desk, "blip-r10")
    await wait_for(lambda: bool(hung), 15, "the first attempt protected, about to write opened")
    assert len(refused) == 3, "the opening write was refused through its retries"
    await first.stop()
    second = await desk.service(consumer_name="arriving")
    result = await desk.result("blip-r10", timeout_s=30)
    assert result.executed_quantity == D("0.010")
    assert result.protection is ProtectionState.PROTECTED
    assert desk.position("BTCUSDT") == D("0.010"), "the simulator's own position: still open"
    claims = await _claims(desk, second, "blip-r10")
    assert claims == [D("0.010")], (
        f"blip-r10 holds 0.010 BTCUSDT (protected) but its record claims {claims}: "
        "a Redis blip at the opening write now leaves a live position unrecorded after a resume"
    )
