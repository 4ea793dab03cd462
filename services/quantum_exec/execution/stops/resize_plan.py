"""A partial CLOSE's ladder resize as planned: each level's id as it stood and the size it is
resized to, saved (``{prefix}:plan:<intent>#ladder``, beside a sliced order's plan) before the
first level is replaced.

A resumed attempt (the service killed mid-resize) replays this very plan rather than planning
again from the exchange: by then a level may stand twice (its new leg armed, its old one not yet
cancelled) or only as its new smaller leg, and proportions taken from those would be wrong. The
old ids are the plan's keys; a level whose old leg is gone was replaced already (its new leg is
found under :func:`quantum_exec.core.ids.replacement_of` by :meth:`LegPlacer.place`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import AlgoOrder
from quantum_exec.execution.stops.ladder import shrink_ladders


@dataclass(frozen=True, slots=True)
class Step:
    """One level: its id when planned, its quantity then, and what it is resized to (None: merged
    into another level, cancelled once the others are armed)."""

    client_algo_id: str
    was: Decimal
    quantity: Decimal | None

    @property
    def changes(self) -> bool:
        return self.quantity != self.was


@dataclass(frozen=True, slots=True)
class ResizePlan:
    """Every level of every ladder on the symbol, in the order they are replaced."""

    steps: tuple[Step, ...]

    def to_json(self) -> bytes:
        rows = [
            [s.client_algo_id, str(s.was), None if s.quantity is None else str(s.quantity)]
            for s in self.steps
        ]
        return json.dumps({"ladder_resize": rows}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ResizePlan:
        rows = json.loads(raw)["ladder_resize"]
        return cls(
            tuple(Step(row[0], Decimal(row[1]), None if row[2] is None else Decimal(row[2])) for row in rows)
        )


def plan_key(change_id: str) -> str:
    """Where the plan of the partial CLOSE ``change_id`` is kept: ``#`` is in no intent id nor stream
    id, so it never meets a sliced order's plan (kept under the bare intent key)."""
    return f"{change_id}#ladder"


def plan_resize(ladders: Sequence[Sequence[AlgoOrder]], remaining: Decimal, rules: SymbolRules) -> ResizePlan:
    """Each ladder's levels shrunk to its share of ``remaining`` (:func:`.ladder.shrink_ladders`)."""
    sizes = shrink_ladders([[o.quantity for o in ladder] for ladder in ladders], remaining, rules)
    return ResizePlan(
        tuple(
            Step(old.client_algo_id, old.quantity, kept.get(index))
            for ladder, kept in zip(ladders, sizes, strict=True)
            for index, old in enumerate(ladder)
        )
    )
