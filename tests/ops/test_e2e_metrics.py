"""End to end: the service against the simulator over real HTTP and a real Redis; /metrics moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from binance_sim import Simulator
from quantum_exec.app.service import Service
from quantum_exec.contracts import ExecutionResult, decode_result_fields, encode_intent_fields
from quantum_exec.core.settings import Settings

pytestmark = pytest.mark.integration

SIM_KEY = "quantum-sim-key"
SIM_SECRET = "quantum-sim-secret"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_metrics_follow_executions(
    sim: Simulator, redis_url: str, unique_names: dict[str, Any]
) -> None:
    settings = Settings(
        **unique_names,
        redis_url=redis_url,
        binance_base_url=sim.base_url,
        api_key=SIM_KEY,
        api_secret=SIM_SECRET,
        metrics_host="127.0.0.1",
        metrics_port=0,
        max_deliveries=1,
        order_lookup_interval_s=0.05,
        block_ms=200,
    )
    service = Service(settings)
    redis = Redis.from_url(redis_url)
    await service.start()
    try:
        assert service.metrics_port is not None
        url = f"http://127.0.0.1:{service.metrics_port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def scrape() -> Samples:
                async with http.get(f"{url}/metrics") as response:
                    assert response.status == 200
                    return parse(await response.text())

            async def ready() -> bool:
                async with http.get(f"{url}/readyz") as response:
                    return response.status == 200

            await wait_for(ready, 15, "/readyz to answer 200")
            before = await scrape()

            stream = settings.intent_stream
            intents = [
                {
                    "intent_id": f"{unique_names['key_prefix']}-long",
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "position_size_usd": 500.0,
                    "leverage": 2,
                    "stop_loss_pct": 2,
                    "take_profit_pct": 4,
                },
                {
                    "intent_id": f"{unique_names['key_prefix']}-short",
                    "symbol": "ETHUSDT",
                    "side": "SELL",
                    "position_size_usd": 300.0,
                    "stop_loss_pct": 2,
                    "take_profit_pct": 4,
                },
                {
                    "intent_id": f"{unique_names['key_prefix']}-bad",
                    "symbol": "NOPEUSDT",
                    "side": "BUY",
                    "position_size_usd": 300.0,
                },
            ]
            for payload in intents:
                await redis.xadd(stream, encode_intent_fields(payload, "ops-test"))  # type: ignore[arg-type]
            await redis.xadd(stream, {"payload": "{not json"})

            async def results() -> list[ExecutionResult]:
                rows = await redis.xrange(settings.result_stream)
                return [decode_result_fields(fields) for _, fields in rows]

            async def all_done() -> bool:
                dead = await redis.xlen(settings.dlq_stream)
                return len(await results()) == 4 and dead == 1

            await wait_for(all_done, 30, "4 results and 1 dead letter")
            # The undecodable entry is answered (rejected, INVALID_PAYLOAD) and dead-lettered.
            statuses = sorted(r.status.value for r in await results())
            assert statuses == ["filled", "filled", "rejected", "rejected"]

            after = await scrape()

        def delta(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        assert delta("quantum_exec_intents_received_total") == 4
        assert delta("quantum_exec_results_published_total") == 4
        assert delta("quantum_exec_intents_total") == 4
        assert delta("quantum_exec_intents_total", status="filled", reason="ok") == 2
        assert delta("quantum_exec_intents_total", status="rejected", reason="UNKNOWN_SYMBOL") == 1
        assert delta("quantum_exec_intents_total", status="rejected", reason="INVALID_PAYLOAD") == 1
        assert delta("quantum_exec_dead_letters_total", reason="INVALID_PAYLOAD") == 1
        assert delta("quantum_exec_positions_opened_total", protection="protected") == 2
        assert delta("quantum_exec_positions_opened_total", protection="unprotected") == 0
        assert delta("quantum_exec_intent_latency_seconds_count") == 4
        assert delta("quantum_exec_intent_latency_seconds_sum") > 0
        assert delta("quantum_exec_step_latency_seconds_count", step="entry") >= 2
        assert delta("quantum_exec_exchange_requests_total", method="POST", outcome="ok") >= 2
        assert delta("quantum_exec_exchange_request_seconds_count") > 0
        assert total(after, "quantum_exec_ready") == 1
        assert total(after, "quantum_exec_in_flight_intents") == 0
        assert total(after, "quantum_exec_rate_limit_used_weight_1m") > 0
        assert total(after, "quantum_exec_rate_limit_weight_limit_1m") > 0
        text_names = {name for name, _ in after}
        # Nothing with an intent id or a secret in it, anywhere in the exposition.
        for (name, labels), _ in after.items():
            for _, value in labels:
                assert unique_names["key_prefix"] not in value, (name, labels)
                assert SIM_SECRET not in value and SIM_KEY not in value
        assert "quantum_exec_exchange_info_age_seconds" in text_names
    finally:
        await service.stop()
        await redis.aclose()
