"""Adversarial review of 537cf6d (kept fills first in the next batch), fifth review.

A batch whose middle fill's event cannot be built (Redis away, the lease lost meanwhile) keeps
that fill for the hand-over at once, while the fills around it are kept only after the batch's
publish is answered -1: the kept list is [second, first, third], and the hand-over publishes the
second fill's event before the first's (the stream's order is not the fills' order).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from account.test_review_follow_up import _level
from quantum_exec.account.lease import AccountLease
from quantum_exec.account.publishing import Publisher
from quantum_exec.account.store import AccountStore
from quantum_exec.core.settings import Settings
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _moved(tag: str) -> Any:
    return SimpleNamespace(fill=SimpleNamespace(symbol="BTCUSDT", tag=tag), seen_at=time.monotonic())


async def test_a_fill_kept_while_its_batch_was_built_is_handed_over_before_the_fill_ahead_of_it(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(**unique_names, account_lease_ttl_s=5)
    store = AccountStore(redis, settings, owner="h")
    publisher: Publisher
    lease = AccountLease(store, 5, on_taken=lambda: publisher.hand_over())
    publisher = Publisher(store, None, lease, None, None)  # type: ignore[arg-type]
    await lease.tick()
    assert lease.leader
    first = _level()
    events = {
        "first": first,
        "second": first.model_copy(update={"event_id": "BTCUSDT:9:1", "order_id": 9, "intent_id": None}),
        "third": first.model_copy(update={"event_id": "BTCUSDT:10:1", "order_id": 10, "intent_id": None}),
    }
    down = {"second"}

    async def event_of(moved: Any) -> Any:
        tag = moved.fill.tag
        if tag in down:
            down.discard(tag)
            # Redis goes away while the second fill's event is built; the lease is lost meanwhile
            # (not renewed), and Redis is back for the third fill.
            lease.lost()
            raise RedisConnectionError("redis away")
        return events[tag]

    monkeypatch.setattr(publisher, "_event_of", event_of)
    for tag in ("first", "second", "third"):
        publisher.queue(_moved(tag))
    task = asyncio.create_task(publisher.run())
    try:

        async def all_kept() -> bool:
            return len(publisher._unpublished) == 3

        await wait_for(all_kept, 5, "the three fills kept")
        await lease.tick()  # taken again: on_taken -> hand_over
        assert lease.leader

        async def published() -> bool:
            return await redis.xlen(store.position_stream) == 3

        await wait_for(published, 10, "the three events published")
        entries = await redis.xrange(store.position_stream)
        ids = [orjson.loads(fields[b"payload"])["event_id"] for _id, fields in entries]
        assert ids == ["BTCUSDT:8:1", "BTCUSDT:9:1", "BTCUSDT:10:1"], f"published out of fill order: {ids}"
    finally:
        task.cancel()
