"""Service wiring: embedded Redis, injected handler or the real executor on the simulator, hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quantum_exec.app.service import Service
from quantum_exec.contracts import ResultStatus, encode_intent_fields

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


async def test_a_lost_lease_leaves_the_entry_pending_without_a_traceback(
    kit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis away past the lease (or a takeover): the attempt ends with one warning, no ERROR and
    no traceback about "another instance", and the entry stays pending for the next attempt."""
    import logging

    from quantum_exec.exchange.fencing import ensure_owner

    calls: list[str] = []

    async def handler(intent: Any, stream_id: str, received_at: Any, *, attempt: Any) -> Any:
        calls.append(stream_id)

        async def lost() -> bool:
            return False

        from quantum_exec.exchange import fencing

        token = fencing.set_check(lost)  # the fence the stream layer installs, answering "lost"
        try:
            await ensure_owner("POST /fapi/v1/order")
        finally:
            fencing.reset_check(token)

    settings = kit.settings(block_ms=50)
    service = Service(settings, handler=handler, operations=False)
    caplog.set_level(logging.INFO, logger="quantum_exec")
    await service.start()
    try:
        await service.redis.xadd(settings.intent_stream, encode_intent_fields(kit_intent(), "test"))
        await kit.wait_until(lambda: calls, 5, "the attempt")
        await kit.wait_until(
            lambda: any(r.getMessage() == "intent.left_pending" for r in caplog.records), 5, "the warning"
        )
        pending: Any = await service.redis.xpending(settings.intent_stream, settings.consumer_group)
        assert pending["pending"] == 1  # left for the next attempt, not answered
    finally:
        await service.stop()
    [left] = [r for r in caplog.records if r.getMessage() == "intent.left_pending"]
    assert left.levelname == "WARNING" and "no longer owns the intent" in left.__dict__["kv"]["error"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)
