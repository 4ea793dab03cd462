"""An intent's record (``<prefix>:account:records:<symbol>``, a hash by the intent's id digest):
what is kept about an intent that may hold a position, and how a redelivered intent's "opened"
write merges over the one already there (:meth:`.store.AccountStore.put_opened`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final

import orjson

from quantum_exec.account.reconcile import IntentRecord

# The stop/target events a record remembers having been shrunk by (a ladder has a few levels,
# each maybe in a few partial fills).
SHRUNK_BY_KEPT: Final = 64


@dataclass(frozen=True, slots=True)
class Record:
    """What is kept about an intent that may hold a position: its id, side, size and triggers."""

    digest: str
    intent_key: str
    intent_id: str | None
    symbol: str
    long: bool | None  # None for a CLOSE intent
    quantity: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    opened: bool  # the entry filled (quantity is then the executed quantity)
    # After take-profit level ``break_even_after`` fills, the stop moves to ``break_even``.
    break_even_after: int | None = None
    break_even: Decimal | None = None
    # The position events (stop or target fills) already taken off ``quantity``, newest last
    # (at most SHRUNK_BY_KEPT): the follow-up of an event published twice (an answer lost, a
    # hand-over) takes each off once. None: written by a version that did not keep them (its
    # shrinks are unknown: only an event published now shrinks it).
    shrunk_by: tuple[str, ...] | None = ()
    # What the intent's entry had filled when the "opened" record was written; None when it is
    # not known (an opening record, or one written before this field). A later "opened" write of
    # the same intent that finds the entry filled further (a resumed TWAP sending a child) adds
    # the difference to what is left; the same fill writes nothing (a resumed attempt's own view
    # of what it opened can differ: a resumed flip does not know the position it met).
    entry_filled: Decimal | None = None
    # The position the intent's entry met (read before it was sent); None when not read (a
    # reduce-only intent, a CLOSE) or not known. A resumed attempt reads it from here: it tells
    # what a fill reduced or flipped from what it opened.
    position_before: Decimal | None = None
    # The JSON it was read from (a write that replaces it checks nothing changed meanwhile).
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "intent_key": self.intent_key,
                "intent_id": self.intent_id,
                "symbol": self.symbol,
                "long": self.long,
                "quantity": str(self.quantity),
                "stop_loss": None if self.stop_loss is None else str(self.stop_loss),
                "take_profit": None if self.take_profit is None else str(self.take_profit),
                "opened": self.opened,
                **(
                    {"break_even_after": self.break_even_after, "break_even": str(self.break_even)}
                    if self.break_even_after is not None and self.break_even is not None
                    else {}
                ),
                **({"shrunk_by": list(self.shrunk_by)} if self.shrunk_by is not None else {}),
                **({"entry_filled": str(self.entry_filled)} if self.entry_filled is not None else {}),
                **(
                    {"position_before": str(self.position_before)} if self.position_before is not None else {}
                ),
            }
        )

    def shrunk(self, event_id: str, quantity: Decimal) -> Record:
        """This record with ``quantity`` taken off by the event ``event_id`` (remembered)."""
        if self.shrunk_by is None:
            return replace(self, quantity=self.quantity - quantity)  # stays unknown
        return replace(
            self, quantity=self.quantity - quantity, shrunk_by=(*self.shrunk_by, event_id)[-SHRUNK_BY_KEPT:]
        )

    @classmethod
    def from_json(cls, digest: str, raw: bytes | str) -> Record:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            digest=digest,
            intent_key=str(data["intent_key"]),
            intent_id=data.get("intent_id"),
            symbol=str(data["symbol"]),
            long=data.get("long"),
            quantity=Decimal(str(data["quantity"])),
            stop_loss=_dec(data.get("stop_loss")),
            take_profit=_dec(data.get("take_profit")),
            opened=bool(data.get("opened")),
            break_even_after=data.get("break_even_after"),
            break_even=_dec(data.get("break_even")),
            shrunk_by=tuple(str(e) for e in data["shrunk_by"]) if "shrunk_by" in data else None,
            entry_filled=_dec(data.get("entry_filled")),
            position_before=_dec(data.get("position_before")),
            raw=raw.encode() if isinstance(raw, str) else bytes(raw),
        )

    def as_intent_record(self) -> IntentRecord | None:
        """The reconciliation's view, for an opened position with a direction."""
        if not self.opened or self.long is None or self.quantity <= 0:
            return None
        return IntentRecord(
            intent_key=self.intent_key,
            symbol=self.symbol,
            long=self.long,
            quantity=self.quantity,
            stop_loss=self.stop_loss,
            take_profit=self.take_profit,
            intent_id=self.intent_id,
        )


class RecordChanging(Exception):
    """An intent's record changed under each of its "opened" write's tries."""


def merged_opened(there: Record, new: Record) -> Record | None:
    """The "opened" ``new`` over the ``opened`` record ``there`` of the same intent: None when
    ``there`` stands as it is (the entry filled no further; or, written before ``entry_filled``,
    shrunk or of the same size); else ``there`` grown by what the entry filled beyond it, with
    ``new``'s triggers."""
    assert new.entry_filled is not None
    if there.entry_filled is None:
        # Written before the field: a record shrunk by a fill (``shrunk_by``) or of the same size
        # is kept; another is written whole, as the version before this one did.
        if there.shrunk_by or there.quantity == new.quantity:
            return None
        return replace(new, shrunk_by=there.shrunk_by)
    grown = new.entry_filled - there.entry_filled
    if grown <= 0:
        return None
    return replace(new, quantity=there.quantity + grown, shrunk_by=there.shrunk_by)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
