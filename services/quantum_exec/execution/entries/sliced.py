"""An entry or close sent as child orders (a TWAP, or above MARKET_LOT_SIZE maxQty), to its end.

The plan (:mod:`.slices`) is saved before the first child is sent and loaded on a resume, so a
restart continues the same schedule: the resumed attempt's facts (:mod:`..recovery`) hold every
child found by its client id (``qxe<n>-…``), and only a child that certainly never reached the
exchange is sent, when it is due (late ones at once). Nothing is ever sent twice.

An entry is protected at its first fill with closePosition SL/TP (they cover whatever later
slices add, so nothing is protected twice and no slice waits naked). The schedule ends early when
a CLOSE of the symbol is waiting behind it, when the protection had to close the position, or
when the position is gone (the stop fired): the children sent so far are the result.

A plan lost with Redis writes (a failover that dropped acknowledged writes) is never planned
again: the children are found on the exchange by their client ids (:mod:`..recovery`, the plan
rebuilt by :func:`rebuilt_plan`), followed and protected, and no child is sent after them, so none
is sent twice. :class:`SlicedEntry` is the entry strategy (:mod:`.base`); the CLOSE sends its parts
through :class:`SlicedOrders` too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from quantum_exec.contracts import ChildOrder, ErrorSource, Side
from quantum_exec.core.errors import IntentRejected, PermanentError, ReasonCode
from quantum_exec.core.ids import Role, client_order_id
from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import Order, OrderSide, OrderStatus, OrderType
from quantum_exec.execution.entries.base import Entry, EntryContext, Fill, known_rules
from quantum_exec.execution.entries.shared import record_opening
from quantum_exec.execution.entries.slices import Child, Plan, plan_children
from quantum_exec.execution.guards import wants_protection
from quantum_exec.execution.netting import is_opposite, only_reduces
from quantum_exec.execution.parking import park
from quantum_exec.execution.run import Run
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.execution.recovery import ExchangeFacts

log = get_logger(__name__)


class MemoryPlans:
    """Plans kept in this process only (a unit test's executor; the service keeps them in Redis)."""

    def __init__(self) -> None:
        self._plans: dict[str, bytes] = {}

    async def load(self, key: str) -> bytes | None:
        return self._plans.get(key)

    async def save(self, key: str, plan: bytes) -> None:
        self._plans[key] = plan


@dataclass(slots=True)
class Sliced:
    """What the children did: each final child, the sum as one order, and the protection."""

    orders: list[Order] = field(default_factory=list)
    protected: Order | bool = False  # True, or the emergency close when protection failed
    ended_early: str | None = None

    def combined(self, client_id: str, side: OrderSide, planned: Decimal) -> Order:
        """The children as one order: quantities summed, the volume-weighted price, the status."""
        executed = sum((o.executed_qty for o in self.orders), Decimal(0))
        quote = sum(
            (o.cum_quote if o.cum_quote > 0 else o.avg_price * o.executed_qty for o in self.orders),
            Decimal(0),
        )
        if executed > 0 and executed >= planned:
            status = OrderStatus.FILLED
        elif executed > 0:
            status = OrderStatus.PARTIALLY_FILLED
        else:
            status = self.orders[-1].status if self.orders else OrderStatus.CANCELED
        first = self.orders[0] if self.orders else None
        return Order(
            order_id=first.order_id if first else 0,
            client_order_id=client_id,
            symbol=first.symbol if first else "",
            side=side,
            order_type=OrderType.MARKET,
            status=status,
            orig_qty=planned,
            executed_qty=executed,
            avg_price=quote / executed if executed > 0 else Decimal(0),
            cum_quote=quote,
            reduce_only=first.reduce_only if first else False,
            update_time_ms=max((o.update_time_ms for o in self.orders), default=0),
        )


def rebuilt_plan(run: Run, found: list[Order]) -> Plan | None:
    """The plan of the children an earlier attempt sent (1..k, found by client id by
    :mod:`..recovery`), rebuilt from the exchange when the saved one was lost; None if none."""
    if not found:
        return None
    first_ms = found[0].update_time_ms
    log.warning("slices.plan_recovered", intent_id=run.key, symbol=run.intent.symbol, children=len(found))
    return Plan(
        tuple(
            Child(number, order.orig_qty, max(0.0, (order.update_time_ms - first_ms) / 1000))
            for number, order in enumerate(found, start=1)
        ),
        first_ms / 1000,
        twap=run.intent.execution is not None,
        side=found[0].side.value,
        recovered=True,
    )


def child_orders(plan: Plan, orders: list[Order], key: str, role: Role) -> list[ChildOrder]:
    """The result's ``children``: every planned child, sent or not, with what it did."""
    sent = {o.client_order_id: o for o in orders}
    out: list[ChildOrder] = []
    for child in plan.children:
        client_id = client_order_id(key, role, child.number)
        order = sent.get(client_id)
        out.append(
            ChildOrder(
                number=child.number,
                client_order_id=client_id,
                order_id=order.order_id if order else None,
                quantity=child.quantity,
                executed_quantity=order.executed_qty if order else None,
                avg_price=order.avg_price if order and order.executed_qty > 0 else None,
                status=order.status.value if order else "NOT_SENT",
                scheduled_at=datetime.fromtimestamp(plan.started_at + child.due_s, UTC),
                updated_at=(
                    datetime.fromtimestamp(order.update_time_ms / 1000, UTC)
                    if order and order.update_time_ms
                    else None
                ),
            )
        )
    return out


class SlicedOrders:
    """Runs a plan's children (see the module docstring)."""

    def __init__(self, ctx: EntryContext) -> None:
        self._ctx = ctx
        self._gateway = ctx.gateway
        self._exposure = ctx.exposure
        self._resolver = ctx.resolver
        self._protector = ctx.protector

    async def send(
        self,
        run: Run,
        rules: SymbolRules,
        plan: Plan,
        role: Role,
        side: OrderSide,
        *,
        reduce_only: bool,
        found: dict[int, Order] | None = None,
    ) -> Sliced:
        """Send every child when due, but those ``found`` on the exchange (a resumed attempt's
        :class:`~quantum_exec.execution.recovery.ExchangeFacts`); protect an entry at its first fill."""
        resume = found is not None
        with run.step("slices"):
            intent, symbol = run.intent, run.intent.symbol
            long = side is OrderSide.BUY
            protect = role == "entry" and wants_protection(intent)
            done = Sliced()
            for child in plan.children:
                client_id = client_order_id(run.key, role, child.number)
                order = found.get(child.number) if found is not None else None
                if order is None:
                    why = await self._until_due(run, plan.started_at + child.due_s, protected=done.protected)
                    if why is None and role == "entry" and (resume or done.orders):
                        # The first child was admitted with the intent; each later one adds
                        # exposure only while the trading state, read now, still allows it.
                        why = await self._admits(run, plan, long=long, reduce_only=reduce_only)
                    if why is not None:
                        done.ended_early = why
                        break
                    run.entry_sent = True
                    try:
                        order = await self._resolver.submit(
                            symbol,
                            client_id,
                            partial(
                                self._gateway.place_market,
                                symbol,
                                side,
                                child.quantity,
                                client_id,
                                reduce_only=reduce_only or run.admitted_reducing,
                            ),
                        )
                    except PermanentError:
                        await run.first_answered()  # refused: this child holds back no transition
                        if not done.orders:
                            run.entry_sent = False  # refused before anything was placed
                            raise
                        # A later child refused (margin, a filter): the children filled so far stand.
                        log.exception("slice.refused", intent_id=run.key, symbol=symbol, child=child.number)
                        done.ended_early = f"child {child.number} refused by the exchange"
                        break
                    except IntentRejected as exc:
                        # Its admission revoked at the fence (a transition went ahead meanwhile).
                        await run.first_answered()
                        if not done.orders:
                            run.entry_sent = False
                            raise
                        done.ended_early = f"the next child is not sent: {exc.message}"
                        break
                    metrics.SLICES_SENT.labels(role=role).inc()
                    if role == "entry":
                        await run.first_answered()  # each later child is admitted again (_admits)
                order = await self._resolver.until_final(symbol, order)
                done.orders.append(order)
                log.info(
                    "slice.done",
                    intent_id=run.key,
                    symbol=symbol,
                    child=child.number,
                    of=len(plan.children),
                    status=order.status.value,
                    executed=str(order.executed_qty),
                )
                if protect and done.protected is False and order.executed_qty > 0:
                    with run.step("protection"), self._exposure.naked(run, order):
                        size = order.executed_qty
                        flatten = await self._protector.protect(
                            run, rules, order, size, long=long, resume=resume, close_position=True
                        )
                    done.protected = flatten if flatten is not None else True
                    if flatten is not None:
                        done.ended_early = "protection failed and the position was closed"
                        break
            if plan.recovered and not done.ended_early:
                done.ended_early = (
                    f"the saved plan was lost with Redis writes; {len(plan.children)} orders found on the "
                    "exchange by their client ids and none sent after them, so none is sent twice"
                )
            if done.ended_early:
                log.warning("slices.ended_early", intent_id=run.key, symbol=symbol, why=done.ended_early)
            return done

    async def find(self, run: Run, plan: Plan, found: dict[int, Order]) -> Sliced:
        """The children an earlier attempt sent, as found, once final (a repair never sends)."""
        symbol = run.intent.symbol
        done = Sliced()
        for child in plan.children:
            order = found.get(child.number)
            if order is not None:
                done.orders.append(await self._resolver.until_final(symbol, order))
        if len(done.orders) < len(plan.children):
            done.ended_early = "the intent is being repaired: no further child is sent"
        return done

    async def _admits(self, run: Run, plan: Plan, *, long: bool, reduce_only: bool) -> str | None:
        risk = self._ctx.risk
        if risk is None:
            return None
        before = run.position_before
        reduces = reduce_only or (before is not None and only_reduces(before, plan.total, long=long))
        why = await risk.admits_child(run.intent, key=run.key, reduces=reduces)
        if why is None:
            # Admitted (and recorded): settled once this child has the exchange's answer. Admitted
            # only as reducing (REDUCING): it goes reduce-only, never opening past the position.
            run.on_first_answer = lambda: risk.settled(run.key)
            run.admitted_reducing = run.admitted_reducing or (reduces and risk.restricted)
        else:
            why = f"the next child is not sent: {why}"
        return why

    async def _until_due(self, run: Run, due_at: float, *, protected: Order | bool) -> str | None:
        """Wait until ``due_at`` (epoch s); why the schedule must end instead, else None."""
        symbol = run.intent.symbol
        closes = self._ctx.closes
        while True:
            remaining = due_at - time.time()
            if remaining > 0:
                park()  # between slices the schedule only waits: no slot of the consumer's is held
            ended_by = (
                await closes.wait(symbol, run.stream_id, max(0.0, min(remaining, 0.5)))
                if closes is not None
                else None
            )
            if ended_by is not None:
                return ended_by
            if remaining <= 0:
                break
            if closes is None:
                await asyncio.sleep(min(remaining, 0.5))
        if protected is not False and await self._position_gone(symbol):
            return "the position is gone (its stop or target filled)"
        return None

    async def _position_gone(self, symbol: str) -> bool:
        account = self._ctx.account
        amount = account.position_amount(symbol) if account is not None else None
        if amount is None:
            amount = await self._gateway.position_amount(symbol)
        return amount == 0


def slices_done(run: Run, plan: Plan, sliced: Sliced, role: Role) -> None:
    """The result's children, and why the schedule ended early when it did."""
    run.out.children = child_orders(plan, sliced.orders, run.key, role)
    if sliced.ended_early and sliced.orders:
        sent = sum((o.executed_qty for o in sliced.orders), Decimal(0))
        run.error(
            ReasonCode.ENTRY_ENDED_EARLY,
            ErrorSource.INTERNAL,
            f"{len(sliced.orders)} of {len(plan.children)} orders sent ({sent} of {plan.total} filled): "
            f"{sliced.ended_early}",
        )


class SlicedEntry:
    """The entry strategy of a MARKET entry sent as child orders: a TWAP, or above maxQty."""

    def __init__(self, ctx: EntryContext, orders: SlicedOrders) -> None:
        self._ctx = ctx
        self._orders = orders

    def plan(
        self, run: Run, rules: SymbolRules, quantity: Decimal, reference: Decimal, *, long: bool
    ) -> Plan:
        """The child orders of a TWAP or of an entry above MARKET_LOT_SIZE maxQty (checked first)."""
        intent, s = run.intent, self._ctx.settings
        before = run.position_before
        if before is not None and is_opposite(before, long=long):
            raise IntentRejected(
                ReasonCode.OPPOSITE_POSITION,
                f"{intent.symbol} holds {before}: a TWAP, or an entry above maxQty "
                f"{rules.market_max_qty}, goes out as several orders and does not net against an "
                "opposite position; CLOSE it first",
            )
        twap = intent.execution
        if twap is not None and twap.duration_s > Decimal(str(s.working_order_max_s)):
            raise IntentRejected(
                ReasonCode.INVALID_FIELD,
                f"execution: {twap.slices} slices {twap.interval_s}s apart take {twap.duration_s}s, longer "
                f"than QUANTUM_WORKING_ORDER_MAX_S={s.working_order_max_s:g} (the symbol's later intents "
                "wait behind it)",
            )
        return plan_children(rules, quantity, reference, twap, time.time())

    async def find(self, run: Run, facts: ExchangeFacts) -> Entry | None:
        """The plan (saved, or rebuilt from the children found) and the children found by id."""
        plan = facts.plan
        if plan is None:
            return None
        if plan.recovered:
            await self._ctx.plans.save(run.key, plan.to_json())
        rules = known_rules(self._ctx, run, "has children")
        run.out.quantity = run.out.requested_quantity = plan.total
        long = run.intent.side is Side.BUY
        entry = Entry(run.out.client_order_id or "", rules, Decimal(0), plan.total, long, plan=plan)
        entry.children = facts.children
        return entry

    async def send(self, run: Run, entry: Entry) -> None:
        """Save the plan (a restart resumes this very schedule), then send its children when due."""
        ctx, intent, plan = self._ctx, run.intent, entry.plan
        assert plan is not None
        await ctx.plans.save(run.key, plan.to_json())
        recording = record_opening(ctx.account, run)
        try:
            sliced = await self._orders.send(
                run, entry.rules, plan, "entry", entry.side, reduce_only=run.reduce_only
            )
        except PermanentError:
            if ctx.account is not None:
                await recording
                await ctx.account.opened(run.key, intent, Decimal(0))
            raise
        finally:
            await recording
        entry.sliced = sliced
        entry.order = sliced.combined(entry.client_id, entry.side, entry.quantity)

    async def follow(self, run: Run, entry: Entry) -> Fill | None:
        """The children as one fill; a resumed schedule first sends the children not found."""
        intent, plan = run.intent, entry.plan
        assert plan is not None
        if entry.sliced is None:
            found = entry.children or {}
            if run.attempt.repair:
                sliced = await self._orders.find(run, plan, found)
            else:
                sliced = await self._orders.send(
                    run, entry.rules, plan, "entry", entry.side, reduce_only=run.reduce_only, found=found
                )
            if not sliced.orders:
                run.entry_sent = False
                if run.attempt.repair:
                    return None
            entry.reference = intent.entry_price or (
                sliced.orders[0].avg_price if sliced.orders else Decimal(0)
            )
            run.out.reference_price = entry.reference
            entry.sliced = sliced
            entry.order = sliced.combined(entry.client_id, entry.side, entry.quantity)
        assert entry.order is not None
        slices_done(run, plan, entry.sliced, "entry")
        order_ids = [o.order_id for o in entry.sliced.orders]
        return Fill(entry.order, entry.sliced.protected, order_ids, recovered=plan.recovered)
