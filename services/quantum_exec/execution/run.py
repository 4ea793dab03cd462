"""One attempt at one intent: what it has established so far, typed, and the result built from it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from quantum_exec.contracts import (
    ChildOrder,
    CloseFill,
    ErrorSource,
    ExecutionResult,
    ProtectionState,
    ProtectiveOrder,
    ResultError,
    ResultStatus,
    TradeIntent,
)
from quantum_exec.contracts.codec import stream_id_time_s
from quantum_exec.core.errors import ExchangeError, IntentRejected, ReasonCode
from quantum_exec.core.settings import ExchangeEnv
from quantum_exec.ops import metrics


@dataclass(frozen=True, slots=True)
class Attempt:
    """How this attempt at an intent relates to earlier ones (set by the stream layer).

    ``resume``: an earlier attempt began (or may have: its record can be lost in a Redis
    failover), so its orders are looked up before anything is placed.
    ``earlier_sent_by``: the monotonic time by which every order of the earlier attempts was sent
    (from their last recorded fence), so "not found" is certain once recvWindow has passed since;
    None means unknown, and now is used. ``repair``: the intent is poison; only protect or close
    what its earlier attempts opened, never place a new entry, and report what is true.
    ``first_received_at``: when the intent's first attempt was read (its timings run from there
    across redeliveries); None when this is the first or it is unknown.
    """

    resume: bool = False
    earlier_sent_by: float | None = None
    repair: bool = False
    first_received_at: datetime | None = None


FIRST_ATTEMPT = Attempt()


def result_error(exc: ExchangeError | IntentRejected) -> ResultError:
    """The result's ``error`` for a rejection (validation) or an exchange error."""
    if isinstance(exc, IntentRejected):
        return ResultError(code=exc.code, source=ErrorSource.VALIDATION, message=exc.message)
    code = str(exc.code) if exc.code is not None else ReasonCode.EXCHANGE_UNAVAILABLE.value
    return ResultError(code=code, source=ErrorSource.EXCHANGE, message=exc.message)


