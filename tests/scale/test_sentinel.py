"""Redis Sentinel: SIGKILL the master under load; the service follows the failover.

Real processes: a master, a replica and three sentinels (``redis-server --sentinel``) on loopback,
two service instances and a producer connected through the sentinels, the simulator over HTTP.
Every intent gets a result, no entry or protective order is placed twice, and after the consumer's
dedupe by ``intent_id`` there is exactly one result per intent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from binance_sim import Simulator
from quantum_exec.contracts import ProtectionState, ResultStatus, encode_intent_fields
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.redis_client import connect
from quantum_exec.core.settings import Settings
from support.desk import Desk
from support.redis_ha import MASTER_NAME, SentinelSet, wait_new_master
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Few intents per symbol: each leaves two conditional orders, and a symbol takes at most ten.
SYMBOLS = (
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "DOTUSDT",
    "NEARUSDT",
    "DOGEUSDT",
    "ADAUSDT",
    "LINKUSDT",
    "LTCUSDT",
    "AVAXUSDT",
)
INTENTS = 48
KILL_AFTER_PUBLISHED = 16
PUBLISH_EVERY_S = 0.05


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    with SentinelSet() as ha:
        yield ha


@pytest.fixture
async def desk(sim: Simulator, sentinels: SentinelSet, unique_names: dict[str, Any]) -> AsyncIterator[Desk]:
    via_sentinel = {"redis_sentinels": sentinels.addresses, "redis_sentinel_master": MASTER_NAME}
    client = connect(Settings(**unique_names, **via_sentinel))
    desk = Desk(sim, client, unique_names, None, connection=via_sentinel)
    try:
        yield desk
    finally:
        await desk.close()


def _intent(n: int) -> dict[str, Any]:
    return {
        "intent_id": f"failover-{n}",
        "symbol": SYMBOLS[n % len(SYMBOLS)],
        "side": "BUY",
        "position_size_usd": "250",
        "leverage": 5,
        "stop_loss_pct": "2",
        "take_profit_pct": "4",
    }


async def _publish_durably(client: aioredis.Redis, stream: str, payload: dict[str, Any]) -> None:
    """XADD until a replica has it too (WAIT), as a producer that must not lose intents in an
    asynchronous failover does; a master left without replicas (the promoted one) has it alone.
    A repeat after a lost reply is a second entry with the same intent_id, answered once."""
    fields: Any = encode_intent_fields(payload, "test")
    while True:
        try:
            await client.xadd(stream, fields)
            if int((await client.info("replication"))["connected_slaves"]) == 0:
                return
            if int(await client.execute_command("WAIT", 1, 1000)) >= 1:
                return
        except (RedisError, OSError):
            pass
        await asyncio.sleep(0.05)


async def _raw_results(client: aioredis.Redis, stream: str) -> list[Any]:
    try:
        rows = await client.xrange(stream)
    except (RedisError, OSError):
        return []
    return [decode_result_fields(fields) for _sid, fields in rows]


async def test_master_killed_under_load_loses_no_intent_and_repeats_no_order(
    desk: Desk, sentinels: SentinelSet
) -> None:
    names = desk.names
    await desk.service(consumer_name=f"{names['consumer_name']}-a")
    await desk.service(consumer_name=f"{names['consumer_name']}-b")
    ids = [_intent(n)["intent_id"] for n in range(INTENTS)]
    old_port = sentinels.master.port
    started = time.monotonic()

    async def produce() -> None:
        for n in range(INTENTS):
            await _publish_durably(desk.redis, names["intent_stream"], _intent(n))
            await asyncio.sleep(PUBLISH_EVERY_S)

    producer = asyncio.create_task(produce())
    await wait_for(
        lambda: desk.sim.request_counts.get("POST /fapi/v1/order", 0) >= KILL_AFTER_PUBLISHED // 2,
        30,
        "entries being placed",
    )
    sentinels.master.kill()
    killed = time.monotonic()
    # In a thread: the services and the producer keep running while the sentinels elect.
    new_port = await asyncio.to_thread(wait_new_master, sentinels, old_port)
    promoted = time.monotonic()

    async def all_answered() -> bool:
        found = {r.intent_id for r in await _raw_results(desk.redis, names["result_stream"])}
        return set(ids) <= found

    await wait_for(all_answered, 60, "a result for every intent")
    answered = time.monotonic()
    await producer

    results = await _raw_results(desk.redis, names["result_stream"])
    by_intent = {r.intent_id: r for r in results}  # the consumer's dedupe by intent_id
    assert sorted(by_intent) == sorted(ids)
    for intent_id, result in by_intent.items():
        assert result.status is ResultStatus.FILLED, (intent_id, result.error)
        assert result.protection is ProtectionState.PROTECTED, (intent_id, result.error)

    state = desk.sim.state()
    entries = Counter(o["clientOrderId"] for o in state["orders"])
    legs = Counter(a["clientAlgoId"] for a in state["algoOrders"])
    for intent_id in ids:
        assert entries[client_order_id(intent_id, "entry")] == 1, intent_id
        assert legs[client_order_id(intent_id, "sl")] == 1, intent_id
        assert legs[client_order_id(intent_id, "tp")] == 1, intent_id
    # The account lease was taken again on the new master.
    lease_key = f"{names['key_prefix']}:account:lease"
    await wait_for(lambda: desk.redis.exists(lease_key), 10, "the account lease on the new master")

    republished = len(results) - len(by_intent)
    lookups = desk.sim.request_counts.get("GET /fapi/v1/order", 0)
    print(
        f"\nsentinel failover: {INTENTS} intents, master :{old_port} -> :{new_port} promoted "
        f"{promoted - killed:.2f}s after SIGKILL; all answered {answered - started:.2f}s after the "
        f"first publish ({answered - killed:.2f}s after the kill); results re-published: {republished}; "
        f"entries {sum(entries.values())}, protective orders {sum(legs.values())}, order lookups {lookups}"
    )
