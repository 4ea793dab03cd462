"""The Algo Order API's lifecycle as one table: the statuses, the moves Binance makes between
them, and what each status means for us.

``NEW -> TRIGGERING -> TRIGGERED -> FINISHED``; ``CANCELED``, ``REJECTED`` and ``EXPIRED`` end an
order that placed nothing. An order can sit in TRIGGERING, where a cancel answers ``-2011``: the
trigger was crossed and the exchange is placing the order (``actualOrderId``) that stands behind
it, so it must be followed, never taken for "ended untriggered". A protective leg counts as placed
in NEW or any later status that is not a failure; a failed one (CANCELED, REJECTED, EXPIRED)
protects nothing and is never reported as standing.

Every module that asks "is this algo order armed / fired / placed / over" asks this table (style
16), never compares the status strings itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class AlgoStatus(StrEnum):
    """An algo order's ``algoStatus`` (``X`` of ALGO_UPDATE)."""

    NEW = "NEW"
    TRIGGERING = "TRIGGERING"
    TRIGGERED = "TRIGGERED"
    FINISHED = "FINISHED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_armed(self) -> bool:
        """Waiting for its trigger: the only status a cancel can still stop (elsewhere -2011)."""
        return LIFECYCLE[self].armed

    @property
    def has_fired(self) -> bool:
        """The trigger was crossed: an order is being or was placed behind it; follow that order."""
        return LIFECYCLE[self].fired

    @property
    def has_order(self) -> bool:
        """The order the trigger placed exists (its id is ``actualOrderId``)."""
        return LIFECYCLE[self].order

    @property
    def is_placed(self) -> bool:
        """Counts as placed: armed or fired, not a failure."""
        return LIFECYCLE[self].armed or LIFECYCLE[self].fired

    @property
    def is_failed(self) -> bool:
        """Ended without placing an order (cancelled, rejected, expired): it protects nothing."""
        return self.is_final and not LIFECYCLE[self].fired

    @property
    def is_final(self) -> bool:
        """Will not change any more (FINISHED, CANCELED, REJECTED, EXPIRED)."""
        return not LIFECYCLE[self].next

    def may_become(self, later: AlgoStatus) -> bool:
        """True when Binance can move an order from this status to ``later`` (in one or more steps)."""
        seen: set[AlgoStatus] = set()
        todo = set(LIFECYCLE[self].next)
        while todo:
            status = todo.pop()
            if status is later:
                return True
            seen.add(status)
            todo |= LIFECYCLE[status].next - seen
        return False


@dataclass(frozen=True, slots=True)
class Stage:
    """What one status means for us, and the statuses Binance moves it to directly."""

    armed: bool  # waiting for the trigger
    fired: bool  # the trigger was crossed: an order is being or was placed
    order: bool  # that order exists (actualOrderId)
    next: frozenset[AlgoStatus]


_S = AlgoStatus
LIFECYCLE: Final[dict[AlgoStatus, Stage]] = {
    # Armed; cancelled by us or the exchange (liquidation, closePosition after the position went),
    # expired (goodTillDate), or crossed.
    _S.NEW: Stage(True, False, False, frozenset({_S.TRIGGERING, _S.CANCELED, _S.EXPIRED, _S.REJECTED})),
    # Crossed, the order being placed: it stands (TRIGGERED), or cannot be placed (a reduce-only
    # trigger with nothing to reduce, no margin: REJECTED; price protection: EXPIRED).
    _S.TRIGGERING: Stage(False, True, False, frozenset({_S.TRIGGERED, _S.REJECTED, _S.EXPIRED})),
    # The order stands; FINISHED once it is final (filled, or cancelled/expired by the book).
    _S.TRIGGERED: Stage(False, True, True, frozenset({_S.FINISHED})),
    _S.FINISHED: Stage(False, True, True, frozenset()),
    _S.CANCELED: Stage(False, False, False, frozenset()),
    _S.REJECTED: Stage(False, False, False, frozenset()),
    _S.EXPIRED: Stage(False, False, False, frozenset()),
}
