"""The live OCO of the account follower (a mixin of AccountFollower).

After every fill and every final conditional order, :func:`.oco.plan_oco` says which of our legs
on the symbol protect nothing any more (cancel) or are larger than what is left (replace); one
task per symbol runs it, again when more events came meanwhile. Every order it sends is fenced by
the account lease; an algo id it cancelled is not asked twice while its CANCELED is on the way,
and legs sent beside an entry still travelling (held by the executor) are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from quantum_exec.account.oco import Cancel, Replace, plan_oco
from quantum_exec.account.state import AccountState, StaleStateError
from quantum_exec.account.store import AccountStore
from quantum_exec.exchange.fencing import reset_check, set_check
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import OrderType
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.settings import Settings

log = get_logger(__name__)


class LiveOco:
    """Cancels and resizes our legs as the position changes; the follower provides the attributes."""

    _settings: Settings
    _gateway: BinanceGateway
    store: AccountStore
    state: AccountState
    leader: bool
    _stopping: asyncio.Event
    _oco_tasks: dict[str, asyncio.Task[None]]
    _oco_dirty: set[str]
    _acted_on: set[int]
    _held_legs: set[str]
    _still_leader: Callable[[], Awaitable[bool]]
    position_amount: Callable[[str], object]

    def _kick(self, symbol: str) -> None:
        """Run the OCO for ``symbol`` now, or once more after the run in progress."""
        if not self.leader or self._stopping.is_set():
            return
        task = self._oco_tasks.get(symbol)
        if task is not None and not task.done():
            self._oco_dirty.add(symbol)
            return
        self._oco_tasks[symbol] = asyncio.create_task(self._oco(symbol), name=f"oco-{symbol}")

    async def _oco(self, symbol: str) -> None:
        token = set_check(self._still_leader)
        try:
            while True:
                self._oco_dirty.discard(symbol)
                try:
                    actions = plan_oco(self.state, symbol)
                except StaleStateError:
                    return  # the resync kicks every symbol again
                for action in actions:
                    await self._apply_oco(symbol, action)
                if self.position_amount(symbol) == 0:
                    await self._drop_records(symbol)
                if symbol not in self._oco_dirty:
                    return
        except Exception:
            log.exception("oco.failed", symbol=symbol)
        finally:
            reset_check(token)

    async def _apply_oco(self, symbol: str, action: Cancel | Replace) -> None:
        if action.client_algo_id in self._held_legs:
            return  # beside an entry still travelling: flat only until it fills
        if isinstance(action, Cancel):
            leg = self.state.algo_order(action.client_algo_id)
            if leg is None or leg.algo_id in self._acted_on:
                return
            await self._cancel(leg.algo_id, action.reason, action="cancel")
            return
        old = action.old
        if old.algo_id in self._acted_on:
            return
        if not await self._cancel(old.algo_id, "resize to the position", action="replace"):
            return
        s = self._settings
        await self._gateway.place_algo(
            symbol,
            old.side,
            OrderType(old.order_type),
            old.trigger_price,
            old.client_algo_id,
            quantity=action.new_qty,
            working_type=s.working_type.value,
            price_protect=s.price_protect,
        )
        log.info(
            "oco.resized", symbol=symbol, client_algo_id=old.client_algo_id, quantity=str(action.new_qty)
        )

    async def _cancel(self, algo_id: int, reason: str, *, action: str = "cancel") -> bool:
        self._acted_on.add(algo_id)
        try:
            done = await self._gateway.cancel_algo(algo_id)
        except Exception:
            self._acted_on.discard(algo_id)
            metrics.OCO_ACTIONS.labels(action=action, outcome="failed").inc()
            raise
        metrics.OCO_ACTIONS.labels(action=action, outcome="done" if done else "gone").inc()
        log.info("oco.cancelled", algo_id=algo_id, reason=reason, cancelled=done)
        return done

    async def _drop_records(self, symbol: str) -> None:
        for record in await self.store.records_of(symbol):
            if record.opened or record.long is None:
                await self.store.drop_record(symbol, record.digest)
