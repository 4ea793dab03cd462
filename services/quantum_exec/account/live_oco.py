"""The live OCO of the account follower.

Every leg it places, replaces or cancels goes through the one leg placer (:mod:`quantum_exec.execution.legs`,
given to it), under its error policy. The reconcile (:mod:`.resync`) places and replaces legs
through it too.

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

The view's fills can lag its conditional orders' updates and the pushed position (events of
different types arrive in any order, and the executor knows an entry filled from its REST answer
before the stream says so): legs placed for an entry whose fill is still on the way would look
like orphans of a flat symbol, or larger than the position. Shrinking or cancelling protection is
never urgent (a larger reduce-only leg is harmless, a smaller one leaves the position naked), so
every action that lowers protection because of the position (a resize, a cancel for a flat
symbol or the other side, a cancel of the twin that does not fit) acts only on a confirmed view:
not while an order of this instance known filled by REST has not been seen on the stream
(``position_amount`` answers ``None``), not while the pushed position (ACCOUNT_UPDATE) disagrees
with the fills, and, for a leg newer than every fill seen (the fill it protects may be on the
way; fills come in order among themselves, so an older leg's are all in), only once REST
(positionRisk) holds the very position the view holds.
Otherwise those actions wait (the fill, or the resync, runs the plan again; so does the bounded
retry); a cancel because the leg's sibling filled completely, or of a copy no larger than the copy
kept (it lowers nothing), does not depend on the position and goes at once. Records of a symbol
the view sees flat are dropped only once REST says it is flat too, and not at all where a CLOSE of
this instance drops them itself (:mod:`.close_records`).

Every order it sends, cancels included, is fenced by the account lease: a holder that cannot renew
it (another owner, Redis unreachable) sends nothing and stops until it holds the lease again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Final

from quantum_exec.account.break_even import plan_break_even
from quantum_exec.account.claims import LegClaims
from quantum_exec.account.lease import AccountLease
from quantum_exec.account.oco import EXTRA_COPY, Cancel, Replace, plan_oco
from quantum_exec.account.protection_events import ProtectionReason, protection_changed
from quantum_exec.account.roles import intent_digest, replacement_of
from quantum_exec.account.state import AccountState
from quantum_exec.account.store import AccountStore
from quantum_exec.account.views import AlgoView, StaleStateError
from quantum_exec.core.backoff import Backoff
from quantum_exec.core.errors import QuantumError
from quantum_exec.core.ids import PREFIX, ROLE_LETTERS
from quantum_exec.exchange.fencing import OwnershipLost, reset_check, set_check
from quantum_exec.exchange.wire import AlgoOrder, OrderType
from quantum_exec.execution.legs import LegOrder, LegPlacer
from quantum_exec.execution.ports import Gateway
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

# A plan whose orders failed runs again after these waits, this many times; the old legs stay armed.
OCO_RETRY: Final = Backoff(base_s=0.2, cap_s=5.0, jitter=0.2)
OCO_ATTEMPTS: Final = 6
# The cancels that hold whatever the position: a sibling filled completely, or a copy no larger
# than the copy kept (every other action lowers protection because of the position, so it waits
# for a confirmed view: see the module's docstring).
POSITION_FREE: Final = frozenset({"sibling leg filled", EXTRA_COPY})


class LegNotArmed(QuantumError):
    """A replacement leg was not seen armed on the exchange: the old leg stays."""


class LiveOco:
    """Cancels and resizes our legs as the position changes, one task per symbol.

    ``position_amount`` is the follower's live position (``None`` while it is not known: stale,
    or behind an order seen filled by REST); ``stopping`` is set when the follower stops;
    ``records_in_hand`` says a flat symbol's records are a CLOSE's of this instance to drop, not
    the OCO's (:mod:`.close_records`).
    """

    def __init__(
        self,
        gateway: Gateway,
        legs: LegPlacer,
        store: AccountStore,
        state: AccountState,
        lease: AccountLease,
        claims: LegClaims,
        position_amount: Callable[[str], Decimal | None],
        stopping: asyncio.Event,
        records_in_hand: Callable[[str], bool] = lambda symbol: False,
    ) -> None:
        self._gateway = gateway
        self._legs = legs
        self._store = store
        self._state = state
        self._lease = lease
        self._claims = claims
        self._position_amount = position_amount
        self._stopping = stopping
        self._records_in_hand = records_in_hand
        self._oco_tasks: dict[str, asyncio.Task[None]] = {}
        self._oco_dirty: set[str] = set()

    def idle(self, symbol: str | None = None) -> bool:
        """True when no OCO run is in progress (on ``symbol``, or on any symbol)."""
        tasks = self._oco_tasks.values() if symbol is None else [self._oco_tasks.get(symbol)]
        return all(task is None or task.done() for task in tasks)

    async def quiet(self, symbol: str, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the OCO run in progress on ``symbol`` to end."""
        task = self._oco_tasks.get(symbol)
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=timeout_s)

    def running(self) -> list[asyncio.Task[None]]:
        """The OCO tasks (the follower cancels them when it stops)."""
        return list(self._oco_tasks.values())

    def kick(self, symbol: str) -> None:
        """Run the OCO for ``symbol`` now, or once more after the run in progress."""
        if not self._lease.leader or self._stopping.is_set():
            return
        task = self._oco_tasks.get(symbol)
        if task is not None and not task.done():
            self._oco_dirty.add(symbol)
            return
        self._oco_tasks[symbol] = asyncio.create_task(self._oco(symbol), name=f"oco-{symbol}")

    async def _oco(self, symbol: str) -> None:
        token = set_check(self._lease.still_leader)
        failures = 0
        try:
            while True:
                self._oco_dirty.discard(symbol)
                if self._claims.symbol_held(symbol):
                    return  # a MODIFY replaces the set: its release runs this again
                # Read before planning: no await may separate the plan from its actions, or a close's
                # own cancels travelling meanwhile would be sent a second time by the plan.
                moves = await self._break_even(symbol)
                try:
                    actions = plan_oco(self._state, symbol)
                except StaleStateError:
                    return  # the resync kicks every symbol again
                failed = False
                lagging = await self._view_lags(symbol, actions)
                if lagging:
                    # The view's position may be behind the exchange's: lower no protection on it.
                    failed, actions = True, [a for a in actions if not _on_position(a)]
                for action in [*actions, *self._moves_alone(actions, moves)]:
                    try:
                        await self._apply_oco(symbol, action, moves)
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
                if not lagging and self._position_amount(symbol) == 0 and not self._records_in_hand(symbol):
                    await self.drop_records(symbol)
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
        """True when the plan lowers protection because of the view's position and that position
        is not confirmed: an order known filled by REST is not on the stream yet, the pushed
        position disagrees with the fills, or a leg it touches is newer than the newest fill seen
        (the fill it protects may be on the way) and REST (positionRisk) holds another position.
        A leg older than a fill seen needs no read: fills come in order among themselves, so every
        fill before the leg was placed is in the view (a later one brings its own legs)."""
        touched = [a for a in actions if _on_position(a) and self._actionable(symbol, a)]
        if not touched:
            return False
        held = self._position_amount(symbol)
        if held is None or symbol in self._state.disagreeing_symbols():
            log.info("oco.view_lags", symbol=symbol, view=str(held), detail="fills still on the way")
            return True
        last_fill_ms = self._state.last_fill_ms(symbol) or 0
        newer = [
            leg for leg in map(self._leg_of, touched) if leg is not None and leg.update_time_ms > last_fill_ms
        ]
        if not newer:
            return False
        if await self._entry_in_flight(symbol, newer):
            return True
        try:
            actual = await self._gateway.position_amount(symbol)
        except OwnershipLost:
            raise
        except Exception as exc:  # unconfirmed: lower nothing now, the retry asks again
            log.warning("oco.view_unconfirmed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
            return True
        if held == actual:
            return False
        log.warning("oco.view_lags", symbol=symbol, view=str(held), exchange=str(actual))
        return True

    async def _entry_in_flight(self, symbol: str, legs: list[AlgoView]) -> bool:
        """True when one of ``legs`` (newer than every fill seen) belongs to an intent whose entry
        has not filled yet, as its record says: placed beside an entry in flight (``with_entry``),
        maybe on another instance, it is sized for that entry, not for the position REST holds
        before it (a cancel landing after that instance read its legs back would leave the entry
        uncovered). The entry's fill runs the plan again; one Redis read, on this rare path only."""
        digests = {intent_digest(leg.client_algo_id) for leg in legs}
        try:
            records = await self._store.records_of(symbol)
        except REDIS_DOWN as exc:
            log.warning("oco.records_unread", symbol=symbol, error=str(exc))
            return True
        if any(r.digest in digests and r.long is not None and not r.opened for r in records):
            log.info("oco.entry_in_flight", symbol=symbol, detail="its legs wait for its fill")
            return True
        return False

    def _actionable(self, symbol: str, action: Cancel | Replace) -> bool:
        """False when :meth:`_apply_oco` would leave ``action`` alone (a leg claimed, in flight)."""
        if self._claims.held(action.client_algo_id) or self._claims.symbol_held(symbol):
            return False
        leg = self._leg_of(action)
        return leg is not None and not self._claims.acting(leg.algo_id)

    def _leg_of(self, action: Cancel | Replace) -> AlgoView | None:
        return action.old if isinstance(action, Replace) else self._state.algo_order(action.client_algo_id)

    async def _break_even(self, symbol: str) -> dict[str, Decimal]:
        """The stops to move to break-even now (:mod:`.break_even`), by client id: their new trigger.
        The records are read (one Redis call) only when an open stop's take-profit filled."""
        try:
            stops = [leg for leg in self._state.open_protective(symbol) if leg.order_type == "STOP_MARKET"]
        except StaleStateError:
            return {}
        if not any(self._tp_filled(leg, ladder_only=True) for leg in stops):
            return {}
        try:
            records = [r for r in await self._store.records_of(symbol) if r.break_even_after is not None]
        except REDIS_DOWN as exc:
            # The records cannot be read: no move now; the next run (an event, the resync) asks again.
            log.warning("oco.break_even_unread", symbol=symbol, error=str(exc))
            return {}
        if not records:
            return {}
        try:
            moves = plan_break_even(self._state, records, symbol)
        except StaleStateError:
            return {}  # the resync kicks every symbol again
        return {m.old.client_algo_id: m.trigger for m in moves}

    def _moves_alone(self, actions: list[Cancel | Replace], moves: dict[str, Decimal]) -> list[Replace]:
        """A break-even move of a stop the plan does not resize or cancel: a replacement of its size."""
        touched = {a.client_algo_id for a in actions}
        alone: list[Replace] = []
        for client_algo_id in moves:
            try:
                leg = self._state.algo_order(client_algo_id)
            except StaleStateError:
                return []
            if client_algo_id not in touched and leg is not None:
                alone.append(Replace(leg.symbol, leg, leg.quantity))
        return alone

    async def _apply_oco(self, symbol: str, action: Cancel | Replace, moves: dict[str, Decimal]) -> None:
        if self._claims.held(action.client_algo_id) or self._claims.symbol_held(symbol):
            return  # beside an entry still travelling (flat only until it fills), or a MODIFY's
        if isinstance(action, Cancel):
            leg = self._state.algo_order(action.client_algo_id)
            if leg is None or self._claims.acting(leg.algo_id):
                return
            await self.cancel(leg.algo_id, action.reason)
            return
        if self._claims.acting(action.old.algo_id):
            return
        trigger = moves.get(action.client_algo_id)
        reason = "resize to the position" if trigger is None else "break even"
        await self.replace_leg(action.old, action.new_qty, reason, trigger)

    async def replace_leg(
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
            None if old.close_position else quantity,
        )
        self._claims.claim([old.algo_id])
        try:
            done = await self._legs.replace(old, new)
        except Exception:
            self._claims.unclaim(old.algo_id)
            metrics.OCO_ACTIONS.labels(action="replace", outcome="failed").inc()
            raise
        if done.old_cancelled is None:
            self._claims.unclaim(old.algo_id)
            if done.placed.standing:
                # Fired at once: the position leaves through it; the old leg goes once it is flat.
                log.info("oco.replacement_fired", symbol=old.symbol, client_algo_id=new.client_algo_id)
                return
            metrics.OCO_ACTIONS.labels(action="place", outcome="failed").inc()
            raise LegNotArmed(f"{new.client_algo_id} not armed: {done.placed.failure}")
        metrics.OCO_ACTIONS.labels(action="replace", outcome="done" if done.old_cancelled else "gone").inc()
        await self._announce(old, new.client_algo_id, done.placed.order, quantity, trigger_price)
        log.info(
            "oco.resized",
            symbol=old.symbol,
            client_algo_id=old.client_algo_id,
            replaced_by=new.client_algo_id,
            quantity=str(quantity),
            reason=reason,
        )

    async def _announce(
        self,
        old: AlgoView,
        new_id: str,
        placed: AlgoOrder | None,
        quantity: Decimal,
        trigger: Decimal | None,
    ) -> None:
        """A ``protection.changed`` event for a stop moved to break-even, or resized after a
        take-profit level of its intent filled (other resizes follow changes announced elsewhere).
        ``after`` is the legs once the change is made: the view's, less ``old`` (no longer open:
        its cancel's event may not have reached the view yet) and with ``placed``, the leg that
        replaced it (nor may its own)."""
        if trigger is not None:
            why = ProtectionReason.BREAK_EVEN
        elif self._tp_filled(old):
            why = ProtectionReason.TP_FILLED
        else:
            return
        try:
            seen = self._state.open_protective(old.symbol)
        except StaleStateError:
            seen = []
        after: list[AlgoView | AlgoOrder] = [
            leg for leg in seen if leg.algo_id != old.algo_id and leg.client_algo_id != new_id
        ]
        if placed is not None:
            after.append(placed)
        change = f"{new_id}:{quantity}:{trigger or old.trigger_price}"
        event = protection_changed(old.symbol, why, change, [old], after)
        try:
            await self._store.publish_protection(event)
        except REDIS_DOWN as exc:
            log.warning("oco.protection_event_failed", symbol=old.symbol, reason=why.value, error=str(exc))

    def _tp_filled(self, leg: AlgoView, *, ladder_only: bool = False) -> bool:
        """A take-profit (single or a ladder level; ``ladder_only``: a level) of ``leg``'s intent filled."""
        digest = leg.client_algo_id.split("-", 1)[1]
        singles = () if ladder_only else ("", "1")
        for digits in (*singles, *(str(n) for n in range(2, 7)), *(f"1{n}" for n in range(2, 7))):
            try:
                tp = self._state.algo_order(f"{PREFIX}{ROLE_LETTERS['tp']}{digits}-{digest}")
            except StaleStateError:
                return False
            if tp is not None and tp.status.is_final and tp.status.has_order and tp.executed_qty > 0:
                return True
        return False

    async def place_leg(self, leg: LegOrder) -> AlgoOrder:
        """Place one protective leg (:meth:`.LegPlacer.place`) and return it standing; raises when
        it does not stand on the exchange."""
        placed = await self._legs.place(leg)
        if placed.order is None or not placed.standing:
            metrics.OCO_ACTIONS.labels(action="place", outcome="failed").inc()
            raise LegNotArmed(f"{leg.client_algo_id} not placed: {placed.failure}")
        return placed.order

    async def cancel(self, algo_id: int, reason: str) -> bool:
        """Cancel one of our legs (fenced by the account lease: :meth:`.LegPlacer.cancel`)."""
        self._claims.claim([algo_id])
        try:
            done = await self._legs.cancel(algo_id)
        except Exception:
            self._claims.unclaim(algo_id)
            metrics.OCO_ACTIONS.labels(action="cancel", outcome="failed").inc()
            raise
        metrics.OCO_ACTIONS.labels(action="cancel", outcome="done" if done else "gone").inc()
        log.info("oco.cancelled", algo_id=algo_id, reason=reason, cancelled=done)
        return done

    async def drop_records(self, symbol: str) -> None:
        """The view says ``symbol`` is flat: drop its records of positions (and of CLOSEs), once
        REST agrees. The view's fills may lag (an entry another instance filled, its events still
        on the way): a record dropped then would make its position look external."""
        stale = [r for r in await self._store.records_of(symbol) if r.opened or r.long is None]
        if not stale:
            return
        actual = await self._gateway.position_amount(symbol)
        if actual != 0:
            log.warning("oco.records_kept", symbol=symbol, exchange=str(actual), detail="the view lags")
            return
        await self._store.drop_records(symbol, [r.digest for r in stale])


def _on_position(action: Cancel | Replace) -> bool:
    """True when ``action`` lowers protection because of the position (it waits for a confirmed view)."""
    return isinstance(action, Replace) or action.reason not in POSITION_FREE
