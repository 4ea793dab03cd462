"""A LIMIT entry: sent at the run's price (:class:`LimitEntry`, the strategy of :mod:`.base`), then
worked (:class:`WorkingEntry`): wait for its fills, protect at the first one, end it on time.

A resting order may fill in pieces, long after it was placed. Its SL/TP are armed at the first
fill that opens a position on the intent's side (a fill that only reduces an opposite position
opens nothing) as closePosition orders, which cover whatever fills afterwards, so nothing is protected twice
and no fill waits naked for the rest. The order is given ``expire_after_s`` (at most
``QUANTUM_WORKING_ORDER_MAX_S``, which also bounds a GTC without one: the symbol's later intents
wait behind it), then its remainder is cancelled: the filled part stays protected.

The fills are seen on the user data stream when it is up (the wait wakes on the order's final
event); a REST lookup by client id every ``POLL_S`` notices partial fills and is the only source
while the stream is down. While it waits the entry is parked (:mod:`..parking`): it holds none of
the consumer's execution slots, so a resting order delays no other symbol.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from quantum_exec.contracts import ErrorSource, TradeIntent
from quantum_exec.core.errors import ReasonCode
from quantum_exec.core.rules import SymbolRules
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.wire import Order, OrderType
from quantum_exec.execution.entries.base import Entry, EntryContext, Fill
from quantum_exec.execution.entries.market import found_order, send_order
from quantum_exec.execution.guards import wants_protection
from quantum_exec.execution.opposite import opened_size
from quantum_exec.execution.parking import park
from quantum_exec.execution.run import Run
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.execution.recovery import ExchangeFacts

log = get_logger(__name__)

POLL_S = 1.0


def working_limit_s(settings: Settings, intent: TradeIntent) -> float:
    """How long an entry may work: ``expire_after_s``, at most ``QUANTUM_WORKING_ORDER_MAX_S``."""
    limit_s = float(settings.working_order_max_s)
    if intent.expire_after_s is not None:
        limit_s = min(limit_s, float(intent.expire_after_s))
    return limit_s


class WorkingEntry:
    """Runs a LIMIT entry to its end (see the module docstring)."""

    def __init__(self, ctx: EntryContext) -> None:
        self._ctx = ctx
        self._settings = ctx.settings
        self._exposure = ctx.exposure
        self._gateway = ctx.gateway
        self._resolver = ctx.resolver
        self._protector = ctx.protector

    async def work(
        self, run: Run, rules: SymbolRules, entry: Order, *, long: bool, resume: bool
    ) -> tuple[Order, Order | bool]:
        """The entry once final, and ``False`` or ``True`` / the emergency close order when it was
        protected while working."""
        intent = run.intent
        limit_s = working_limit_s(self._settings, intent)
        deadline = run.working_deadline(limit_s)
        protected: Order | bool = False
        ended_by: str | None = None
        with run.step("working"):
            while not entry.is_final:
                # Against an opposite position the first fills only reduce it: legs on the intent's
                # side are armed once a fill opens a position there, not before (at flat the OCO
                # would cancel them as orphans and the new position would have none).
                size = opened_size(run, rules, entry, long=long)
                if protected is False and size > 0 and wants_protection(intent):
                    with self._exposure.naked(run, entry):
                        flatten = await self._protector.protect(
                            run, rules, entry, size, long=long, resume=resume, close_position=True
                        )
                    protected = flatten if flatten is not None else True
                    if flatten is not None:
                        # Protection failed and the position was closed: stop buying into it.
                        entry = await self._end(run, entry, "protection failed")
                        break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    entry = await self._end(run, entry, f"expire_after {limit_s:g} s")
                    break
                closes = self._ctx.closes
                ended_by = await closes.wait(intent.symbol, run.stream_id, 0) if closes is not None else None
                if ended_by is not None:
                    # A CLOSE of the symbol waits behind this entry (or trading is HALTED): end it
                    # now, the CLOSE follows.
                    entry = await self._end(run, entry, ended_by)
                    break
                await self._wait(intent.symbol, entry, min(remaining, POLL_S))
                found = await self._gateway.get_order(intent.symbol, entry.client_order_id)
                if found is not None:
                    entry = found
        if ended_by is not None and entry.executed_qty > 0:
            run.error(
                ReasonCode.ENTRY_ENDED_EARLY,
                ErrorSource.INTERNAL,
                f"LIMIT entry {entry.client_order_id} cancelled with {entry.executed_qty} of "
                f"{entry.orig_qty} filled: {ended_by}",
            )
        log.info(
            "entry.worked",
            intent_id=run.key,
            symbol=intent.symbol,
            status=entry.status.value,
            executed=str(entry.executed_qty),
            price=str(entry.price),
        )
        return entry, protected

    async def _wait(self, symbol: str, entry: Order, timeout_s: float) -> None:
        """Until the order's final event (user stream) or ``timeout_s``; a plain sleep when stale.

        Parked (:mod:`..parking`): a resting entry holds no slot of the consumer's, and its fill is
        protected as soon as it is seen, whatever else rests or recovers."""
        park()
        account = self._ctx.account
        if account is not None and account.position_amount(symbol) is not None:
            await account.fills(symbol, entry.order_id, timeout_s)
            return
        await asyncio.sleep(timeout_s)

    async def _end(self, run: Run, entry: Order, why: str) -> Order:
        """Cancel the unfilled remainder; the order as it ended (filled meanwhile is fine too)."""
        symbol = run.intent.symbol
        cancelled = await self._resolver.cancel(
            entry.client_order_id, lambda: self._gateway.cancel_order(symbol, entry.client_order_id)
        )
        found = (
            cancelled
            if cancelled is not None
            else await self._gateway.get_order(symbol, entry.client_order_id)
        )
        if found is not None:
            entry = found
        if not entry.is_final:
            entry = await self._resolver.until_final(symbol, entry)
        log.info(
            "entry.remainder_cancelled",
            intent_id=run.key,
            symbol=symbol,
            why=why,
            executed=str(entry.executed_qty),
        )
        return entry


class LimitEntry:
    """The entry strategy of a LIMIT entry: one order at the run's price, worked until its end."""

    def __init__(self, ctx: EntryContext, working: WorkingEntry) -> None:
        self._ctx = ctx
        self.working = working

    async def find(self, run: Run, facts: ExchangeFacts) -> Entry | None:
        return found_order(self._ctx, run, facts)

    async def send(self, run: Run, entry: Entry) -> None:
        intent, gateway = run.intent, self._ctx.gateway
        assert run.limit_price is not None
        price = run.limit_price
        tif = intent.time_in_force or "GTC"
        await send_order(
            self._ctx,
            run,
            entry,
            lambda: gateway.place_limit(
                intent.symbol,
                entry.side,
                entry.quantity,
                price,
                entry.client_id,
                time_in_force=tif,
                reduce_only=run.reduce_only,
            ),
        )

    async def follow(self, run: Run, entry: Entry) -> Fill | None:
        """A LIMIT order worked to its end (protected at its first fill); any other once final."""
        order = entry.order
        assert order is not None
        early: Order | bool = False
        if order.order_type is OrderType.LIMIT:
            order, early = await self.working.work(
                run, entry.rules, order, long=entry.long, resume=run.attempt.resume
            )
        else:
            order = await self._ctx.resolver.until_final(run.intent.symbol, order)
        return Fill(order, early, [order.order_id])
