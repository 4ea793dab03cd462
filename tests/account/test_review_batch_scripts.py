"""Review of the record batch (issue #29): a script Redis does not hold, in a batch with others' records.

A CLOSE drops its position's records with one script (EVALSHA). A Redis that does not hold the
script yet (a restart, a failover, the first CLOSE after a start) answers NOSCRIPT. The batch used
to send ``SCRIPT LOAD`` and the rest again; a Redis Cluster pipeline cannot route ``SCRIPT LOAD``
(it names no key), so the whole pipeline failed: the CLOSE's drop never happened (its position's
records stayed "opened") and every other intent's record riding the same pipeline was lost with it,
logged and given up (not a Redis outage, so not retried). On one Redis the re-sent drop ran after
the commands queued behind it, dropping a record written after it (rewritten since, but its count
said 2). Real three-master cluster, real Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.account.record import Record
from quantum_exec.account.store import AccountStore
from quantum_exec.core.redis_client import connect
from quantum_exec.core.settings import Settings
from support.redis_ha import ClusterSet, cluster_names

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with ClusterSet() as started:
        yield started


def _record(digest: str, symbol: str, *, opened: bool) -> Record:
    return Record(
        digest=digest,
        intent_key=f"key-{digest}",
        intent_id=f"id-{digest}",
        symbol=symbol,
        long=True,
        quantity=Decimal("0.01"),
        stop_loss=None,
        take_profit=None,
        opened=opened,
    )


async def _drop_beside_others(store: AccountStore) -> tuple[int, set[str]]:
    """An opened and an opening record; then, in one pipeline, the CLOSE's drop and another
    intent's record write. The drop's count and the digests left."""
    symbol = "BTCUSDT"
    await store.put_record(_record("held", symbol, opened=True))
    await store.put_record(_record("opening", symbol, opened=False))
    in_flight = asyncio.ensure_future(store.batch.call("PING"))
    await asyncio.sleep(0)  # a pipeline in flight: the two below gather behind it, together
    other = _record("other", symbol, opened=True)
    together = asyncio.gather(store.drop_opened(symbol, None), store.put_record(other))
    dropped, _ = await asyncio.wait_for(together, 10)
    await in_flight
    return dropped, {r.digest for r in await store.records_of(symbol)}


async def test_a_close_drops_its_records_in_a_cluster_and_the_records_beside_it_are_written(
    cluster: ClusterSet,
) -> None:
    settings = Settings(**cluster_names(), redis_url=cluster.url)
    redis = connect(settings)
    try:
        store = AccountStore(redis, settings)
        dropped, left = await _drop_beside_others(store)
    finally:
        await redis.aclose()
    assert dropped == 1
    assert left == {"opening", "other"}  # the opened one dropped; the one beside the drop written


async def test_a_script_flushed_between_batches_is_run_once_and_nothing_beside_it_is_lost(
    redis_url: str, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names, redis_url=redis_url)
    redis = connect(settings)
    try:
        store = AccountStore(redis, settings)
        await store.drop_opened("BTCUSDT", None)  # Redis holds the script now
        await redis.script_flush()  # as a restart or a failover to a replica loses it
        dropped, left = await _drop_beside_others(store)
    finally:
        await redis.aclose()
    assert dropped == 1
    assert left == {"opening", "other"}
