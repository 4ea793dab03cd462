"""Cancelling our own protective legs of a symbol: after a CLOSE filled, and as orphans.

Only stop-loss / take-profit orders under our client ids (:func:`quantum_exec.core.ids.is_own_protective`)
are ever cancelled here; anybody else's conditional orders on the symbol are not ours to touch (P4).
"""

from __future__ import annotations

from collections.abc import Callable

from quantum_exec.execution.legs import LegPlacer
from quantum_exec.execution.ports import AccountView, Gateway
from quantum_exec.execution.resolution import run_together
from quantum_exec.execution.run import Run
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


class OwnLegs:
    """Our protective legs per symbol, taken from the live view (else listed by REST) and cancelled."""

    def __init__(
        self,
        legs: LegPlacer,
        account: Callable[[], AccountView | None],
        own: dict[str, set[int]],
        gateway: Gateway,
    ) -> None:
        self._legs = legs
        self._gateway = gateway
        self._account = account
        # Algo ids of our own protective orders that may still be open, per symbol (the Protector's).
        self._own = own

    def take(self, symbol: str) -> list[int] | None:
        """Our armed legs of ``symbol`` as the live view knows them, now held from its OCO (one
        DELETE each, not two) until :meth:`cancel` or :meth:`release`; ``None`` without a fresh view."""
        account = self._account()
        # With the ids placed here: a leg's ALGO_UPDATE may still be behind the events of its fill.
        placed = self._own.get(symbol, set())
        return account.take_for_cancel(symbol, placed) if account is not None else None

    def release(self, algo_ids: list[int]) -> None:
        """Legs taken but kept (the close did not flatten): the live OCO may act on them again."""
        account = self._account()
        if account is not None:
            for algo_id in algo_ids:
                account.cancel_failed(algo_id)

    async def cancel(self, symbol: str, taken: list[int] | None) -> int:
        """Cancel the legs ``taken`` (or, with ``None``, our open ones listed by REST); how many."""
        if taken is None:
            taken = [o.algo_id for o in await self._legs.open_own(symbol)]
        await run_together(*(self.cancel_one(algo_id) for algo_id in taken))
        self._own.pop(symbol, None)
        return len(taken)

    async def cancel_one(self, algo_id: int) -> None:
        """Cancel one of our legs; on failure the live OCO may act on it again."""
        try:
            await self._legs.cancel(algo_id)
        except BaseException:
            self.release([algo_id])
            raise

    async def cancel_orphans(self, run: Run, symbol: str) -> None:
        """Cancel our protective orders left on a flat symbol, so they cannot close a new position."""
        account = self._account()
        if account is not None:
            amount, legs = account.position_amount(symbol), account.own_protective(symbol)
            if amount is not None and legs is not None:
                # The live view answers without a request (the live OCO usually got there first).
                if amount == 0 and legs:
                    with run.step("orphans"):
                        await run_together(*(self.cancel_one(leg.algo_id) for leg in legs))
                    log.info("orphans.cancelled", intent_id=run.key, symbol=symbol, count=len(legs))
                return
        own = self._own.get(symbol)
        if not own:
            return
        with run.step("orphans"):
            if await self._gateway.position_amount(symbol) != 0:
                return
            ids = sorted(own)
            await run_together(*(self.cancel_one(algo_id) for algo_id in ids))
            own.difference_update(ids)
        log.info("orphans.cancelled", intent_id=run.key, symbol=symbol, count=len(ids))
