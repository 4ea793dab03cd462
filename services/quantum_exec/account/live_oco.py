"""The live OCO of the account follower (a mixin of AccountFollower).

Every leg it places, replaces or cancels goes through the one leg placer (:mod:`quantum_exec.execution.legs`,
given to the follower), under its error policy.

After every fill and every final conditional order, :func:`.oco.plan_oco` says which of our legs
on the symbol protect nothing any more (cancel) or are larger than what is left (replace); one
task per symbol runs it, again when more events came meanwhile. An algo id it cancelled is not
asked twice while its CANCELED is on the way, and legs sent beside an entry still travelling (held
by the executor) are left alone.

A replacement is make before break (Binance cannot modify an untriggered conditional order): the
new leg is placed under the leg's alternate id (:func:`.roles.replacement_of`) and seen armed, and
only then is the old one cancelled. A placement that fails under the placer's policy (retries,
lookups and the -2021 re-round spent) leaves the old leg armed - larger than the position, but reduce-only, so
it still protects all of it - and the plan runs again after a backoff, a bounded number of times.

The view's fills can lag its conditional orders' updates (events of different types arrive in any
order): legs placed for an entry whose fill is still on the way would look like orphans of a flat
symbol. A plan that cancels, for the view's position (flat, or on the other side), a leg newer
than the newest fill the view has applied is first checked against REST (positionRisk); when REST
holds another position the plan acts on nothing (nor drops the records) and runs again.

Every order it sends, cancels included, is fenced by the account lease: a holder that cannot renew
it (another owner, Redis unreachable) sends nothing and stops until it holds the lease again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Final

from quantum_exec.account.oco import Cancel, Replace, plan_oco
from quantum_exec.account.roles import replacement_of
from quantum_exec.account.state import AccountState, AlgoView, StaleStateError
from quantum_exec.account.store import AccountStore
from quantum_exec.backoff import Backoff
from quantum_exec.errors import QuantumError
from quantum_exec.exchange.fencing import OwnershipLost, reset_check, set_check
from quantum_exec.exchange.wire import AlgoOrder, OrderType
from quantum_exec.execution.legs import LegOrder, LegPlacer
from quantum_exec.execution.ports import Gateway
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.settings import Settings

log = get_logger(__name__)

# A plan whose orders failed runs again after these waits, this many times; the old legs stay armed.
OCO_RETRY: Final = Backoff(base_s=0.2, cap_s=5.0, jitter=0.2)
OCO_ATTEMPTS: Final = 6
# Cancels that hold only if the view's position is right (checked against REST first).
POSITION_REASONS: Final = frozenset({"position flat", "side cannot reduce the position"})


class LegNotArmed(QuantumError):
    """A replacement leg was not seen armed on the exchange: the old leg stays."""


class LiveOco:
    """Cancels and resizes our legs as the position changes; the follower provides the attributes."""

    _settings: Settings
    _gateway: Gateway
    _legs: LegPlacer
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
        failures = 0
        try:
            while True:
                self._oco_dirty.discard(symbol)
                try:
                    actions = plan_oco(self.state, symbol)
                except StaleStateError:
                    return  # the resync kicks every symbol again
                failed = False
                lagging = await self._view_lags(symbol, actions)
                if lagging:
                    # The view's position is behind the exchange's: act on nothing of it yet.
                    failed, actions = True, []
                for action in actions:
                    try:
                        await self._apply_oco(symbol, action)
                    except OwnershipLost:
                        raise
                    except Exception as exc:
                        failed = True
                        log.warning(
                            "oco.action_failed",
                            symbol=symbol,
                            client_algo_id=action.client_algo_id,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                if not lagging and self.position_amount(symbol) == 0:
                    await self._drop_records(symbol)
                if failed:
                    if failures >= OCO_ATTEMPTS:
                        log.error("oco.gave_up", symbol=symbol, detail="the legs in place stay armed")
                        return
                    await asyncio.sleep(OCO_RETRY.delay(failures))
                    failures += 1
                    continue
                if symbol not in self._oco_dirty:
                    return
        except OwnershipLost:
            log.warning("oco.not_leader", symbol=symbol, detail="the account lease is not ours: nothing sent")
        except Exception:
            log.exception("oco.failed", symbol=symbol)
        finally:
            reset_check(token)

    async def _view_lags(self, symbol: str, actions: list[Cancel | Replace]) -> bool:
        """True when the plan cancels, for the view's position, a leg placed after the newest fill
        the view applied (it may protect a fill still on its way) and REST holds another position."""
        last_fill_ms = self.state.last_fill_ms(symbol) or 0

        def newer_than_fills(action: Cancel | Replace) -> bool:
            if not isinstance(action, Cancel) or action.reason not in POSITION_REASONS:
                return False
            leg = self.state.algo_order(action.client_algo_id)
            return (
                leg is not None
                and action.client_algo_id not in self._held_legs
                and leg.algo_id not in self._acted_on
                and leg.update_time_ms > last_fill_ms
            )

        if not any(newer_than_fills(a) for a in actions):
            return False
        held = self.position_amount(symbol)
        actual = await self._gateway.position_amount(symbol)
        if held == actual:
            return False
        log.warning("oco.view_lags", symbol=symbol, view=str(held), exchange=str(actual))
        return True

    async def _apply_oco(self, symbol: str, action: Cancel | Replace) -> None:
        if action.client_algo_id in self._held_legs:
            return  # beside an entry still travelling: flat only until it fills
        if isinstance(action, Cancel):
            leg = self.state.algo_order(action.client_algo_id)
            if leg is None or leg.algo_id in self._acted_on:
                return
            await self._cancel(leg.algo_id, action.reason)
            return
        if action.old.algo_id in self._acted_on:
            return
        await self._replace_leg(action.old, action.new_qty, "resize to the position")

    async def _replace_leg(
        self, old: AlgoView, quantity: Decimal, reason: str, trigger_price: Decimal | None = None
    ) -> None:
        """Make before break (:meth:`.LegPlacer.replace`): ``old`` again for ``quantity`` (at
        ``trigger_price`` when given) under its alternate id, seen armed, then ``old`` cancelled.
        Raises with ``old`` still armed when the new leg is not."""
        new = LegOrder(
            old.symbol,
            old.side,
            OrderType(old.order_type),
            old.trigger_price if trigger_price is None else trigger_price,
            replacement_of(old.client_algo_id),
            quantity,
        )
        self._acted_on.add(old.algo_id)
        try:
            done = await self._legs.replace(old, new)
        except Exception:
            self._acted_on.discard(old.algo_id)
            metrics.OCO_ACTIONS.labels(action="replace", outcome="failed").inc()
            raise
        if done.old_cancelled is None:
            self._acted_on.discard(old.algo_id)
            if done.placed.standing:
                # Fired at once: the position leaves through it; the old leg goes once it is flat.
                log.info("oco.replacement_fired", symbol=old.symbol, client_algo_id=new.client_algo_id)
                return
            metrics.OCO_ACTIONS.labels(action="place", outcome="failed").inc()
            raise LegNotArmed(f"{new.client_algo_id} not armed: {done.placed.failure}")
        metrics.OCO_ACTIONS.labels(action="replace", outcome="done" if done.old_cancelled else "gone").inc()
        log.info(
            "oco.resized",
            symbol=old.symbol,
            client_algo_id=old.client_algo_id,
            replaced_by=new.client_algo_id,
            quantity=str(quantity),
            reason=reason,
        )

    async def _place_leg(self, leg: LegOrder) -> AlgoOrder:
        """Place one protective leg (:meth:`.LegPlacer.place`) and return it standing; raises when
        it does not stand on the exchange."""
        placed = await self._legs.place(leg)
        if placed.order is None or not placed.standing:
            metrics.OCO_ACTIONS.labels(action="place", outcome="failed").inc()
            raise LegNotArmed(f"{leg.client_algo_id} not placed: {placed.failure}")
        return placed.order

    async def _cancel(self, algo_id: int, reason: str) -> bool:
        """Cancel one of our legs (fenced by the account lease: :meth:`.LegPlacer.cancel`)."""
        self._acted_on.add(algo_id)
        try:
            done = await self._legs.cancel(algo_id)
        except Exception:
            self._acted_on.discard(algo_id)
            metrics.OCO_ACTIONS.labels(action="cancel", outcome="failed").inc()
            raise
        metrics.OCO_ACTIONS.labels(action="cancel", outcome="done" if done else "gone").inc()
        log.info("oco.cancelled", algo_id=algo_id, reason=reason, cancelled=done)
        return done

    async def _drop_records(self, symbol: str) -> None:
        for record in await self.store.records_of(symbol):
            if record.opened or record.long is None:
                await self.store.drop_record(symbol, record.digest)
