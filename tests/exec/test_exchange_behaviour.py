"""Gateway and executor behaviour the exchange forces on us: limits, clocks, brackets, rules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from binance_sim import SimConfig, Simulator
from binance_sim.ratelimit import Limits as SimLimits
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.rules_cache import RulesCache
from quantum_exec.execution.executor import Executor, create_executor
from quantum_exec.ops import metrics
from support.sim_state import algo_orders, intent, orders, position_amount

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels or None)
    return value or 0.0


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def test_leverage_above_the_bracket_is_capped(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    ex = await create_executor(make_settings(max_leverage=125))
    try:
        result = await ex.execute(
            intent(intent_id="cap-1", symbol="NEARUSDT", side="BUY", position_size_usd=500, leverage=75)
        )
    finally:
        await ex.close()
    assert result.status is ResultStatus.FILLED, result.error
    assert result.leverage == 50  # NEARUSDT's maximum
    assert sim.state()["leverage"]["NEARUSDT"] == 50


async def test_leverage_above_the_bracket_is_rejected_by_policy(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    ex = await create_executor(make_settings(max_leverage=125, leverage_policy="reject"))
    try:
        result = await ex.execute(
            intent(intent_id="cap-2", symbol="NEARUSDT", side="BUY", position_size_usd=500, leverage=75)
        )
    finally:
        await ex.close()
    assert result.error is not None and result.error.code == "LEVERAGE_ABOVE_LIMIT"
    assert "50" in result.error.message
    assert orders(sim) == []


async def test_partially_filled_entry_reports_partial(executor: Executor, sim: Simulator) -> None:
    opened = await executor.execute(intent(intent_id="p-open", symbol="BNBUSDT", side="BUY", quantity=1))
    assert opened.status is ResultStatus.FILLED
    # A reduce-only SELL of 2 against a long of 1 fills 1 and expires the rest, as on Binance.
    reduced = await executor.execute(
        intent(intent_id="p-reduce", symbol="BNBUSDT", side="SELL", quantity=2, reduce_only=True)
    )
    assert reduced.status is ResultStatus.PARTIAL, reduced.error
    assert reduced.executed_quantity == Decimal("1") and reduced.quantity == Decimal("2")
    assert position_amount(sim, "BNBUSDT") == 0


async def test_close_position_mode_protects_with_close_position_orders(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    ex = await create_executor(make_settings(protection_mode="close_position"))
    try:
        result = await ex.execute(
            intent(
                intent_id="cp-1",
                symbol="ETHUSDT",
                side="BUY",
                position_size_usd=600,
                stop_loss_pct=2,
                take_profit_pct=2,
            )
        )
    finally:
        await ex.close()
    assert result.protection is ProtectionState.PROTECTED, result.error
    armed = algo_orders(sim, symbol="ETHUSDT", status="NEW")
    assert len(armed) == 2
    assert all(a["closePosition"] in (True, "true") for a in armed)


async def test_clock_skew_beyond_recv_window_resyncs_and_retries_once(
    executor: Executor, sim: Simulator
) -> None:
    sim.set_faults({"clock_skew_ms": 5000, "faults": []})  # the server's clock jumps 5 s ahead
    result = await executor.execute(
        intent(intent_id="skew-1", symbol="SOLUSDT", side="BUY", position_size_usd=200)
    )
    assert result.status is ResultStatus.FILLED, result.error
    assert len(orders(sim, symbol="SOLUSDT")) == 1
    assert sample("quantum_exec_clock_offset_seconds") > 4.0


@pytest.fixture
async def tight_sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(limits=SimLimits(orders_per_10s=3)))
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.mark.timeout(40)
async def test_a_429_pauses_for_retry_after_then_succeeds(tight_sim: Simulator) -> None:
    # Pacing off on purpose, so the exchange's own limit is hit and its Retry-After honoured.
    settings = Settings(
        binance_base_url=tight_sim.base_url,
        api_key="quantum-sim-key",
        api_secret="quantum-sim-secret",
        rate_limit_pacing=False,
    )
    ex = await create_executor(settings)
    paused_before = sample("quantum_exec_rate_limit_paused_seconds_total", reason="http_429")
    try:
        first = await ex.execute(
            intent(
                intent_id="rl-1",
                symbol="BTCUSDT",
                side="BUY",
                position_size_usd=500,
                stop_loss_pct=1,
                take_profit_pct=1,
            )
        )
        second = await ex.execute(
            intent(intent_id="rl-2", symbol="ETHUSDT", side="BUY", position_size_usd=500)
        )
    finally:
        await ex.close()
    assert first.protection is ProtectionState.PROTECTED
    assert second.status is ResultStatus.FILLED, second.error
    assert sample("quantum_exec_rate_limit_paused_seconds_total", reason="http_429") > paused_before
    assert len(orders(tight_sim, type_="MARKET")) == 2


async def test_step_size_error_from_the_exchange_refreshes_the_rules(
    executor: Executor, sim: Simulator
) -> None:
    sim.set_faults(
        {
            "faults": [
                {
                    "kind": "error",
                    "method": "POST",
                    "path": "/fapi/v1/order",
                    "count": 1,
                    "status": 400,
                    "code": -4023,
                    "msg": "Quantity not increased by step size.",
                }
            ]
        }
    )
    refreshed = sample("quantum_exec_exchange_info_refreshes_total", outcome="ok")
    result = await executor.execute(
        intent(intent_id="step-1", symbol="SOLUSDT", side="BUY", position_size_usd=300)
    )
    assert (
        result.status is ResultStatus.REJECTED and result.error is not None and result.error.code == "-4023"
    )
    await wait_for(lambda: sample("quantum_exec_exchange_info_refreshes_total", outcome="ok") > refreshed)


async def test_rules_cache_keeps_the_last_good_copy_when_a_refresh_fails() -> None:
    raw: dict[str, Any] = {
        "rateLimits": [],
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "status": "TRADING",
                "contractType": "PERPETUAL",
                "baseAsset": "BTC",
                "quoteAsset": "USDT",
                "marginAsset": "USDT",
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "556.80",
                        "maxPrice": "4529764",
                        "tickSize": "0.10",
                    },
                    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                ],
            }
        ],
    }
    calls = 0

    async def fetch() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConnectionError("exchange down")
        return raw

    cache = RulesCache(fetch, refresh_s=0.01)
    await cache.load()
    task = asyncio.create_task(cache.run())
    try:
        await wait_for(lambda: calls >= 3)
    finally:
        task.cancel()
    rules = cache.get("BTCUSDT")
    assert rules is not None and rules.tick_size == Decimal("0.10")
    assert cache.loaded
