"""A STOP / STOP_MARKET entry: a conditional order that opens the position when the market gets there.

It is placed through the Algo Order API (not reduce-only) under the entry's client id, and waits
(``expire_after_s``, at most ``QUANTUM_WORKING_ORDER_MAX_S``) until the exchange triggers it. The
triggered order carries an id of the exchange's (``actualOrderId``): a STOP_MARKET's fills at
once; a STOP's is a LIMIT that may rest, and is then worked like a LIMIT entry
(:mod:`.limit`). An untriggered entry is cancelled at its deadline or when a CLOSE of the
symbol is waiting; one that triggered meanwhile is followed through. So is one caught in
TRIGGERING (the cancel answers ``-2011``): the exchange is placing its order, which is followed
until it exists (then filled and protected like any other), for ``FOLLOW_S`` at most.

A stop entry waits for the market, seconds to minutes, so it is not polled: while the account
view is live it waits on the algo order's ALGO_UPDATE (the user data stream), and reads the order
by REST (one weight-1 request) only when the stream says it triggered or ended, or every
``CHECK_S`` all the same (a silent stream is not trusted). Armed, it costs no request weight
between those checks; triggered, it is noticed as soon as the event arrives. While the view is
stale (stream down, no resync yet) or there is none, the order is read every ``POLL_S``. A
waiting CLOSE is looked for every ``CLOSE_CHECK_S`` (the close signal in Redis, never the exchange).
"""

from __future__ import annotations

import asyncio
import functools
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from quantum_exec.contracts import ErrorSource, ResultStatus, Side
from quantum_exec.core.errors import IntentRejected, PermanentError, ReasonCode, UnknownOutcomeError
from quantum_exec.exchange.pacing import PacingDeadline
from quantum_exec.exchange.wire import AlgoOrder, Order, OrderSide
from quantum_exec.execution.entries.base import (
    Entry,
    EntryContext,
    Fill,
    known_rules,
    send_by,
    shed,
    triggered_order,
)
from quantum_exec.execution.entries.limit import LimitEntry, working_limit_s
from quantum_exec.execution.entries.shared import record_opening
from quantum_exec.execution.parking import park
from quantum_exec.execution.ports import AlgoState
from quantum_exec.execution.run import Run
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.execution.recovery import ExchangeFacts

log = get_logger(__name__)

# Without the live view: the algo order is read by REST this often.
POLL_S = 0.25
# With it: read by REST at least this often all the same (a missed event costs this much, no more).
CHECK_S = 5.0
# A CLOSE of the symbol (announced here or by another instance) is looked for this often.
CLOSE_CHECK_S = 0.25
# Asked to end but caught in TRIGGERING: its order is awaited this long at most, then the outcome
# is unknown and the intent is left to be resumed (which follows the same algo order again).
FOLLOW_S = 30.0


