"""Regressions for bugs the reliability suite found, each pinned deterministically.

A process that dies leaves its last request inside the exchange: Binance still executes a request
until ``timestamp + recvWindow``. The instance that resumes the intent must not take "not found
yet" for "absent" before that moment, or the late request and its own re-placement both execute.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from binance_sim import SimConfig, Simulator
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.settings import Settings
from quantum_exec.execution.executor import Executor, create_executor
from support.sim_state import algo_orders, intent, orders, position_amount

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(60)]

KEY, SECRET = "rel-regress-key", "rel-regress-secret"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(api_key=KEY, api_secret=SECRET))
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def _executor(sim: Simulator) -> Executor:
    settings = Settings(
        binance_base_url=sim.base_url,
        api_key=KEY,
        api_secret=SECRET,
        metrics_port=0,
        order_lookup_interval_s=0.05,
        recv_window_ms=2000,
    )
    return await create_executor(settings)


async def _die_during(sim: Simulator, path: str, payload: dict[str, Any]) -> None:
    """Start executing on a first executor and 'kill' it while ``path`` is inside the exchange."""
    sim.set_faults(faults=[{"kind": "latency", "ms": 800, "method": "POST", "path": path, "count": 1}])
    first = await _executor(sim)
    task = asyncio.create_task(first.execute(intent(**payload)))
    deadline = asyncio.get_running_loop().time() + 10
    # wait until the request is inside the exchange (the latency rule was consumed)
    while sim.state()["faults"]["faults"]:
        assert asyncio.get_running_loop().time() < deadline, "request never reached the exchange"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.close()


async def _until_idle(sim: Simulator, timeout_s: float = 10.0) -> None:
    """Wait until the simulator is handling no request (a dead attempt's order has been processed)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while sim.state()["requestsInProgress"]:
        assert asyncio.get_running_loop().time() < deadline, "a request is still inside the simulator"
        await asyncio.sleep(0.01)


async def test_resume_while_the_dead_entry_request_is_still_in_the_exchange(sim: Simulator) -> None:
    payload = {
        "intent_id": "late-entry",
        "symbol": "ETHUSDT",
        "side": "BUY",
        "position_size_usd": 400,
        "stop_loss_pct": 2,
        "take_profit_pct": 2,
    }
    await _die_during(sim, "/fapi/v1/order", payload)
    second = await _executor(sim)
    try:
        result = await second.execute(intent(**payload), resume=True)
    finally:
        await second.close()
    await _until_idle(sim)  # the dead request, if still inside the exchange, has landed
    entries = [o for o in orders(sim) if o["clientOrderId"] == client_order_id("late-entry", "entry")]
    assert len(entries) == 1, entries
    assert result.status is ResultStatus.FILLED and result.order_id == entries[0]["orderId"]
    assert result.protection is ProtectionState.PROTECTED
    assert position_amount(sim, "ETHUSDT") == result.executed_quantity


async def test_resume_while_the_dead_stop_request_is_still_in_the_exchange(sim: Simulator) -> None:
    payload = {
        "intent_id": "late-stop",
        "symbol": "SOLUSDT",
        "side": "SELL",
        "position_size_usd": 400,
        "stop_loss_pct": 2,
        "take_profit_pct": 3,
    }
    await _die_during(sim, "/fapi/v1/algoOrder", payload)
    second = await _executor(sim)
    try:
        result = await second.execute(intent(**payload), resume=True)
        assert result.protection is ProtectionState.PROTECTED
        # the next intent on the symbol closes the position and cancels its protection
        closed = await second.execute(intent(intent_id="late-stop-close", symbol="SOLUSDT", side="CLOSE"))
    finally:
        await second.close()
    assert closed.status is ResultStatus.FILLED
    await _until_idle(sim)  # the dead request, if still inside the exchange, has landed
    assert position_amount(sim, "SOLUSDT") == 0
    assert algo_orders(sim, symbol="SOLUSDT", status="NEW") == []  # nothing armed on a flat symbol


async def test_poisoned_intent_whose_earlier_attempt_began_is_reported_unprotected(
    redis_url: str, unique_names: dict[str, Any]
) -> None:
    # Killed in 5 attempts mid-execution and again during the one repair: the intent is poison,
    # but the attempts may have filled the entry; the result must not say "not_requested" over a
    # possibly naked position.
    import redis.asyncio as aioredis

    from quantum_exec.contracts import decode_result_fields, encode_intent_fields
    from quantum_exec.stream.consumer import IntentConsumer

    settings = Settings(
        redis_url=redis_url,
        **unique_names,
        max_attempts=5,
        block_ms=100,
        claim_idle_ms=1000,
        claim_interval_s=0.1,
    )
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        stream, group = unique_names["intent_stream"], unique_names["consumer_group"]
        await client.xgroup_create(stream, group, id="0", mkstream=True)
        payload = {"intent_id": "poison-began", "symbol": "ETHUSDT", "side": "BUY", "quantity": 1}
        await client.xadd(stream, encode_intent_fields(payload, "test"))
        for _ in range(2):  # two deliveries to the (dead) consumer itself
            await client.xreadgroup(group, settings.consumer_name, {stream: "0" if _ else ">"})
        await client.hset(
            f"{unique_names['key_prefix']}:idem:poison-began",
            mapping={"state": "in_flight", "attempts": 5, "repair": 1},
        )

        async def never(*_args: Any, **_kw: Any) -> Any:
            raise AssertionError("a poison entry is not executed")

        consumer = IntentConsumer(client, settings, never)
        await consumer.start()
        try:
            deadline = asyncio.get_running_loop().time() + 15
            while not await client.xlen(unique_names["result_stream"]):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
        finally:
            await consumer.stop()
        [(_sid, fields)] = await client.xrange(unique_names["result_stream"])
        result = decode_result_fields(fields)
        assert result.error is not None and result.error.code == "POISON_MESSAGE"
        assert result.protection is ProtectionState.UNPROTECTED
    finally:
        await client.aclose()
