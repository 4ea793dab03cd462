"""Service wiring: embedded Redis, injected handler or the real executor on the simulator, hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quantum_exec.contracts import ResultStatus, encode_intent_fields
from quantum_exec.service import Service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_service_with_embedded_redis_and_hooks(kit: Any, handler_cls: Any) -> None:
    events: list[str] = []
    handler = handler_cls()
    settings = kit.settings(redis_url=None, block_ms=50)
    service = Service(
        settings,
        handler=handler,
        operations=False,
        on_ready=lambda: events.append("ready"),
        on_progress=lambda: events.append("progress"),
        on_stopping=lambda: events.append("stopping"),
    )
    await service.start()
    try:
        assert service.redis_url is not None and service.embedded_redis is not None
        assert not service.redis_url.endswith(":6379/0")
        # The watchdog hook follows the loop: idle BLOCK reads completing count as progress.
        await kit.wait_until(lambda: events.count("progress") >= 3, 5, "progress while idle")
        await service.redis.xadd(settings.intent_stream, encode_intent_fields(kit_intent(), "test"))
        await kit.wait_until(lambda: len(handler.calls) == 1, 5, "intent executed")
    finally:
        assert await service.stop() is True
        assert await service.stop() is True  # safe twice
    assert events[0] == "ready" and events[-1] == "stopping"
    assert service.embedded_redis is not None and not service.embedded_redis.running


def kit_intent() -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "intent_id": "svc-1"}


async def test_service_with_the_executor_on_the_simulator(kit: Any) -> None:
    settings = kit.settings(metrics_port=0, watchdog=False)
    service = Service(settings)
    await service.start()
    try:
        await service.redis.xadd(
            settings.intent_stream,
            encode_intent_fields({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 200}, "test"),
        )
        [result] = await kit.wait_results(1, timeout_s=20)
    finally:
        await asyncio.wait_for(service.stop(), 30)
    assert result.status is ResultStatus.FILLED, result.error
    assert result.symbol == "BTCUSDT" and result.order_id is not None
