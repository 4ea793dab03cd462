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
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.core.errors import IntentRejected
from support.halting import admit, gate_for, reap, risk_names, start_halt
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def test_an_admission_let_in_by_an_expired_door_and_revoked_is_refused_at_its_fence(
    redis: aioredis.Redis, redis_url: str, unique_names: dict[str, Any]
) -> None:
    names = risk_names(unique_names)
    gate, store = gate_for(redis, names)
    prefix = names["key_prefix"]
    # An entry admitted elsewhere and never settled (its instance paused, its send timed out):
    # the transition drains its full DRAIN_DEADLINE_S for it.
    _other_gate, other = gate_for(redis, names)
    assert (await other.admissions.admit("stuck")) is not None

    child = await start_halt(redis_url, names)
    try:

        async def door_closed() -> bool:
            return int(await redis.zcard(f"{prefix}:risk:closing")) > 0

        await wait_for(door_closed, 20, "the transition to close the door")
        os.kill(child.pid, signal.SIGSTOP)  # the transition stalls mid-drain
        # The door's token expires (DOOR_TTL_S): this instance's entry is admitted under ACTIVE.
        assert await admit(gate, "late") is False
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
        await reap(child)
