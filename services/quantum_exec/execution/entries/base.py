"""What every entry strategy shares: its context, the entry it carries, the fill it hands back.

The executor picks one strategy per intent (:mod:`quantum_exec.execution.executor`) and drives it
through three calls, the :class:`EntryStrategy` Protocol:

* ``find(run, facts)``: a resumed attempt only; the entry an earlier attempt left on the exchange,
  taken from :class:`~quantum_exec.execution.recovery.ExchangeFacts` (looked up once), or None
  when it certainly never reached the exchange;
* ``send(run, entry)``: a first attempt, after the guards, leverage and margin: place the entry;
* ``follow(run, entry)``: until the entry is final: the :class:`Fill` the common steps protect,
  net, charge and record, or None when the strategy wrote the result itself (nothing opened).

A strategy gets an :class:`EntryContext` with what it uses and never reaches back into the executor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from quantum_exec.core.errors import ExchangeError, IntentRejected, ReasonCode
from quantum_exec.core.rules import SymbolRules
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.pacing import SEND_BY, PacingDeadline
from quantum_exec.exchange.wire import AlgoOrder, Order, OrderSide
from quantum_exec.execution.exposure import Exposure
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.execution.ports import AccountView, CloseRequests, Gateway, Plans, RiskCheck
from quantum_exec.execution.protection import Leg, Protector
from quantum_exec.execution.resolution import OrderResolver
from quantum_exec.execution.run import Run
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from quantum_exec.execution.entries.sliced import Sliced
    from quantum_exec.execution.entries.slices import Plan
    from quantum_exec.execution.recovery import ExchangeFacts

log = get_logger(__name__)

STOP_ENTRIES = frozenset({"STOP", "STOP_MARKET"})


@dataclass(slots=True)
class EntryContext:
    """What the entry strategies use; ``account``, ``closes`` and ``plans`` are set by the service
    after the executor is built (the executor's properties of the same names write them here)."""

    settings: Settings
    gateway: Gateway
    resolver: OrderResolver
    protector: Protector
    legs: LegPlacer
    exposure: Exposure
    plans: Plans
    account: AccountView | None = None
    closes: CloseRequests | None = None
    risk: RiskCheck | None = None  # the account's risk governor (each later child is asked)


@dataclass(slots=True)
class Entry:
    """One entry on its way: what was asked, and what the exchange holds of it so far."""

    client_id: str
    rules: SymbolRules
    reference: Decimal
    quantity: Decimal
    long: bool
    order: Order | None = None  # the entry order (a sliced entry: its children as one)
    algo: AlgoOrder | None = None  # a STOP / STOP_MARKET entry's conditional order
    plan: Plan | None = None  # a sliced entry's children
    sliced: Sliced | None = None  # what those children did
    children: dict[int, Order] | None = None  # a resumed plan's children found on the exchange
    beside: list[Leg] = field(default_factory=list)  # SL/TP sent with the entry (with_entry)

    @property
    def side(self) -> OrderSide:
        return OrderSide.BUY if self.long else OrderSide.SELL


@dataclass(slots=True)
class Fill:
    """The entry once final, for the common steps."""

    order: Order
    # Protected while it worked (closePosition legs at its first fill): True, or the emergency
    # close when that protection failed; False: the common protection step protects it.
    early: Order | bool = False
    order_ids: list[int] = field(default_factory=list)  # every order whose fees are the intent's
    recovered: bool = False  # a sliced entry whose plan was rebuilt from the exchange: PARTIAL at most


class EntryStrategy(Protocol):
    """One entry shape (see the module docstring)."""

    async def find(self, run: Run, facts: ExchangeFacts) -> Entry | None: ...

    async def send(self, run: Run, entry: Entry) -> None: ...

    async def follow(self, run: Run, entry: Entry) -> Fill | None: ...


def known_rules(ctx: EntryContext, run: Run, what: str) -> SymbolRules:
    """The symbol's rules for an entry found on the exchange (no guard ran to load them)."""
    symbol = run.intent.symbol
    found = ctx.gateway.rules.get(symbol)
    if found is None:
        raise ExchangeError(
            f"entry {run.out.client_order_id} {what} but the rules of {symbol} are not loaded"
        )
    return found


async def triggered_order(gateway: Gateway, symbol: str, algo: AlgoOrder) -> Order | None:
    """The order a stop entry's trigger placed; None while it has none (armed, or ended untriggered)."""
    if not algo.status.has_order or algo.actual_order_id in ("", "0"):
        return None
    return await gateway.get_order_by_id(symbol, int(algo.actual_order_id))


@contextlib.contextmanager
def send_by(settings: Settings, run: Run) -> Iterator[None]:
    """Within this block an entry that pacing would hold past the intent's TTL is shed."""
    token = SEND_BY.set(run.send_by(settings.intent_ttl_s))
    try:
        yield
    finally:
        SEND_BY.reset(token)


def shed(settings: Settings, run: Run, late: PacingDeadline) -> IntentRejected:
    """The rejection of an entry shed by pacing (nothing was sent)."""
    log.warning("entry.shed", intent_id=run.key, symbol=run.intent.symbol, wait_s=round(late.wait_s, 3))
    return IntentRejected(
        ReasonCode.STALE_INTENT,
        f"not sent: the exchange's order-rate limits would hold the entry {late.wait_s:.1f} s, "
        f"{late.late_s:.1f} s past QUANTUM_INTENT_TTL_S={settings.intent_ttl_s:g}",
    )
