"""CLOSE: flatten the symbol's position at market, reduce-only, then cancel our legs; or close
the part asked (``quantity``, ``close_pct``: :mod:`..stops.partial`), the legs shrunk to the rest.

The legs stay armed until the close is known to have flattened the position: a close the exchange
refuses, or one that fills only in part, leaves the position with its protection (P3). Only our own
legs are cancelled (:mod:`.own_legs`); on a symbol with no position they protect nothing and go at
once. A close above MARKET_LOT_SIZE maxQty goes out as reduce-only parts (:mod:`.sliced`); a
redelivered close resumes from what the exchange holds under its ids (:mod:`..recovery`).
"""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal

from quantum_exec.contracts import ErrorSource, ResultStatus
from quantum_exec.core.errors import ExchangeError, IntentRejected, ReasonCode
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.exchange.wire import Order, OrderSide, OrderStatus
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.execution.entries.own_legs import OwnLegs
from quantum_exec.execution.entries.shared import position_amount, record_opening
from quantum_exec.execution.entries.sliced import Sliced, SlicedOrders, slices_done
from quantum_exec.execution.entries.slices import Plan, needs_children, plan_children
from quantum_exec.execution.fees import record_fees
from quantum_exec.execution.guards import Guards
from quantum_exec.execution.recovery import ExchangeFacts, Recovery
from quantum_exec.execution.run import Run
from quantum_exec.execution.stops.partial import (
    check_resize_budget,
    close_quantity,
    is_partial,
    shrink_ladder,
)
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

# How long a CLOSE waits for the live view to apply its fills before it asks REST what is left.
CLOSE_FILLS_WAIT_S = 1.0


