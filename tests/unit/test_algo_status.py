"""The algo-order lifecycle table: what each status means for us and where Binance can move it."""

from __future__ import annotations

import pytest

from quantum_exec.exchange.algo_status import LIFECYCLE, AlgoStatus

S = AlgoStatus

# status: (armed, fired, has its order, placed, failed, final)
MEANINGS = {
    S.NEW: (True, False, False, True, False, False),
    S.TRIGGERING: (False, True, False, True, False, False),
    S.TRIGGERED: (False, True, True, True, False, False),
    S.FINISHED: (False, True, True, True, False, True),
    S.CANCELED: (False, False, False, False, True, True),
    S.REJECTED: (False, False, False, False, True, True),
    S.EXPIRED: (False, False, False, False, True, True),
}

# Where Binance can take an order from each status, in one or more steps.
REACHABLE = {
    S.NEW: {S.TRIGGERING, S.TRIGGERED, S.FINISHED, S.CANCELED, S.REJECTED, S.EXPIRED},
    S.TRIGGERING: {S.TRIGGERED, S.FINISHED, S.REJECTED, S.EXPIRED},
    S.TRIGGERED: {S.FINISHED},
    S.FINISHED: set(),
    S.CANCELED: set(),
    S.REJECTED: set(),
    S.EXPIRED: set(),
}


def test_every_status_binance_sends_is_in_the_table() -> None:
    assert set(LIFECYCLE) == set(AlgoStatus) == set(MEANINGS) == set(REACHABLE)
    assert {s.value for s in AlgoStatus} == {
        "NEW",
        "TRIGGERING",
        "TRIGGERED",
        "FINISHED",
        "CANCELED",
        "REJECTED",
        "EXPIRED",
    }


@pytest.mark.parametrize(("status", "meaning"), MEANINGS.items(), ids=[s.value for s in MEANINGS])
def test_what_each_status_means_for_us(
    status: AlgoStatus, meaning: tuple[bool, bool, bool, bool, bool, bool]
) -> None:
    got = (
        status.is_armed,
        status.has_fired,
        status.has_order,
        status.is_placed,
        status.is_failed,
        status.is_final,
    )
    assert got == meaning


@pytest.mark.parametrize("status", list(AlgoStatus), ids=[s.value for s in AlgoStatus])
def test_the_moves_binance_allows(status: AlgoStatus) -> None:
    assert {later for later in AlgoStatus if status.may_become(later)} == REACHABLE[status]


def test_triggering_is_followed_never_taken_for_an_untriggered_end() -> None:
    # -2011 to a cancel while TRIGGERING: an order is coming, so the entry is neither armed nor over.
    assert S.TRIGGERING.has_fired and not S.TRIGGERING.is_final and not S.TRIGGERING.is_armed


def test_a_rejected_leg_never_counts_as_placed() -> None:
    assert not S.REJECTED.is_placed and S.REJECTED.is_failed
    assert not S.NEW.may_become(S.NEW)  # nothing goes back to NEW once it left it
