"""Review of the lapsed door's second drain (risk/store.py transition, c88be17, issue #29).

When the transition's door lapsed while it drained, ``Admissions.revoke`` (as c88be17 had it)
revoked nothing (-1) and the transition closed its door again and drained again; when that
second drain ended with nothing unsettled it went ahead *without any revocation*. But an entry
admitted *before* the first door closed is still unsettled after the first drain, and it may
leave the admitted set during the second one without ever reaching the exchange: its record
lapses (ADMITTED_TTL_MS) while its instance is paused between admission and send. Main before
c88be17 revoked it at the end of the first drain (the revocation lives 2 x ADMITTED_TTL_MS), so
the resumed instance's fence refused the entry; with c88be17 nothing refused it and the entry
order left after the HALT's event time. Now the unsettled admissions are revoked always, and a
lapse adds another close, drain and revoke.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.core.errors import IntentRejected
from support.halting import admit, gate_for, reap, risk_names, start_halt
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# The second drain lasts DRAIN_DEADLINE_S (10 s): resumed with less than this left on the stuck
# admission's record, the record lapses inside it and the drain ends with nothing unsettled.
RESUME_WITH_LEFT_MS = 8_000


async def test_an_admission_older_than_the_door_is_revoked_even_when_the_door_lapsed(
    redis: aioredis.Redis, redis_url: str, unique_names: dict[str, Any]
) -> None:
    names = risk_names(unique_names)
    gate, store = gate_for(redis, names)
    prefix = names["key_prefix"]
    # This instance admits its entry under ACTIVE, then pauses before sending it (a GC stall, a
    # suspended VM, SIGSTOP): its record stays unsettled until it lapses.
    assert await admit(gate, "stuck") is False  # admitted, not only because it reduces
    admitted_key = f"{prefix}:risk:admitted"
    score = await redis.zscore(admitted_key, "stuck")
    assert score is not None

    child = await start_halt(redis_url, names)
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
        await reap(child)