class Closer:
    """Runs one CLOSE intent (design.md §3, CLOSE)."""

    def __init__(
        self, ctx: EntryContext, recovery: Recovery, guards: Guards, sliced: SlicedOrders, legs: OwnLegs
    ) -> None:
        self._ctx = ctx
        self._gateway = ctx.gateway
        self._resolver = ctx.resolver
        self._recovery = recovery
        self._guards = guards
        self._sliced = sliced
        self._legs = legs

    async def close(self, run: Run) -> None:
        """Close the position of ``run``'s symbol; the result's fields are set on ``run.out``."""
        account = self._ctx.account
        # The records it makes stale are its own to drop: the live OCO leaves them alone meanwhile.
        with account.closing(run.intent.symbol) if account is not None else contextlib.nullcontext():
            await self._close(run)

    async def _close(self, run: Run) -> None:
        symbol, out = run.intent.symbol, run.out
        close_id = client_order_id(run.key, "close")
        out.client_order_id = close_id
        facts = await self._recovery.look_up(run, "close") if run.attempt.resume else ExchangeFacts()
        order, plan = facts.order, facts.plan
        if order is None and plan is None and run.attempt.repair:
            return  # certainly never sent: the repair sends nothing new
        if order is None and plan is None:
            self._guards.check_fresh(run)
            rules = self._guards.rules_for(symbol)
        else:
            found = self._gateway.rules.get(symbol)
            if found is None:
                raise ExchangeError(f"close {close_id} exists but the rules of {symbol} are not loaded")
            rules = found
        sliced: Sliced | None = None
        with run.step("close"):
            # Held from the live OCO while the close travels: once it fills they are cancelled here.
            taken = self._legs.take(symbol)
            try:
                order, sliced = await self._send(run, rules, order, plan, facts.children, taken)
            except BaseException:
                self._legs.release(taken or [])
                raise
            flat = order.status is OrderStatus.FILLED
            account = self._ctx.account
            ids = [o.order_id for o in sliced.orders] if sliced is not None else [order.order_id]
            if account is not None and order.executed_qty > 0:
                account.saw_final(symbol, ids, order.update_time_ms)  # its fill events may trail
            left: Decimal | None = None  # what the CLOSE left open
            if flat:
                # A full CLOSE too: it was sent for the position it read, and an entry of another
                # instance may have filled while it travelled; its position, records and legs stay.
                left = await self._left_open(symbol, ids, partial=is_partial(run.intent))
                flat = left == 0
            if flat and account is not None:
                # Whatever was open is closed: no record of it may be re-protected by a reconcile.
                # On the holder (it names the fills from memory) its own record goes too: none
                # is left for the live OCO to read and confirm by REST (account.close_records).
                await account.closed(symbol, close_key=run.key, flat_by=ids)
            if flat:
                await self._cancel_legs(run, taken)
            else:
                self._legs.release(taken or [])  # what is left keeps its legs (the OCO resizes them)
                if left and is_partial(run.intent):
                    await shrink_ladder(self._ctx, rules, symbol, left, run.key)  # in proportion
                elif left:
                    log.warning("close.position_left", intent_id=run.key, symbol=symbol, left=str(left))
        out.order_id = order.order_id
        out.executed_quantity = order.executed_qty
        if order.executed_qty > 0:
            out.avg_price = order.avg_price
            out.notional = order.cum_quote
        # A partial CLOSE whose order filled did all it was asked, though the position stands.
        out.status = ResultStatus.FILLED if order.status is OrderStatus.FILLED else ResultStatus.PARTIAL
        if order.executed_qty <= 0:
            if account is not None:
                await account.opened(run.key, run.intent, Decimal(0))  # its record names no fill
            out.status = ResultStatus.FAILED
            run.error(
                ReasonCode.ENTRY_NOT_FILLED, ErrorSource.EXCHANGE, f"close {close_id} ended {order.status}"
            )
            return
        with run.step("fees"):
            ids = [o.order_id for o in sliced.orders] if sliced is not None else [order.order_id]
            await record_fees(self._gateway, run, rules, ids, account)

    async def _send(
        self,
        run: Run,
        rules: SymbolRules,
        order: Order | None,
        plan: Plan | None,
        found: dict[int, Order],
        taken: list[int] | None,
    ) -> tuple[Order, Sliced | None]:
        """The close order (sent, or found by a resumed attempt) once final, and its parts if sliced."""
        symbol, out = run.intent.symbol, run.out
        close_id = client_order_id(run.key, "close")
        sliced: Sliced | None = None
        if plan is not None:
            # A close sent in parts resumes: parts are looked up, the missing ones sent.
            out.requested_quantity = out.quantity = plan.total
            side = OrderSide(plan.side)
            if run.attempt.repair:
                sliced = await self._sliced.find(run, plan, found)
            else:
                sliced = await self._sliced.send(
                    run, rules, plan, "close", side, reduce_only=True, found=found
                )
        elif order is None:
            account = self._ctx.account
            amount = await position_amount(account, self._gateway, symbol)
            if amount == 0 and account is not None:
                # The live view's fills can lag the executor's (a fill it has not seen yet): before
                # answering "no position", REST says.
                amount = await self._gateway.position_amount(symbol)
            if amount == 0:
                # Nothing to close: our legs on the symbol protect nothing.
                cancelled = await self._legs.cancel(symbol, taken)
                raise IntentRejected(
                    ReasonCode.NO_POSITION,
                    f"no open position on {symbol}: nothing to close "
                    f"({cancelled} of our open conditional orders cancelled)",
                )
            side = OrderSide.SELL if amount > 0 else OrderSide.BUY
            quantity = close_quantity(rules, run.intent, abs(amount))  # all, or the part asked
            if quantity < abs(amount):
                # The legs shrink to the rest make before break: room for that, or nothing sent.
                await check_resize_budget(self._ctx, symbol, abs(amount) - quantity)
            out.requested_quantity = out.quantity = quantity
            recording = record_opening(account, run)
            try:
                if needs_children(rules, quantity, None):
                    # Above MARKET_LOT_SIZE maxQty: reduce-only parts of at most maxQty each.
                    plan = plan_children(rules, quantity, Decimal(0), None, time.time(), side.value)
                    await self._ctx.plans.save(run.key, plan.to_json())
                    sliced = await self._sliced.send(run, rules, plan, "close", side, reduce_only=True)
                else:
                    order = await self._resolver.submit(
                        symbol,
                        close_id,
                        lambda: self._gateway.place_market(
                            symbol, side, quantity, close_id, reduce_only=True
                        ),
                    )
            finally:
                await recording
        if sliced is not None:
            assert plan is not None
            slices_done(run, plan, sliced, "close")
            return sliced.combined(close_id, OrderSide(plan.side), plan.total), sliced
        assert order is not None
        return await self._resolver.until_final(symbol, order), None

    async def _left_open(self, symbol: str, ids: list[int], *, partial: bool) -> Decimal:
        """What the position holds once the CLOSE's orders ``ids`` filled: the live view once it
        applied their fills (fills come in order among themselves, so an entry that filled before
        them is in: no request), else REST. A partial CLOSE asks REST (what it shrinks the legs to)."""
        account = self._ctx.account
        if account is not None and not partial:
            amount = account.position_amount(symbol)
            if amount is None:
                for order_id in ids:
                    await account.fills(symbol, order_id, CLOSE_FILLS_WAIT_S)
                amount = account.position_amount(symbol)
            if amount is not None:
                return abs(amount)
        return abs(await self._gateway.position_amount(symbol))

    async def _cancel_legs(self, run: Run, taken: list[int] | None) -> None:
        """Cancel our legs of the flattened symbol; a refusal, or a cancel whose outcome is unknown,
        leaves at worst orphans (logged), which the live OCO or the next entry's orphan sweep
        cancels: the close itself is done and is answered now. Only a lost lease propagates."""
        symbol = run.intent.symbol
        try:
            await self._legs.cancel(symbol, taken)
        except OwnershipLost:
            raise
        except ExchangeError as exc:
            log.warning("close.legs_left", intent_id=run.key, symbol=symbol, detail=str(exc))
