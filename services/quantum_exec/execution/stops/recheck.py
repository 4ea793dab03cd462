"""What a MODIFY cancels once its new set is armed, from the exchange read again (pure).

The position and its legs can change while a MODIFY travels (a take-profit level fills, the old
stop fires, the live OCO had replaced a leg under its alternate id just before the symbol was
held): the MODIFY's first read is stale by the time its legs stand. So after placing it reads
the position and our open legs again and cancels:

* every armed leg of ours that is not in the new set, whatever id it stands under (a plain id or
  the alternate of a replacement), but a trailing stop the MODIFY does not set (placed again it
  would lose the extreme it tracked);
* the new copy of a carried-over target whose level was armed at the first read and is not any
  more: it filled (or fired) meanwhile, and a copy would close that share a second time.

A position found flat is the MODIFY's to withdraw from whole (:func:`withdraw_all`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from quantum_exec.core.ids import tp_level_of
from quantum_exec.exchange.wire import AlgoOrder, OrderType
from quantum_exec.execution.legs import LegOrder


def _target_slot(order_type: OrderType, client_algo_id: str) -> int | None:
    """A target's level (0 for a single take-profit); None for any other leg."""
    if order_type is not OrderType.TAKE_PROFIT_MARKET:
        return None
    return tp_level_of(client_algo_id) or 0


def gone_targets(
    first: Sequence[AlgoOrder],
    now: Sequence[AlgoOrder],
    carried: Sequence[LegOrder],
    new_ids: Collection[str],
) -> list[str]:
    """The client ids of the carried targets (``carried``) whose level stood at the first read under
    an id of the old set and stands no more (``now``: our legs read again)."""

    def levels(orders: Sequence[AlgoOrder]) -> set[int]:
        out: set[int] = set()
        for o in orders:
            slot = _target_slot(o.order_type, o.client_algo_id)
            if slot is not None and o.status.is_armed and o.client_algo_id not in new_ids:
                out.add(slot)
        return out

    before, after = levels(first), levels(now)
    gone: list[str] = []
    for leg in carried:
        slot = _target_slot(leg.order_type, leg.client_algo_id)
        if slot is not None and slot in before and slot not in after:
            gone.append(leg.client_algo_id)
    return gone


def stale_legs(now: Sequence[AlgoOrder], new_ids: Collection[str], *, trailing: bool) -> list[AlgoOrder]:
    """Our armed legs read again that the new set replaces (see the module docstring)."""
    return [
        o
        for o in now
        if o.status.is_armed
        and o.client_algo_id not in new_ids
        and (trailing or o.order_type is not OrderType.TRAILING_STOP_MARKET)
    ]


def withdraw_all(now: Sequence[AlgoOrder]) -> list[AlgoOrder]:
    """Every armed leg of ours read again: the position they were to protect is gone."""
    return [o for o in now if o.status.is_armed]
