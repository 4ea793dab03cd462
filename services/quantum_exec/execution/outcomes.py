"""What the executor writes into a result beside the steps: a failure, a repair's poison, a fill."""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.contracts import ErrorSource, ProtectionState, ResultError, ResultStatus, Side
from quantum_exec.core.errors import ExchangeError, IntentRejected, PermanentError, ReasonCode
from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import Order, OrderStatus, OrderType
from quantum_exec.execution.guards import wants_protection
from quantum_exec.execution.netting import opened
from quantum_exec.execution.ports import AccountView
from quantum_exec.execution.run import Run, result_error
from quantum_exec.execution.stops.break_even import break_even_of
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

HUNDRED = Decimal(100)
SLIPPAGE_QUANTUM = Decimal("0.0001")


def record_failure(run: Run, exc: Exception) -> None:
    """Record why the intent failed; never ``not_requested`` once an entry may exist."""
    out, intent = run.out, run.intent
    if isinstance(exc, IntentRejected | ExchangeError):
        error = result_error(exc)
    else:
        error = ResultError(
            code=ReasonCode.INTERNAL_ERROR,
            source=ErrorSource.INTERNAL,
            message=f"internal error: {type(exc).__name__}",
        )
    quantity = out.executed_quantity or out.quantity
    if quantity is not None and run.position_before is not None:
        # Only what exceeds an opposite position opens one; a reducing entry opens nothing.
        quantity = opened(run.position_before, quantity, long=intent.side is Side.BUY)
    if (
        run.entry_sent
        and wants_protection(intent)
        and out.protection is ProtectionState.NOT_REQUESTED
        and quantity != 0
    ):
        # The entry may have filled: say the position may be naked, and which one.
        out.protection = ProtectionState.UNPROTECTED
        run.fail_unless_set(ResultStatus.FAILED)
        run.error(
            ReasonCode.PROTECTION_FAILED,
            error.source,
            f"entry {out.client_order_id} may have opened a {intent.symbol} {intent.side.value} position "
            f"of {quantity} that has no SL/TP: {error.message}",
        )
        log.error("position.unverified", intent_id=run.key, symbol=intent.symbol, detail=error.message)
        return
    if isinstance(exc, IntentRejected):
        out.status = ResultStatus.REJECTED
    elif isinstance(exc, PermanentError):
        # The exchange refused before anything was filled (a fill sets the status itself).
        run.fail_unless_set(ResultStatus.REJECTED)
    else:
        run.fail_unless_set(ResultStatus.FAILED)
    out.error = error


def as_poison(run: Run, max_attempts: int) -> None:
    """The repair's result: failed POISON_MESSAGE, stating what is true on the exchange."""
    out = run.out
    if out.executed_quantity:
        state = (
            f"{out.client_order_id} filled {out.executed_quantity} at {out.avg_price}; "
            f"protection {out.protection.value}"
        )
    elif run.entry_sent:
        state = f"{out.client_order_id}: {out.error.message if out.error else 'nothing filled'}"
    else:
        state = f"{out.client_order_id} does not exist on the exchange: nothing was opened"
    if out.error is not None and out.executed_quantity:
        state += f" ({out.error.message})"
    out.status = ResultStatus.FAILED
    run.error(
        ReasonCode.POISON_MESSAGE,
        ErrorSource.INTERNAL,
        f"the process died in {max_attempts} attempts at this intent "
        f"(QUANTUM_MAX_ATTEMPTS); repaired once: {state}",
    )


def record_fill(run: Run, order: Order, reference: Decimal, *, long: bool) -> None:
    out = run.out
    out.order_id = order.order_id
    out.executed_quantity = order.executed_qty
    if order.executed_qty > 0:
        out.avg_price = order.avg_price
        out.notional = order.cum_quote if order.cum_quote > 0 else order.avg_price * order.executed_qty
        move = (order.avg_price - reference) if long else (reference - order.avg_price)
        out.slippage_pct = (move / reference * HUNDRED).quantize(SLIPPAGE_QUANTUM)


def record_unfilled(run: Run, entry: Order, entry_id: str) -> None:
    """An entry that ended with nothing filled: FAILED, with why."""
    run.out.status = ResultStatus.FAILED
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


def record_status(run: Run, entry: Order, quantity: Decimal, *, recovered: bool) -> None:
    """A filled entry's status: FILLED when all of it filled in one attempt; FAILED stands for an
    entry closed at its fill."""
    if run.out.protection is not ProtectionState.CLOSED_EMERGENCY:
        run.out.status = (
            ResultStatus.FILLED
            if entry.status is OrderStatus.FILLED and entry.executed_qty >= quantity and not recovered
            else ResultStatus.PARTIAL
        )


async def record_opened(
    account: AccountView, run: Run, rules: SymbolRules, size: Decimal, *, long: bool
) -> None:
    """What this intent opened, for the account's records (an entry that only reduced an opposite
    position opened nothing; one closed at its fill holds nothing), with its legs' prices."""
    out = run.out
    held = Decimal(0) if out.protection is ProtectionState.CLOSED_EMERGENCY else size
    await account.opened(
        run.key,
        run.intent,
        held,
        stop_loss=out.stop_loss.trigger_price if out.stop_loss else None,
        take_profit=out.take_profit.trigger_price if out.take_profit and not out.take_profits else None,
        break_even=break_even_of(run, rules, long=long),
        filled=out.executed_quantity,
        position_before=run.position_before,
        seen=run.record_there is True,
    )
