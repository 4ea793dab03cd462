"""Review of the fence's skipped revocation read (risk/admissions.py REVOKE_FRESH_S, issue #29).

The skip rests on "no revocation of an admission exists until DRAIN_DEADLINE_S after its script
was sent", because the admission was recorded before its transition's door closed. A door lives
DOOR_TTL_S (15 s) in Redis: a transition that stalls past that (a paused process, a GC or CPU
stall, a slow Redis reply) lets admissions in behind it, and revokes them moments later. Before
the skip the fence read that revocation and refused the order; with it the order leaves after
the HALT's event time (the moment the module promises exact for every entry not on the wire).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import orjson
import pytest
from redis import asyncio as aioredis

from quantum_exec.contracts.intent import parse_intent
from quantum_exec.core.errors import IntentRejected
from quantum_exec.core.settings import Settings
from quantum_exec.execution.ports import Gateway
from quantum_exec.risk.gate import RiskGate
from quantum_exec.risk.limits import Limits
from quantum_exec.risk.store import RiskStore
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SIZE, PRICE = Decimal("0.010"), Decimal(60000)

# The transition, in a process of its own (another instance: the operator's HALT, the governor).
_TRANSITION = """
import asyncio, sys, orjson
from redis import asyncio as aioredis
from quantum_exec.core.settings import Settings
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore

async def main() -> None:
    names = orjson.loads(sys.argv[2])
    redis = aioredis.Redis.from_url(sys.argv[1], protocol=2)
    store = RiskStore(redis, Settings(**names))
    print(await store.transition(Request(TradingState.HALTED, "review: halt", "operator:review")), flush=True)
    await redis.aclose()

asyncio.run(main())
"""


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        yield client
    finally:
        await client.aclose()


async def _admit(gate: RiskGate, key: str) -> bool:
    intent = parse_intent({"intent_id": key, "symbol": "BTCUSDT", "side": "BUY", "quantity": str(SIZE)})
    return await gate.admit(intent, key=key, reduces=False, quantity=SIZE, price=PRICE, leverage=5)


async def test_an_admission_let_in_by_an_expired_door_and_revoked_is_refused_at_its_fence(
    redis: aioredis.Redis, redis_url: str, unique_names: dict[str, Any]
) -> None:
    names = {**unique_names, "risk_stream": f"{unique_names['intent_stream']}:risk"}
    settings = Settings(**names)
    store = RiskStore(redis, settings)
    gate = RiskGate(store, Limits.from_settings(settings), cast(Gateway, None))
    prefix = settings.key_prefix
    # An entry admitted elsewhere and never settled (its instance paused, its send timed out):
    # the transition drains its full DRAIN_DEADLINE_S for it.
    other = RiskStore(redis, settings)
    assert (await other.admissions.admit("stuck")) is not None

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRANSITION, redis_url, orjson.dumps(names).decode(), stdout=subprocess.PIPE
    )
    try:

        async def door_closed() -> bool:
            return int(await redis.zcard(f"{prefix}:risk:closing")) > 0

        await wait_for(door_closed, 20, "the transition to close the door")
        os.kill(child.pid, signal.SIGSTOP)  # the transition stalls mid-drain
        # The door's token expires (DOOR_TTL_S): this instance's entry is admitted under ACTIVE.
        assert await _admit(gate, "late") is False
        os.kill(child.pid, signal.SIGCONT)

        async def revoked() -> bool:
            return bool(await redis.exists(f"{prefix}:risk:revoked:late"))

        await wait_for(revoked, 20, "the resumed transition to revoke the late admission")
        assert await asyncio.wait_for(child.wait(), 20) == 0
        state = await redis.hget(store.state_key, "state")
        assert state == b"HALTED"
        # Right before the entry's order leaves (fencing.ensure_owner -> gate.still_admitted):
        # its admission was revoked by a HALT whose event time is already past. Main before the
        # skip read the revocation here and refused the order.
        with pytest.raises(IntentRejected):
            await gate.still_admitted("late")
            pytest.fail("the fence let an entry order leave after the HALT revoked its admission")
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            await child.wait()
