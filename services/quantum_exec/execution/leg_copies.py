"""One armed copy of each leg, whoever placed the other.

A leg may be open under two ids (:func:`quantum_exec.core.ids.replacement_of`): the live OCO
replaces one make before break under its alternate id. The OCO runs on the instance that holds
the account lease, which need not be the one executing the intent: the legs an entry sends beside
itself (``QUANTUM_PROTECTION_TIMING=with_entry``) are held from this instance's OCO only, so
another's may shrink them to the position it confirmed before the entry filled (or move a stop
to break-even), cancelling the leg under the intent's own id. A resumed attempt (the intent taken
over from a stalled instance) or the attempt that sent them (reading them back after the fill)
then finds its leg CANCELED; placed again under its own id as if nothing stood, it would arm a
second copy beside the replacement: covered, but not once (P3).

So a leg found ended is looked for under its alternate id first:

* a copy armed there that covers what the leg asks (closePosition, or a quantity at least as
  large) is the leg: adopted, nothing placed;
* a smaller one (shrunk to the position before the fill) is replaced make before break: the leg
  is placed under its own id, which is free, and the copy is cancelled here once the leg stands
  armed (:func:`retire_copies`), so the instance that placed the second copy removes the first.
  Until then the copy stays: reduce-only, it protects what it covers. When the leg cannot be
  placed the copy stays and the failure policy decides (an emergency close cancels it too).

The copy is found by its id alone: an OCO cancels the old leg only after its replacement was seen
armed, so a leg CANCELED by a replacement has that replacement on the exchange already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantum_exec.core.errors import ExchangeError
from quantum_exec.core.ids import replacement_of
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.execution.protection import Leg

log = get_logger(__name__)


async def find_copy(legs: LegPlacer, symbol: str, leg: Leg, since: float | None = None) -> None:
    """``leg`` stands nowhere under its own id: adopt its armed copy under the alternate id, or
    mark a smaller one for :func:`retire_copies` (``leg.replaces``). ``since``: the earlier
    attempt's last send (a resumed attempt looks until found or certainly absent)."""
    other = replacement_of(leg.client_algo_id)
    copy = await (legs.find(other) if since is None else legs.find_since(since, other))
    if copy is None or not copy.status.is_armed:
        return
    if copy.symbol != symbol or copy.side != leg.side or copy.order_type != leg.order_type:
        # Not this leg's copy (ids derive from the intent's key and role, so only a reused
        # intent id could meet one): left alone, and the leg is placed again under its own id.
        log.warning("protection.copy_mismatch", symbol=symbol, kind=leg.kind, client_algo_id=other)
        return
    if copy.close_position or (leg.quantity is not None and copy.quantity >= leg.quantity):
        leg.order, leg.error, leg.client_algo_id = copy, None, copy.client_algo_id
        if not copy.close_position:
            leg.quantity = copy.quantity
        log.info("protection.copy_adopted", symbol=symbol, kind=leg.kind, client_algo_id=other)
        return
    leg.replaces = copy
    log.info(
        "protection.copy_too_small",
        symbol=symbol,
        kind=leg.kind,
        client_algo_id=other,
        quantity=str(copy.quantity),
        detail="placed again under its own id, then the copy is cancelled",
    )


async def retire_copies(legs: LegPlacer, symbol: str, placed: list[Leg], own: set[int]) -> None:
    """Cancel the smaller copy of each leg that now stands armed (make before break's break). A
    cancel that fails is logged: the live OCO's twin rule cancels a copy no larger than the one
    it keeps whatever the position."""
    for leg in placed:
        copy = leg.replaces
        if copy is None or leg.order is None or not leg.order.status.is_armed:
            continue
        try:
            await legs.cancel(copy.algo_id)
        except OwnershipLost:
            raise
        except ExchangeError as exc:  # an unknown outcome too: the copy may still stand
            log.warning("protection.copy_cancel_failed", symbol=symbol, kind=leg.kind, detail=str(exc))
            continue
        own.discard(copy.algo_id)
        leg.replaces = None
        log.info("protection.copy_retired", symbol=symbol, kind=leg.kind, client_algo_id=copy.client_algo_id)
