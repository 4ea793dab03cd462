"""A whole service on the simulator as a test drives it: settings, intents in, results, events out."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from redis import asyncio as aioredis

from binance_sim import Simulator
from quantum_exec.app.service import Service
from quantum_exec.contracts import ExecutionResult, encode_intent_fields
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.core.settings import Settings
from support.waiting import wait_for

SIM_KEY = "quantum-sim-key"
SIM_SECRET = "quantum-sim-secret"


class Desk:
    """One test's view: settings on the simulator, a Redis client, and what the service published."""

    def __init__(
        self,
        sim: Simulator,
        redis: aioredis.Redis,
        names: dict[str, Any],
        redis_url: str | None,
        *,
        connection: dict[str, Any] | None = None,
    ) -> None:
        self.sim = sim
        self.redis = redis
        self.names = names
        self.redis_url = redis_url
        # How the services reach Redis: the URL, or other settings (Sentinel).
        self.connection = connection if connection is not None else {"redis_url": redis_url}
        self.services: list[Service] = []

    async def close(self) -> None:
        """Stop every service the desk started, then close its client."""
        for service in self.services:
            await asyncio.wait_for(service.stop(), 30)
        await self.redis.aclose()

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            **self.connection,
            **self.names,
            "binance_base_url": self.sim.base_url,
            "api_key": SIM_KEY,
            "api_secret": SIM_SECRET,
            "block_ms": 100,
            "claim_interval_s": 0.2,
            "order_lookup_interval_s": 0.05,
            "recv_window_ms": 2000,
            "redis_reconnect_max_s": 0.2,
            "account_lease_ttl_s": 1.0,
        }
        values.update(overrides)
        return Settings(**values)

    async def service(self, **overrides: Any) -> Service:
        service = Service(self.settings(**overrides), operations=False)
        self.services.append(service)
        await service.start()
        return service

    async def publish(self, **payload: Any) -> None:
        await self.redis.xadd(self.names["intent_stream"], encode_intent_fields(payload, "test"))  # type: ignore[arg-type]

    async def results(self) -> dict[str, ExecutionResult]:
        rows = await self.redis.xrange(self.names["result_stream"])
        found = [decode_result_fields(fields) for _sid, fields in rows]
        return {r.intent_id or "": r for r in found}

    async def result(self, intent_id: str, timeout_s: float = 20) -> ExecutionResult:
        async def ready() -> bool:
            return intent_id in await self.results()

        await wait_for(ready, timeout_s, f"the result of {intent_id}")
        return (await self.results())[intent_id]

    async def events(self) -> list[dict[str, Any]]:
        rows = await self.redis.xrange(self.names["position_stream"])
        return [json.loads(fields[b"payload"], parse_float=Decimal) for _sid, fields in rows]

    def algo(self, client_algo_id: str) -> dict[str, Any] | None:
        found = [a for a in self.sim.state()["algoOrders"] if a["clientAlgoId"] == client_algo_id]
        return found[-1] if found else None

    def algo_status(self, client_algo_id: str) -> str | None:
        found = self.algo(client_algo_id)
        return str(found["algoStatus"]) if found else None

    def open_algos(self, symbol: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.sim.state()["algoOrders"]
            if a["symbol"] == symbol and a["algoStatus"] in ("NEW", "TRIGGERING", "TRIGGERED")
        ]

    def position(self, symbol: str) -> Decimal:
        rows = [p for p in self.sim.state()["positions"] if p["symbol"] == symbol]
        return sum((Decimal(p["positionAmt"]) for p in rows), Decimal(0))

    def trades_of(self, order_id: int) -> list[dict[str, Any]]:
        return [t for t in self.sim.state()["trades"] if t["orderId"] == order_id]
