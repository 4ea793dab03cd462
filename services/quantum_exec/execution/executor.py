"""From a TradeIntent to a protected position and a complete ExecutionResult (design.md §3).

``Executor.execute`` runs the steps for one intent and always ends in an ExecutionResult for a
business outcome (filled, partial, rejected, failed). It raises only when the outcome of an order
cannot be determined at all (the exchange unreachable while resolving an unknown outcome): the
stream layer then leaves the entry pending, and the redelivery resumes through client-id lookups.

Exactly-once effects rest on deterministic client ids (:mod:`quantum_exec.ids`): a re-execution
(``resume=True``) looks every order up by its id first and completes only the missing steps
(:mod:`.resolution`). The steps live beside this module: the pre-trade checks in :mod:`.guards`,
how an entry nets against an opposite one-way position in :mod:`.netting`, SL/TP and the failure
policy in :mod:`.protection`, fees in :mod:`.fees`, the typed result in :mod:`.run`; the CLOSE
and the legs sent beside a MARKET entry in :mod:`.entries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from quantum_exec.contracts import (
    ErrorSource,
    ExecutionResult,
    ProtectionState,
    ResultStatus,
    Side,
    TradeIntent,
    intent_key,
)
from quantum_exec.errors import (
    ConfigError,
    ExchangeError,
    IntentRejected,
    PermanentError,
    ReasonCode,
    UnknownOutcomeError,
)
from quantum_exec.exchange.pacing import SEND_BY, PacingDeadline
from quantum_exec.exchange.wire import AlgoOrder, Order, OrderSide, OrderStatus, OrderType
from quantum_exec.execution.entries.close import Closer
from quantum_exec.execution.entries.limit import WorkingEntry
from quantum_exec.execution.entries.market import LegsBesideEntry
from quantum_exec.execution.entries.own_legs import OwnLegs
from quantum_exec.execution.entries.shared import position_amount, record_opening, slices_done
from quantum_exec.execution.entries.sliced import MemoryPlans, Sliced, SlicedOrders
from quantum_exec.execution.entries.slices import Plan, needs_children, plan_children
from quantum_exec.execution.entries.stop import StopEntry
from quantum_exec.execution.exposure import Exposure
from quantum_exec.execution.fees import record_fees
from quantum_exec.execution.guards import Guards, wants_protection
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.execution.netting import is_opposite
from quantum_exec.execution.opposite import check_opposite, netted, opened_size
from quantum_exec.execution.outcomes import as_poison, record_failure, record_fill
from quantum_exec.execution.ports import AccountView, CloseRequests, Gateway, Plans
from quantum_exec.execution.protection import Leg, Protector
from quantum_exec.execution.resolution import OrderResolver
from quantum_exec.execution.run import Attempt, Run
from quantum_exec.ids import client_order_id
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.rules import SymbolRules
from quantum_exec.settings import Settings

log = get_logger(__name__)

STOP_ENTRIES = frozenset({"STOP", "STOP_MARKET"})


@dataclass(slots=True)
class _SymbolState:
    """What we know to be set on the exchange for a symbol (None: unknown)."""

    leverage: int | None = None
    margin_type: str | None = None


class Executor:
    """Runs the execution steps of design.md §3 for one intent at a time per symbol."""

    def __init__(self, settings: Settings, gateway: Gateway, account: AccountView | None = None) -> None:
        self._settings = settings
        self.gateway = gateway
        # The live account view (user data stream); None or stale: the REST lookups of wave 1.
        self.account = account
        self._state: dict[str, _SymbolState] = {}
        self._own_protective: dict[str, set[int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._guards = Guards(settings, gateway)
        self._resolver = OrderResolver(settings, gateway)
        # The one leg placer (its policy in .legs); the account follower is given this one too.
        self.legs = LegPlacer(settings, gateway, self._resolver)
        self._protector = Protector(settings, gateway, self._resolver, self.legs, self._own_protective)
        # How long fills stood without their SL/TP (metrics, alert, console).
        self.exposure = Exposure(settings.unprotected_alert_s)
        # Sliced entries' plans (Redis in the service) and the CLOSEs that end a working entry.
        self.plans: Plans = MemoryPlans()
        self.closes: CloseRequests | None = None
        self._working = WorkingEntry(
            settings,
            gateway,
            self._resolver,
            self._protector,
            self.exposure,
            lambda: self.account,
            lambda: self.closes,
        )
        self._stop_entry = StopEntry(
            settings, gateway, self._resolver, lambda: self.account, lambda: self.closes
        )
        self._sliced = SlicedOrders(
            gateway, self._resolver, self._protector, self.exposure, lambda: self.account, lambda: self.closes
        )
        self._beside = LegsBesideEntry(settings, self.legs, self._protector, lambda: self.account)
        self._own_legs = OwnLegs(self.legs, lambda: self.account, self._own_protective, gateway)
        self._closer = Closer(
            gateway,
            self._resolver,
            self._guards,
            self._sliced,
            self._own_legs,
            lambda: self.plans,
            lambda: self.account,
        )

    async def start(self) -> None:
        """Start the gateway and learn the account's current settings and open protective orders."""
        await self.gateway.start()
        if self.gateway.hedge_mode:
            raise ConfigError(
                "the account is in hedge mode (dualSidePosition=true); quantum-exec trades one-way mode: "
                "switch it with POST /fapi/v1/positionSide/dual dualSidePosition=false"
            )
        for position in await self.gateway.positions():
            self._state[position.symbol] = _SymbolState(position.leverage, position.margin_type)
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
                if intent.side is Side.CLOSE:
                    await self._closer.close(run)
                else:
                    await self._open(run)
            except UnknownOutcomeError:
                raise
            except (IntentRejected, ExchangeError) as exc:
                record_failure(run, exc)
            except Exception as exc:
                log.exception("execute.internal_error", intent_id=run.key, symbol=intent.symbol)
                record_failure(run, exc)
            finally:
                self._beside.release(intent.symbol)
        if attempt.repair:
            as_poison(run, self._settings.max_attempts)
        result = run.result(self._settings.exchange)
        log.info(
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

    # -- BUY / SELL ----------------------------------------------------------------------------

    async def _open(self, run: Run) -> None:
        intent, out = run.intent, run.out
        resume = run.attempt.resume
        symbol = intent.symbol
        long = intent.side is Side.BUY
        side = OrderSide.BUY if long else OrderSide.SELL
        entry_id = client_order_id(run.key, "entry")
        out.client_order_id = entry_id
        entry: Order | None = None
        plan: Plan | None = None
        sliced: Sliced | None = None
        algo: AlgoOrder | None = None  # a STOP / STOP_MARKET entry's conditional order
        beside: list[Leg] = []  # SL/TP sent beside the entry (protection_timing=with_entry)
        if resume:
            # First: an entry that already exists must be protected whatever the checks say now
            # (the intent may have gone stale, the price may have moved since it was placed).
            run.entry_sent = True  # until the lookup proves otherwise
            saved = await self.plans.load(run.key)
            if saved is not None:
                plan = Plan.from_json(saved)
            elif intent.order_type in STOP_ENTRIES:
                with run.step("lookup"):
                    algo = await self._resolver.resolve(
                        run.earlier_sent_by, lambda: self.gateway.get_algo(entry_id)
                    )
            else:
                with run.step("lookup"):
                    entry = await self._resolver.resolve(
                        run.earlier_sent_by, lambda: self.gateway.get_order(symbol, entry_id)
                    )
                    if entry is None and intent.order_type == "MARKET":
                        # No plan, no entry: a plan lost with Redis writes leaves its children.
                        plan = await self._sliced.recover(run, "entry")
                        if plan is not None:
                            await self.plans.save(run.key, plan.to_json())
        if algo is not None:
            # A stop entry placed before: follow it (it may have triggered meanwhile).
            known_rules = self.gateway.rules.get(symbol)
            if known_rules is None:
                raise ExchangeError(f"entry {entry_id} exists but the rules of {symbol} are not loaded")
            rules, reference, quantity = known_rules, algo.trigger_price, algo.quantity
            out.reference_price, out.quantity, out.requested_quantity = reference, quantity, quantity
        elif plan is not None:
            # A sliced entry resumes its schedule: children are looked up, the missing ones sent.
            found_rules = self.gateway.rules.get(symbol)
            if found_rules is None:
                raise ExchangeError(f"entry {entry_id} has children but the rules of {symbol} are not loaded")
            rules, quantity = found_rules, plan.total
            out.quantity = out.requested_quantity = quantity
            if run.attempt.repair:
                sliced = await self._sliced.find(run, plan, "entry")
            else:
                sliced = await self._sliced.send(
                    run, rules, plan, "entry", side, reduce_only=intent.reduce_only, resume=True
                )
            if not sliced.orders:
                run.entry_sent = False
                if run.attempt.repair:
                    return
            reference = intent.entry_price or (sliced.orders[0].avg_price if sliced.orders else Decimal(0))
            out.reference_price = reference
            entry = sliced.combined(entry_id, side, quantity)
        elif entry is not None:
            log.info("entry.found_on_resume", intent_id=run.key, symbol=symbol, order_id=entry.order_id)
            known = self.gateway.rules.get(symbol)
            # A resting LIMIT found on resume may have filled nothing yet: its price is the reference.
            reference = (
                entry.price if entry.order_type is OrderType.LIMIT else intent.entry_price or entry.avg_price
            )
            quantity = entry.orig_qty
            out.reference_price, out.quantity, out.requested_quantity = reference, quantity, quantity
            if known is None:
                raise ExchangeError(f"entry {entry_id} exists but the rules of {symbol} are not loaded")
            rules = known
        elif run.attempt.repair:
            run.entry_sent = False  # certainly absent: the repair never places a new entry
            return
        else:
            run.entry_sent = False
            rules, reference, quantity = await self._guards.pre_trade(run, long=long)
            if not intent.reduce_only:
                # A reduce-only intent keeps its own meaning (it never flips): nothing to net.
                with run.step("position"):
                    run.position_before = await self._position_before(symbol)
                check_opposite(self._settings, run, run.position_before, quantity, long=long)
            await self._own_legs.cancel_orphans(run, symbol)
            assert out.leverage is not None and out.margin_type is not None
            with run.step("leverage"):
                await self._configure(symbol, out.leverage, out.margin_type)
            if intent.order_type == "MARKET" and needs_children(rules, quantity, intent.execution):
                plan = self._plan(run, rules, quantity, reference, long=long)
            # The record goes to Redis while the order travels (not one more round trip before
            # it): a fill comes back an exchange round trip later, and this instance names its
            # intent from memory meanwhile.
        if entry is None and plan is not None:
            # Before the first child leaves: a restart must resume this very schedule.
            await self.plans.save(run.key, plan.to_json())
            recording = record_opening(self.account, run)
            try:
                sliced = await self._sliced.send(
                    run, rules, plan, "entry", side, reduce_only=intent.reduce_only, resume=False
                )
            except PermanentError:
                if self.account is not None:
                    await recording
                    await self.account.opened(run.key, intent, Decimal(0))
                raise
            finally:
                await recording
            entry = sliced.combined(entry_id, side, quantity)
        elif entry is None and algo is None and run.stop_price is not None:
            recording = record_opening(self.account, run)
            run.entry_sent = True
            try:
                with run.step("entry"), self._send_by(run):
                    algo = await self._stop_entry.place(run, entry_id, quantity, side)
            except (PermanentError, PacingDeadline) as refused:
                run.entry_sent = False
                if self.account is not None:
                    await recording
                    await self.account.opened(run.key, intent, Decimal(0))
                if isinstance(refused, PacingDeadline):
                    raise self._shed(run, refused) from None
                raise
            finally:
                await recording
        elif entry is None and algo is None:
            # QUANTUM_PROTECTION_TIMING=with_entry: the legs travel beside the entry.
            beside = self._beside.legs(run, rules, reference, quantity, long=long)
            placing = self._beside.place(symbol, beside) if beside else None
            placed = asyncio.ensure_future(placing) if placing is not None else None
            recording = record_opening(self.account, run)
            run.entry_sent = True
            with run.step("entry"), self._send_by(run):
                try:
                    entry = await self._resolver.submit(
                        symbol,
                        entry_id,
                        lambda: self._place_entry(run, quantity, entry_id, long=long),
                    )
                except (PermanentError, PacingDeadline) as refused:
                    run.entry_sent = False  # refused by the exchange: certainly not placed
                    if placed is not None:
                        await asyncio.gather(placed, return_exceptions=True)
                        await self._protector.withdraw(symbol, beside)
                    if self.account is not None:
                        await recording
                        await self.account.opened(run.key, intent, Decimal(0))
                    if isinstance(refused, PacingDeadline):
                        raise self._shed(run, refused) from None
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
        if algo is not None:
            entry, algo = await self._stop_entry.triggered(run, algo)
            if entry is None:
                await self._untriggered(run, algo)
                return
        assert entry is not None
        early: Order | bool = False  # a LIMIT protected while it worked (and its emergency close)
        if sliced is not None:
            assert plan is not None
            early = sliced.protected
            slices_done(run, plan, sliced, "entry")
        elif entry.order_type is OrderType.LIMIT:
            entry, early = await self._working.work(run, rules, entry, long=long, resume=resume)
        else:
            entry = await self._resolver.until_final(symbol, entry)
        if beside and entry.executed_qty > 0:
            with run.step("protection"):
                # What the exchange made of them while the entry travelled; placed again if ended.
                flatten_beside = await self._beside.settle(
                    run, rules, beside, entry, long=long, resume=resume
                )
            early = flatten_beside if flatten_beside is not None else True
        elif beside:
            await self._protector.withdraw(symbol, beside)  # nothing opened: nothing to protect
        record_fill(run, entry, reference, long=long)
        if entry.executed_qty <= 0:
            out.status = ResultStatus.FAILED
            if entry.order_type is OrderType.LIMIT:
                run.error(
                    ReasonCode.ENTRY_EXPIRED,
                    ErrorSource.EXCHANGE,
                    f"LIMIT entry {entry_id} at {entry.price} ended {entry.status} with nothing filled",
                )
            else:
                run.error(
                    ReasonCode.ENTRY_NOT_FILLED,
                    ErrorSource.EXCHANGE,
                    f"entry {entry_id} ended {entry.status} with nothing filled",
                )
            if self.account is not None:
                await self.account.opened(run.key, intent, Decimal(0))
            return
        if out.protection is not ProtectionState.CLOSED_EMERGENCY:  # closed at its fill: FAILED stands
            out.status = (
                ResultStatus.FILLED
                if entry.status is OrderStatus.FILLED
                and entry.executed_qty >= quantity
                and not (plan is not None and plan.recovered)
                else ResultStatus.PARTIAL
            )
        order_ids = [o.order_id for o in sliced.orders] if sliced is not None else [entry.order_id]
        size = opened_size(run, rules, entry, long=long)
        flatten: Order | None = None
        if early is not False:
            # Protected (closePosition) at its first fill while it worked: nothing twice.
            flatten = early if isinstance(early, Order) else None
            if flatten is not None:
                order_ids.append(flatten.order_id)
            metrics.POSITIONS_OPENED.labels(protection=out.protection.value).inc()
        elif wants_protection(intent) and size > 0:
            with run.step("protection"), self.exposure.naked(run, entry):
                flatten = await self._protector.protect(run, rules, entry, size, long=long, resume=resume)
            if flatten is not None:
                order_ids.append(flatten.order_id)
            metrics.POSITIONS_OPENED.labels(protection=out.protection.value).inc()
        if run.position_before is not None and is_opposite(run.position_before, long=long):
            await netted(self.legs, self.account, self._own_protective, run, entry, size, flatten, long=long)
        with run.step("fees"):
            await record_fees(self.gateway, run, rules, order_ids, self.account)
        if self.account is not None:
            # After protection (off the time-to-protected path); a redelivery writes it again.
            # What this intent opened (an entry that only reduced an opposite position opened nothing).
            held = Decimal(0) if out.protection is ProtectionState.CLOSED_EMERGENCY else size
            await self.account.opened(
                run.key,
                intent,
                held,
                stop_loss=out.stop_loss.trigger_price if out.stop_loss else None,
                take_profit=out.take_profit.trigger_price if out.take_profit else None,
            )

    def _plan(
        self, run: Run, rules: SymbolRules, quantity: Decimal, reference: Decimal, *, long: bool
    ) -> Plan:
        """The child orders of a TWAP or of an entry above MARKET_LOT_SIZE maxQty (checked first)."""
        intent, s = run.intent, self._settings
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

    @contextlib.contextmanager
    def _send_by(self, run: Run) -> Iterator[None]:
        """Within this block an entry that pacing would hold past the intent's TTL is shed."""
        token = SEND_BY.set(run.send_by(self._settings.intent_ttl_s))
        try:
            yield
        finally:
            SEND_BY.reset(token)

    def _shed(self, run: Run, late: PacingDeadline) -> IntentRejected:
        """The rejection of an entry shed by pacing (nothing was sent)."""
        log.warning("entry.shed", intent_id=run.key, symbol=run.intent.symbol, wait_s=round(late.wait_s, 3))
        return IntentRejected(
            ReasonCode.STALE_INTENT,
            f"not sent: the exchange's order-rate limits would hold the entry {late.wait_s:.1f} s, "
            f"{late.late_s:.1f} s past QUANTUM_INTENT_TTL_S={self._settings.intent_ttl_s:g}",
        )

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
        if self.account is not None:
            await self.account.opened(run.key, run.intent, Decimal(0))

    async def _position_before(self, symbol: str) -> Decimal:
        """The symbol's signed one-way position before an entry: the live view, else REST."""
        return await position_amount(self.account, self.gateway, symbol)

    async def _configure(self, symbol: str, leverage: int, margin_type: str) -> None:
        """Set margin type and leverage only where they differ from what is known to be set."""
        state = self._state.setdefault(symbol, _SymbolState())
        calls: list[Awaitable[Any]] = []
        if state.margin_type != margin_type:
            calls.append(self.gateway.set_margin_type(symbol, margin_type))
        if state.leverage != leverage:
            calls.append(self.gateway.set_leverage(symbol, leverage))
        if not calls:
            return
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            # What is set is unknown now; ask again next time.
            self._state[symbol] = _SymbolState()
            raise failures[0]
        state.margin_type = margin_type
        state.leverage = leverage

    async def _place_entry(self, run: Run, quantity: Decimal, entry_id: str, *, long: bool) -> Order:
        """The entry order: MARKET, or LIMIT at the run's price with the intent's time in force."""
        intent = run.intent
        side = OrderSide.BUY if long else OrderSide.SELL
        if run.limit_price is not None:
            return await self.gateway.place_limit(
                intent.symbol,
                side,
                quantity,
                run.limit_price,
                entry_id,
                time_in_force=intent.time_in_force or "GTC",
            )
        return await self.gateway.place_market(
            intent.symbol, side, quantity, entry_id, reduce_only=intent.reduce_only
        )


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
