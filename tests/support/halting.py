"""A risk gate on the test's Redis, an entry admitted through it, and a HALT run in a process of
its own (another instance: the operator's, the governor's) that a test can pause with SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from decimal import Decimal
from typing import Any, cast

import orjson
from redis import asyncio as aioredis

from quantum_exec.contracts.intent import parse_intent
from quantum_exec.core.settings import Settings
from quantum_exec.execution.ports import Gateway
from quantum_exec.risk.gate import RiskGate
from quantum_exec.risk.limits import Limits
from quantum_exec.risk.store import RiskStore

SIZE, PRICE = Decimal("0.010"), Decimal(60000)

_HALT = """
import asyncio, sys, orjson
from redis import asyncio as aioredis
from quantum_exec.core.settings import Settings
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore

async def main() -> None:
    names = orjson.loads(sys.argv[2])
    # No read timeout: the test stops this process (SIGSTOP) for longer than redis-py's default
    # 5 s, maybe while a reply is due; resumed, that read must go on, not time out.
    redis = aioredis.Redis.from_url(sys.argv[1], protocol=2, socket_timeout=None)
    store = RiskStore(redis, Settings(**names))
    print(await store.transition(Request(TradingState.HALTED, "review: halt", "operator:review")), flush=True)
    await redis.aclose()

asyncio.run(main())
"""


def risk_names(unique_names: dict[str, Any]) -> dict[str, Any]:
    return {**unique_names, "risk_stream": f"{unique_names['intent_stream']}:risk"}


def gate_for(redis: aioredis.Redis, names: dict[str, Any]) -> tuple[RiskGate, RiskStore]:
    """A gate with no limit on (it never asks the exchange) and its store."""
    settings = Settings(**names)
    store = RiskStore(redis, settings)
    return RiskGate(store, Limits.from_settings(settings), cast(Gateway, None)), store


async def admit(gate: RiskGate, key: str) -> bool:
    """Admit a BTCUSDT entry under ``key``; what the gate says (False: admitted as adding)."""
    intent = parse_intent({"intent_id": key, "symbol": "BTCUSDT", "side": "BUY", "quantity": str(SIZE)})
    return await gate.admit(intent, key=key, reduces=False, quantity=SIZE, price=PRICE, leverage=5)


async def start_halt(redis_url: str, names: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HALT, redis_url, orjson.dumps(names).decode(), stdout=subprocess.PIPE
    )


async def reap(child: asyncio.subprocess.Process) -> None:
    """The HALT's process gone, paused or not (a test's ``finally``)."""
    if child.returncode is None:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        await child.wait()
