"""A MARKET entry, and the SL/TP sent with it (``QUANTUM_PROTECTION_TIMING=with_entry``) made true
after the fill.

:class:`MarketEntry` is the strategy (:mod:`.base`); :func:`send_order` sends one entry order (a
MARKET, or a LIMIT for :mod:`.limit`) and :func:`found_order` takes one from a resumed attempt's facts.

The closePosition legs reach the exchange with the entry instead of a round trip after its fill,
so for that round trip they sit on a flat symbol. Meanwhile:

* the live OCO would take them for orphans: they are held from it (by client id, known before
  they are sent) until the intent's result is built;
* the mark may cross a trigger: the exchange fires the leg on a flat symbol and rejects it
  (``Reduce Only reject``), or refuses to place it (``-2021``).

Once the entry filled, what became of each leg is read (the live view, once it has seen the fill;
else REST): a leg that ended is placed again with the intent's trigger if the fill is still on its
safe side, else it is failed and the failure policy applies (:meth:`Protector.settle`). The result
says ``protected`` only when both legs are armed on the exchange.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from quantum_exec.contracts import Side
from quantum_exec.core.errors import IntentRejected, PermanentError
from quantum_exec.core.ids import client_order_id, replacement_of
from quantum_exec.core.rules import SymbolRules, check_protection
from quantum_exec.core.settings import ProtectionTiming, Settings
from quantum_exec.exchange.pacing import PacingDeadline
from quantum_exec.exchange.wire import AlgoStatus, Order, OrderType
from quantum_exec.execution.entries.base import Entry, EntryContext, Fill, known_rules, send_by, shed
from quantum_exec.execution.entries.shared import record_opening
from quantum_exec.execution.guards import Guards, wants_protection
from quantum_exec.execution.leg_copies import find_copy
from quantum_exec.execution.legs import LegOrder, LegPlacer
from quantum_exec.execution.netting import is_opposite
from quantum_exec.execution.ports import AccountView
from quantum_exec.execution.protection import Leg, Protector
from quantum_exec.execution.resolution import run_together
from quantum_exec.execution.run import Run
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.execution.recovery import ExchangeFacts

log = get_logger(__name__)


class LegsBesideEntry:
    """The with_entry legs of one MARKET entry per symbol at a time (the executor's symbol lock)."""

    def __init__(
        self,
        settings: Settings,
        legs: LegPlacer,
        protector: Protector,
        account: Callable[[], AccountView | None],
    ) -> None:
        self._settings = settings
        self._legs = legs
        self._protector = protector
        self._account = account
        self._held: dict[str, list[str]] = {}  # symbol -> client ids held from the live OCO

    def legs(
        self, run: Run, rules: SymbolRules, price: Decimal, quantity: Decimal, *, long: bool
    ) -> list[Leg]:
        """The legs to send with the entry, or none (then they follow the fill).

        Only with ``QUANTUM_PROTECTION_TIMING=with_entry``, for one MARKET order with absolute
        triggers (a percentage needs the fill price), on a symbol whose position is known:

        * flat: closePosition legs (they cover whatever the entry fills);
        * an add-on to a position on the intent's side: reduce-only legs sized to the add-on
          (``QUANTUM_PROTECTION_MODE=quantity``, as after the fill: a closePosition leg would
          protect more than this intent opened), resized to the fill if it fills less;
        * a position on the other side: none (the entry nets against it first; what it opens is
          known only after the fill).
        """
        intent, before = run.intent, run.position_before
        if (
            self._settings.protection_timing is not ProtectionTiming.WITH_ENTRY
            or intent.order_type != "MARKET"
            or intent.stop_loss_pct is not None
            or intent.take_profit_pct is not None
            or intent.take_profits is not None  # a ladder's levels are sized from the fill
            or intent.trailing_stop is not None  # sized from the fill too (no closePosition)
            or not wants_protection(intent)
            or before is None
            or is_opposite(before, long=long)
        ):
            return []
        return self._protector.legs(run, rules, price, quantity, long=long, close_position=before == 0)

    async def place(self, symbol: str, legs: list[Leg]) -> None:
        """Hold the legs from the live OCO, then place them (concurrently with the entry)."""
        account = self._account()
        if account is not None:
            ids = [leg.client_algo_id for leg in legs]
            account.hold_legs(ids)
            self._held[symbol] = ids
        await self._protector.place(symbol, legs)

    def release(self, symbol: str) -> None:
        """The intent is done: the live OCO looks after the legs again (safe when none are held)."""
        ids = self._held.pop(symbol, None)
        account = self._account()
        if ids and account is not None:
            account.release_legs(ids)

    async def settle(
        self, run: Run, rules: SymbolRules, legs: list[Leg], entry: Order, *, long: bool, resume: bool
    ) -> Order | None:
        """After the fill: place again what ended or was refused, then the failure policy; returns
        the emergency close, if any."""
        symbol, filled = run.intent.symbol, entry.executed_qty
        await self._read_back(symbol, entry, legs)
        missing = [leg for leg in legs if leg.order is None]
        for leg in missing:
            if leg.quantity is not None:
                leg.quantity = min(leg.quantity, filled)  # placed again for what filled
        # Ended because the account's live OCO (maybe another instance's) replaced it: its copy.
        await run_together(*(find_copy(self._legs, symbol, leg) for leg in missing))
        missing = [leg for leg in missing if leg.order is None]
        if missing:
            sl, tp = Guards.triggers(rules, run.intent, long=long, price=entry.avg_price)
            to_place = []
            for leg in missing:
                leg.trigger_price = sl if leg.kind == "SL" else tp  # the intent's, not a re-rounded one
                try:
                    check_protection(
                        rules,
                        long=long,
                        reference=entry.avg_price,
                        sl=leg.trigger_price if leg.kind == "SL" else None,
                        tp=leg.trigger_price if leg.kind == "TP" else None,
                    )
                except IntentRejected as exc:
                    leg.error = exc  # the fill is past the trigger: the failure policy decides
                else:
                    to_place.append(leg)
            if to_place:
                await self._protector.place(symbol, to_place)
        await run_together(*(self._resize(symbol, leg, filled) for leg in legs))
        return await self._protector.settle(run, legs, filled, long=long, resume=resume)

    async def _resize(self, symbol: str, leg: Leg, filled: Decimal) -> None:
        """An add-on's reduce-only leg larger than what its entry filled (a MARKET that expired
        part filled) is replaced by one of the filled size, make before break under the leg's
        alternate id: left as it is, it would close part of the position it did not open."""
        old = leg.order
        if old is None or old.close_position or not old.status.is_armed or old.quantity <= filled:
            return
        new = LegOrder(
            symbol, leg.side, leg.order_type, old.trigger_price, replacement_of(old.client_algo_id), filled
        )
        account = self._account()
        if account is not None:  # the old leg is held already; the live OCO leaves both to this
            account.hold_legs([new.client_algo_id])
            self._held.setdefault(symbol, []).append(new.client_algo_id)
        replaced = await self._legs.replace(old, new)
        if replaced.placed.order is None or not replaced.placed.standing:
            log.warning(
                "protection.resize_failed", symbol=symbol, kind=leg.kind, detail=replaced.placed.failure
            )
            return  # the larger leg stays: reduce-only, it still protects all of the add-on
        own = self._protector.own.setdefault(symbol, set())
        if replaced.old_cancelled is not None:
            own.discard(old.algo_id)
        leg.order, leg.client_algo_id, leg.quantity = replaced.placed.order, new.client_algo_id, filled

    async def withdraw_resumed(self, run: Run) -> None:
        """A resumed entry that was never placed or filled nothing: the legs an earlier attempt may
        have sent beside it (under the intent's own leg ids, which nothing else places before a
        fill) are withdrawn, or a reduce-only pair would stay on a position this intent never
        added to. Under both ids a leg may have: the live OCO of this process, which does not know
        the earlier attempt's legs, may have replaced one (larger than the position) meanwhile."""
        intent = run.intent
        if intent.stop_loss_pct is not None or intent.take_profit_pct is not None:
            return  # a percentage trigger is never sent beside the entry
        symbol = intent.symbol
        ids: list[str] = []
        for kind, given in (("sl", intent.stop_loss), ("tp", intent.take_profit)):
            if given is not None:
                plain = client_order_id(run.key, "sl" if kind == "sl" else "tp")
                ids += [plain, replacement_of(plain)]
        account = self._account()
        if account is not None:
            account.hold_legs(ids)  # the live OCO replaces none of them while they are withdrawn

        async def withdraw(client_algo_id: str) -> None:
            found = await self._legs.find_since(run.earlier_sent_by, client_algo_id)
            if found is not None and found.status.is_armed:
                await self._legs.cancel(found.algo_id)
                self._protector.own.get(symbol, set()).discard(found.algo_id)
                log.info("protection.withdrawn_on_resume", symbol=symbol, client_algo_id=client_algo_id)

        try:
            await run_together(*(withdraw(client_algo_id) for client_algo_id in ids))
        finally:
            if account is not None:
                account.release_legs(ids)

    async def _read_back(self, symbol: str, entry: Order, legs: list[Leg]) -> None:
        """Bring each placed leg's status up to date; a leg that ended unfired loses its order."""
        account = self._account()
        seen_fill = account is not None and await account.fills(symbol, entry.order_id) is not None

        async def read(leg: Leg) -> None:
            assert leg.order is not None
            status: AlgoStatus | None = None
            if seen_fill and account is not None:
                # The view has seen the fill, so every earlier update of the leg too.
                view = await account.algo_changed(leg.client_algo_id, 0)
                status = view.status if view is not None else None
            if status is None:
                found = await self._legs.find(leg.client_algo_id)
                status = found.status if found is not None else AlgoStatus.EXPIRED
            if status.is_failed:  # protects nothing: placed again after the fill
                log.warning(
                    "protection.leg_ended_beside_entry",
                    symbol=symbol,
                    kind=leg.kind,
                    client_algo_id=leg.client_algo_id,
                    status=status.value,
                )
                self._protector.own.get(symbol, set()).discard(leg.order.algo_id)
                leg.order = None
                leg.error = PermanentError(
                    f"{leg.kind} {leg.client_algo_id} ended {status.value} before the fill"
                )
            elif status is not leg.order.status:
                leg.order = dataclasses.replace(leg.order, status=status)

        await run_together(*(read(leg) for leg in legs if leg.order is not None))


def found_order(ctx: EntryContext, run: Run, facts: ExchangeFacts) -> Entry | None:
    """The entry order an earlier attempt placed, as the facts found it; None if it never was."""
    order, intent, out = facts.order, run.intent, run.out
    if order is None:
        return None
    log.info("entry.found_on_resume", intent_id=run.key, symbol=intent.symbol, order_id=order.order_id)
    # A resting LIMIT found on resume may have filled nothing yet: its price is the reference.
    reference = order.price if order.order_type is OrderType.LIMIT else intent.entry_price or order.avg_price
    out.reference_price, out.quantity, out.requested_quantity = reference, order.orig_qty, order.orig_qty
    rules = known_rules(ctx, run, "exists")
    long = intent.side is Side.BUY
    return Entry(order.client_order_id, rules, reference, order.orig_qty, long, order=order)


async def send_order(
    ctx: EntryContext,
    run: Run,
    entry: Entry,
    place: Callable[[], Awaitable[Order]],
    beside: LegsBesideEntry | None = None,
) -> None:
    """Send one entry order (with its ``entry.beside`` legs, if any); refused: nothing opened."""
    intent, symbol, legs = run.intent, run.intent.symbol, entry.beside
    placing = beside.place(symbol, legs) if beside is not None and legs else None
    placed = asyncio.ensure_future(placing) if placing is not None else None
    recording = record_opening(ctx.account, run)
    run.entry_sent = True
    with run.step("entry"), send_by(ctx.settings, run):
        try:
            entry.order = await ctx.resolver.submit(symbol, entry.client_id, place)
        except (PermanentError, PacingDeadline, IntentRejected) as refused:
            # Refused by the exchange, or at the fence (its admission revoked): certainly not placed.
            run.entry_sent = False
            if placed is not None:
                await asyncio.gather(placed, return_exceptions=True)
                await ctx.protector.withdraw(symbol, legs)
            if ctx.account is not None:
                await recording
                await ctx.account.opened(run.key, intent, Decimal(0))
            if isinstance(refused, PacingDeadline):
                raise shed(ctx.settings, run, refused) from None
            raise
        except BaseException:
            if placed is not None:
                # Unknown outcome: the closePosition legs stay (they protect the entry if
                # it exists; on a flat symbol the next intent cancels them as orphans).
                await asyncio.gather(placed, return_exceptions=True)
            raise
        finally:
            await recording
        if placed is not None:
            await placed


class MarketEntry:
    """The entry strategy of one MARKET order, its with_entry legs travelling beside it."""

    def __init__(self, ctx: EntryContext) -> None:
        self._ctx = ctx
        self.beside = LegsBesideEntry(ctx.settings, ctx.legs, ctx.protector, lambda: ctx.account)

    async def find(self, run: Run, facts: ExchangeFacts) -> Entry | None:
        found = found_order(self._ctx, run, facts)
        if found is None:
            # Certainly never placed: legs an earlier attempt sent beside it protect nothing, and
            # this attempt may not send it again (a repair, or a check that fails now).
            await self.beside.withdraw_resumed(run)
        return found

    async def send(self, run: Run, entry: Entry) -> None:
        intent, gateway = run.intent, self._ctx.gateway
        entry.beside = self.beside.legs(run, entry.rules, entry.reference, entry.quantity, long=entry.long)
        await send_order(
            self._ctx,
            run,
            entry,
            lambda: gateway.place_market(
                intent.symbol, entry.side, entry.quantity, entry.client_id, reduce_only=run.reduce_only
            ),
            self.beside,
        )

    async def follow(self, run: Run, entry: Entry) -> Fill | None:
        """The order once final; legs sent with it made true (or withdrawn when nothing filled)."""
        symbol = run.intent.symbol
        assert entry.order is not None
        order = await self._ctx.resolver.until_final(symbol, entry.order)
        early: Order | bool = False
        if entry.beside and order.executed_qty > 0:
            with run.step("protection"):
                # What the exchange made of them while the entry travelled; placed again if ended.
                flatten = await self.beside.settle(
                    run, entry.rules, entry.beside, order, long=entry.long, resume=run.attempt.resume
                )
            early = flatten if flatten is not None else True
        elif entry.beside:
            await self._ctx.protector.withdraw(symbol, entry.beside)  # nothing opened: nothing to protect
        elif order.executed_qty <= 0 and run.attempt.resume:
            await self.beside.withdraw_resumed(run)
        return Fill(order, early, [order.order_id])
