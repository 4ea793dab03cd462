"""Who runs alone after a crash loop (stream/recovery.py): the attempt that decides poison, only it."""

from __future__ import annotations

import asyncio

import pytest

from quantum_exec.stream.recovery import RecoveryGate, deciding
from quantum_exec.stream.store import BeginState, Begun
from support.waiting import happens_within

pytestmark = pytest.mark.timeout(10)


def test_only_the_attempt_whose_death_makes_the_intent_poison_runs_alone() -> None:
    # max_attempts 5: a resume that begins with 4 counted deaths decides; so does the repair.
    assert not deciding(Begun(BeginState.RESUMED, attempts=1), 5)  # after one unclean restart
    assert not deciding(Begun(BeginState.RESUMED, attempts=3), 5)
    assert deciding(Begun(BeginState.RESUMED, attempts=4), 5)
    assert deciding(Begun(BeginState.RESUMED, attempts=5), 5)
    assert not deciding(Begun(BeginState.NEW, attempts=1), 1)  # a first attempt never decides


async def test_attempts_run_side_by_side_and_a_parked_one_holds_nothing() -> None:
    gate = RecoveryGate()
    first = await gate.enter(alone=False)
    second = await asyncio.wait_for(gate.enter(alone=False), 1)  # no waiting behind the first
    first()
    first()  # leaving twice (parked, then ended) counts once
    alone = asyncio.ensure_future(gate.enter(alone=True))
    assert not await happens_within(alone.done, 0.1), "the deciding attempt waits for the one executing"
    second()
    (await asyncio.wait_for(alone, 1))()


async def test_nothing_starts_while_the_deciding_attempt_runs_until_it_parks() -> None:
    gate = RecoveryGate()
    leave_alone = await gate.enter(alone=True)
    other = asyncio.ensure_future(gate.enter(alone=False))
    second_deciding = asyncio.ensure_future(gate.enter(alone=True))
    assert not await happens_within(lambda: other.done() or second_deciding.done(), 0.1)
    leave_alone()  # it parked or ended
    leave_other = await asyncio.wait_for(other, 1)
    assert not await happens_within(second_deciding.done, 0.1), "the next one waits for the other to leave"
    leave_other()
    (await asyncio.wait_for(second_deciding, 1))()


async def test_a_deciding_attempt_cancelled_while_waiting_blocks_nobody() -> None:
    gate = RecoveryGate()
    leave = await gate.enter(alone=False)
    alone = asyncio.ensure_future(gate.enter(alone=True))
    assert not await happens_within(alone.done, 0.05)
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    (await asyncio.wait_for(gate.enter(alone=False), 1))()
    leave()
    (await asyncio.wait_for(gate.enter(alone=True), 1))()
