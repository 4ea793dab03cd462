"""The account's budget of open conditional orders: 200 open (NEW or TRIGGERING) algo orders per
account, ours and anybody else's; Binance answers ``-4045`` "Reach max stop order limit" beyond
(the simulator's README section cites it). A change that would need more is refused with
``CONDITIONAL_BUDGET`` before anything is sent: a set of legs half placed would be worse than none.

The count is the live view's (every conditional order of the account the user stream and the
resyncs showed, ours and anybody else's: no request on the order path); while the view is stale,
the exchange's own list (``GET /fapi/v1/openAlgoOrders`` for every symbol, weight 40). The last
count is the gauge ``quantum_exec_conditional_orders_open`` beside
``quantum_exec_conditional_orders_budget`` (an alert fires at 90 %).
"""

from __future__ import annotations

from typing import Final

from quantum_exec.contracts import TradeIntent
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.ops import metrics

MAX_CONDITIONAL_ORDERS: Final = 200


async def open_conditional(ctx: EntryContext) -> int:
    """Open conditional orders of the account now (ours and others), and the gauge set to it."""
    account = ctx.account
    live = account.conditional_open() if account is not None else None
    count = live if live is not None else len(await ctx.gateway.open_algo_orders(None))
    metrics.CONDITIONAL_OPEN.set(count)
    return count


def legs_needed(intent: TradeIntent) -> int:
    """How many conditional orders an entry's protection places (none for a reduce-only entry)."""
    if intent.reduce_only:
        return 0
    count = 1 if intent.stop_loss is not None or intent.stop_loss_pct is not None else 0
    if intent.take_profits:
        count += len(intent.take_profits)
    elif intent.take_profit is not None or intent.take_profit_pct is not None:
        count += 1
    return count + (1 if intent.trailing_stop is not None else 0)


async def check_budget(ctx: EntryContext, needed: int) -> None:
    """Raise ``CONDITIONAL_BUDGET`` when ``needed`` more would exceed the budget."""
    if needed <= 0:
        return
    count = await open_conditional(ctx)
    if count + needed > MAX_CONDITIONAL_ORDERS:
        raise IntentRejected(
            ReasonCode.CONDITIONAL_BUDGET,
            f"{count} conditional orders open on the account and {needed} more needed: above the "
            f"budget of {MAX_CONDITIONAL_ORDERS} (nothing sent)",
        )
