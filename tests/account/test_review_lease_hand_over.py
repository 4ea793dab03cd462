"""Adversarial review of 16d1e80 (lease: on_taken also on a re-take under a new token, from the
fence too) and 11c1368 (follow-up by the intent digest), session 5 (fourth review).

1. A holder's event answered -1 in a lease gap it closes itself is now handed over, but
   ``hand_over`` appends it behind the fills already queued: a later fill of the same symbol is
   published before it (the stream's order is not the fills' order).
2. (older) A trailing stop's fill: ``reason_of`` has no reason for the role "trail" (KeyError), so
   its position event is never built nor published.
3. (older, not covered by 16d1e80) A re-take under a new token while the stream is down (stale):
   ``_lease_taken`` skips the take-over, the token is remembered, nothing ever hands over.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from redis import asyncio as aioredis

from account.test_positions import fill, flat
from account.test_review_follow_up import _level, holder
from quantum_exec.account.positions import apply_fill, position_event
from quantum_exec.account.store import AccountStore
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.settings import Settings
from support.waiting import wait_for

pytestmark = [pytest.mark.timeout(30)]


def _moved(tag: str) -> Any:
    return SimpleNamespace(fill=SimpleNamespace(symbol="BTCUSDT", tag=tag), seen_at=time.monotonic())


@pytest.mark.integration
async def test_an_event_handed_over_after_a_self_closed_gap_goes_out_after_a_later_fill(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, publisher = await holder(redis, unique_names)
    lease: Any = publisher._lease
    first = _level()  # BTCUSDT:8:1, a level of the ladder
    second = first.model_copy(update={"event_id": "BTCUSDT:9:1", "order_id": 9, "intent_id": None})
    events = {"first": first, "second": second}

    async def event_of(moved: Any) -> Any:
        return events[moved.fill.tag]

    monkeypatch.setattr(publisher, "_event_of", event_of)
    m1, m2 = _moved("first"), _moved("second")
    # The lease key lapses (a stall); the first fill's event is answered -1 and kept.
    await redis.delete(store.lease_key)
    await publisher._publish_built([(m1, first)])
    assert len(publisher._unpublished) == 1
    # The next fill of the symbol arrives (queued) before this instance takes the lease back.
    publisher.queue(m2)
    await lease.tick()  # a new token: on_taken -> hand_over
    assert lease.leader
    import asyncio

    task = asyncio.create_task(publisher.run())
    try:

        async def both() -> bool:
            return await redis.xlen(store.position_stream) == 2

        await wait_for(both, 10, "both events published")
        entries = await redis.xrange(store.position_stream)
        ids = [orjson.loads(fields[b"payload"])["event_id"] for _id, fields in entries]
        assert ids == ["BTCUSDT:8:1", "BTCUSDT:9:1"], f"published out of fill order: {ids}"
    finally:
        task.cancel()


def test_a_trailing_stops_fill_has_a_position_event() -> None:
    f = fill(
        client_order_id="triggered-77", original_type="TRAILING_STOP_MARKET", reduce_only=True, side="SELL"
    )
    before = apply_fill(flat(), fill(qty="0.010"))
    try:
        event = position_event(
            f, before, apply_fill(before, f), algo_client_id=client_order_id("k-1", "trail")
        )
    except KeyError as exc:
        pytest.fail(f"no position event for a trailing stop's fill: KeyError {exc}")
    assert event is not None


class _Gateway:
    """Only what a resync of an empty account reads."""

    async def positions(self) -> list[Any]:
        return []

    async def open_algo_orders(self) -> list[Any]:
        return []


@pytest.mark.integration
async def test_an_event_kept_in_a_gap_closed_while_the_stream_is_down_is_never_handed_over(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stall long enough to lapse the lease key also drops the user stream (state stale): the
    re-take under a new token runs ``on_taken`` while stale, ``_lease_taken`` skips the take-over,
    the new token is remembered, and the reconnect's resync hands nothing over."""
    import asyncio

    from quantum_exec.account.follower import AccountFollower

    settings = Settings(
        **unique_names,
        account_lease_ttl_s=5,
        binance_stream_url="ws://127.0.0.1:9",
        binance_base_url="http://127.0.0.1:9",
    )
    store = AccountStore(redis, settings, owner="h")
    follower = AccountFollower(settings, _Gateway(), store)  # type: ignore[arg-type]
    await follower.lease.tick()
    await follower.resync.run()  # the first resync: synced, fresh, holder
    assert follower.leader and follower.synced.is_set() and not follower.state.stale
    publisher = follower.publisher
    first = _level()

    async def event_of(moved: Any) -> Any:
        return first

    monkeypatch.setattr(publisher, "_event_of", event_of)
    await redis.delete(store.lease_key)  # the stall: the key lapses ...
    follower._on_disconnected()  # ... and the socket drops
    await publisher._publish_built([(_moved("first"), first)])
    assert len(publisher._unpublished) == 1
    await follower.lease.tick()  # taken back under a new token while stale
    await follower._on_connected()  # the stream is back: resync
    assert follower.leader and not follower.state.stale
    task = asyncio.create_task(publisher.run())
    try:

        async def published() -> bool:
            return await redis.xlen(store.position_stream) == 1

        await wait_for(published, 5, f"the kept event published ({len(publisher._unpublished)} still kept)")
    finally:
        task.cancel()
        for t in follower._tasks:
            t.cancel()
