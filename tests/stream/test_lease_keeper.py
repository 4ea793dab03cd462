"""The lease is kept while an attempt outlasts its TTL (renewed by the keeper's timer), and nothing
keeps renewing once the attempt is over."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from quantum_exec.contracts import ResultStatus, TradeIntent
from quantum_exec.exchange import fencing
from quantum_exec.execution.run import Attempt

LEASE_TTL_MS = 1000  # the smallest the settings allow: renewed every third of it


async def test_an_attempt_longer_than_the_lease_keeps_it_and_its_keeper_stops_after(
    kit: Any, handler_cls: Any
) -> None:
    recording = handler_cls()
    lease_seen: list[bytes | None] = []

    async def slow(intent: TradeIntent, stream_id: str, received_at: datetime, *, attempt: Attempt) -> Any:
        # Outlive the TTL more than twice, then pass the fence as an order would: Redis is asked
        # (the lease was confirmed long ago) and says it is still ours only if it was renewed.
        await asyncio.sleep(LEASE_TTL_MS / 1000 * 2.5)
        lease_seen.append(await kit.redis.get(f"{kit.names['key_prefix']}:lease:{intent.symbol}"))
        await fencing.ensure_owner("a test order")
        return await recording(intent, stream_id, received_at, attempt=attempt)

    await kit.consumer(slow, lease_ttl_ms=LEASE_TTL_MS, claim_idle_ms=10_000)
    await kit.publish({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 100, "intent_id": "keep-1"})

    [result] = await kit.wait_results(1, timeout_s=20)
    assert result.status is ResultStatus.FILLED and result.error is None
    assert lease_seen and lease_seen[0] is not None  # held past its TTL: renewed meanwhile

    def keepers() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("lease-") and not t.done()]

    await kit.wait_until(lambda: not keepers(), 5, "no renewal left running")
    assert await kit.pending() == 0
