"""How an entry meets the symbol's one-way position (pure: no I/O).

In one-way mode a BUY against a short first reduces the short; only what exceeds it opens a long.
The entry's protective legs must therefore cover what the fill opens, not what it executed, and
the old position's legs must go once that position is gone.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from quantum_exec.exchange.wire import OrderSide

ZERO = Decimal(0)


class Netting(StrEnum):
    """The cases of an intent of quantity q against a signed position p (README table)."""

    FLAT = "flat"
    SAME_SIDE = "same_side"
    # |p| > q: the entry only reduces the opposite position.
    OPPOSITE_SMALLER = "opposite_smaller"
    # |p| == q: the entry closes it.
    OPPOSITE_EQUAL = "opposite_equal"
    # |p| < q: the entry closes it and opens q - |p| on the intent's side.
    OPPOSITE_LARGER = "opposite_larger"


def can_reduce(side: OrderSide, position_amount: Decimal) -> bool:
    """True when an order on ``side`` reduces a one-way position of ``position_amount``."""
    return position_amount > 0 if side is OrderSide.SELL else position_amount < 0


def signed(quantity: Decimal, *, long: bool) -> Decimal:
    """``quantity`` as a change of the signed position (BUY adds, SELL subtracts)."""
    return quantity if long else -quantity


def is_opposite(position: Decimal, *, long: bool) -> bool:
    """True when ``position`` is held on the side opposite to the intent's."""
    return position < 0 if long else position > 0


def only_reduces(position: Decimal, quantity: Decimal, *, long: bool) -> bool:
    """True when an entry of ``quantity`` against ``position`` reduces or closes it and opens nothing."""
    return is_opposite(position, long=long) and quantity <= abs(position)


def netting(position: Decimal, quantity: Decimal, *, long: bool) -> Netting:
    """The case of an entry of ``quantity`` on the intent's side against ``position``."""
    if position == 0:
        return Netting.FLAT
    if not is_opposite(position, long=long):
        return Netting.SAME_SIDE
    held = abs(position)
    if held > quantity:
        return Netting.OPPOSITE_SMALLER
    if held == quantity:
        return Netting.OPPOSITE_EQUAL
    return Netting.OPPOSITE_LARGER


def opened(position: Decimal, executed: Decimal, *, long: bool) -> Decimal:
    """The part of ``executed`` that opens (or adds to) a position on the intent's side.

    That is what new protective legs must cover: all of it when flat or on the same side, only
    what exceeds an opposite position (zero when the entry merely reduces or closes it).
    """
    if not is_opposite(position, long=long):
        return executed
    return max(executed - abs(position), ZERO)
