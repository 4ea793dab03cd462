"""The account's trading states as one table, and what each lets an intent do (pure).

ACTIVE: everything runs. REDUCING: only intents that reduce exposure (CLOSE, reduce-only, an
opposite-side entry no larger than the position); new exposure is refused ``TRADING_REDUCING``.
HALTED: nothing new is sent but CLOSEs (the flatten's own, an operator's): ``TRADING_HALTED``;
working entries end, protective legs stay.

:class:`RiskState` is what Redis keeps (:mod:`.store`): the state, why, who or which limit set it,
a sequence number every transition increments (the compare-and-set of the next one), the flatten
under way, and the UTC day of a daily-loss halt the governor set (resuming needs ``force`` that day).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from quantum_exec.core.errors import QuantumError, ReasonCode


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


# How far each state restricts trading: the governor only ever moves up this scale.
SEVERITY: Final = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
# The refusal of an intent that a state does not admit.
REFUSAL: Final = {
    TradingState.REDUCING: ReasonCode.TRADING_REDUCING,
    TradingState.HALTED: ReasonCode.TRADING_HALTED,
}
# Who a transition names when the governor made it (an operator's names the operator).
GOVERNOR: Final = "governor"


class TransitionRefused(QuantumError):
    """A transition that may not be made; the message says why and what would allow it."""


@dataclass(frozen=True, slots=True)
class RiskState:
    """The account's trading state as kept in Redis (``seq`` 0: never set, ACTIVE)."""

    state: TradingState = TradingState.ACTIVE
    reason: str = ""
    by: str = ""
    since: str = ""
    seq: int = 0
    flatten: str = ""  # the id of the flatten under way ("" none)
    locked_day: str = ""  # a daily-loss HALT of the governor: resuming needs force until the next day
    forced_day: str = ""  # forced out of it: the governor does not act on the day's loss again that day

    def to_fields(self) -> dict[str, str]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "by": self.by,
            "since": self.since,
            "flatten": self.flatten,
            "locked_day": self.locked_day,
            "forced_day": self.forced_day,
        }

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> RiskState:
        if not raw:
            return cls()
        return cls(
            state=TradingState(raw.get("state") or TradingState.ACTIVE.value),
            reason=raw.get("reason", ""),
            by=raw.get("by", ""),
            since=raw.get("since", ""),
            seq=int(raw.get("seq") or 0),
            flatten=raw.get("flatten", ""),
            locked_day=raw.get("locked_day", ""),
            forced_day=raw.get("forced_day", ""),
        )

    def to_json(self) -> dict[str, object]:
        return {**self.to_fields(), "seq": self.seq, "flatten": self.flatten or None}


def admits(state: TradingState, *, close: bool, reduces: bool) -> ReasonCode | None:
    """None when ``state`` lets the intent through, else its refusal's code."""
    if state is TradingState.ACTIVE or close:
        return None
    if state is TradingState.REDUCING and reduces:
        return None
    return REFUSAL[state]


def utc_day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Request:
    """A transition asked for: by an operator (``by`` names them) or by the governor."""

    to: TradingState
    reason: str
    by: str
    flatten: bool = False
    force: bool = False
    lock_day: bool = False  # the governor's daily-loss halt: resuming needs force until the next day


def plan(current: RiskState, request: Request, now: datetime) -> RiskState | None:
    """The state after ``request`` (None: nothing changes), or :class:`TransitionRefused`.

    A flatten asked while one is under way keeps that one (it is exactly once). The governor only
    escalates; an operator may move anywhere, except out of a daily-loss HALT the governor set
    today without ``force``.
    """
    today = utc_day(now)
    if request.by == GOVERNOR and SEVERITY[request.to] < SEVERITY[current.state]:
        raise TransitionRefused(f"the governor never relaxes {current.state} to {request.to}")
    locked = current.state is TradingState.HALTED and current.locked_day == today
    if locked and request.to is not TradingState.HALTED and not request.force:
        raise TransitionRefused(
            f"HALTED by the governor for the daily loss on {today} ({current.reason}): "
            'resuming before the next UTC day needs --force ("force": true)'
        )
    wants_flatten = request.flatten and not current.flatten
    if request.flatten and request.to is not TradingState.HALTED:
        raise TransitionRefused("a flatten comes with HALTED only (nothing may open while it closes)")
    if request.to is current.state and not wants_flatten and not (request.lock_day and not locked):
        return None
    halted = request.to is TradingState.HALTED
    return replace(
        current,
        state=request.to,
        reason=request.reason,
        by=request.by,
        since=now.astimezone(UTC).isoformat(),
        seq=current.seq + 1,
        # Leaving HALTED ends a flatten under way (what it closed stays closed).
        flatten=f"f{current.seq + 1}" if wants_flatten else (current.flatten if halted else ""),
        locked_day=today if request.lock_day else (current.locked_day if halted else ""),
        forced_day=today if locked and request.force else current.forced_day,
    )
