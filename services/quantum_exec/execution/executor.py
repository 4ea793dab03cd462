"""From a TradeIntent to a protected position and a complete ExecutionResult (design.md §3).

``Executor.execute`` runs the steps for one intent and always ends in an ExecutionResult for a
business outcome (filled, partial, rejected, failed). It raises only when the outcome of an order
cannot be determined at all (the exchange unreachable while resolving an unknown outcome): the
stream layer then leaves the entry pending, and the redelivery resumes through client-id lookups
(:mod:`quantum_exec.core.ids`; a re-execution first looks up what the exchange holds, :mod:`.recovery`).

The executor keeps the decision and the common steps: guards (:mod:`.guards`), netting against
an opposite one-way position (:mod:`.netting`, :mod:`.opposite`), the risk governor's admission
(:mod:`.admission`), leverage and margin (:mod:`.symbols`), one entry strategy per shape
(:mod:`.entries`), SL/TP (:mod:`.protection`), fees (:mod:`.fees`) and the records
(:mod:`.outcomes`, :mod:`.run`); MODIFY in :mod:`.stops`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from quantum_exec.contracts import (
    ExecutionResult,
    Side,
    TradeIntent,
    intent_key,
)
from quantum_exec.core.errors import (
    ConfigError,
    ExchangeError,
    IntentRejected,
    UnknownOutcomeError,
)
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.rules import SymbolRules
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.wire import Order
from quantum_exec.execution.admission import Admission
from quantum_exec.execution.entries.base import STOP_ENTRIES, Entry, EntryContext, EntryStrategy
from quantum_exec.execution.entries.close import Closer
from quantum_exec.execution.entries.limit import LimitEntry, WorkingEntry
from quantum_exec.execution.entries.market import MarketEntry
from quantum_exec.execution.entries.own_legs import OwnLegs
from quantum_exec.execution.entries.shared import position_amount
from quantum_exec.execution.entries.sliced import MemoryPlans, SlicedEntry, SlicedOrders
from quantum_exec.execution.entries.slices import needs_children
from quantum_exec.execution.entries.stop import StopEntry
from quantum_exec.execution.exposure import Exposure
from quantum_exec.execution.fees import record_fees
from quantum_exec.execution.guards import Guards, wants_protection
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.execution.netting import is_opposite
from quantum_exec.execution.opposite import check_opposite, netted, opened_size
from quantum_exec.execution.outcomes import (
    as_poison,
    record_failure,
    record_fill,
    record_opened,
    record_status,
    record_unfilled,
)
from quantum_exec.execution.ports import AccountView, CloseRequests, Gateway, Plans, RiskCheck
from quantum_exec.execution.protection import Protector
from quantum_exec.execution.recovery import Recovery
from quantum_exec.execution.resolution import OrderResolver
from quantum_exec.execution.run import Attempt, Run
from quantum_exec.execution.stops.budget import check_budget, legs_needed
from quantum_exec.execution.stops.modify import Modifier
from quantum_exec.execution.stops.support import refuse_unsupported
from quantum_exec.execution.survey import survey
from quantum_exec.execution.symbols import SymbolConfig
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


class Executor:
    """Runs the execution steps of design.md §3 for one intent at a time per symbol."""

    def __init__(self, settings: Settings, gateway: Gateway, account: AccountView | None = None) -> None:
        self._settings = settings
        self.gateway = gateway
        self._symbols = SymbolConfig(gateway)
        self._own_protective: dict[str, set[int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._guards = Guards(settings, gateway)
        resolver = OrderResolver(settings, gateway)
        # The one leg placer (its policy in .legs); the account follower is given this one too.
        self.legs = LegPlacer(settings, gateway, resolver)
        self._protector = Protector(settings, gateway, resolver, self.legs, self._own_protective)
        # How long fills stood without their SL/TP (metrics, alert, console).
        self.exposure = Exposure(settings.unprotected_alert_s)
        # What the strategies use. The live account view (user data stream; None or stale: REST
        # lookups), sliced entries' plans (Redis in the service) and the CLOSEs that end a working
        # entry are set through the properties below.
        self._ctx = EntryContext(
            settings, gateway, resolver, self._protector, self.legs, self.exposure, MemoryPlans(), account
        )
        self._recovery = Recovery(self._ctx)
        sliced = SlicedOrders(self._ctx)
        self._sliced = SlicedEntry(self._ctx, sliced)
        self._limit = LimitEntry(self._ctx, WorkingEntry(self._ctx))
        self._stop = StopEntry(self._ctx, self._limit)
        self._market = MarketEntry(self._ctx)
        self._own_legs = OwnLegs(self.legs, lambda: self._ctx.account, self._own_protective, gateway)
        self._closer = Closer(self._ctx, self._recovery, self._guards, sliced, self._own_legs)
        self._admission = Admission(lambda: self._ctx.risk)
        self._modifier = Modifier(self._ctx, self._guards, self._own_protective, self._admission)

    @property
    def account(self) -> AccountView | None:
        return self._ctx.account

    @account.setter
    def account(self, account: AccountView | None) -> None:
        self._ctx.account = account

    @property
    def risk(self) -> RiskCheck | None:
        """The account's risk governor (set by the service): asked before a new entry's first
        order, and before each later child of a sliced entry."""
        return self._ctx.risk

    @risk.setter
    def risk(self, risk: RiskCheck | None) -> None:
        self._ctx.risk = risk

    @property
    def plans(self) -> Plans:
        return self._ctx.plans

    @plans.setter
    def plans(self, plans: Plans) -> None:
        self._ctx.plans = plans

    @property
    def closes(self) -> CloseRequests | None:
        return self._ctx.closes

    @closes.setter
    def closes(self, closes: CloseRequests | None) -> None:
        self._ctx.closes = closes

    async def start(self) -> None:
        """Start the gateway and learn the account's current settings and open protective orders."""
        await self.gateway.start()
        if self.gateway.hedge_mode:
            raise ConfigError(
                "the account is in hedge mode (dualSidePosition=true); quantum-exec trades one-way mode: "
                "switch it with POST /fapi/v1/positionSide/dual dualSidePosition=false"
            )
        for position in await self.gateway.positions():
            self._symbols.learn(position.symbol, position.leverage, position.margin_type)
        for order in await self.legs.open_own():
            self._own_protective.setdefault(order.symbol, set()).add(order.algo_id)

    async def close(self) -> None:
        """Release the exchange connection; safe to call twice."""
        await self.gateway.close()

    # -- entry point -------------------------------------------------------------------------

    async def execute(
        self,
        intent: TradeIntent,
        *,
        stream_id: str | None = None,
        received_at: datetime | None = None,
        resume: bool = False,
        attempt: Attempt | None = None,
    ) -> ExecutionResult:
        """Execute one intent; ``resume`` (or ``attempt``) when it may have been executed before.

        Raises :class:`UnknownOutcomeError` (incl. a lost lease) only: the intent is then left
        for the next attempt, which resumes through client-id lookups.
        """
        if intent.intent_id is None and not stream_id:
            raise ValueError("an intent without intent_id needs its stream id as the idempotency key")
        attempt = attempt or Attempt(resume=resume)
        key = intent_key(intent, stream_id or "")
        run = Run(intent, key, stream_id, received_at or datetime.now(UTC), attempt=attempt)
        lock = self._locks.setdefault(intent.symbol, asyncio.Lock())
        async with lock:
            try:
                refuse_unsupported(intent)
                if intent.side is Side.CLOSE:
                    await self._closer.close(run)
                elif intent.side is Side.MODIFY:
                    await self._modifier.modify(run)
                else:
                    # What its admission reserved of the exposure limits is held until its result.
                    await self._admission.holding(run, lambda: self._open(run))
            except UnknownOutcomeError:
                raise
            except (IntentRejected, ExchangeError) as exc:
                record_failure(run, exc)
            except Exception as exc:
                log.exception("execute.internal_error", intent_id=run.key, symbol=intent.symbol)
                record_failure(run, exc)
            finally:
                self._market.beside.release(intent.symbol)
        if attempt.repair:
            as_poison(run, self._settings.max_attempts)
        result = run.result(self._settings.exchange)
        # DEBUG: the commit's INFO line (intent.result_published) says the same once it is published.
        log.debug(
            "intent.executed",
            intent_id=run.key,
            symbol=intent.symbol,
            action=intent.side.value,
            status=result.status.value,
            protection=result.protection.value,
            code=result.error.code if result.error else None,
            latency_ms=result.latency_ms,
        )
        return result

    async def survey(
        self, intent: TradeIntent, stream_id: str, received_at: datetime, *, attempt: Attempt
    ) -> ExecutionResult:
        """The answer to a poison intent whose repair died too: what the exchange holds under its
        ids, read once, nothing sent (:mod:`.survey`). Raises when the exchange cannot be read."""
        run = Run(intent, intent_key(intent, stream_id), stream_id, received_at, attempt=attempt)
        await survey(self.gateway, self._recovery, run, self._settings.max_attempts)
        result = run.result(self._settings.exchange)
        log.error(
            "intent.poison_surveyed",
            intent_id=run.key,
            symbol=intent.symbol,
            executed_quantity=str(result.executed_quantity or 0),
            protection=result.protection.value,
        )
        return result

    # -- BUY / SELL ----------------------------------------------------------------------------

    async def _send_entry(
        self,
        run: Run,
        strategy: EntryStrategy,
        rules: SymbolRules,
        reference: Decimal,
        quantity: Decimal,
        long: bool,
    ) -> tuple[Entry, EntryStrategy]:
        """Configure the symbol and send the admitted entry's first order (its answer is back); the
        entry and the strategy that follows it."""
        intent, symbol, out = run.intent, run.intent.symbol, run.out
        await self._own_legs.cancel_orphans(run, symbol)
        assert out.leverage is not None and out.margin_type is not None
        with run.step("leverage"):
            await self._symbols.configure(symbol, out.leverage, out.margin_type)
        found = Entry(client_order_id(run.key, "entry"), rules, reference, quantity, long)
        if intent.order_type == "MARKET" and needs_children(rules, quantity, intent.execution):
            found.plan = self._sliced.plan(run, rules, quantity, reference, long=long)
            strategy = self._sliced
        # The record goes to Redis while the order travels (not one more round trip before
        # it): a fill comes back an exchange round trip later, and this instance names its
        # intent from memory meanwhile.
        await strategy.send(run, found)
        return found, strategy

    def _pick(self, run: Run, *, sliced: bool) -> EntryStrategy:
        """The entry strategy of the intent's shape (:mod:`.entries`)."""
        if sliced:
            return self._sliced
        if run.intent.order_type in STOP_ENTRIES:
            return self._stop
        return self._limit if run.intent.order_type == "LIMIT" else self._market

    async def _open(self, run: Run) -> None:
        intent, out = run.intent, run.out
        symbol = intent.symbol
        long = intent.side is Side.BUY
        entry_id = out.client_order_id = client_order_id(run.key, "entry")
        strategy: EntryStrategy = self._pick(run, sliced=False)
        found: Entry | None = None
        if run.attempt.resume:
            # First: an entry that already exists must be protected whatever the checks say now
            # (the intent may have gone stale, the price may have moved since it was placed).
            run.entry_sent = True  # until the lookup proves otherwise
            facts = await self._recovery.look_up(run, "entry")
            there: bool | None = None
            if self.account is not None:
                # The position the dead attempt's entry met, as it recorded it: what a fill
                # reduced or flipped is not what it opened (None: unknown, taken as flat).
                there, before = await self.account.resumed(run.key, symbol)
                run.position_before = None if intent.reduce_only else before
            strategy = self._pick(run, sliced=facts.plan is not None)
            found = await strategy.find(run, facts)
            if found is not None:
                run.record_there = there
                await self._admission.adopt(run, found.quantity, found.reference)
        if found is None and run.attempt.repair:
            run.entry_sent = False  # certainly absent: the repair never places a new entry
            return
        if found is None:
            run.entry_sent = False
            rules, reference, quantity = await self._guards.pre_trade(run, long=long)
            await check_budget(self._ctx, legs_needed(intent))  # before anything is sent
            if not intent.reduce_only:
                # A reduce-only intent keeps its own meaning (it never flips): nothing to net.
                with run.step("position"):
                    run.position_before = await position_amount(self.account, self.gateway, symbol)
                check_opposite(self._settings, run, run.position_before, quantity, long=long)
            await self._admission.admit(run, quantity, reference, long=long)
            try:
                found, strategy = await self._send_entry(run, strategy, rules, reference, quantity, long)
            except UnknownOutcomeError:
                # The order may still arrive: its admission holds a halt back until it expires.
                run.on_first_answer = None
                raise
            finally:
                await run.first_answered()
        fill = await strategy.follow(run, found)
        if fill is None:
            return  # ended with nothing opened; the strategy said why
        entry, rules, reference, quantity = fill.order, found.rules, found.reference, found.quantity
        record_fill(run, entry, reference, long=long)
        if self.account is not None and entry.executed_qty > 0:
            # Known filled by REST: the live view is behind it until its fill events arrive.
            self.account.saw_final(intent.symbol, fill.order_ids, entry.update_time_ms)
        if entry.executed_qty <= 0:
            record_unfilled(run, entry, entry_id)
            if self.account is not None:
                await self.account.opened(run.key, intent, Decimal(0))
            return
        record_status(run, entry, quantity, recovered=fill.recovered)
        order_ids, early = fill.order_ids, fill.early
        size = opened_size(run, rules, entry, long=long)
        flatten: Order | None = None
        if early is not False:
            # Protected (closePosition) at its first fill while it worked: nothing twice.
            flatten = early if isinstance(early, Order) else None
            metrics.POSITIONS_OPENED.labels(protection=out.protection.value).inc()
        elif wants_protection(intent) and size > 0:
            with run.step("protection"), self.exposure.naked(run, entry):
                flatten = await self._protector.protect(
                    run, rules, entry, size, long=long, resume=run.attempt.resume
                )
            metrics.POSITIONS_OPENED.labels(protection=out.protection.value).inc()
        if flatten is not None:
            order_ids.append(flatten.order_id)
            if self.account is not None and flatten.executed_qty > 0:
                self.account.saw_final(intent.symbol, [flatten.order_id], flatten.update_time_ms)
        if run.position_before is not None and is_opposite(run.position_before, long=long):
            await netted(self.legs, self.account, self._own_protective, run, entry, size, flatten, long=long)
        with run.step("fees"):
            await record_fees(self.gateway, run, rules, order_ids, self.account)
        if self.account is not None:
            # After protection (off the time-to-protected path); a redelivery merges over it.
            await record_opened(self.account, run, rules, size, long=long)


async def create_executor(settings: Settings, account: AccountView | None = None) -> Executor:
    """Build and start the executor for ``binance_base_url`` (or the environment's REST root)."""
    from quantum_exec.exchange.endpoints import rest_root
    from quantum_exec.exchange.gateway import BinanceGateway  # the python-binance stack

    executor = Executor(settings, BinanceGateway(settings, rest_root(settings)), account)
    try:
        await executor.start()
    except BaseException:
        await executor.close()
        raise
    return executor
