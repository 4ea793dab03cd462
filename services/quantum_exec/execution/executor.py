"""From a TradeIntent to a protected position and a complete ExecutionResult (design.md §3).

``Executor.execute`` runs the steps for one intent and always ends in an ExecutionResult for a
business outcome (filled, partial, rejected, failed). It raises only when the outcome of an order
cannot be determined at all (the exchange unreachable while resolving an unknown outcome): the
stream layer then leaves the entry pending, and the redelivery resumes through client-id lookups.

Exactly-once effects rest on deterministic client ids (:mod:`quantum_exec.ids`): a re-execution
(``resume=True``) looks every order up by its id first and completes only the missing steps, and
an order whose request had an unknown outcome is looked up until it is found or certainly absent
(the request's recvWindow has passed, so the exchange can no longer accept it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import SecretStr

from quantum_exec.contracts import (
    CloseFill,
    ErrorSource,
    ExecutionResult,
    ProtectionState,
    ProtectiveOrder,
    ResultError,
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
    RetryableError,
    UnknownOutcomeError,
)
from quantum_exec.exchange.gateway import BinanceGateway, rest_root
from quantum_exec.exchange.wire import AlgoOrder, Fees, Order
from quantum_exec.execution.fencing import ensure_owner
from quantum_exec.ids import client_order_id, is_own_protective
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.rules import SymbolRules, check_protection, round_trigger, size_quantity, trigger_from_pct
from quantum_exec.settings import LeveragePolicy, ProtectionFailurePolicy, ProtectionMode, Settings

log = get_logger(__name__)

T = TypeVar("T")
ZERO = Decimal(0)
HUNDRED = Decimal(100)
SLIPPAGE_QUANTUM = Decimal("0.0001")
IMMEDIATE_TRIGGER = -2021
DUPLICATE_CLIENT_ID = -4116
TRADE_LOOKUPS = 4


@dataclass(slots=True)
class _SymbolState:
    """What we know to be set on the exchange for a symbol (None: unknown)."""

    leverage: int | None = None
    margin_type: str | None = None


@dataclass(slots=True)
class _Protection:
    """The outcome of placing one protective order."""

    kind: Literal["SL", "TP"]
    order_type: str
    side: str
    client_algo_id: str
    trigger_price: Decimal | None
    quantity: Decimal | None
    order: AlgoOrder | None = None
    error: ExchangeError | IntentRejected | None = None

    def to_contract(self) -> ProtectiveOrder:
        state = self.order.status if self.order else ("FAILED" if self.error else "NOT_PLACED")
        err = _result_error(self.error) if self.error else None
        return ProtectiveOrder(
            order_type=self.order_type,
            side=self.side,
            algo_id=self.order.algo_id if self.order else None,
            client_algo_id=self.client_algo_id,
            trigger_price=self.order.trigger_price if self.order else self.trigger_price,
            quantity=self.quantity,
            close_position=self.quantity is None,
            state=state,
            error=err,
        )


def _result_error(exc: ExchangeError | IntentRejected) -> ResultError:
    if isinstance(exc, IntentRejected):
        return ResultError(code=exc.code, source=ErrorSource.VALIDATION, message=exc.message)
    code = str(exc.code) if exc.code is not None else ReasonCode.EXCHANGE_UNAVAILABLE.value
    return ResultError(code=code, source=ErrorSource.EXCHANGE, message=exc.message)


@dataclass(slots=True)
class _Run:
    """The result of one execution, filled in step by step."""

    intent: TradeIntent
    key: str
    stream_id: str | None
    received_at: datetime
    started: float = field(default_factory=time.perf_counter)
    # When this attempt began (monotonic): a request of an earlier, dead attempt was sent before it.
    began: float = field(default_factory=time.monotonic)
    fields: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.STEP_LATENCY.labels(step=name).observe(time.perf_counter() - started)

    def error(self, code: str, source: ErrorSource, message: str) -> None:
        self.fields["error"] = ResultError(code=code, source=source, message=message)

    def created_s(self) -> float:
        """When the intent entered the system: its stream id's time, else when it was received."""
        if self.stream_id:
            millis = self.stream_id.partition("-")[0]
            if millis.isdigit():
                return int(millis) / 1000
        return self.received_at.timestamp()


