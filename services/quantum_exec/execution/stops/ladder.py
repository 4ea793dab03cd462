"""A take-profit ladder's levels: their triggers and quantities (pure).

Each level closes ``size_pct`` of the position, floored to the MARKET_LOT_SIZE step (a
TAKE_PROFIT_MARKET is a market order once triggered); the rounding remainder goes on the last
level, so the levels together close exactly their share (all of the position when the sizes sum to
100 %). A level that would fall below minQty merges into the next one (the last one into the level
before it), so no level is refused by the exchange and none is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Context, Decimal
from typing import Final

from quantum_exec.contracts.stops import TakeProfitLevel
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.rules import SymbolRules, floor_to_step, fmt, round_trigger, trigger_from_pct

_HUNDRED: Final = Decimal(100)
_FLOOR: Final = Context(prec=60, rounding=ROUND_FLOOR)


@dataclass(frozen=True, slots=True)
class Rung:
    """One level as placed: its number in the intent's ladder (1-based), trigger and quantity."""

    level: int
    trigger: Decimal
    quantity: Decimal


def level_triggers(
    rules: SymbolRules, levels: Sequence[TakeProfitLevel], *, long: bool, entry: Decimal
) -> list[Decimal]:
    """Each level's trigger, rounded to the tick on the safe side (percentages from ``entry``)."""
    out: list[Decimal] = []
    for level in levels:
        raw = level.price
        if raw is None:
            assert level.pct is not None
            raw = trigger_from_pct(entry, level.pct, long=long, kind="TP")
        out.append(round_trigger(rules, raw, long=long, kind="TP"))
    return out


def split_sizes(
    rules: SymbolRules, total: Decimal, size_pcts: Sequence[Decimal], *, target: Decimal | None = None
) -> list[tuple[int, Decimal]]:
    """The quantity of each level of a ``total`` position as ``(index, quantity)``, levels that
    merged into a neighbour left out (see the module docstring); ``target``: what the levels close
    together (default: their share of ``total``, all of it at 100 %)."""
    if not size_pcts:
        return []
    step, min_qty = rules.market_step_size, rules.market_min_qty
    share = sum(size_pcts, Decimal(0))
    if target is None:
        target = (
            total
            if share >= _HUNDRED
            else floor_to_step(_FLOOR.divide(_FLOOR.multiply(total, share), _HUNDRED), step)
        )
    sizes = [
        floor_to_step(_FLOOR.divide(_FLOOR.multiply(total, pct), _HUNDRED), step) for pct in size_pcts[:-1]
    ]
    sizes.append(target - sum(sizes, Decimal(0)))
    return _merged(sizes, min_qty)


def _merged(sizes: Sequence[Decimal], min_qty: Decimal) -> list[tuple[int, Decimal]]:
    """``sizes`` as ``(index, quantity)``, one below minQty merged into the next (the last into the
    one before it), empty ones left out."""
    kept: list[tuple[int, Decimal]] = []
    carry = Decimal(0)
    for index, size in enumerate(sizes):
        size += carry
        if (size <= 0 or size < min_qty) and index < len(sizes) - 1:
            carry = size
            continue
        carry = Decimal(0)
        kept.append((index, size))
    if len(kept) > 1 and (kept[-1][1] <= 0 or kept[-1][1] < min_qty):
        last = kept.pop()
        index, size = kept.pop()
        kept.append((index, size + last[1]))
    return [(index, size) for index, size in kept if size > 0]


def ladder_too_small(
    rules: SymbolRules, levels: Sequence[TakeProfitLevel], total: Decimal
) -> IntentRejected | None:
    """``QTY_BELOW_MIN`` naming the levels and minQty when the ladder of a ``total`` position plans
    to nothing (every level below minQty, no level left to merge into), else None."""
    if not levels or split_sizes(rules, total, [level.size_pct for level in levels]):
        return None
    shares = ", ".join(f"level {n} {fmt(level.size_pct)} %" for n, level in enumerate(levels, 1))
    return IntentRejected(
        ReasonCode.QTY_BELOW_MIN,
        f"take_profits ({shares} of {fmt(total)}) below minQty {fmt(rules.market_min_qty)} for "
        f"{rules.symbol} even merged into one level: no take-profit could be placed",
    )


def check_ladder_sizes(rules: SymbolRules, levels: Sequence[TakeProfitLevel], total: Decimal) -> None:
    """Raise :func:`ladder_too_small`'s refusal (before any order is sent)."""
    refusal = ladder_too_small(rules, levels, total)
    if refusal is not None:
        raise refusal


def plan_ladder(
    rules: SymbolRules,
    levels: Sequence[TakeProfitLevel],
    total: Decimal,
    *,
    long: bool,
    entry: Decimal,
) -> list[Rung]:
    """The ladder's legs for a ``total`` position entered at ``entry``."""
    triggers = level_triggers(rules, levels, long=long, entry=entry)
    return [
        Rung(index + 1, triggers[index], quantity)
        for index, quantity in split_sizes(rules, total, [level.size_pct for level in levels])
    ]


def shrink_sizes(
    quantities: Sequence[Decimal], remaining: Decimal, rules: SymbolRules
) -> list[tuple[int, Decimal]]:
    """What each of ``quantities`` keeps when what they cover shrinks to ``remaining`` (never more
    than they held), as ``(index, quantity)``: each its share, floored to the step, the remainder on
    the last; one that would fall below minQty merged into a neighbour and left out."""
    held = sum(quantities, Decimal(0))
    if held <= 0:
        return []
    covered = min(held, remaining)
    step = rules.market_step_size
    # Each its exact share (quantity x covered / held), floored to the step: through a rounded
    # percentage a share of exactly 0.002 came out 0.0019999... and was floored a whole step below.
    sizes = [floor_to_step(_FLOOR.divide(_FLOOR.multiply(q, covered), held), step) for q in quantities[:-1]]
    sizes.append(covered - sum(sizes, Decimal(0)))
    return _merged(sizes, rules.market_min_qty)


def shrink(rungs: Sequence[Rung], remaining: Decimal, rules: SymbolRules) -> list[Rung]:
    """The ladder's remaining levels for a position that shrank to ``remaining`` (a partial close):
    each keeps its share of what the levels held, floored to the step, the remainder on the last."""
    sizes = shrink_sizes([rung.quantity for rung in rungs], remaining, rules)
    return [Rung(rungs[index].level, rungs[index].trigger, quantity) for index, quantity in sizes]


def shrink_ladders(
    ladders: Sequence[Sequence[Decimal]], remaining: Decimal, rules: SymbolRules
) -> list[dict[int, Decimal]]:
    """Several ladders on one position (a pyramid's, one per entry), each given as its levels'
    quantities, shrunk each on its own: a ladder keeps its share of ``remaining`` (in proportion to
    what it held, the remainder on the last ladder), and its levels their shares of that. Per
    ladder, ``{index: quantity}`` of the levels kept (a level missing merged into a neighbour)."""
    held = [sum(ladder, Decimal(0)) for ladder in ladders]
    shares = dict(shrink_sizes(held, remaining, rules))
    return [
        dict(shrink_sizes(ladder, shares[index], rules)) if index in shares else {}
        for index, ladder in enumerate(ladders)
    ]
