"""The child orders of a sliced entry or close: how many, how much each, when each is due (pure).

Two things slice an order:

- a TWAP (``execution: {"algo": "twap", "slices": N, "interval_s": S}``): slice ``i`` is due
  ``(i - 1) * S`` after the start and its quantity is ``floor(total * i / N) - floor(total * (i - 1)
  / N)`` to the step, so the rounding drift is carried and the slices add up to the total exactly;
  a slice below minQty or the minimum notional merges into the next one (the last into the one
  before);
- MARKET_LOT_SIZE maxQty: a slice (or a plain MARKET entry or CLOSE) above it is sent as several
  children due at the same time, balanced to the step (``240.001`` with maxQty 120 is ``80.001 +
  80 + 80``, never ``120 + 120 + 0.001``, which would fall below minQty or the minimum notional).

Children are numbered 1..N in the order they are sent; the number is part of their client id
(:func:`quantum_exec.core.ids.client_order_id`). The plan is written to Redis before its first child is
sent, so a restart resumes the same children with the same numbers, at the same times, even when
the mark price (and with it a notional's quantity) has moved since.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import orjson

from quantum_exec.contracts.fields import Twap
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.ids import MAX_CHILDREN
from quantum_exec.core.rules import SymbolRules, floor_to_step, fmt


@dataclass(frozen=True, slots=True)
class Child:
    """One child order: its number (1-based, in its client id), quantity and when it is due."""

    number: int
    quantity: Decimal
    due_s: float  # seconds after the plan's start


@dataclass(frozen=True, slots=True)
class Plan:
    """The children of one intent's entry or close, and when the first was due (epoch seconds)."""

    children: tuple[Child, ...]
    started_at: float
    twap: bool = False
    side: str = ""  # BUY or SELL: a resumed close sends the same side whatever the position is now
    # Rebuilt from the children found on the exchange after the saved plan was lost (a failover
    # that dropped acknowledged writes): only those children, none sent after them.
    recovered: bool = False

    @property
    def total(self) -> Decimal:
        return sum((c.quantity for c in self.children), Decimal(0))

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "started_at": self.started_at,
                "twap": self.twap,
                "side": self.side,
                "recovered": self.recovered,
                "children": [[c.number, str(c.quantity), c.due_s] for c in self.children],
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Plan:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            children=tuple(Child(int(n), Decimal(q), float(d)) for n, q, d in data["children"]),
            started_at=float(data["started_at"]),
            twap=bool(data.get("twap", False)),
            side=str(data.get("side", "")),
            recovered=bool(data.get("recovered", False)),
        )


def split_max(quantity: Decimal, max_qty: Decimal, step: Decimal) -> list[Decimal]:
    """``quantity`` in the fewest parts of at most ``max_qty``, balanced to the step, largest first."""
    if max_qty <= 0 or quantity <= max_qty:
        return [quantity]
    parts = (quantity / max_qty).to_integral_value(ROUND_CEILING)
    base = floor_to_step(quantity / parts, step)
    extra_steps = int((quantity - base * parts) / step)
    return [base + step if i < extra_steps else base for i in range(int(parts))]


def twap_quantities(
    rules: SymbolRules, total: Decimal, slices: int, price: Decimal
) -> list[tuple[int, Decimal]]:
    """The TWAP's slices as (slice number, quantity) (see the module docstring); the quantities sum
    to ``total`` exactly. A merged slice is absent: its quantity went to the next one."""
    step = rules.market_step_size
    out: list[tuple[int, Decimal]] = []
    before = Decimal(0)
    carried = Decimal(0)
    for i in range(1, slices + 1):
        upto = total if i == slices else floor_to_step(total * i / slices, step)
        quantity = upto - before + carried
        before = upto
        if quantity < rules.market_min_qty or quantity * price < rules.min_notional:
            carried = quantity
            continue
        out.append((i, quantity))
        carried = Decimal(0)
    if carried:
        if out:
            out[-1] = (out[-1][0], out[-1][1] + carried)
        else:
            out.append((slices, carried))
    return out


def plan_children(
    rules: SymbolRules, total: Decimal, price: Decimal, twap: Twap | None, started_at: float, side: str = ""
) -> Plan:
    """The plan for ``total`` (already sized and checked): TWAP slices and/or maxQty parts.

    Raises :class:`IntentRejected` (``QTY_ABOVE_MAX``) when it would take more than 99 orders.
    """
    max_qty, step = rules.market_max_qty, rules.market_step_size
    if twap is None:
        slices = [(0.0, total)]
    else:
        # A slice merged into the next goes at the next one's time: the schedule keeps its pace.
        interval = float(twap.interval_s)
        slices = [((i - 1) * interval, q) for i, q in twap_quantities(rules, total, twap.slices, price)]
    children: list[Child] = []
    for due_s, quantity in slices:
        for part in split_max(quantity, max_qty, step):
            children.append(Child(len(children) + 1, part, due_s))
    if len(children) > MAX_CHILDREN:
        raise IntentRejected(
            ReasonCode.QTY_ABOVE_MAX,
            f"quantity {fmt(total)} of {rules.symbol} needs {len(children)} orders of at most maxQty "
            f"{fmt(max_qty)}; at most {MAX_CHILDREN} are sent for one intent",
        )
    if twap is not None and children:
        # The first slice goes at once: shift so the schedule starts now.
        shift = children[0].due_s
        children = [Child(c.number, c.quantity, c.due_s - shift) for c in children]
    return Plan(tuple(children), started_at, twap=twap is not None, side=side)


def needs_children(rules: SymbolRules, quantity: Decimal, twap: Twap | None) -> bool:
    """True when the order goes out as child orders (a TWAP, or above MARKET_LOT_SIZE maxQty)."""
    return twap is not None or (rules.market_max_qty > 0 and quantity > rules.market_max_qty)
