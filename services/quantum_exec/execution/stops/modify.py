"""MODIFY: change the protection of a symbol's open position on the exchange, make before break.

Binance cannot modify an untriggered conditional order, so a MODIFY places a new set of legs and
cancels the old ones only once every new leg is seen armed (``NEW``): at every moment the position
is covered by the old stop, the new one, or both (both reduce-only, never more than the position).

The MODIFY owns the set it places: its legs carry its own client ids
(:func:`quantum_exec.core.ids.client_order_id` of the MODIFY's key, one generation per MODIFY), and
what it does not change is carried over into the set at the same triggers (the stop, a single
target, or a ladder's levels with their sizes; a pyramid's legs, one set per entry, become one that
covers the whole position, see :func:`.set_plan.carried_targets`), so the position keeps one
coherent set whose records name the last MODIFY. A resumed MODIFY (killed at any step) reads the
exchange again and does the same: legs under its ids that stand are found (``-4116`` looked up by
the leg placer), never placed twice, and the old ones are cancelled. Every leg goes through the one
leg placer (:mod:`..legs`); the live OCO is kept off the legs while the change travels.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from quantum_exec.contracts import ErrorSource, ProtectionState, ResultStatus, Side
from quantum_exec.core.errors import ExchangeError, IntentRejected, PermanentError, ReasonCode, RetryableError
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.rules import (
    fmt,
)
from quantum_exec.core.settings import ProtectionMode
from quantum_exec.exchange.wire import AlgoOrder, OrderType
from quantum_exec.execution.admission import Admission
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.execution.guards import Guards
from quantum_exec.execution.legs import LegOrder, Placement
from quantum_exec.execution.run import Run
from quantum_exec.execution.stops.break_even import modify_break_even
from quantum_exec.execution.stops.budget import check_budget
from quantum_exec.execution.stops.ladder import check_ladder_sizes
from quantum_exec.execution.stops.recheck import gone_targets, stale_legs, withdraw_all
from quantum_exec.execution.stops.set_plan import check_against_mark, leg_contract, plan_set
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


class Modifier:
    """Runs one MODIFY intent (see the module docstring)."""

    def __init__(
        self, ctx: EntryContext, guards: Guards, own: dict[str, set[int]], admission: Admission
    ) -> None:
        self._ctx = ctx
        self._guards = guards
        self._own = own
        self._admission = admission

    async def modify(self, run: Run) -> None:
        """Change the protection of ``run``'s symbol; the result's fields are set on ``run.out``."""
        ctx, intent = self._ctx, run.intent
        symbol = intent.symbol
        await self._admission.reducing(run)  # the risk governor's word first (not on resume)
        if not run.attempt.resume:
            self._guards.check_fresh(run)
        account = ctx.account
        if account is not None:
            # Held before anything is read: the live OCO replaces none of the legs this reads
            # while the MODIFY travels (what changes meanwhile is read again once the set stands).
            await account.hold_symbol(symbol)
        try:
            await self._modify(run)
        finally:
            if account is not None:
                account.release_symbol(symbol)

    async def _modify(self, run: Run) -> None:
        ctx, intent, out = self._ctx, run.intent, run.out
        symbol = intent.symbol
        rules = self._guards.rules_for(symbol)
        with run.step("position"):
            position = next((p for p in await ctx.gateway.positions(symbol) if p.amount != 0), None)
        if position is None:
            raise IntentRejected(ReasonCode.NO_POSITION, f"no open position on {symbol}: nothing to modify")
        long, size = position.amount > 0, abs(position.amount)
        out.quantity = size
        with run.step("legs"):
            own = await ctx.legs.open_own(symbol)
            mark = await ctx.gateway.mark_price(symbol)
        out.legs_before = [leg_contract(o) for o in own]
        armed = [o for o in own if o.status.is_armed]
        close_position = ctx.settings.protection_mode is ProtectionMode.CLOSE_POSITION
        if intent.take_profits:
            check_ladder_sizes(rules, intent.take_profits, size)
        moving = await modify_break_even(ctx, run, rules, long=long, entry=position.entry_price, armed=armed)
        new, changed = plan_set(
            rules,
            run,
            long=long,
            entry=position.entry_price,
            size=size,
            armed=armed,
            close_position=close_position,
            stop_floor=moving[1] if moving is not None and moving[2] else None,
        )
        check_against_mark(rules, [leg for leg in new if leg.client_algo_id in changed], long=long, mark=mark)
        new_ids = {leg.client_algo_id for leg in new}
        missing = [leg for leg in new if leg.client_algo_id not in {o.client_algo_id for o in armed}]
        await check_budget(ctx, len(missing))
        account = ctx.account
        if account is not None:
            # Carried over: the records are rewritten under this MODIFY's key (read before any send).
            break_even = (
                (moving[0], moving[1]) if moving is not None else await account.break_even(symbol, long=long)
            )
            # The records first: a reconcile running meanwhile (a restart, a reconnect) protects
            # from them, so it places this MODIFY's legs (found, never twice, by the placer) and
            # never the replaced triggers again.
            await self._records(run, long=long, size=size, new=new, break_even=break_even)
        with run.step("protection"):
            placements = list(await asyncio.gather(*(ctx.legs.place(leg) for leg in new)))
        standing = [p.order for p in placements if p.order is not None and p.standing]
        self._own.setdefault(symbol, set()).update(o.algo_id for o in standing)
        failed = [(leg, p) for leg, p in zip(new, placements, strict=True) if not _armed(p)]
        if failed:
            if any(o.client_algo_id not in new_ids for o in armed):
                # The old set still stands whole: the new legs that stand go again.
                await self._undo([p.order for p in placements if p.order is not None])
            why = "; ".join(f"{leg.client_algo_id}: {p.failure}" for leg, p in failed)
            out.status, out.protection = ResultStatus.FAILED, ProtectionState.PROTECTED
            run.error(
                ReasonCode.PROTECTION_FAILED,
                ErrorSource.EXCHANGE,
                f"MODIFY of {symbol} not made, the old legs stand: {why}",
            )
            out.legs_after = [leg_contract(o) for o in await ctx.legs.open_own(symbol)]
            return
        # Read again: what changed while the MODIFY travelled (see :mod:`.recheck`).
        with run.step("recheck"):
            now_at = next((p for p in await ctx.gateway.positions(symbol) if p.amount != 0), None)
            now = await ctx.legs.open_own(symbol)
        if now_at is None or (now_at.amount > 0) is not long:
            await self._closed_meanwhile(run, own, now)
            return
        out.quantity = abs(now_at.amount)
        trailing = intent.trailing_stop is not None
        carried = [leg for leg in new if leg.client_algo_id not in changed]
        gone = set(gone_targets(armed, now, carried, new_ids))
        withdrawn = [p.order for p in placements if p.order is not None and p.order.client_algo_id in gone]
        left = await self._cancel_old([*stale_legs(now, new_ids, trailing=trailing), *withdrawn])
        after = [p.order for p in placements if p.order is not None and p.order.client_algo_id not in gone]
        if account is not None:
            await account.protection_changed(symbol, "modify", run.key, own, after, intent_id=run.key)
        kept = [] if trailing else [o for o in now if o.order_type is OrderType.TRAILING_STOP_MARKET]
        kept = [o for o in kept if o.status.is_armed and o.client_algo_id not in new_ids]
        out.legs_after = [leg_contract(o) for o in [*after, *kept]]
        out.trailing_stop = next(
            (c for c in out.legs_after if c.order_type == OrderType.TRAILING_STOP_MARKET.value), None
        )
        out.status, out.protection = ResultStatus.FILLED, ProtectionState.PROTECTED
        out.stop_loss = next((c for c in out.legs_after if c.order_type == OrderType.STOP_MARKET.value), None)
        targets = [c for c in out.legs_after if c.order_type == OrderType.TAKE_PROFIT_MARKET.value]
        out.take_profit = targets[-1] if targets else None
        out.take_profits = targets if any(c.level is not None for c in targets) else None
        if left:
            out.status = ResultStatus.PARTIAL
            run.error(
                ReasonCode.PROTECTION_FAILED,
                ErrorSource.EXCHANGE,
                f"new legs of {symbol} armed; old legs left armed beside them: {', '.join(left)}",
            )
        log.info(
            "stops.modified",
            intent_id=run.key,
            symbol=symbol,
            before=[o.client_algo_id for o in own],
            after=sorted(new_ids - gone),
            withdrawn=sorted(gone),
            position=str(out.quantity),
        )

    async def _closed_meanwhile(self, run: Run, first: list[AlgoOrder], now: list[AlgoOrder]) -> None:
        """The position closed while the MODIFY travelled (its old stop or target fired): every leg
        still armed goes, and the result says what closed it (P5)."""
        ctx, out, symbol = self._ctx, run.out, run.intent.symbol
        left = await self._cancel_old(withdraw_all(now))
        fired: list[str] = []
        for order in first:
            if order.client_algo_id in {o.client_algo_id for o in now}:
                continue
            found = await ctx.legs.find(order.client_algo_id)
            if found is not None and found.status.has_fired:
                fired.append(f"{found.order_type.value} {found.client_algo_id} at {fmt(found.trigger_price)}")
        by = ", ".join(fired) if fired else "an order outside this MODIFY"
        out.status, out.protection, out.quantity = (
            ResultStatus.FAILED,
            ProtectionState.NOT_REQUESTED,
            Decimal(0),
        )
        out.legs_after = [leg_contract(o) for o in now if o.client_algo_id in set(left)]
        out.stop_loss = out.take_profit = out.trailing_stop = None
        out.take_profits = None
        still = f"; left armed: {', '.join(left)}" if left else ""
        run.error(
            ReasonCode.NO_POSITION,
            ErrorSource.EXCHANGE,
            f"the position on {symbol} was closed by {by} while the MODIFY travelled; its new legs "
            f"were withdrawn{still}",
        )
        log.warning("stops.modify_position_closed", intent_id=run.key, symbol=symbol, by=by, left=left)

    async def _cancel_old(self, old: list[AlgoOrder]) -> list[str]:
        """Cancel the replaced legs (the new ones are armed); the ids left armed by a refusal."""
        left: list[str] = []
        for order in old:
            try:
                if await self._cancel(order.algo_id):
                    self._own.get(order.symbol, set()).discard(order.algo_id)
            except (PermanentError, RetryableError) as exc:
                log.warning(
                    "stops.old_leg_left",
                    symbol=order.symbol,
                    client_algo_id=order.client_algo_id,
                    detail=str(exc),
                )
                left.append(order.client_algo_id)
        return left

    async def _cancel(self, algo_id: int) -> bool:
        """Cancel one leg, claimed from the live OCO until its CANCELED is seen (one DELETE, and
        never a replacement of a leg this cancelled: :meth:`AccountFollower.claim_cancel`)."""
        account = self._ctx.account
        if account is not None:
            account.claim_cancel(algo_id)
        try:
            return await self._ctx.legs.cancel(algo_id)
        except BaseException:
            if account is not None:
                account.cancel_failed(algo_id)
            raise

    async def _undo(self, placed: list[AlgoOrder]) -> None:
        """A new leg could not be armed: the new ones that stand go (the old set stays whole)."""
        for order in placed:
            if order.status.is_armed:
                try:
                    await self._cancel(order.algo_id)
                except ExchangeError as exc:
                    log.warning("stops.undo_failed", client_algo_id=order.client_algo_id, detail=str(exc))

    async def _records(
        self,
        run: Run,
        *,
        long: bool,
        size: Decimal,
        new: list[LegOrder],
        break_even: tuple[int, Decimal] | None,
    ) -> None:
        """The position's records name this MODIFY and its triggers from now on (the reconcile
        re-protects from them, never from the replaced triggers), and keep the break-even move the
        replaced records held (its level is of the carried ladder, now under this MODIFY's ids)."""
        account = self._ctx.account
        assert account is not None
        symbol = run.intent.symbol
        sl = next((leg.trigger_price for leg in new if leg.order_type is OrderType.STOP_MARKET), None)
        single = [
            leg.trigger_price
            for leg in new
            if leg.order_type is OrderType.TAKE_PROFIT_MARKET
            and leg.client_algo_id == client_order_id(run.key, "tp")
        ]
        await account.closed(symbol)
        owner = run.intent.model_copy(update={"side": Side.BUY if long else Side.SELL})
        await account.opened(
            run.key,
            owner,
            size,
            stop_loss=sl,
            take_profit=single[0] if single else None,
            break_even=break_even,
        )
        log.info("stops.records", symbol=symbol, intent_id=run.key, stop_loss=fmt(sl) if sl else None)


def _armed(placement: Placement) -> bool:
    return placement.order is not None and placement.order.status.is_armed