@dataclass(slots=True)
class Outcome:
    """Every fact of the result the steps establish; None until a step knows it."""

    status: ResultStatus | None = None
    leverage: int | None = None
    margin_type: str | None = None
    order_id: int | None = None
    client_order_id: str | None = None
    requested_quantity: Decimal | None = None
    quantity: Decimal | None = None
    executed_quantity: Decimal | None = None
    avg_price: Decimal | None = None
    notional: Decimal | None = None
    reference_price: Decimal | None = None
    slippage_pct: Decimal | None = None
    commission: Decimal | None = None
    commission_asset: str | None = None
    fee_usd: Decimal | None = None
    realized_pnl: Decimal | None = None
    stop_loss: ProtectiveOrder | None = None
    take_profit: ProtectiveOrder | None = None
    take_profits: list[ProtectiveOrder] | None = None
    trailing_stop: ProtectiveOrder | None = None
    legs_before: list[ProtectiveOrder] | None = None
    legs_after: list[ProtectiveOrder] | None = None
    protection: ProtectionState = ProtectionState.NOT_REQUESTED
    emergency_close: CloseFill | None = None
    children: list[ChildOrder] | None = None
    error: ResultError | None = None
    # What the service adds to the echoed ``meta`` (keys start with "_", like "_meta_truncated").
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Run:
    """One execution attempt: the intent, its key, timings and the outcome filled in step by step."""

    intent: TradeIntent
    key: str
    stream_id: str | None
    received_at: datetime
    attempt: Attempt = FIRST_ATTEMPT
    started: float = field(default_factory=time.perf_counter)
    # When this attempt began (monotonic).
    began: float = field(default_factory=time.monotonic)
    out: Outcome = field(default_factory=Outcome)
    # Set right before the entry is sent: from then on a position may exist.
    entry_sent: bool = False
    # The symbol's signed one-way position read before the entry; None when not read (a resumed
    # entry, a reduce-only intent): the entry is then taken to open all it executes.
    position_before: Decimal | None = None
    # Resumed with the entry found: whether the intent's record was there (None: not read).
    # There, its "opened" write does not bring it back if it goes meanwhile (its position share
    # was taken off whole: its own stop or target, a CLOSE, the symbol gone flat). Gone already,
    # it is written: that cannot be told from a record never written (the opening write lost
    # with the instance, or refused while Redis was away), which must be.
    record_there: bool | None = None
    # The LIMIT (or STOP) entry's price (rounded to the tick); None for a MARKET entry.
    limit_price: Decimal | None = None
    # A STOP / STOP_MARKET entry's trigger (rounded to the tick).
    stop_price: Decimal | None = None
    # Admitted only because it reduces (trading REDUCING): its orders go reduce-only, so one that
    # arrives after the position it reduced is gone is refused instead of opening another.
    admitted_reducing: bool = False
    # Called once the entry's first order has the exchange's answer, or once none will be sent
    # (the risk governor's admission then no longer holds back a halt): :meth:`first_answered`.
    on_first_answer: Callable[[], Awaitable[None]] | None = None

    @property
    def reduce_only(self) -> bool:
        """Whether the entry's orders are sent reduce-only (asked so, or admitted as reducing)."""
        return self.intent.reduce_only or self.admitted_reducing

    async def first_answered(self) -> None:
        """The entry's first order has its answer (or none will be sent): tells it once."""
        callback, self.on_first_answer = self.on_first_answer, None
        if callback is not None:
            await callback()

    @property
    def earlier_sent_by(self) -> float:
        """Monotonic time by which any order of an earlier attempt was sent (see :class:`Attempt`)."""
        known = self.attempt.earlier_sent_by
        return known if known is not None else self.began

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step into the per-step latency histogram."""
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.STEP_LATENCY_BY.of(name).observe(time.perf_counter() - started)

    def error(self, code: str, source: ErrorSource, message: str) -> None:
        self.out.error = ResultError(code=code, source=source, message=message)

    def fail_unless_set(self, status: ResultStatus) -> None:
        """Set the status unless a step (a fill) already set it."""
        if self.out.status is None:
            self.out.status = status

    def ttl_origin(self) -> tuple[datetime, str] | None:
        """Where the intent's TTL starts and what that moment is: its ``timestamp``, else when it
        was published (its stream id's time); None when neither is known.

        The TTL check at receipt and the send-by deadline of its entry (:meth:`send_by`) both count
        from here, on the wall clock.
        """
        if self.intent.timestamp is not None:
            return self.intent.timestamp, "intent created"
        published_s = stream_id_time_s(self.stream_id) if self.stream_id else None
        if published_s is not None:
            return datetime.fromtimestamp(published_s, UTC), "intent published (no timestamp)"
        return None

    def send_by(self, ttl_s: float) -> float:
        """The wall-clock time (epoch s) after which its entry must not leave: the TTL from
        :meth:`ttl_origin` (from its receipt when there is none)."""
        origin = self.ttl_origin()
        return (origin[0] if origin is not None else self.received_at).timestamp() + ttl_s

    def working_deadline(self, limit_s: float) -> float:
        """The monotonic time a working entry's window of ``limit_s`` (its ``expire_after_s``) ends:
        counted from the intent's first attempt, so a resumed entry does not start it over (the
        time between the first attempt's receipt and this one's is spent already)."""
        first = self.attempt.first_received_at
        spent_s = max(0.0, (self.received_at - first).total_seconds()) if first is not None else 0.0
        return self.began + limit_s - spent_s

    def created_s(self) -> float:
        """When the intent entered the system: its stream id's time, else when it was received."""
        created = stream_id_time_s(self.stream_id) if self.stream_id else None
        return created if created is not None else self.received_at.timestamp()

    def result(self, environment: ExchangeEnv) -> ExecutionResult:
        """The ExecutionResult of this attempt (legacy fields derived from the new ones)."""
        completed = datetime.now(UTC)
        out, intent = self.out, self.intent
        first_received = min(self.attempt.first_received_at or self.received_at, self.received_at)
        return ExecutionResult(
            intent_id=self.key,
            stream_id=self.stream_id,
            symbol=intent.symbol,
            action=intent.side,
            status=out.status or ResultStatus.FAILED,
            leverage=out.leverage if out.leverage is not None else intent.leverage,
            order_id=out.order_id,
            client_order_id=out.client_order_id,
            requested_quantity=out.requested_quantity,
            quantity=out.quantity,
            executed_quantity=out.executed_quantity,
            avg_price=out.avg_price,
            entry_price=out.avg_price,
            notional=out.notional,
            position_size_usd=out.notional,
            reference_price=out.reference_price,
            slippage_pct=out.slippage_pct,
            commission=out.commission,
            commission_asset=out.commission_asset,
            fee_usd=out.fee_usd,
            realized_pnl=out.realized_pnl,
            stop_loss=out.stop_loss,
            take_profit=out.take_profit,
            take_profits=out.take_profits,
            trailing_stop=out.trailing_stop,
            legs_before=out.legs_before,
            legs_after=out.legs_after,
            protection=out.protection,
            emergency_close=out.emergency_close,
            children=out.children,
            error=out.error,
            environment=environment,
            received_at=self.received_at,
            completed_at=completed,
            timestamp=completed,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            first_received_at=first_received,
            total_ms=round((completed - first_received).total_seconds() * 1000, 3),
            meta={**intent.meta, **out.meta} if out.meta else intent.meta,
        )
