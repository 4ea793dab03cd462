"""The account's Redis scripts against a real Redis: the fenced lease and publish-once."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.account.positions import PositionEvent, PositionKind, PositionReason
from quantum_exec.account.record import Record
from quantum_exec.account.store import _PUBLISH, AccountStore
from quantum_exec.core.redis_lane import enable, lane_of
from quantum_exec.core.settings import Settings
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _event(event_id: str = "BTCUSDT:7:9") -> PositionEvent:
    return PositionEvent(
        event_id=event_id,
        symbol="BTCUSDT",
        kind=PositionKind.CLOSED,
        reason=PositionReason.STOP_LOSS,
        position_amount=Decimal(0),
        entry_price=Decimal(0),
        price=Decimal("93236.50"),
        quantity=Decimal("0.010"),
        realized_pnl=Decimal("-41.95800000"),
        commission=Decimal("0.46618250"),
        commission_asset="USDT",
        intent_id="i-1",
        order_id=7,
        time=datetime(2026, 11, 28, 22, 0, 0, 123000, tzinfo=UTC),
    )


async def test_one_holder_and_a_takeover_with_a_new_token(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=0.5)
    a, b = AccountStore(redis, settings, owner="a"), AccountStore(redis, settings, owner="b")
    first = await a.take_lease()
    assert first > 0 and await b.take_lease() == 0
    assert await a.take_lease() == first  # renewal keeps the token

    async def b_took_over() -> bool:
        return await b.take_lease() > 0

    await wait_for(b_took_over, 5, "b taking the expired lease")  # a stopped renewing
    assert b.token > first and await a.take_lease() == 0


async def test_an_event_is_published_once_and_never_by_a_non_holder(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    holder, other = AccountStore(redis, settings, owner="h"), AccountStore(redis, settings, owner="o")
    await holder.take_lease()
    await other.take_lease()
    assert await other.publish_many([_event()]) == [-1]
    assert await holder.publish_many([_event()]) == [1]
    assert await holder.publish_many([_event()]) == [0]  # a replay
    rows = await redis.xrange(settings.position_stream)
    assert len(rows) == 1
    fields = rows[0][1]
    assert fields[b"event_type"] == b"position.event" and fields[b"source"] == b"quantum-exec"
    payload = json.loads(fields[b"payload"], parse_float=Decimal)
    assert payload["realized_pnl"] == Decimal("-41.95800000") and payload["commission_asset"] == "USDT"
    assert payload["time"] == "2026-11-28T22:00:00.123000Z" or payload["time"].startswith(
        "2026-11-28T22:00:00.123"
    )


async def test_records_round_trip_exactly(redis: aioredis.Redis, unique_names: dict[str, Any]) -> None:
    store = AccountStore(redis, Settings(**unique_names))
    record = Record(
        digest="ab" * 15,
        intent_key="k-1",
        intent_id="k-1",
        symbol="ETHUSDT",
        long=False,
        quantity=Decimal("0.483"),
        stop_loss=Decimal("3152.00"),
        take_profit=None,
        opened=True,
    )
    await store.put_record(record)
    assert await store.get_record("ETHUSDT", record.digest) == record
    assert await store.records() == [record] and await store.records_of("ETHUSDT") == [record]
    assert await store.records_of("BTCUSDT") == []
    intent_record = record.as_intent_record()
    assert intent_record is not None and intent_record.stop_loss == Decimal("3152.00")
    await store.drop_record("ETHUSDT", record.digest)
    assert await store.records() == []


async def test_an_opened_record_is_merged_over_an_opened_one_never_written_whole_again(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "opened" write replaces the record written before the order (``opened`` false), or one
    it cannot read. Over a record already ``opened`` (a redelivered intent's attempt) it merges:
    what a fill took off stays off (the same fill writes nothing), and what the entry filled
    beyond the record's ``entry_filled`` (a resumed TWAP that sent a child) is added."""
    store = AccountStore(redis, Settings(**unique_names))
    opening = Record(
        digest="cd" * 15,
        intent_key="k-2",
        intent_id="k-2",
        symbol="BTCUSDT",
        long=True,
        quantity=Decimal("0.020"),
        stop_loss=None,
        take_profit=None,
        opened=False,
    )
    await store.put_record(opening)
    first = replace(
        opening,
        quantity=Decimal("0.019"),
        entry_filled=Decimal("0.019"),
        stop_loss=Decimal("90000.0"),
        opened=True,
    )
    assert await store.put_opened(first) is True
    assert await store.get_record("BTCUSDT", first.digest) == first
    shrunk = first.shrunk("BTCUSDT:11:12", Decimal("0.009"))
    await store.put_record(shrunk)
    # The same fill again: nothing written, the level stays off.
    assert await store.put_opened(first) is False
    assert await store.get_record("BTCUSDT", first.digest) == shrunk
    # The same fill seen as a different size (a resumed flip does not know the position it met):
    # nothing written either.
    assert await store.put_opened(replace(first, quantity=Decimal("0.025"))) is False
    assert await store.get_record("BTCUSDT", first.digest) == shrunk
    # The entry filled further (0.025 in all): the 0.006 more is added to what is left.
    grown = replace(first, quantity=Decimal("0.025"), entry_filled=Decimal("0.025"))
    assert await store.put_opened(grown) is True
    assert await store.get_record("BTCUSDT", first.digest) == replace(
        grown, quantity=Decimal("0.016"), shrunk_by=("BTCUSDT:11:12",)
    )

    # A record of a version before entry_filled: shrunk by a fill, or of the same size, it is
    # kept; another is written whole, as that version did.
    shrunk_before = replace(shrunk, digest="ab" * 15, entry_filled=None)
    await store.put_record(shrunk_before)
    assert await store.put_opened(replace(first, digest=shrunk_before.digest)) is False
    assert await store.get_record("BTCUSDT", shrunk_before.digest) == shrunk_before
    legacy = replace(first, digest="ef" * 15, entry_filled=None, shrunk_by=None)
    await store.put_record(legacy)
    assert await store.put_opened(replace(first, digest=legacy.digest)) is False
    assert await store.get_record("BTCUSDT", legacy.digest) == legacy
    bigger = replace(grown, digest=legacy.digest)
    assert await store.put_opened(bigger) is True
    assert await store.get_record("BTCUSDT", legacy.digest) == replace(bigger, shrunk_by=None)

    # A record it cannot read is replaced (never left to claim what nobody knows).
    await redis.hset(f"{store.records_key}:BTCUSDT", "01" * 15, b"{not json")
    assert await store.put_opened(replace(first, digest="01" * 15)) is True
    assert await store.get_record("BTCUSDT", "01" * 15) == replace(first, digest="01" * 15)

    # A fill's follow-up shrinks the record between the read and the merge's write: the write
    # is refused, the record read again, and both the shrink and the growth hold.
    racing = replace(first, digest="23" * 15)
    await store.put_opened(racing)
    script = store.batch.script
    calls: list[Any] = []

    async def follow_up_between(*args: Any) -> Any:
        calls.append(args[2][3])
        if len(calls) == 2:
            there = await store.get_record("BTCUSDT", racing.digest)
            assert there is not None
            await store.put_record(there.shrunk("BTCUSDT:13:14", Decimal("0.004")))
        return await script(*args)

    monkeypatch.setattr(store.batch, "script", follow_up_between)
    more = replace(racing, quantity=Decimal("0.021"), entry_filled=Decimal("0.021"))
    assert await store.put_opened(more) is True
    assert len(calls) == 4 and calls[0] == calls[2] == b"" and calls[1] != b"" and calls[3] != b""
    assert await store.get_record("BTCUSDT", racing.digest) == replace(
        more, quantity=Decimal("0.017"), shrunk_by=("BTCUSDT:13:14",)
    )
    assert "BTCUSDT" in {r.symbol for r in await store.records()}


