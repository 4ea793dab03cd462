"""Reconciliation at start and after every reconnect: REST snapshots against our records, as a plan.

The stream cannot tell what happened while it was down; NautilusTrader reconciles by REST after
every reconnect for that reason (and its #4043 is the stop filled while the process was away
with the target left armed). Given the account view once positionRisk and openAlgoOrders are
merged into it, and the intents we recorded as holding a position, :func:`plan_reconcile` answers:

* our protective orders on a flat symbol, or on the side that cannot reduce -> cancel;
* a recorded position whose stop-loss or take-profit is missing or smaller than the position
  -> protect again with the recorded trigger, under the intent's own client id (``replaces``
  names the leg the new one replaces when one exists: placed first, then that one cancelled);
* a record whose position is gone (or now points the other way) -> the record is flat;
* a position (or the part of one) we did not open -> report it, touch nothing.

Legs larger than the position are left to :func:`quantum_exec.account.oco.plan_oco`, which the
owner runs on the resynced state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from quantum_exec.account.oco import Cancel
from quantum_exec.account.positions import PositionView
from quantum_exec.account.roles import leg_ids
from quantum_exec.account.views import AlgoView
from quantum_exec.core.ids import client_order_id, is_own_protective
from quantum_exec.exchange.wire import AlgoStatus, OrderSide
from quantum_exec.execution.netting import can_reduce

ZERO: Final = Decimal(0)
ORDER_TYPES: Final = {"sl": "STOP_MARKET", "tp": "TAKE_PROFIT_MARKET"}


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """What the service recorded about an intent that opened a position it still believes open."""

    intent_key: str
    symbol: str
    long: bool
    quantity: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    intent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Protect:
    """Place the ``role`` leg of ``intent_key``; with ``replaces`` set, under that leg's alternate id
    and before cancelling it (make before break)."""

    symbol: str
    intent_key: str
    role: Literal["sl", "tp"]
    client_algo_id: str
    side: OrderSide
    order_type: str
    trigger_price: Decimal
    quantity: Decimal
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class RecordFlat:
    """The exchange holds no position for this record any more: close the record."""

    symbol: str
    intent_key: str


@dataclass(frozen=True, slots=True)
class ReportExternal:
    """A position (``amount``, signed) of which only ``ours`` (unsigned) was opened by us."""

    symbol: str
    amount: Decimal
    entry_price: Decimal
    ours: Decimal


ReconcileAction = Cancel | Protect | RecordFlat | ReportExternal


def plan_reconcile(
    positions: Iterable[PositionView], open_algo_orders: Iterable[AlgoView], records: Iterable[IntentRecord]
) -> list[ReconcileAction]:
    """The actions that bring the exchange and our records back in line (pure; see the module doc).

    ``positions`` and ``open_algo_orders`` are the account view once a resync merged its snapshots.
    """
    by_symbol = {p.symbol: p for p in positions}
    legs = [o for o in open_algo_orders if is_own_protective(o.client_algo_id)]
    legs_by_id = {leg.client_algo_id: leg for leg in legs if not leg.status.is_final}
    records_by_symbol: dict[str, list[IntentRecord]] = {}
    for record in records:
        records_by_symbol.setdefault(record.symbol, []).append(record)

    symbols = {s for s, p in by_symbol.items() if p.amount} | set(records_by_symbol)
    symbols |= {leg.symbol for leg in legs_by_id.values()}
    actions: list[ReconcileAction] = []
    for symbol in sorted(symbols):
        position = by_symbol.get(symbol)
        amount = position.amount if position else ZERO
        live: list[IntentRecord] = []
        for record in records_by_symbol.get(symbol, []):
            if amount != 0 and (amount > 0) == record.long:
                live.append(record)
            else:
                actions.append(RecordFlat(symbol, record.intent_key))
        ours = sum((r.quantity for r in live), ZERO)
        if position is not None and abs(amount) > ours:
            actions.append(ReportExternal(symbol, amount, position.entry_price, ours))
        for leg in sorted(legs_by_id.values(), key=lambda a: a.client_algo_id):
            if leg.symbol != symbol or leg.status is not AlgoStatus.NEW:
                continue
            if amount == 0:
                actions.append(Cancel(symbol, leg.client_algo_id, "position flat"))
            elif not can_reduce(leg.side, amount):
                actions.append(Cancel(symbol, leg.client_algo_id, "side cannot reduce the position"))
        for record in live:
            actions.extend(_protect(record, min(record.quantity, abs(amount)), legs_by_id))
    return actions


def _protect(record: IntentRecord, needed: Decimal, legs_by_id: dict[str, AlgoView]) -> list[Protect]:
    actions: list[Protect] = []
    role: Literal["sl", "tp"]
    for role, trigger in (("sl", record.stop_loss), ("tp", record.take_profit)):
        if trigger is None:
            continue
        client_algo_id = client_order_id(record.intent_key, role)
        plain, replaced = leg_ids(client_algo_id)
        leg = legs_by_id.get(plain) or legs_by_id.get(replaced)
        if leg is not None and (
            leg.close_position or leg.quantity >= needed or leg.status is not AlgoStatus.NEW
        ):
            continue  # covered, or in flight
        actions.append(
            Protect(
                symbol=record.symbol,
                intent_key=record.intent_key,
                role=role,
                client_algo_id=client_algo_id,
                side=OrderSide.SELL if record.long else OrderSide.BUY,
                order_type=ORDER_TYPES[role],
                trigger_price=trigger,
                quantity=needed,
                replaces=leg.client_algo_id if leg is not None else None,
            )
        )
    return actions
