"""Adversarial review of 6d7b434 (session 5, second review): the stop/target follow-up (shrink the intent's
record by the fill, once) now runs for an event answered "published before" too, idempotent by the
record's ``shrunk_by`` and retried while this instance holds the lease.

1. A record shrunk by the previous version (6d7b434's parent writes no ``shrunk_by``) is shrunk
   again by this version when the event is answered 0 in a hand-over batch (a rolling upgrade: the
   new instance republishes what it kept as a non-holder): a ladder's record loses the level twice
   and is dropped while half the position is still the intent's.
2. The follow-up of an event this holder published (answered 1) meets Redis away; the same outage
   fails a lease renewal (``lease.leader`` False): the follow-up is dropped (``_keep_nothing``),
   and when the lease is back (the same instance) nothing runs it again - the event is published,
   so no hand-over republishes it: the record keeps the filled level.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from account.test_store import _event
from quantum_exec.account.lease import AccountLease
from quantum_exec.account.positions import PositionKind, PositionReason
from quantum_exec.account.publishing import Publisher
from quantum_exec.account.record import Record
from quantum_exec.account.store import AccountStore
from quantum_exec.core.settings import Settings
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _record() -> Record:
    return Record(
        digest="ab" * 15,
        intent_key="lad-1",
        intent_id="lad-1",
        symbol="BTCUSDT",
        long=True,
        quantity=Decimal("0.020"),
        stop_loss=Decimal("90000"),
        take_profit=None,
        opened=True,
    )


def _level() -> Any:
    return _event("BTCUSDT:8:1").model_copy(
        update={
            "kind": PositionKind.REDUCED,
            "reason": PositionReason.TAKE_PROFIT,
            "quantity": Decimal("0.010"),
            "position_amount": Decimal("0.010"),
            "intent_id": "lad-1",
        }
    )


async def holder(redis: aioredis.Redis, unique_names: dict[str, Any]) -> tuple[AccountStore, Publisher]:
    """A store holding the account lease (AccountLease, renewed by the test's own ``tick``s) and
    its publisher, whose hand-over the lease runs when taken anew."""
    store = AccountStore(redis, Settings(**unique_names, account_lease_ttl_s=5), owner="h")
    publisher: Publisher
    lease = AccountLease(store, 5, on_taken=lambda: publisher.hand_over())
    publisher = Publisher(store, None, lease, None, None)  # type: ignore[arg-type]
    await lease.tick()
    assert lease.leader
    return store, publisher


def _legacy_json(record: Record) -> bytes:
    """The record as the version before ``shrunk_by`` wrote it (no such field)."""
    data = orjson.loads(record.to_json())
    data.pop("shrunk_by", None)
    return orjson.dumps(data)


async def _held(store: AccountStore) -> Decimal | None:
    found = [r.quantity for r in await store.records_of("BTCUSDT") if r.intent_id == "lad-1"]
    return found[0] if found else None


async def test_a_record_shrunk_by_the_previous_version_is_shrunk_again_on_a_hand_over(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    old = AccountStore(redis, settings, owner="old")
    await old.take_lease()
    records_key = f"{old.records_key}:BTCUSDT"
    await redis.hset(records_key, _record().digest, _legacy_json(_record()))
    level = _level()
    # The old holder (the parent commit's code) published the level's event and shrank the record
    # its way: ``replace(record, quantity=left)``, its JSON without ``shrunk_by``.
    assert await old.publish_many([level]) == [1]
    [record] = await old.records_of("BTCUSDT")
    assert record.shrunk_by is None  # read as written by a version that kept no such list
    shrunk = replace(record, quantity=record.quantity - level.quantity)
    await redis.hset(records_key, record.digest, _legacy_json(shrunk))
    assert await _held(old) == Decimal("0.010")
    await old.release_lease()

    # The new version took the lease over and republishes what it kept as a non-holder.
    new = AccountStore(redis, settings, owner="new")
    assert await new.take_lease() > 0
    publisher = Publisher(new, None, SimpleNamespace(leader=True), None, None)  # type: ignore[arg-type]
    moved: Any = SimpleNamespace(fill=SimpleNamespace(symbol="BTCUSDT"), seen_at=0.0)
    await publisher._publish_built([(moved, level)])

    assert await _held(new) == Decimal("0.010"), "the level's fill was taken off the record twice"


async def test_a_follow_up_dropped_when_the_lease_blinked_is_never_run_again(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    store = AccountStore(redis, settings, owner="h")
    await store.take_lease()
    await store.put_record(_record())
    lease = SimpleNamespace(leader=True)
    publisher = Publisher(store, None, lease, None, None)  # type: ignore[arg-type]
    moved: Any = SimpleNamespace(fill=SimpleNamespace(symbol="BTCUSDT"), seen_at=time.monotonic())

    real = store.records_of
    calls: list[bool] = []

    async def away(symbol: str) -> list[Record]:
        # Redis away after the event went out: the follow-up's read fails; the same outage fails
        # the lease's renewal tick (AccountLease.run -> lost()) before the next try.
        calls.append(lease.leader)
        if len(calls) <= 2:
            lease.leader = False if len(calls) == 2 else lease.leader
            raise RedisConnectionError("Connection closed by server.")
        return await real(symbol)

    monkeypatch.setattr(store, "records_of", away)
    await publisher._publish_built([(moved, _level())])
    # Redis is back and the lease renewed by the same instance (same token): the hand-over runs.
    monkeypatch.undo()
    lease.leader = True
    assert await store.take_lease() > 0
    # The fill was kept for the hand-over (as a non-holder's are): the run loop publishes its
    # event again first (answered 0, published before) and follows it up.
    assert len(publisher._unpublished) == 1, "nothing kept: the follow-up is gone"

    async def event_of(kept: Any) -> Any:
        return _level()

    monkeypatch.setattr(publisher, "_event_of", event_of)
    running = asyncio.create_task(publisher.run())
    try:
        publisher.hand_over()

        async def shrunk() -> bool:
            return await _held(store) == Decimal("0.010")

        await wait_for(shrunk, 5, "the filled level taken off the record")
    finally:
        running.cancel()


async def test_a_deposed_holders_late_follow_up_overwrites_the_new_holders_shrink(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """3. The follow-up is a read-modify-write of the record with no lease check: a holder that
    read the record, then lost the lease (paused past its TTL), writes what it computed after the
    new holder shrank the record further: the new holder's shrink is undone."""
    import asyncio

    settings = Settings(**unique_names, account_lease_ttl_s=5)
    a = AccountStore(redis, settings, owner="a")
    b = AccountStore(redis, settings, owner="b")
    await a.take_lease()
    await a.put_record(replace(_record(), quantity=Decimal("0.030")))
    e1 = _level()
    e2 = _level().model_copy(update={"event_id": "BTCUSDT:9:1", "order_id": 9})
    lease_a = SimpleNamespace(leader=True)
    pub_a = Publisher(a, None, lease_a, None, None)  # type: ignore[arg-type]
    pub_b = Publisher(b, None, SimpleNamespace(leader=True), None, None)  # type: ignore[arg-type]
    moved: Any = SimpleNamespace(fill=SimpleNamespace(symbol="BTCUSDT"), seen_at=0.0)

    read, go = asyncio.Event(), asyncio.Event()
    real = a.records_of

    async def paused(symbol: str) -> list[Record]:
        found = await real(symbol)
        read.set()
        await go.wait()  # A stalls here (GC, a slow loop turn) past its lease's TTL
        return found

    monkeypatch.setattr(a, "records_of", paused)
    late = asyncio.create_task(pub_a._publish_built([(moved, e1)]))
    await asyncio.wait_for(read.wait(), 5)
    # A's lease expires meanwhile; B takes it, and the next level fills: B publishes E2.
    await redis.delete(a.lease_key)
    lease_a.leader = False
    assert await b.take_lease() > 0
    await pub_b._publish_built([(moved, e2)])
    assert await _held(b) == Decimal("0.020")
    go.set()
    await asyncio.wait_for(late, 5)
    [record] = await b.records_of("BTCUSDT")
    assert record.shrunk_by is not None and e2.event_id in record.shrunk_by, "A's stale write undid E2's"
    # B saw E1's fill as a non-holder and kept it: its hand-over publishes it again (answered 0,
    # published by A) and follows it up, which A, deposed, could not.
    await pub_b._publish_built([(moved, e1)])

    assert await _held(b) == Decimal("0.010"), "the deposed holder's stale write undid E2's shrink"