class Executor:
    """Runs the execution steps of design.md §3 for one intent at a time per symbol."""

    def __init__(self, settings: Settings, gateway: BinanceGateway, *, simulator: Any = None) -> None:
        self._settings = settings
        self.gateway = gateway
        # The in-process simulator of the embedded default (None against a real exchange).
        self.simulator = simulator
        self._state: dict[str, _SymbolState] = {}
        # Algo ids of our own protective orders that may still be open, per symbol.
        self._own_protective: dict[str, set[int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def environment(self) -> str:
        return self._settings.exchange.value

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
        for order in await self.gateway.open_algo_orders():
            if is_own_protective(order.client_algo_id):
                self._own_protective.setdefault(order.symbol, set()).add(order.algo_id)

    async def close(self) -> None:
        """Release the exchange connection (and stop an embedded simulator); safe to call twice."""
        await self.gateway.close()
        if self.simulator is not None:
            await self.simulator.stop()

    @property
    def exchange_url(self) -> str:
        return self.gateway.base_url

    # -- entry point -------------------------------------------------------------------------

    async def execute(
        self,
        intent: TradeIntent,
        *,
        stream_id: str | None = None,
        received_at: datetime | None = None,
        resume: bool = False,
    ) -> ExecutionResult:
        """Execute one intent; ``resume`` when it may have been (partly) executed before."""
        if intent.intent_id is None and not stream_id:
            raise ValueError("an intent without intent_id needs its stream id as the idempotency key")
        run = _Run(intent, intent_key(intent, stream_id or ""), stream_id, received_at or datetime.now(UTC))
        lock = self._locks.setdefault(intent.symbol, asyncio.Lock())
        async with lock:
            try:
                if intent.side is Side.CLOSE:
                    await self._close(run, resume)
                else:
                    await self._open(run, resume)
            except IntentRejected as exc:
                run.fields["status"] = ResultStatus.REJECTED
                run.error(exc.code, ErrorSource.VALIDATION, exc.message)
            except PermanentError as exc:
                # The exchange refused before anything was filled (a fill sets the status itself).
                run.fields.setdefault("status", ResultStatus.REJECTED)
                run.fields["error"] = _result_error(exc)
            except UnknownOutcomeError:
                raise
            except ExchangeError as exc:
                run.fields.setdefault("status", ResultStatus.FAILED)
                run.fields["error"] = _result_error(exc)
            except Exception as exc:
                log.exception("execute.internal_error", intent_id=run.key, symbol=intent.symbol)
                run.fields["status"] = ResultStatus.FAILED
                run.error(
                    ReasonCode.INTERNAL_ERROR, ErrorSource.INTERNAL, f"internal error: {type(exc).__name__}"
                )
        return self._finish(run)

    def _finish(self, run: _Run) -> ExecutionResult:
        completed = datetime.now(UTC)
        intent = run.intent
        f = run.fields
        result = ExecutionResult(
            intent_id=run.key,
            stream_id=run.stream_id,
            symbol=intent.symbol,
            action=intent.side,
            status=f.get("status", ResultStatus.FAILED),
            leverage=f.get("leverage", intent.leverage),
            order_id=f.get("order_id"),
            client_order_id=f.get("client_order_id"),
            requested_quantity=f.get("requested_quantity"),
            quantity=f.get("quantity"),
            executed_quantity=f.get("executed_quantity"),
            avg_price=f.get("avg_price"),
            entry_price=f.get("avg_price"),
            notional=f.get("notional"),
            position_size_usd=f.get("notional"),
            reference_price=f.get("reference_price"),
            slippage_pct=f.get("slippage_pct"),
            commission=f.get("commission"),
            commission_asset=f.get("commission_asset"),
            fee_usd=f.get("fee_usd"),
            realized_pnl=f.get("realized_pnl"),
            stop_loss=f.get("stop_loss"),
            take_profit=f.get("take_profit"),
            protection=f.get("protection", ProtectionState.NOT_REQUESTED),
            emergency_close=f.get("emergency_close"),
            error=f.get("error"),
            environment=self._settings.exchange,
            received_at=run.received_at,
            completed_at=completed,
            timestamp=completed,
            latency_ms=round((time.perf_counter() - run.started) * 1000, 3),
            meta=intent.meta,
        )
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

    # -- validation and pre-trade guards -----------------------------------------------------

    def _rules_for(self, symbol: str) -> SymbolRules:
        s = self._settings
        if s.symbol_allowlist and symbol not in s.symbol_allowlist:
            raise IntentRejected(
                ReasonCode.SYMBOL_NOT_ALLOWED, f"{symbol} is not in QUANTUM_SYMBOL_ALLOWLIST"
            )
        rules = self.gateway.rules.get(symbol)
        if rules is None:
            raise IntentRejected(ReasonCode.UNKNOWN_SYMBOL, f"{symbol} is not a symbol of this exchange")
        if rules.status != "TRADING":
            raise IntentRejected(ReasonCode.SYMBOL_NOT_TRADING, f"{symbol} is {rules.status}, not TRADING")
        if rules.contract_type != "PERPETUAL" and not s.allow_non_perpetual:
            raise IntentRejected(
                ReasonCode.CONTRACT_NOT_ALLOWED,
                f"{symbol} is a {rules.contract_type} contract; only perpetuals are executable "
                "(QUANTUM_ALLOW_NON_PERPETUAL)",
            )
        return rules

    def _check_fresh(self, intent: TradeIntent, now: datetime) -> None:
        if intent.timestamp is None:
            return
        age_s = (now - intent.timestamp).total_seconds()
        if age_s > self._settings.intent_ttl_s:
            raise IntentRejected(
                ReasonCode.STALE_INTENT,
                f"intent created {age_s:.1f}s ago, "
                f"older than QUANTUM_INTENT_TTL_S={self._settings.intent_ttl_s:g}",
            )

    async def _leverage_for(self, run: _Run, symbol: str) -> int:
        s = self._settings
        leverage = run.intent.leverage or s.default_leverage
        if leverage > s.max_leverage:
            raise IntentRejected(
                ReasonCode.LEVERAGE_ABOVE_LIMIT,
                f"leverage {leverage} above QUANTUM_MAX_LEVERAGE={s.max_leverage}",
            )
        bracket_max = await self.gateway.max_leverage(symbol)
        if bracket_max is not None and leverage > bracket_max:
            if s.leverage_policy is LeveragePolicy.REJECT:
                raise IntentRejected(
                    ReasonCode.LEVERAGE_ABOVE_LIMIT,
                    f"leverage {leverage} above the maximum {bracket_max} of {symbol}",
                )
            log.info("leverage.capped", intent_id=run.key, symbol=symbol, requested=leverage, cap=bracket_max)
            leverage = bracket_max
        return leverage

    def _triggers(
        self, rules: SymbolRules, intent: TradeIntent, *, long: bool, price: Decimal
    ) -> tuple[Decimal | None, Decimal | None]:
        """Rounded SL/TP trigger prices: absolute ones as given, percentages from ``price``."""
        sl = intent.stop_loss
        if sl is None and intent.stop_loss_pct is not None:
            sl = trigger_from_pct(price, intent.stop_loss_pct, long=long, kind="SL")
        tp = intent.take_profit
        if tp is None and intent.take_profit_pct is not None:
            tp = trigger_from_pct(price, intent.take_profit_pct, long=long, kind="TP")
        return (
            round_trigger(rules, sl, long=long, kind="SL") if sl is not None else None,
            round_trigger(rules, tp, long=long, kind="TP") if tp is not None else None,
        )

    # -- BUY / SELL ----------------------------------------------------------------------------

    async def _pre_trade(self, run: _Run, *, long: bool) -> tuple[SymbolRules, Decimal, Decimal]:
        """Every check before an order may be sent: returns the rules, reference price and quantity."""
        intent, s = run.intent, self._settings
        symbol = intent.symbol
        self._check_fresh(intent, run.received_at)
        rules = self._rules_for(symbol)
        run.fields["leverage"] = await self._leverage_for(run, symbol)
        run.fields["margin_type"] = (intent.margin_type or s.default_margin_type).value
        reference = intent.entry_price
        if reference is None:
            with run.step("mark_price"):
                reference = await self.gateway.mark_price(symbol)
        run.fields["reference_price"] = reference
        quantity = size_quantity(
            rules,
            price=reference,
            notional_usd=intent.position_size_usd,
            quantity=intent.quantity,
            max_qty_policy=s.max_qty_policy,
        )
        notional_usd = intent.position_size_usd or Decimal(0)
        run.fields["requested_quantity"] = (
            intent.quantity if intent.quantity is not None else notional_usd / reference
        )
        run.fields["quantity"] = quantity
        if quantity * reference > s.max_notional_usd:
            raise IntentRejected(
                ReasonCode.NOTIONAL_ABOVE_LIMIT,
                f"notional {quantity * reference} above QUANTUM_MAX_NOTIONAL_USD={s.max_notional_usd}",
            )
        if self._wants_protection(intent):
            # Reject a wrong-side intent before any order reaches the exchange.
            sl, tp = self._triggers(rules, intent, long=long, price=reference)
            check_protection(rules, long=long, reference=reference, sl=sl, tp=tp)
        return rules, reference, quantity

    @staticmethod
    def _wants_protection(intent: TradeIntent) -> bool:
        return not intent.reduce_only and any(
            v is not None
            for v in (intent.stop_loss, intent.take_profit, intent.stop_loss_pct, intent.take_profit_pct)
        )

    async def _open(self, run: _Run, resume: bool) -> None:
        intent = run.intent
        symbol = intent.symbol
        long = intent.side is Side.BUY
        entry_id = client_order_id(run.key, "entry")
        run.fields["client_order_id"] = entry_id
        entry: Order | None = None
        if resume:
            # First: an entry that already exists must be protected whatever the checks say now
            # (the intent may have gone stale, the price may have moved since it was placed).
            with run.step("lookup"):
                entry = await self._find_on_resume(run, lambda: self.gateway.get_order(symbol, entry_id))
        if entry is not None:
            log.info("entry.found_on_resume", intent_id=run.key, symbol=symbol, order_id=entry.order_id)
            rules = self.gateway.rules.get(symbol)
            reference = intent.entry_price or entry.avg_price
            quantity = entry.orig_qty
            run.fields.update(reference_price=reference, quantity=quantity, requested_quantity=quantity)
            if rules is None:
                raise ExchangeError(f"entry {entry_id} exists but the rules of {symbol} are not loaded")
        else:
            rules, reference, quantity = await self._pre_trade(run, long=long)
            await self._cancel_orphans(run, symbol)
            with run.step("leverage"):
                await self._configure(symbol, run.fields["leverage"], run.fields["margin_type"])
            with run.step("entry"):
                entry = await self._submit_order(
                    symbol,
                    entry_id,
                    lambda: self.gateway.place_market(
                        symbol, "BUY" if long else "SELL", quantity, entry_id, reduce_only=intent.reduce_only
                    ),
                )
        entry = await self._until_final(symbol, entry)
        self._record_fill(run, entry, reference, long=long)
        if entry.executed_qty <= 0:
            run.fields["status"] = ResultStatus.FAILED
            run.error(
                ReasonCode.ENTRY_NOT_FILLED,
                ErrorSource.EXCHANGE,
                f"entry {entry_id} ended {entry.status} with nothing filled",
            )
            return
        run.fields["status"] = (
            ResultStatus.FILLED
            if entry.status == "FILLED" and entry.executed_qty >= quantity
            else ResultStatus.PARTIAL
        )
        order_ids = [entry.order_id]
        if self._wants_protection(intent):
            with run.step("protection"):
                flatten = await self._protect(run, rules, entry, long=long, resume=resume)
            if flatten is not None:
                order_ids.append(flatten.order_id)
            metrics.POSITIONS_OPENED.labels(protection=run.fields["protection"].value).inc()
        with run.step("fees"):
            await self._fees(run, rules, symbol, order_ids)

    def _record_fill(self, run: _Run, order: Order, reference: Decimal, *, long: bool) -> None:
        run.fields["order_id"] = order.order_id
        run.fields["executed_quantity"] = order.executed_qty
        if order.executed_qty > 0:
            run.fields["avg_price"] = order.avg_price
            run.fields["notional"] = (
                order.cum_quote if order.cum_quote > 0 else order.avg_price * order.executed_qty
            )
            move = (order.avg_price - reference) if long else (reference - order.avg_price)
            run.fields["slippage_pct"] = (move / reference * HUNDRED).quantize(SLIPPAGE_QUANTUM)

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

    async def _cancel_orphans(self, run: _Run, symbol: str) -> None:
        """Cancel our protective orders left on a flat symbol, so they cannot close a new position."""
        own = self._own_protective.get(symbol)
        if not own:
            return
        with run.step("orphans"):
            if await self.gateway.position_amount(symbol) != 0:
                return
            ids = sorted(own)
            await asyncio.gather(*(self.gateway.cancel_algo(algo_id) for algo_id in ids))
            own.difference_update(ids)
        log.info("orphans.cancelled", intent_id=run.key, symbol=symbol, count=len(ids))

    # -- unknown outcomes ----------------------------------------------------------------------

    async def _submit_order(self, symbol: str, client_id: str, send: Callable[[], Awaitable[Order]]) -> Order:
        """Place an order; after an unknown outcome look it up, re-send only when certainly absent."""
        for _ in range(3):
            await ensure_owner(f"order {client_id}")
            sent_at = time.monotonic()
            try:
                return await send()
            except UnknownOutcomeError as exc:
                log.warning(
                    "order.outcome_unknown", client_order_id=client_id, symbol=symbol, detail=exc.message
                )
                found = await self._resolve(sent_at, lambda: self.gateway.get_order(symbol, client_id))
                if found is not None:
                    return found
                log.warning("order.certainly_absent", client_order_id=client_id, symbol=symbol)
            except RetryableError as exc:
                log.warning("order.retry", client_order_id=client_id, symbol=symbol, detail=exc.message)
                await asyncio.sleep(0.2)
        raise UnknownOutcomeError(f"order {client_id} could not be placed or found after 3 attempts")

    async def _find_on_resume(self, run: _Run, lookup: Callable[[], Awaitable[T | None]]) -> T | None:
        """Look an order of an earlier attempt up; "not found" counts only once it is certain.

        The earlier attempt may have died with its request still inside the exchange, which
        executes it until ``timestamp + recvWindow``; that request was sent before this attempt
        began, so from ``run.began`` on the usual unknown-outcome bound applies.
        """
        return await self._resolve(run.began, lookup)

    async def _resolve(self, sent_at: float, lookup: Callable[[], Awaitable[T | None]]) -> T | None:
        """Poll ``lookup`` until it finds the order or the request can no longer be accepted.

        The exchange rejects a request processed after ``timestamp + recvWindow``; once that has
        passed (plus a margin for clock offset) a request that is still not found never will be.
        """
        s = self._settings
        certain_after = sent_at + s.recv_window_ms / 1000 + 1.0
        delay = s.order_lookup_interval_s / 4
        failures = 0
        while True:
            try:
                found = await lookup()
            except ExchangeError as exc:
                failures += 1
                if failures > s.order_lookup_attempts and time.monotonic() > certain_after:
                    raise UnknownOutcomeError(f"order lookup keeps failing: {exc.message}") from None
            else:
                if found is not None:
                    return found
                if time.monotonic() > certain_after:
                    return None
            await asyncio.sleep(min(delay, max(0.0, certain_after - time.monotonic()) + 0.01))
            delay = min(delay * 2, s.order_lookup_interval_s * 4)

    async def _until_final(self, symbol: str, order: Order) -> Order:
        """A MARKET order reported NEW (e.g. found by lookup while matching) is polled until final."""
        for _ in range(self._settings.order_lookup_attempts * 4):
            if order.is_final:
                return order
            await asyncio.sleep(self._settings.order_lookup_interval_s / 4)
            found = await self.gateway.get_order(symbol, order.client_order_id)
            if found is not None:
                order = found
        return order

    # -- protection ----------------------------------------------------------------------------

    async def _protect(
        self, run: _Run, rules: SymbolRules, entry: Order, *, long: bool, resume: bool
    ) -> Order | None:
        """Place SL and TP concurrently; apply the failure policy. Returns an emergency close order."""
        s, intent = self._settings, run.intent
        symbol = intent.symbol
        exit_side = "SELL" if long else "BUY"
        quantity = None if s.protection_mode is ProtectionMode.CLOSE_POSITION else entry.executed_qty
        sl, tp = self._triggers(rules, intent, long=long, price=entry.avg_price)
        legs: list[_Protection] = []
        if sl is not None:
            legs.append(
                _Protection("SL", "STOP_MARKET", exit_side, client_order_id(run.key, "sl"), sl, quantity)
            )
        if tp is not None:
            legs.append(
                _Protection(
                    "TP", "TAKE_PROFIT_MARKET", exit_side, client_order_id(run.key, "tp"), tp, quantity
                )
            )
        try:
            check_protection(rules, long=long, reference=entry.avg_price, sl=sl, tp=tp)
        except IntentRejected as exc:
            # The fill moved past a trigger: such an order would fire at once.
            for leg in legs:
                leg.error = exc
        else:
            resumed_at = run.began if resume else None
            await asyncio.gather(*(self._place_leg(symbol, leg, resumed_at) for leg in legs))
        for leg in legs:
            if leg.order is not None:
                self._own_protective.setdefault(symbol, set()).add(leg.order.algo_id)
        failed = [leg for leg in legs if leg.order is None]
        flatten: Order | None = None
        if not failed:
            run.fields["protection"] = ProtectionState.PROTECTED
            metrics.TIME_TO_PROTECTED.observe(max(0.0, time.time() - run.created_s()))
        else:
            reasons = "; ".join(f"{leg.kind}: {leg.error}" for leg in failed)
            if s.protection_failure_policy is ProtectionFailurePolicy.CLOSE:
                flatten = await self._emergency_close(run, entry, exit_side, legs, reasons)
            else:
                run.fields["protection"] = (
                    ProtectionState.PARTIAL if len(failed) < len(legs) else (ProtectionState.UNPROTECTED)
                )
                run.error(
                    ReasonCode.PROTECTION_FAILED,
                    ErrorSource.EXCHANGE,
                    f"position left {run.fields['protection'].value} by policy keep: {reasons}",
                )
                log.error("position.unprotected", intent_id=run.key, symbol=symbol, reasons=reasons)
        for leg in legs:
            run.fields["stop_loss" if leg.kind == "SL" else "take_profit"] = leg.to_contract()
        return flatten

    async def _place_leg(self, symbol: str, leg: _Protection, resumed_at: float | None) -> None:
        """Place one protective order with the allowed retries; records the order or the error."""
        s = self._settings
        assert leg.trigger_price is not None
        trigger = leg.trigger_price
        if resumed_at is not None:
            found = await self._resolve(resumed_at, lambda: self.gateway.get_algo(leg.client_algo_id))
            if found is not None:
                leg.order = found
                return
        for attempt in range(s.protection_retries + 1):
            await ensure_owner(f"order {leg.client_algo_id}")
            sent_at = time.monotonic()
            try:
                leg.order = await self.gateway.place_algo(
                    symbol,
                    leg.side,
                    leg.order_type,
                    trigger,
                    leg.client_algo_id,
                    quantity=leg.quantity,
                    working_type=s.working_type.value,
                    price_protect=s.price_protect,
                )
                leg.error = None
                return
            except UnknownOutcomeError as exc:
                leg.error = exc
                found = await self._resolve(sent_at, lambda: self.gateway.get_algo(leg.client_algo_id))
                if found is not None:
                    leg.order, leg.error = found, None
                    return
            except PermanentError as exc:
                leg.error = exc
                if exc.code == DUPLICATE_CLIENT_ID:
                    found = await self.gateway.get_algo(leg.client_algo_id)
                    if found is not None:
                        leg.order, leg.error = found, None
                        return
                if exc.code != IMMEDIATE_TRIGGER:
                    return
            except RetryableError as exc:
                leg.error = exc
            if attempt < s.protection_retries:
                await asyncio.sleep(0.1 * (attempt + 1))
        log.warning(
            "protection.failed",
            symbol=symbol,
            kind=leg.kind,
            client_algo_id=leg.client_algo_id,
            detail=str(leg.error),
        )

    async def _emergency_close(
        self, run: _Run, entry: Order, exit_side: str, legs: list[_Protection], reasons: str
    ) -> Order | None:
        """Close the just-opened position at market (reduce-only) and cancel what was placed."""
        symbol = run.intent.symbol
        for leg in legs:
            if leg.order is not None:
                with contextlib.suppress(ExchangeError):
                    if await self.gateway.cancel_algo(leg.order.algo_id):
                        self._own_protective.get(symbol, set()).discard(leg.order.algo_id)
                        leg.order = dataclasses.replace(leg.order, status="CANCELED")
        close_id = client_order_id(run.key, "flatten")
        try:
            order = await self._submit_order(
                symbol,
                close_id,
                lambda: self.gateway.place_market(
                    symbol, exit_side, entry.executed_qty, close_id, reduce_only=True
                ),
            )
            order = await self._until_final(symbol, order)
        except ExchangeError as exc:
            run.fields["protection"] = ProtectionState.UNPROTECTED
            run.fields["status"] = ResultStatus.FAILED
            run.error(
                ReasonCode.PROTECTION_FAILED,
                ErrorSource.EXCHANGE,
                f"protection failed ({reasons}) and the emergency close failed too: {exc.message}",
            )
            log.error(
                "position.unprotected",
                intent_id=run.key,
                symbol=symbol,
                reasons=reasons,
                close_error=exc.message,
            )
            return None
        run.fields["protection"] = ProtectionState.CLOSED_EMERGENCY
        run.fields["status"] = ResultStatus.FAILED
        run.fields["emergency_close"] = CloseFill(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            side=exit_side,
            quantity=entry.executed_qty,
            executed_quantity=order.executed_qty,
            avg_price=order.avg_price,
            status=order.status,
        )
        run.error(
            ReasonCode.PROTECTION_FAILED,
            ErrorSource.EXCHANGE,
            f"protection failed ({reasons}); position closed at market by policy close",
        )
        log.error("position.closed_emergency", intent_id=run.key, symbol=symbol, reasons=reasons)
        return order

    # -- CLOSE -----------------------------------------------------------------------------------

    async def _close(self, run: _Run, resume: bool) -> None:
        symbol = run.intent.symbol
        close_id = client_order_id(run.key, "close")
        run.fields["client_order_id"] = close_id
        order: Order | None = None
        if resume:
            order = await self._find_on_resume(run, lambda: self.gateway.get_order(symbol, close_id))
        if order is None:
            self._check_fresh(run.intent, run.received_at)
            rules = self._rules_for(symbol)
        else:
            found = self.gateway.rules.get(symbol)
            if found is None:
                raise ExchangeError(f"close {close_id} exists but the rules of {symbol} are not loaded")
            rules = found
        with run.step("close"):
            cancelled = await self._cancel_all_protective(symbol)
            if order is None:
                amount = await self.gateway.position_amount(symbol)
                if amount == 0:
                    raise IntentRejected(
                        ReasonCode.NO_POSITION,
                        f"no open position on {symbol}: nothing to close "
                        f"({cancelled} open conditional orders cancelled)",
                    )
                side = "SELL" if amount > 0 else "BUY"
                quantity = abs(amount)
                run.fields["requested_quantity"] = quantity
                run.fields["quantity"] = quantity
                order = await self._submit_order(
                    symbol,
                    close_id,
                    lambda: self.gateway.place_market(symbol, side, quantity, close_id, reduce_only=True),
                )
            order = await self._until_final(symbol, order)
        run.fields["order_id"] = order.order_id
        run.fields["executed_quantity"] = order.executed_qty
        if order.executed_qty > 0:
            run.fields["avg_price"] = order.avg_price
            run.fields["notional"] = order.cum_quote
        run.fields["status"] = ResultStatus.FILLED if order.status == "FILLED" else ResultStatus.PARTIAL
        if order.executed_qty <= 0:
            run.fields["status"] = ResultStatus.FAILED
            run.error(
                ReasonCode.ENTRY_NOT_FILLED, ErrorSource.EXCHANGE, f"close {close_id} ended {order.status}"
            )
            return
        with run.step("fees"):
            await self._fees(run, rules, symbol, [order.order_id])

    async def _cancel_all_protective(self, symbol: str) -> int:
        """Cancel every open conditional order of the symbol; returns how many were open."""
        open_orders = await self.gateway.open_algo_orders(symbol)
        await asyncio.gather(*(self.gateway.cancel_algo(o.algo_id) for o in open_orders))
        self._own_protective.pop(symbol, None)
        return len(open_orders)

    # -- fees ------------------------------------------------------------------------------------

    async def _fees(self, run: _Run, rules: SymbolRules, symbol: str, order_ids: list[int]) -> None:
        """Commission and realized PnL from userTrades (order responses carry no commission)."""
        trades = []
        for order_id in order_ids:
            for attempt in range(TRADE_LOOKUPS):
                found = await self.gateway.user_trades(symbol, order_id)
                if found or attempt == TRADE_LOOKUPS - 1:
                    trades.extend(found)
                    break
                # The trade list can trail the order by a moment.
                await asyncio.sleep(0.05 * (attempt + 1))
        fees = Fees.from_trades(trades)
        run.fields["commission"] = fees.commission
        run.fields["commission_asset"] = fees.commission_asset
        run.fields["realized_pnl"] = fees.realized_pnl
        if fees.commission_asset == rules.quote_asset:
            run.fields["fee_usd"] = fees.commission


async def create_executor(settings: Settings, sim_base_url: str | None = None) -> Executor:
    """Build and start the executor for the configured environment.

    With ``QUANTUM_EXCHANGE=sim`` and no ``QUANTUM_BINANCE_BASE_URL`` the simulator is started
    in-process on a free loopback port and stopped with the executor.
    """
    simulator: Any = None
    if settings.embedded_sim and sim_base_url is None:
        from binance_sim import SimConfig, Simulator

        key = settings.api_key.get_secret_value() if settings.api_key else SimConfig().api_key
        secret = settings.api_secret.get_secret_value() if settings.api_secret else SimConfig().api_secret
        simulator = Simulator(
            SimConfig(
                api_key=key,
                api_secret=secret,
                latency_ms=settings.sim_latency_ms,
                rate_limits=settings.sim_rate_limits,
            )
        )
        await simulator.start(host="127.0.0.1", port=0)
        sim_base_url = simulator.base_url
        settings = settings.model_copy(update={"api_key": SecretStr(key), "api_secret": SecretStr(secret)})
        log.info("exchange.embedded_simulator", url=sim_base_url)
    gateway = BinanceGateway(settings, rest_root(settings, sim_base_url))
    executor = Executor(settings, gateway, simulator=simulator)
    try:
        await executor.start()
    except BaseException:
        await executor.close()
        raise
    return executor
