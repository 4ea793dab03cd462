"""The risk gate's admission cost on the order path: ``RiskGate.admit`` (plus the release at the
result) timed on a running service against the simulator, per set of limits.

    PYTHONPATH=services:tests python -m bench.risk_admit [--n 300]

Everything runs in one process and event loop (simulator, Redis client, gate): the figures are the
admission's own round trips (Redis scripts, ``positionRisk`` to a local simulator), not Binance's
latency. What each configuration adds: ``daily loss`` one ``positionRisk`` (the day's unrealized
PnL now), ``gross notional`` a reservation snapshot, one ``positionRisk`` and the reservation
script, and the release at the result.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from binance_sim.server import Simulator
from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.contracts.intent import parse_intent
from support.desk import Desk

CONFIGS: dict[str, dict[str, Any]] = {
    "no limit": {},
    "daily loss": {"risk_max_daily_loss_usd": Decimal(100000)},
    "gross notional": {"risk_max_gross_notional_usd": Decimal(10_000_000)},
    "daily loss + gross + positions": {
        "risk_max_daily_loss_usd": Decimal(100000),
        "risk_max_gross_notional_usd": Decimal(10_000_000),
        "risk_max_open_positions": 50,
    },
}


def names() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:12]
    return {
        "intent_stream": f"bench:{tag}:intent",
        "consumer_group": f"bench:{tag}:group",
        "result_stream": f"bench:{tag}:result",
        "dlq_stream": f"bench:{tag}:dlq",
        "position_stream": f"bench:{tag}:position",
        "key_prefix": f"bench:{tag}:exec",
        "consumer_name": f"bench-{tag}",
        "risk_stream": f"bench:{tag}:risk",
    }


async def measure(url: str, label: str, limits: dict[str, Any], n: int) -> None:
    sim = Simulator()
    await sim.start(host="127.0.0.1", port=0)
    desk = Desk(sim, aioredis.Redis.from_url(url, protocol=2), names(), url)
    try:
        service = await desk.service(**limits)
        assert service.governor is not None
        gate = service.governor.gate
        # The holder's first check has written the day figure the admission compares with.
        await asyncio.sleep(1.5)
        times: list[float] = []
        for i in range(n):
            intent = parse_intent(
                {"intent_id": f"b{i}", "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001"}
            )
            start = time.perf_counter()
            size, price = Decimal("0.001"), Decimal(100000)
            await gate.admit(intent, key=f"b{i}", reduces=False, quantity=size, price=price, leverage=5)
            await gate.settled(f"b{i}")
            await gate.release(f"b{i}")
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        print(
            f"{label:32s} n={n}  median {statistics.median(times):6.2f} ms  "
            f"p95 {times[int(0.95 * (n - 1))]:6.2f} ms  max {times[-1]:6.2f} ms"
        )
    finally:
        await desk.close()
        await sim.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        for label, limits in CONFIGS.items():
            await measure(server.url, label, limits, args.n)


if __name__ == "__main__":
    asyncio.run(main())
