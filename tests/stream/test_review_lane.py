"""Review of the scripts' lane (core.redis_lane, issue #29): holes found by the adversarial
review, each a failing test against a real redis-server.

1. An error reply whose redis-py class is not a ``ResponseError`` (``-LOADING``: BusyLoadingError,
   a ConnectionError; ``-NOAUTH``/``-WRONGPASS``: AuthenticationError) is handed to the caller as
   its *result*: ``Store.fence`` then answers True (``bool`` of an exception) on a server that
   holds no lease at all, so the order leaves (promise 2's fence). redis-py's own path raises.
2. A call whose arguments cannot be packed (redis-py raises DataError for it) strands every other
   call of the same loop turn: ``Lane._write`` clears the queue before packing, so their futures
   are neither written nor failed and their callers wait forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError

from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.core.redis_client import connect
from quantum_exec.core.scripts import run_script
from quantum_exec.core.settings import Settings
from quantum_exec.stream.store import Lease, Store
from support.redis_ha import _Group
from support.waiting import wait_until

DEADLINE_S = 30
SOURCE_KEYS = 100_000


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


@pytest.fixture
async def client(server: EmbeddedRedis) -> AsyncIterator[Redis]:
    redis = connect(Settings(redis_url=server.url), block_ms=100)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_a_loading_server_fails_the_fence_instead_of_passing_it() -> None:
    """A demoted master re-syncing from its new master answers ``-LOADING`` while it loads the
    dataset (a connection made before the load stays open). The fence must then fail (a
    ConnectionError: the caller retries, or gives up within its bound), never report the lease
    as held: the server holds no lease at all (the sync flushed it)."""
    group = _Group("qx-review4-")
    try:
        source = group._add("source", [])
        # A slow load (as a large dataset's is), the clients served between keys meanwhile.
        target = group._add("target", ["key-load-delay 100", "loading-process-events-interval-bytes 1024"])
        source.client.eval(
            "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'k' .. i, i) end return 1", 0, SOURCE_KEYS
        )
        settings = Settings(redis_url=f"redis://127.0.0.1:{target.port}/0")
        client = connect(settings, block_ms=100)
        try:
            store = Store(client, settings)
            lease = Lease(symbol="BTCUSDT", owner="instance-a", token=7)
            await client.set(store.keys.lease(lease.symbol), lease.value, px=60_000)
            assert await store.fence(lease, "intent-1", count_attempt=False) is True  # lane connected
            target.client.execute_command("REPLICAOF", "127.0.0.1", str(source.port))
            wait_until(
                lambda: str(target.client.info("persistence").get("loading")) == "1",
                DEADLINE_S,
                "the demoted master to load its new master's dataset",
            )
            # The lease is gone (the sync flushed the old data): the fence must not say it holds.
            with pytest.raises(RedisConnectionError):
                owned = await asyncio.wait_for(
                    store.fence(lease, "intent-1", count_attempt=False), DEADLINE_S
                )
                pytest.fail(f"the fence answered {owned!r} on a loading server that holds no lease")
        finally:
            await client.aclose()
    finally:
        group.stop()


async def test_an_unpackable_call_fails_alone_and_the_others_of_its_turn_get_their_replies(
    client: Redis,
) -> None:
    """redis-py refuses an argument it cannot encode (None, bool, Decimal) with DataError for that
    call only; on the lane the other scripts sent in the same loop turn must still get theirs."""
    script = client.register_script("return ARGV[1]")
    assert await run_script(script, [], ["warm"]) == b"warm"  # connected: the next turn writes at once
    good = asyncio.ensure_future(run_script(script, [], ["good"]))
    bad = asyncio.ensure_future(run_script(script, [], [None]))  # type: ignore[list-item]
    done, pending = await asyncio.wait({good, bad}, timeout=5)
    for task in pending:
        task.cancel()  # stranded: nothing else would ever resolve them
    assert good in done, "a well-formed script of the same loop turn never got its reply (its caller hangs)"
    assert good.result() == b"good"
    assert bad in done and isinstance(bad.exception(), DataError), "the bad call did not fail with DataError"
