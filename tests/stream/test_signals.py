"""Plans in Redis on the order path: a dropped connection waits for Redis, never fails the intent.

The real executor on the simulator, plans on a real Redis through a client whose connection
drops on the plan reads (redis-py raises ConnectionError once its own reconnects gave up): the
resumed CLOSE a dropped connection leads to (the lost-writes window) meets it at its first read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.errors import UnknownOutcomeError
from quantum_exec.core.ids import client_order_id
from quantum_exec.execution.executor import Executor, create_executor
from quantum_exec.execution.run import Attempt
from quantum_exec.stream.link import RedisLink
from quantum_exec.stream.signals import RedisPlans
from support.desk import Desk
from support.sim_state import intent, orders, position_amount

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class DroppingRedis(aioredis.Redis):
    """A real client whose connection drops under the next ``drops`` reads of a plan."""

    drops = 0
    plan_reads = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        if name.upper() == "GET" and ":plan:" in str(args[1]):
            self.plan_reads += 1
            if self.drops > 0:
                self.drops -= 1
                await self.connection_pool.disconnect()
                raise RedisConnectionError("Connection closed by server.")
        return await super().execute_command(*args, **options)


@pytest.fixture
async def executor(desk: Desk) -> AsyncIterator[Executor]:
    ex = await create_executor(desk.settings())
    try:
        yield ex
    finally:
        await ex.close()


@pytest.fixture
async def dropping(redis_url: str) -> AsyncIterator[DroppingRedis]:
    client = DroppingRedis.from_url(redis_url, protocol=2)
    try:
        yield client
    finally:
        await client.aclose()


async def _opened(executor: Executor, desk: Desk, intent_id: str) -> None:
    opened = await executor.execute(
        intent(intent_id=intent_id, symbol="BNBUSDT", side="BUY", quantity="1.00")
    )
    assert opened.status is ResultStatus.FILLED, opened.error
    assert position_amount(desk.sim, "BNBUSDT") == Decimal("1.00")


async def test_a_resumed_close_whose_plan_read_meets_a_dropped_connection_still_closes(
    executor: Executor, desk: Desk, dropping: DroppingRedis
) -> None:
    await _opened(executor, desk, "drop-open")
    link = RedisLink(0.2)
    executor.plans = RedisPlans(dropping, desk.settings(), link)
    dropping.drops = 1
    closed = await executor.execute(
        intent(intent_id="drop-close", symbol="BNBUSDT", side="CLOSE"), attempt=Attempt(resume=True)
    )
    assert closed.status is ResultStatus.FILLED, closed.error
    assert dropping.plan_reads == 2, "the plan was not read again once Redis answered"
    [close] = [
        o
        for o in orders(desk.sim, symbol="BNBUSDT")
        if o["clientOrderId"] == client_order_id("drop-close", "close")
    ]
    assert close["status"] == "FILLED" and close["reduceOnly"] is True
    assert closed.order_id == close["orderId"] and closed.executed_quantity == Decimal("1.00")
    assert position_amount(desk.sim, "BNBUSDT") == 0
    assert not link.down and link.lost_at is not None  # the outage was seen, and its end


async def test_redis_away_longer_than_the_lease_leaves_the_close_for_the_next_attempt(
    executor: Executor, desk: Desk, dropping: DroppingRedis
) -> None:
    await _opened(executor, desk, "away-open")
    executor.plans = RedisPlans(dropping, desk.settings(lease_ttl_ms=1000), RedisLink(0.2))
    dropping.drops = 1_000
    close = intent(intent_id="away-close", symbol="BNBUSDT", side="CLOSE")
    # Not a final result: the consumer leaves the entry pending (the handler raised).
    with pytest.raises(UnknownOutcomeError, match="Redis unreachable"):
        await executor.execute(close, attempt=Attempt(resume=True))
    assert dropping.plan_reads > 1
    close_id = client_order_id("away-close", "close")
    assert [o for o in orders(desk.sim, symbol="BNBUSDT") if o["clientOrderId"] == close_id] == []
    dropping.drops = 0
    closed = await executor.execute(close, attempt=Attempt(resume=True))
    assert closed.status is ResultStatus.FILLED, closed.error
    [sent] = [o for o in orders(desk.sim, symbol="BNBUSDT") if o["clientOrderId"] == close_id]
    assert sent["status"] == "FILLED" and position_amount(desk.sim, "BNBUSDT") == 0
