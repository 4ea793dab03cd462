"""Redis restarted under a running consumer.

"No loss" means: with persistence (AOF, fsync always, as a deployment should run), every intent
the producer got a stream id for is executed once and answered once, even when the restart hits
while intents are in flight. Without persistence the server forgets the stream itself, so the
only honest promise is recovery: the group is recreated and later intents are served.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.contracts import decode_result_fields, encode_intent_fields
from quantum_exec.core.redis_client import connect
from quantum_exec.ops import metrics
from quantum_exec.stream.consumer import IntentConsumer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(persistent=request.param) as private:
        yield private


async def _publish(client: aioredis.Redis, stream: str, intent_id: str, symbol: str) -> None:
    """A producer that retries while Redis is away (intent_id makes a doubled entry harmless)."""
    payload = {"symbol": symbol, "side": "BUY", "quantity": 1, "intent_id": intent_id}
    while True:
        try:
            await client.xadd(stream, encode_intent_fields(payload, "test"))
            return
        except (RedisConnectionError, OSError):
            await asyncio.sleep(0.05)


async def _results(client: aioredis.Redis, stream: str) -> list[Any]:
    try:
        return [decode_result_fields(f) for _sid, f in await client.xrange(stream)]
    except (RedisConnectionError, OSError):
        return []


@pytest.mark.parametrize("server", [True], indirect=True)
async def test_restart_with_persistence_loses_nothing(
    server: EmbeddedRedis, unique_names: dict[str, Any], kit_factory: Any, handler_cls: Any
) -> None:
    reconnects_before = metrics.REDIS_RECONNECTS._value.get()
    kit = kit_factory(server.url)
    settings = kit.settings(redis_reconnect_max_s=0.2)
    handler = handler_cls(delay_s=0.02)
    client = connect(settings, server.url)
    producer = aioredis.Redis.from_url(server.url, protocol=2)
    consumer = IntentConsumer(client, settings, handler)
    await consumer.start()
    wanted = [f"r-{n}" for n in range(40)]
    try:
        for n, intent_id in enumerate(wanted):
            await _publish(
                producer, settings.intent_stream, intent_id, ("BTCUSDT", "ETHUSDT", "SOLUSDT")[n % 3]
            )
            if n == 20:
                await kit.wait_until(lambda: handler.calls != [], 5, "work in flight")
                await asyncio.to_thread(server.restart)

        async def all_answered() -> bool:
            return len(await _results(producer, settings.result_stream)) >= len(wanted)

        await kit.wait_until(all_answered, 30, "every intent answered")
        await kit.wait_until(lambda: not consumer._held, 10, "nothing held")
    finally:
        await consumer.stop()
        await client.aclose()
    results = await _results(producer, settings.result_stream)
    pending = await producer.xpending(settings.intent_stream, settings.consumer_group)
    await producer.aclose()
    answered = Counter(r.intent_id for r in results)
    assert set(answered) == set(wanted)
    assert max(answered.values()) == 1, "an intent was answered twice"
    executed = Counter(c.intent_id for c in handler.calls)
    assert set(executed) == set(wanted)
    assert max(executed.values()) == 1, f"re-executed: {[k for k, v in executed.items() if v > 1]}"
    assert pending["pending"] == 0
    assert metrics.REDIS_RECONNECTS._value.get() > reconnects_before


@pytest.mark.parametrize("server", [False], indirect=True)
async def test_restart_without_persistence_recovers(
    server: EmbeddedRedis, kit_factory: Any, handler_cls: Any
) -> None:
    kit = kit_factory(server.url)
    settings = kit.settings(redis_reconnect_max_s=0.2)
    handler = handler_cls()
    client = connect(settings, server.url)
    producer = aioredis.Redis.from_url(server.url, protocol=2)
    consumer = IntentConsumer(client, settings, handler)
    await consumer.start()
    try:
        await _publish(producer, settings.intent_stream, "before", "BTCUSDT")
        await kit.wait_until(lambda: len(handler.calls) == 1, 5, "first intent")
        await asyncio.to_thread(server.restart)  # the stream, group and records are gone
        await _publish(producer, settings.intent_stream, "after", "BTCUSDT")

        async def answered() -> bool:
            return [r.intent_id for r in await _results(producer, settings.result_stream)] == ["after"]

        await kit.wait_until(answered, 15, "the intent published after the restart answered")
    finally:
        await consumer.stop()
        await client.aclose()
        await producer.aclose()
