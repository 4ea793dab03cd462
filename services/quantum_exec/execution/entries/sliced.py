"""An entry or close sent as child orders (a TWAP, or above MARKET_LOT_SIZE maxQty), to its end.

The plan (:mod:`.slices`) is saved before the first child is sent and loaded on a resume, so a
restart continues the same schedule: every child is first looked up by its client id
(``qxe<n>-…``) and only a child that certainly never reached the exchange is sent, when it is due
(late ones at once). Nothing is ever sent twice.

An entry is protected at its first fill with closePosition SL/TP (they cover whatever later
slices add, so nothing is protected twice and no slice waits naked). The schedule ends early when
a CLOSE of the symbol is waiting behind it, when the protection had to close the position, or
when the position is gone (the stop fired): the children sent so far are the result.

A plan lost with Redis writes (a failover that dropped acknowledged writes) is never planned
again: the children are found on the exchange by their client ids (:meth:`SlicedOrders.recover`),
followed and protected, and no child is sent after them, so none is sent twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from quantum_exec.contracts import ChildOrder
from quantum_exec.errors import PermanentError
from quantum_exec.exchange.wire import Order, OrderSide, OrderStatus, OrderType
from quantum_exec.execution.entries.slices import Child, Plan
from quantum_exec.execution.exposure import Exposure
from quantum_exec.execution.guards import wants_protection
from quantum_exec.execution.parking import park
from quantum_exec.execution.ports import AccountView, CloseRequests, Gateway
from quantum_exec.execution.protection import Protector
from quantum_exec.execution.resolution import OrderResolver
from quantum_exec.execution.run import Run
from quantum_exec.ids import MAX_CHILDREN, Role, client_order_id
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.rules import SymbolRules

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

    def __init__(
        self,
        gateway: Gateway,
        resolver: OrderResolver,
        protector: Protector,
        exposure: Exposure,
        account: Callable[[], AccountView | None],
        closes: Callable[[], CloseRequests | None],
    ) -> None:
        self._gateway = gateway
        self._exposure = exposure
        self._resolver = resolver
        self._protector = protector
        self._account = account
        self._closes = closes

    async def send(
        self,
        run: Run,
        rules: SymbolRules,
        plan: Plan,
        role: Role,
        side: OrderSide,
        *,
        reduce_only: bool,
        resume: bool,
    ) -> Sliced:
        """Send (or find) every child when due; protect an entry at its first fill."""
        with run.step("slices"):
            intent, symbol = run.intent, run.intent.symbol
            long = side is OrderSide.BUY
            protect = role == "entry" and wants_protection(intent)
            done = Sliced()
            for child in plan.children:
                client_id = client_order_id(run.key, role, child.number)
                order: Order | None = None
                if resume:
                    order = await self._resolver.resolve(
                        run.earlier_sent_by, partial(self._gateway.get_order, symbol, client_id)
                    )
                if order is None:
                    why = await self._until_due(run, plan.started_at + child.due_s, protected=done.protected)
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
                                reduce_only=reduce_only,
                            ),
                        )
                    except PermanentError:
                        if not done.orders:
                            run.entry_sent = False  # refused before anything was placed
                            raise
                        # A later child refused (margin, a filter): the children filled so far stand.
                        log.exception("slice.refused", intent_id=run.key, symbol=symbol, child=child.number)
                        done.ended_early = f"child {child.number} refused by the exchange"
                        break
                    metrics.SLICES_SENT.labels(role=role).inc()
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

    async def recover(self, run: Run, role: Role) -> Plan | None:
        """The plan of the children an earlier attempt sent, rebuilt from the exchange; None if none.

        Children leave one after the other (each is final before the next is sent), so they are
        the numbers 1..k: the lookups stop at the first number the exchange does not know.
        """
        symbol = run.intent.symbol
        found: list[Order] = []
        for number in range(1, MAX_CHILDREN + 1):
            client_id = client_order_id(run.key, role, number)
            order = await self._resolver.resolve(
                run.earlier_sent_by, partial(self._gateway.get_order, symbol, client_id)
            )
            if order is None:
                break
            found.append(order)
        if not found:
            return None
        first_ms = found[0].update_time_ms
        log.warning("slices.plan_recovered", intent_id=run.key, symbol=symbol, children=len(found))
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

    async def find(self, run: Run, plan: Plan, role: Role) -> Sliced:
        """The children an earlier attempt sent, looked up only (a repair never sends)."""
        symbol = run.intent.symbol
        done = Sliced()
        for child in plan.children:
            client_id = client_order_id(run.key, role, child.number)
            order = await self._resolver.resolve(
                run.earlier_sent_by, partial(self._gateway.get_order, symbol, client_id)
            )
            if order is not None:
                done.orders.append(await self._resolver.until_final(symbol, order))
        if len(done.orders) < len(plan.children):
            done.ended_early = "the intent is being repaired: no further child is sent"
        return done

    async def _until_due(self, run: Run, due_at: float, *, protected: Order | bool) -> str | None:
        """Wait until ``due_at`` (epoch s); why the schedule must end instead, else None."""
        symbol = run.intent.symbol
        closes = self._closes()
        while True:
            remaining = due_at - time.time()
            if remaining > 0:
                park()  # between slices the schedule only waits: no slot of the consumer's is held
            if closes is not None and await closes.wait(symbol, run.stream_id, max(0.0, min(remaining, 0.5))):
                return "a CLOSE of the symbol is waiting"
            if remaining <= 0:
                break
            if closes is None:
                await asyncio.sleep(min(remaining, 0.5))
        if protected is not False and await self._position_gone(symbol):
            return "the position is gone (its stop or target filled)"
        return None

    async def _position_gone(self, symbol: str) -> bool:
        account = self._account()
        amount = account.position_amount(symbol) if account is not None else None
        if amount is None:
            amount = await self._gateway.position_amount(symbol)
        return amount == 0
