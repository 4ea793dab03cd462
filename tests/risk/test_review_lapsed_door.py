"""Review of the lapsed door's second drain (risk/store.py transition, c88be17, issue #29).

When the transition's door lapsed while it drained, ``Admissions.revoke`` now revokes nothing
(-1) and the transition closes its door again and drains again; when that second drain ends with
nothing unsettled it goes ahead *without any revocation*. But an entry admitted *before* the first
door closed is still unsettled after the first drain, and it may leave the admitted set during the
second one without ever reaching the exchange: its record lapses (ADMITTED_TTL_MS) while its
instance is paused between admission and send. Main before c88be17 revoked it at the end of the
first drain (the revocation lives 2 x ADMITTED_TTL_MS), so the resumed instance's fence refused
the entry; now nothing refuses it and the entry order leaves after the HALT's event time.
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SIZE, PRICE = Decimal("0.010"), Decimal(60000)
# The second drain lasts DRAIN_DEADLINE_S (10 s): resumed with less than this left on the stuck
# admission's record, the record lapses inside it and the drain ends with nothing unsettled.
RESUME_WITH_LEFT_MS = 8_000

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


async def test_an_admission_older_than_the_door_is_revoked_even_when_the_door_lapsed(
    redis: aioredis.Redis, redis_url: str, unique_names: dict[str, Any]
) -> None:
    names = {**unique_names, "risk_stream": f"{unique_names['intent_stream']}:risk"}
    settings = Settings(**names)
    store = RiskStore(redis, settings)
    gate = RiskGate(store, Limits.from_settings(settings), cast(Gateway, None))
    prefix = settings.key_prefix
    # This instance admits its entry under ACTIVE, then pauses before sending it (a GC stall, a
    # suspended VM, SIGSTOP): its record stays unsettled until it lapses.
    intent = parse_intent({"intent_id": "stuck", "symbol": "BTCUSDT", "side": "BUY", "quantity": str(SIZE)})
    admitted = await gate.admit(intent, key="stuck", reduces=False, quantity=SIZE, price=PRICE, leverage=5)
    assert admitted is False  # admitted, not only because it reduces
    admitted_key = f"{prefix}:risk:admitted"
    score = await redis.zscore(admitted_key, "stuck")
    assert score is not None

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRANSITION, redis_url, orjson.dumps(names).decode(), stdout=subprocess.PIPE
    )
    try:

        async def door_closed() -> bool:
            return int(await redis.zcard(f"{prefix}:risk:closing")) > 0

        await wait_for(door_closed, 20, "the transition to close the door")
        os.kill(child.pid, signal.SIGSTOP)  # the transition stalls past DOOR_TTL_S mid-drain

        async def stuck_nearly_lapsed() -> bool:
            seconds, micros = await redis.time()
            return score - (seconds * 1000 + micros // 1000) < RESUME_WITH_LEFT_MS

        await wait_for(stuck_nearly_lapsed, 40, "the stuck admission's record to near its lapse")
        os.kill(child.pid, signal.SIGCONT)
        assert await asyncio.wait_for(child.wait(), 40) == 0
        assert await redis.hget(store.state_key, "state") == b"HALTED"
        # The paused instance resumes: right before its entry order leaves, its fence
        # (fencing.ensure_owner -> gate.still_admitted) must refuse it: HALTED went ahead without
        # it. The c88be17 loop dropped the revocation, so the order leaves after the HALT.
        revoked = await redis.get(f"{prefix}:risk:revoked:stuck")
        with pytest.raises(IntentRejected):
            await gate.still_admitted("stuck")
            pytest.fail(f"the stuck entry's order leaves after the HALT (revocation: {revoked!r})")
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            await child.wait()
