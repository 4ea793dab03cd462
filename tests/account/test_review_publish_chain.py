"""Adversarial review of 87910c8 (session 5) (account/store.py ``publish_many``): each event after the first
names the one before it (KEYS[4]) and waits (-2) while that one is not published; from the first
NOSCRIPT or -2 reply the rest are published again one by one.

The chain only checks that the event before exists, not that it was published *by this batch,
before this event*. An event of the batch that was published before (a hand-over batch holds the
events a non-holder kept, which the old holder usually published; a replay after a takeover)
lets the event behind it through while an earlier event of the batch still waits on NOSCRIPT:

1. Order break: batch [B, A (published before), C], the server lost the script, another redis
   loads it while the batch is read (the commit's own race, injected as its test does): B answers
   NOSCRIPT, A -2, C is published (A's marker exists), then B by the one-by-one tail: the stream
   holds C before B.
2. The answer says less than what happened: the tail republishes C too and answers 0 ("published
   before") for the event this very call published; the publisher's follow-up for a stop/target
   (the intent's record shrinks or is dropped) runs only on 1, so it never runs.

Both on the lane (the service's redis) and on the plain redis-py pipeline (no lane)."""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from redis import asyncio as aioredis

from account.test_store import _event
from quantum_exec.account.positions import PositionKind, PositionReason
from quantum_exec.account.publishing import Publisher
from quantum_exec.account.record import Record
from quantum_exec.account.store import _PUBLISH, AccountStore
from quantum_exec.core.redis_lane import enable, lane_of
from quantum_exec.core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _load_after_first_on_lane(redis: aioredis.Redis) -> None:
    """Another redis loads the publish script right after the batch's first command is read."""
    enable(redis)
    lane = lane_of(redis)
    assert lane is not None
    many = lane.many

    async def loaded_after_the_first(commands: list[tuple[Any, ...]]) -> list[Any]:
        replies = await many([commands[0], ("SCRIPT", "LOAD", _PUBLISH), *commands[1:]])
        return [replies[0], *replies[2:]]

    lane.many = loaded_after_the_first  # type: ignore[method-assign]


class _LoadingPipe:
    """A redis-py pipeline in which another redis's SCRIPT LOAD lands after the first command."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._n = 0

    async def __aenter__(self) -> _LoadingPipe:
        await self._real.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._real.__aexit__(*exc)

    def execute_command(self, *args: Any) -> None:
        self._real.execute_command(*args)
        self._n += 1
        if self._n == 1:
            self._real.execute_command("SCRIPT", "LOAD", _PUBLISH)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        replies = await self._real.execute(raise_on_error=raise_on_error)
        return [replies[0], *replies[2:]]


def _load_after_first_on_pipeline(redis: aioredis.Redis) -> None:
    assert lane_of(redis) is None
    pipeline = redis.pipeline
    redis.pipeline = lambda transaction=True: _LoadingPipe(pipeline(transaction=transaction))  # type: ignore[method-assign,assignment,misc]


INJECT = {"lane": _load_after_first_on_lane, "pipeline": _load_after_first_on_pipeline}


async def _ids(redis: aioredis.Redis, stream: str) -> list[str]:
    return [json.loads(f[b"payload"])["event_id"] for _sid, f in await redis.xrange(stream)]


@pytest.mark.parametrize("path", ["lane", "pipeline"])
async def test_an_event_published_before_inside_the_batch_lets_the_next_one_jump_the_noscript_one(
    redis: aioredis.Redis, unique_names: dict[str, Any], path: str
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    store = AccountStore(redis, settings, owner="h")
    await store.take_lease()
    b, a, c = _event("BTCUSDT:1:1"), _event("BTCUSDT:2:1"), _event("BTCUSDT:3:1")
    assert await store.publish_many([a]) == [1]  # e.g. the old holder published it (hand-over)
    await redis.script_flush()  # a restart or a failover loses the script cache
    INJECT[path](redis)

    outcomes = await store.publish_many([b, a, c])

    ids = await _ids(redis, settings.position_stream)
    # Each event once, and the batch's new ones in the batch's order: B before C.
    assert ids == [a.event_id, b.event_id, c.event_id], f"stream order {ids}, outcomes {outcomes}"


@pytest.mark.parametrize("path", ["lane", "pipeline"])
async def test_an_event_this_call_published_is_answered_published_before(
    redis: aioredis.Redis, unique_names: dict[str, Any], path: str
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    store = AccountStore(redis, settings, owner="h")
    await store.take_lease()
    a, b = _event("BTCUSDT:2:1"), _event("BTCUSDT:4:1")
    assert await store.publish_many([a]) == [1]
    await redis.script_flush()
    INJECT[path](redis)

    outcomes = await store.publish_many([a, b])

    assert await _ids(redis, settings.position_stream) == [a.event_id, b.event_id]  # B went out now
    assert outcomes == [0, 1], f"B was published by this call, answered {outcomes[1]}"


async def test_the_target_fill_published_in_such_a_batch_never_shrinks_its_intents_record(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    """The consequence in the publisher: a take-profit level's event published by the batch is
    answered 0, so the intent's record keeps the whole size (the ladder's filled level not
    shrunk: the record says more is ours than is held)."""
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    store = AccountStore(redis, settings, owner="h")
    await store.take_lease()
    record = Record(
        digest="cd" * 15,
        intent_key="i-1",
        intent_id="i-1",
        symbol="BTCUSDT",
        long=True,
        quantity=Decimal("0.020"),
        stop_loss=Decimal("90000"),
        take_profit=Decimal("95000"),
        opened=True,
    )
    await store.put_record(record)
    # Published before (by the old holder, say): the entry's own fill, which has no follow-up
    # (a stop or target published by the old holder left its id in the record it shrank).
    earlier = _event("BTCUSDT:5:1").model_copy(
        update={"kind": PositionKind.OPENED, "reason": PositionReason.ENTRY, "quantity": Decimal("0.020")}
    )
    level = _event("BTCUSDT:6:1").model_copy(
        update={"reason": PositionReason.TAKE_PROFIT, "quantity": Decimal("0.010")}
    )
    assert await store.publish_many([earlier]) == [1]
    await redis.script_flush()
    _load_after_first_on_lane(redis)
    lease = SimpleNamespace(leader=True)
    publisher = Publisher(store, None, lease, None, None)  # type: ignore[arg-type]
    moved: Any = SimpleNamespace(fill=SimpleNamespace(symbol="BTCUSDT"), seen_at=0.0)

    await publisher._publish_built([(moved, earlier), (moved, level)])

    assert await _ids(redis, settings.position_stream) == [earlier.event_id, level.event_id]
    [left] = [r for r in await store.records_of("BTCUSDT") if r.intent_id == "i-1"]
    assert left.quantity == Decimal("0.010"), f"record still {left.quantity} after the level's 0.010 filled"