class StopEntry:
    """The entry strategy of a stop entry: placed, and followed until its order exists (then worked
    like a LIMIT entry, :mod:`.limit`), or it ended untriggered."""

    def __init__(self, ctx: EntryContext, limit: LimitEntry) -> None:
        self._ctx = ctx
        self._settings = ctx.settings
        self._gateway = ctx.gateway
        self._resolver = ctx.resolver
        self._limit = limit  # a STOP's triggered order is a LIMIT: worked like a LIMIT entry

    async def find(self, run: Run, facts: ExchangeFacts) -> Entry | None:
        """The conditional order an earlier attempt placed: followed (it may have triggered since)."""
        algo = facts.algo
        if algo is None:
            return None
        rules = known_rules(self._ctx, run, "exists")
        out = run.out
        out.reference_price, out.quantity, out.requested_quantity = (
            algo.trigger_price,
            algo.quantity,
            algo.quantity,
        )
        long = run.intent.side is Side.BUY
        return Entry(
            algo.client_algo_id,
            rules,
            algo.trigger_price,
            algo.quantity,
            long,
            order=facts.triggered,
            algo=algo,
        )

    async def send(self, run: Run, entry: Entry) -> None:
        """Arm the conditional entry; refused (or shed by pacing): nothing opened."""
        ctx, intent = self._ctx, run.intent
        recording = record_opening(ctx.account, run)
        run.entry_sent = True
        try:
            with run.step("entry"), send_by(ctx.settings, run):
                entry.algo = await self.place(run, entry.client_id, entry.quantity, entry.side)
        except (PermanentError, PacingDeadline, IntentRejected) as refused:
            run.entry_sent = False  # refused by the exchange, or at the fence (admission revoked)
            if ctx.account is not None:
                await recording
                await ctx.account.opened(run.key, intent, Decimal(0))
            if isinstance(refused, PacingDeadline):
                raise shed(ctx.settings, run, refused) from None
            raise
        finally:
            await recording

    async def follow(self, run: Run, entry: Entry) -> Fill | None:
        """Until it triggered (then its order is followed like any entry) or ended untriggered."""
        assert entry.algo is not None
        if entry.order is None:  # not triggered when found (or sent just now)
            order, entry.algo = await self.triggered(run, entry.algo)
            if order is None:
                await self._untriggered(run, entry.algo)
                return None
            entry.order = order
        return await self._limit.follow(run, entry)

    async def _untriggered(self, run: Run, algo: AlgoOrder) -> None:
        """A stop entry that ended without triggering: failed, nothing opened."""
        out = run.out
        out.status = ResultStatus.FAILED
        run.error(
            ReasonCode.ENTRY_EXPIRED,
            ErrorSource.EXCHANGE,
            f"{algo.order_type} entry {algo.client_algo_id} at trigger {algo.trigger_price} ended "
            f"{algo.status} untriggered: nothing filled",
        )
        out.executed_quantity = Decimal(0)
        if self._ctx.account is not None:
            await self._ctx.account.opened(run.key, run.intent, Decimal(0))

    async def place(self, run: Run, client_algo_id: str, quantity: Decimal, side: OrderSide) -> AlgoOrder:
        """Send the conditional entry; an unknown outcome is looked up by client id, never re-sent."""
        intent = run.intent
        assert run.stop_price is not None
        asked_at = time.monotonic()
        try:
            return await self._gateway.place_stop_entry(
                intent.symbol,
                side,
                run.stop_price,
                client_algo_id,
                quantity,
                price=run.limit_price,
                time_in_force=intent.time_in_force,
                working_type=self._settings.working_type.value,
                reduce_only=run.reduce_only,
            )
        except UnknownOutcomeError as exc:
            sent_at = exc.sent_at if exc.sent_at is not None else asked_at
            found = await self._resolver.resolve(sent_at, lambda: self._gateway.get_algo(client_algo_id))
            if found is None:
                raise
            return found

    async def triggered(self, run: Run, algo: AlgoOrder) -> tuple[Order | None, AlgoOrder]:
        """The order the entry triggered (None when it ended untriggered), and the algo order."""
        intent = run.intent
        limit_s = working_limit_s(self._settings, intent)
        deadline = run.working_deadline(limit_s)
        seen: AlgoState | None = None
        follow_until: float | None = None  # set once asked to end: from then on only followed
        with run.step("stop_entry"):
            while True:
                order = await self._order_of(intent.symbol, algo)
                if order is not None or algo.status.is_final:
                    return order, algo
                view: AlgoState | None
                if follow_until is None:
                    why, view = await self._wait(run, algo.client_algo_id, seen, deadline, limit_s)
                    if why is not None:
                        cancelled = await self._resolver.cancel(
                            algo.client_algo_id, functools.partial(self._gateway.cancel_algo, algo.algo_id)
                        )
                        log.info("stop_entry.cancelled", intent_id=run.key, why=why, cancelled=cancelled)
                        follow_until = time.monotonic() + FOLLOW_S
                else:
                    if time.monotonic() >= follow_until:
                        raise UnknownOutcomeError(
                            f"stop entry {algo.client_algo_id} still {algo.status} {FOLLOW_S:g} s after it "
                            "was cancelled: the order its trigger places is not known yet"
                        )
                    view = await self._changed(intent.symbol, algo.client_algo_id, seen)
                if view is not None:
                    seen = view
                    if not view.status.has_order and not view.status.is_final:
                        continue  # the stream says no order stands yet: nothing to read
                # Cancelled, or fired meanwhile (TRIGGERING: its order is followed until it exists).
                found = await self._gateway.get_algo(algo.client_algo_id)
                if found is not None:
                    algo = found

    async def _changed(self, symbol: str, client_algo_id: str, seen: AlgoState | None) -> AlgoState | None:
        """While following a triggering entry: its next change on the live view, or None once a
        REST read is due (every ``POLL_S``; a trigger completes within milliseconds)."""
        park()
        account = self._ctx.account
        if account is None or account.position_amount(symbol) is None:
            await asyncio.sleep(POLL_S)
            return None
        return await account.algo_changed(client_algo_id, POLL_S, seen)

    async def _wait(
        self, run: Run, client_algo_id: str, seen: AlgoState | None, deadline: float, limit_s: float
    ) -> tuple[str | None, AlgoState | None]:
        """Until the algo order changed on the live view (the view), a REST read is due (neither),
        or the entry must end (why)."""
        symbol = run.intent.symbol
        park()  # armed, it waits for the market: no slot of the consumer's is held meanwhile
        account = self._ctx.account
        if account is not None and account.position_amount(symbol) is None:
            account = None  # stale: REST until the next resync
        until = min(deadline, time.monotonic() + (POLL_S if account is None else CHECK_S))
        while True:
            if time.monotonic() >= deadline:
                return f"expire_after {limit_s:g} s", None
            closes = self._ctx.closes
            ended_by = await closes.wait(symbol, run.stream_id, 0) if closes is not None else None
            if ended_by is not None:
                return ended_by, None
            left_s = until - time.monotonic()
            if left_s <= 0:
                return None, None
            if account is None:
                await asyncio.sleep(left_s)
                return None, None
            # One wait per CLOSE check, each against ``seen``: an update between two is not lost.
            # (Not raced against the check: on Python 3.11 a Redis read may ignore its cancel.)
            view = await account.algo_changed(client_algo_id, min(left_s, CLOSE_CHECK_S), seen)
            if view is not None:
                return None, view
            if account.position_amount(symbol) is None:
                return None, None  # went stale while waiting

    async def _order_of(self, symbol: str, algo: AlgoOrder) -> Order | None:
        return await triggered_order(self._gateway, symbol, algo)
