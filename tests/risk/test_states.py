"""The trading states: what each admits, and the transitions an operator and the governor may make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quantum_exec.core.errors import ReasonCode
from quantum_exec.risk.states import (
    GOVERNOR,
    Request,
    RiskState,
    TradingState,
    TransitionRefused,
    admits,
    plan,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@pytest.mark.parametrize(
    ("state", "close", "reduces", "code"),
    [
        (ACTIVE, False, False, None),
        (REDUCING, False, False, ReasonCode.TRADING_REDUCING),
        (REDUCING, False, True, None),
        (REDUCING, True, False, None),
        (HALTED, False, True, ReasonCode.TRADING_HALTED),
        (HALTED, False, False, ReasonCode.TRADING_HALTED),
        (HALTED, True, False, None),
    ],
)
def test_what_each_state_admits(
    state: TradingState, close: bool, reduces: bool, code: ReasonCode | None
) -> None:
    assert admits(state, close=close, reduces=reduces) == code


def test_a_transition_increments_seq_and_names_who_and_why() -> None:
    after = plan(RiskState(), Request(HALTED, "desk says stop", "operator:ann", flatten=True), NOW)
    assert after is not None
    assert (after.state, after.reason, after.by, after.seq) == (HALTED, "desk says stop", "operator:ann", 1)
    assert after.flatten == "f1" and after.since == NOW.isoformat()
    # The same request again changes nothing: the flatten under way is kept (exactly once).
    assert plan(after, Request(HALTED, "again", "operator:bob", flatten=True), NOW) is None


def test_leaving_halted_ends_the_flatten_and_a_flatten_needs_halted() -> None:
    halted = plan(RiskState(), Request(HALTED, "x", "operator:a", flatten=True), NOW)
    assert halted is not None
    resumed = plan(halted, Request(ACTIVE, "ok", "operator:a"), NOW)
    assert resumed is not None and resumed.flatten == "" and resumed.seq == 2
    with pytest.raises(TransitionRefused, match="HALTED only"):
        plan(RiskState(), Request(REDUCING, "x", "operator:a", flatten=True), NOW)


def test_the_governor_only_escalates() -> None:
    halted = plan(RiskState(), Request(HALTED, "x", "operator:a"), NOW)
    assert halted is not None
    with pytest.raises(TransitionRefused, match="never relaxes"):
        plan(halted, Request(REDUCING, "daily loss", GOVERNOR), NOW)


def test_a_daily_loss_halt_of_the_governor_needs_force_until_the_next_utc_day() -> None:
    locked = plan(RiskState(), Request(HALTED, "daily loss", GOVERNOR, lock_day=True), NOW)
    assert locked is not None and locked.locked_day == "2026-12-06"
    with pytest.raises(TransitionRefused, match="--force"):
        plan(locked, Request(ACTIVE, "resume", "operator:a"), NOW + timedelta(hours=11))
    forced = plan(locked, Request(ACTIVE, "resume", "operator:a", force=True), NOW)
    assert forced is not None and forced.state is ACTIVE and forced.locked_day == ""
    assert forced.forced_day == "2026-12-06"  # the governor leaves the day to the operator
    next_day = plan(locked, Request(ACTIVE, "resume", "operator:a"), NOW + timedelta(hours=12, minutes=1))
    assert next_day is not None and next_day.state is ACTIVE


def test_state_fields_round_trip() -> None:
    state = plan(RiskState(), Request(REDUCING, "r", "operator:a"), NOW)
    assert state is not None
    back = RiskState.from_fields({**state.to_fields(), "seq": str(state.seq)})
    assert back == state