async def test_a_batch_of_events_goes_out_in_order_in_one_pipeline_each_once(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    holder, other = AccountStore(redis, settings, owner="h"), AccountStore(redis, settings, owner="o")
    await holder.take_lease()
    await other.take_lease()
    events = [_event(f"BTCUSDT:{n}:1") for n in range(300)]
    assert await other.publish_many(events[:3]) == [-1, -1, -1]
    assert await holder.publish_many(events[:100]) == [1] * 100
    # A replay overlapping the first batch: the first 100 answer "before", the rest go out.
    assert await holder.publish_many(events) == [0] * 100 + [1] * 200
    rows = await redis.xrange(settings.position_stream)
    assert [json.loads(f[b"payload"])["event_id"] for _sid, f in rows] == [e.event_id for e in events]
    # A server that lost the script (a restart, a failover) is answered one by one, loading it.
    await redis.script_flush()
    assert await holder.publish_many([_event("BTCUSDT:900:1"), _event("BTCUSDT:901:1")]) == [1, 1]


async def test_a_script_loaded_by_another_client_inside_a_batch_leaves_the_batch_in_order(
    redis_url: str, unique_names: dict[str, Any]
) -> None:
    """A server without the publish script (a restart, a failover) answers the batch's first
    event NOSCRIPT; if another client loads the script before the rest of the batch is read (a
    large batch arrives in several reads), the events behind it used to go out first, and the
    first one after them when it was published again. Each event now waits for the one before it."""
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    enable(client)
    lane = lane_of(client)
    assert lane is not None
    try:
        settings = Settings(**unique_names, account_lease_ttl_s=5)
        store = AccountStore(client, settings, owner="h")
        await store.take_lease()
        await client.script_flush()  # as a restart or a failover to a replica loses it
        many = lane.many

        async def another_client_loads_it_after_the_first(commands: list[tuple[Any, ...]]) -> list[Any]:
            replies = await many([commands[0], ("SCRIPT", "LOAD", _PUBLISH), *commands[1:]])
            return [replies[0], *replies[2:]]

        lane.many = another_client_loads_it_after_the_first  # type: ignore[method-assign]
        events = [_event(f"BTCUSDT:{n}:2") for n in range(5)]
        assert await store.publish_many(events) == [1] * 5
        rows = await client.xrange(settings.position_stream)
        assert [json.loads(f[b"payload"])["event_id"] for _sid, f in rows] == [e.event_id for e in events]
        # Published before: each answers so, in order, whatever the script's state.
        await client.script_flush()
        assert await store.publish_many(events) == [0] * 5
        assert await client.xlen(settings.position_stream) == 5
    finally:
        await client.aclose()
