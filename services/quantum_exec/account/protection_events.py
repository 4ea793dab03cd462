"""``protection_changed`` events on the position stream (issue #27): what changed in a position's
protection on the exchange, and why (a take-profit level filled, the break-even move, a trailing
stop activated, a MODIFY, a partial close).

One event per change, published once under the account lease through the store's publish-once
script (its id is deterministic: the same change seen again, after a restart or by another
instance, is not published twice), beside the fills' ``position.event`` entries on the same stream
with ``event_type`` ``protection.changed``. The ledger reads only ``position.event`` entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from quantum_exec.account.views import AlgoView
from quantum_exec.contracts.codec import dumps
from quantum_exec.exchange.wire import AlgoOrder

PROTECTION_EVENT_TYPE: Final = "protection.changed"


class ProtectionReason(StrEnum):
    TP_FILLED = "tp_filled"
    BREAK_EVEN = "break_even"
    TRAILING_ACTIVATED = "trailing_activated"
    MODIFY = "modify"
    PARTIAL_CLOSE = "partial_close"


class LegState(BaseModel):
    """One of our conditional orders as the event shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_algo_id: str
    order_type: str
    trigger_price: Annotated[str, WithJsonSchema({"type": "string"})]
    quantity: Annotated[str, WithJsonSchema({"type": "string"})]
    close_position: bool = False
    activated: bool | None = None

    @classmethod
    def of(cls, leg: AlgoView | AlgoOrder) -> LegState:
        return cls(
            client_algo_id=leg.client_algo_id,
            order_type=str(leg.order_type),
            trigger_price=format(leg.trigger_price, "f"),
            quantity=format(leg.quantity, "f"),
            close_position=leg.close_position,
            activated=leg.activated if isinstance(leg, AlgoView) else None,
        )


class ProtectionChanged(BaseModel):
    """Payload of a ``protection.changed`` entry of the position stream."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    event_type: str = PROTECTION_EVENT_TYPE
    symbol: str
    reason: ProtectionReason
    intent_id: str | None = None
    before: list[LegState]
    after: list[LegState]
    time: datetime

    def to_json(self) -> bytes:
        return dumps(self)


def protection_changed(
    symbol: str,
    reason: ProtectionReason,
    change_id: str,
    before: Sequence[AlgoView | AlgoOrder],
    after: Sequence[AlgoView | AlgoOrder],
    *,
    intent_id: str | None = None,
) -> ProtectionChanged:
    """The event of one change; ``change_id`` names it deterministically (a leg's client id, an
    intent's key) so the same change is published once."""
    return ProtectionChanged(
        event_id=f"protection:{symbol}:{reason.value}:{change_id}",
        symbol=symbol,
        reason=reason,
        intent_id=intent_id,
        before=[LegState.of(leg) for leg in before],
        after=[LegState.of(leg) for leg in after],
        time=datetime.now(UTC),
    )
