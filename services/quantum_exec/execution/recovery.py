"""What the exchange holds of an intent, looked up once at the start of a resumed or repaired attempt.

Every order of an intent carries its digest in a deterministic client id
(:func:`quantum_exec.core.ids.client_order_id`), so what an earlier attempt did is read back from the
exchange, not from Redis: :meth:`Recovery.look_up` builds the :class:`ExchangeFacts` an entry
strategy resumes from (``find(facts)``, :mod:`.entries.base`) and the CLOSE resumes from.

* A sliced order's plan saved in Redis is a hint: its children are looked up by their ids, and
  those found are the truth (children leave one after the other, each final before the next, so
  they are the numbers 1..k and the lookups stop at the first the exchange does not know). A plan
  lost with Redis writes is rebuilt from the children found (:func:`.entries.sliced.rebuilt_plan`),
  so none is planned, or sent, again.
* A STOP / STOP_MARKET entry is its algo order and, once it triggered, the order its trigger
  placed (by the exchange's id, ``actualOrderId``); :mod:`.entries.stop` follows either.
* Otherwise the entry (or close) order itself.

Each lookup of an order that is not found waits, through :meth:`OrderResolver.resolve`, until
"not found" is certain (recvWindow past the earlier attempts' last send). The protective legs and
an emergency close are looked up by their ids where they are placed (:mod:`.protection`,
:mod:`.legs`), which treat a resumed attempt the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from quantum_exec.core.ids import MAX_CHILDREN, Role, client_order_id
from quantum_exec.exchange.wire import AlgoOrder, Order
from quantum_exec.execution.entries.base import STOP_ENTRIES, EntryContext, triggered_order
from quantum_exec.execution.entries.sliced import rebuilt_plan
from quantum_exec.execution.entries.slices import Plan
from quantum_exec.execution.run import Run


@dataclass(slots=True)
class ExchangeFacts:
    """The orders found under the intent's ids (None / empty: certainly not on the exchange)."""

    plan: Plan | None = None  # a sliced order's plan: saved (a hint), or rebuilt from its children
    children: dict[int, Order] = field(default_factory=dict)  # the plan's children found, by number
    order: Order | None = None  # the entry (or close) order
    algo: AlgoOrder | None = None  # a stop entry's conditional order
    triggered: Order | None = None  # the order its trigger placed, once it has one


class Recovery:
    """Looks up what the exchange holds under an intent's ids (see the module docstring)."""

    def __init__(self, ctx: EntryContext) -> None:
        self._ctx = ctx

    async def look_up(self, run: Run, role: Role) -> ExchangeFacts:
        """The facts of ``run``'s intent in ``role`` (``entry`` or ``close``)."""
        intent, facts = run.intent, ExchangeFacts()
        client_id = client_order_id(run.key, role)
        saved = await self._ctx.plans.load(run.key)
        if saved is not None:
            facts.plan = Plan.from_json(saved)
            facts.children = await self.children(run, role, len(facts.plan.children))
        elif role == "entry" and intent.order_type in STOP_ENTRIES:
            with run.step("lookup"):
                facts.algo = await self._ctx.resolver.resolve(
                    run.earlier_sent_by, partial(self._ctx.gateway.get_algo, client_id)
                )
                if facts.algo is not None:
                    facts.triggered = await triggered_order(self._ctx.gateway, intent.symbol, facts.algo)
        else:
            with run.step("lookup"):
                facts.order = await self._ctx.resolver.resolve(
                    run.earlier_sent_by, partial(self._ctx.gateway.get_order, intent.symbol, client_id)
                )
                if facts.order is None and role == "entry" and intent.order_type == "MARKET":
                    # No plan, no entry: a plan lost with Redis writes leaves its children.
                    facts.children = await self.children(run, role, MAX_CHILDREN)
                    facts.plan = rebuilt_plan(run, list(facts.children.values()))
        return facts

    async def children(self, run: Run, role: Role, count: int) -> dict[int, Order]:
        """The children 1..k found by client id, up to the first the exchange does not know."""
        found: dict[int, Order] = {}
        for number in range(1, count + 1):
            client_id = client_order_id(run.key, role, number)
            order = await self._ctx.resolver.resolve(
                run.earlier_sent_by, partial(self._ctx.gateway.get_order, run.intent.symbol, client_id)
            )
            if order is None:
                break
            found[number] = order
        return found
