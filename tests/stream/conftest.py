"""Fixtures for the stream tests: a real Redis client, fast settings, a recording handler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from quantum_exec.contracts import (
    ExecutionResult,
    ResultStatus,
    TradeIntent,
    decode_result_fields,
    encode_intent_fields,
    intent_key,
)
from quantum_exec.core.settings import Settings
from quantum_exec.exchange import fencing
from quantum_exec.execution.run import Attempt
from quantum_exec.stream.consumer import IntentConsumer
from support.waiting import wait_for as wait_until


@dataclass
class Call:
    stream_id: str
    symbol: str
    intent_id: str | None
    consumer: str
    started: float
    finished: float | None = None
    resume: bool = False
    repair: bool = False


@dataclass
class RecordingHandler:
    """Test double of the executor: records calls, can be slow, gated or failing."""

    name: str = "handler"
    delay_s: float = 0.0
    calls: list[Call] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set, every call waits for it
    started: asyncio.Event = field(default_factory=asyncio.Event)
    fail_times: int = 0  # raise on the first N calls
    sends_order: bool = False  # pass the fence as an order request would

    async def __call__(
        self, intent: TradeIntent, stream_id: str, received_at: datetime, *, attempt: Attempt
    ) -> ExecutionResult:
        call = Call(
            stream_id,
            intent.symbol,
            intent.intent_id,
            self.name,
            time.monotonic(),
            resume=attempt.resume,
            repair=attempt.repair,
        )
        self.calls.append(call)
        self.started.set()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("simulated handler bug")
        if self.gate is not None:
            await self.gate.wait()
        if self.sends_order:
            await fencing.ensure_owner("a test order")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        call.finished = time.monotonic()
        return ExecutionResult(
            symbol=intent.symbol,
            action=intent.side,
            status=ResultStatus.FILLED,
            intent_id=intent_key(intent, stream_id),
            stream_id=stream_id,
            received_at=received_at,
            meta=intent.meta,
        )


def intent(symbol: str = "BTCUSDT", **extra: Any) -> dict[str, Any]:
    """A valid intent payload."""
    return {"symbol": symbol, "side": "BUY", "position_size_usd": 100, **extra}


@dataclass
class StreamKit:
    """A test's Redis client, settings factory and helpers over one set of unique names."""

    redis: aioredis.Redis
    redis_url: str
    names: dict[str, Any]
    consumers: list[IntentConsumer] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            **self.names,
            "block_ms": 100,
            "claim_idle_ms": 1000,
            "claim_interval_s": 0.1,
            "lease_ttl_ms": 3000,
            "shutdown_grace_s": 5.0,
            "redis_reconnect_max_s": 0.5,
            "max_concurrency": 8,
            "read_count": 16,
        }
        values.update(overrides)
        return Settings(**values)

    async def consumer(
        self,
        handler: Callable[..., Awaitable[ExecutionResult]],
        *,
        client: aioredis.Redis | None = None,
        survey: Callable[..., Awaitable[ExecutionResult]] | None = None,
        **overrides: Any,
    ) -> IntentConsumer:
        consumer = IntentConsumer(client or self.redis, self.settings(**overrides), handler, survey=survey)
        self.consumers.append(consumer)
        await consumer.start()
        return consumer

    async def publish(self, payload: dict[str, Any]) -> str:
        sid = await self.redis.xadd(self.names["intent_stream"], encode_intent_fields(payload, "test"))
        return sid.decode()

    async def publish_raw(self, fields: dict[str, str]) -> str:
        sid = await self.redis.xadd(self.names["intent_stream"], fields)  # type: ignore[arg-type]
        return sid.decode()

    async def results(self) -> list[ExecutionResult]:
        rows = await self.redis.xrange(self.names["result_stream"])
        return [decode_result_fields(fields) for _sid, fields in rows]

    async def dead_letters(self) -> list[dict[bytes, bytes]]:
        return [fields for _sid, fields in await self.redis.xrange(self.names["dlq_stream"])]

    async def pending(self) -> int:
        info = await self.redis.xpending(self.names["intent_stream"], self.names["consumer_group"])
        return int(info["pending"])

    wait_until = staticmethod(lambda *args: wait_until(*args))

    async def wait_results(self, count: int, timeout_s: float = 10.0) -> list[ExecutionResult]:
        """Wait until ``count`` results are published and nothing is pending."""
        results: list[ExecutionResult] = []

        async def ready() -> bool:
            nonlocal results
            results = await self.results()
            return len(results) >= count and await self.pending() == 0

        await wait_until(ready, timeout_s, f"{count} results")
        return results


@pytest.fixture
async def kit(redis_url: str, unique_names: dict[str, Any]) -> AsyncIterator[StreamKit]:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    kit = StreamKit(client, redis_url, unique_names)
    try:
        yield kit
    finally:
        for consumer in kit.consumers:
            await consumer.stop()
        await client.aclose()


@pytest.fixture
def handler_cls() -> type[RecordingHandler]:
    """The recording handler class (tests cannot import conftest under importlib mode)."""
    return RecordingHandler


@pytest.fixture
def kit_factory(unique_names: dict[str, Any]) -> Callable[[str], StreamKit]:
    """A StreamKit for another server (its client is unused by tests that bring their own)."""

    def make(url: str) -> StreamKit:
        return StreamKit(aioredis.Redis.from_url(url, protocol=2), url, unique_names)

    return make
