"""An admission on the order path costs one Redis round trip (the script that reads the state and
records the admission under it: risk/admissions.py); its settle leaves off the order path, with the
next admission's script or on its own within moments; a restricting transition still waits for
every admitted entry, and never reports done while one is unsettled."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.core.errors import IntentRejected
from quantum_exec.risk import admissions
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.halting import admit, gate_for, risk_names
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Counted:
    """Every command the client sends (a pipeline counts as one), by name."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.sent: list[str] = []
        original, pipeline = redis.execute_command, redis.pipeline

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.sent.append(str(args[0]))
            return await original(*args, **kwargs)

        def piped(*args: Any, **kwargs: Any) -> Any:
            self.sent.append("pipeline")
            return pipeline(*args, **kwargs)

        redis.execute_command = counting  # type: ignore[method-assign]
        redis.pipeline = piped  # type: ignore[method-assign]


async def _admitted(redis: aioredis.Redis, store: RiskStore) -> dict[str, float]:
    rows = await redis.zrange(f"{store.state_key.removesuffix(':state')}:admitted", 0, -1, withscores=True)
    return {(k.decode() if isinstance(k, bytes) else k): s for k, s in rows}


async def test_an_admission_is_one_round_trip_and_its_settle_waits_for_none(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    gate, store = gate_for(redis, risk_names(unique_names))
    await admit(gate, "warm-up")  # the scripts loaded once (a fresh Redis answers NOSCRIPT first)
    await gate.settled("warm-up")
    await store.admissions.flush()
    counted = Counted(redis)
    assert await admit(gate, "k1") is False
    assert counted.sent == ["EVALSHA"]  # state, limits, day figures and the record: one script
    assert list(await _admitted(redis, store)) == ["k1"]
    del counted.sent[:]
    await gate.settled("k1")
    assert counted.sent == []  # the entry goes on without waiting for Redis
    # The next admission's script carries the settle: still one round trip each.
    assert await admit(gate, "k2") is False
    assert counted.sent == ["EVALSHA"]
    assert list(await _admitted(redis, store)) == ["k2"]
    # With no admission to carry it, the settle leaves on its own.
    await gate.settled("k2")

    async def none_left() -> bool:
        return await store.admissions.unsettled() == 0

    await wait_for(none_left, 5, "the settle sent on its own")
    await gate.release("k1")
    await gate.release("k2")


async def test_a_late_settle_never_removes_a_newer_admission_of_the_same_key(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    gate, store = gate_for(redis, risk_names(unique_names))
    await admit(gate, "same")
    first = (await _admitted(redis, store))["same"]
    await gate.settled("same")  # not sent yet: the next admission carries it...
    await admit(gate, "same")  # ...and records the key again (a TWAP's next child)
    again = await _admitted(redis, store)
    assert list(again) == ["same"] and again["same"] > first
    # A settle of the first record that reaches Redis after the second was recorded removes nothing.
    store.admissions._settles += ["same", str(int(first))]
    await store.admissions.flush()
    assert list(await _admitted(redis, store)) == ["same"]
    await gate.settled("same")
    await store.admissions.flush()
    assert await _admitted(redis, store) == {}


async def test_a_refused_entry_releases_its_record(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    gate, store = gate_for(redis, risk_names(unique_names))
    assert await store.transition(Request(TradingState.HALTED, "test: halted", "operator:test")) is not None
    with pytest.raises(IntentRejected) as refused:
        await admit(gate, "refused")
    assert refused.value.code == "TRADING_HALTED"
    await store.admissions.flush()
    assert await _admitted(redis, store) == {}


async def test_a_restricting_transition_waits_for_an_admitted_entry_and_holds_back_the_next(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    gate, store = gate_for(redis, risk_names(unique_names))
    assert await admit(gate, "admitted") is False
    polls: list[int] = []
    unsettled = store.admissions.unsettled

    async def counting_polls() -> int:
        left = await unsettled()
        polls.append(left)
        return left

    store.admissions.unsettled = counting_polls  # type: ignore[method-assign]
    order: list[str] = []

    async def halt() -> Any:
        done = await store.transition(Request(TradingState.HALTED, "test: the moment", "operator:test"))
        order.append("transition done")
        return done

    transition = asyncio.create_task(halt())
    await wait_for(lambda: len(polls) >= 5, 10, "the transition draining")
    assert not transition.done() and set(polls) == {1}  # it waits for the admitted entry
    # An entry arriving now waits at the closed door, and is decided on the state that follows.
    later = asyncio.create_task(admit(gate, "later"))
    await wait_for(lambda: len(polls) >= 10, 10, "the transition still draining")
    assert not transition.done() and not later.done()
    order.append("settled")
    await gate.settled("admitted")
    assert await transition is not None
    assert order == ["settled", "transition done"]
    with pytest.raises(IntentRejected) as refused:
        await later
    assert refused.value.code == "TRADING_HALTED"
    rows = await redis.xrange(f"{unique_names['intent_stream']}:risk")
    [event] = [json.loads(fields[b"payload"]) for _sid, fields in rows]
    assert event["to"] == "HALTED" and event["drain"]["unsettled"] == 0
    await store.admissions.flush()
    assert await _admitted(redis, store) == {}


async def test_the_fence_of_a_fresh_admission_reads_no_revocation_and_a_later_one_does(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No revocation can exist within REVOKE_FRESH_S of the admission's script (a transition
    drains DRAIN_DEADLINE_S first): the fence asks Redis only after it, or without a local record."""
    monkeypatch.setattr(admissions, "REVOKE_FRESH_S", 1.0, raising=False)
    gate, store = gate_for(redis, risk_names(unique_names))
    await admit(gate, "warm-up")
    await gate.settled("warm-up")
    await store.admissions.flush()
    counted = Counted(redis)
    admitted_at = time.monotonic()
    assert await admit(gate, "fresh") is False
    del counted.sent[:]
    await gate.still_admitted("fresh")
    assert counted.sent == []  # the entry order leaves without a round trip
    # A transition that went ahead without the entry (its drain ran out) revokes it: once the
    # window passed, the fence reads the revocation and refuses.
    door = await store.admissions.close_door()
    assert await store.admissions.revoke("HALTED|test: drained out", door) == (1, False)
    await store.admissions.open_door(door)
    await wait_for(lambda: time.monotonic() - admitted_at > 1.0, 5, "the freshness window passed")
    del counted.sent[:]
    with pytest.raises(IntentRejected) as refused:
        await gate.still_admitted("fresh")
    assert refused.value.code == "TRADING_HALTED"
    assert counted.sent == ["GET"]
    # Another instance (a resumed attempt: no local record of the admission) reads it at once.
    other, _store = gate_for(redis, risk_names(unique_names))
    del counted.sent[:]
    with pytest.raises(IntentRejected):
        await other.still_admitted("fresh")
    assert counted.sent == ["GET"]
    # Settled or released here, the record is gone: the fence reads Redis again.
    await gate.release("fresh")
    await admit(gate, "released")
    await gate.release("released")
    del counted.sent[:]
    await gate.still_admitted("released")
    assert counted.sent == ["GET"]
