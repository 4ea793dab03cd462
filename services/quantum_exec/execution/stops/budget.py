"""The account's budget of open conditional orders: 200 open (NEW or TRIGGERING) algo orders per
account, ours and anybody else's; Binance answers ``-4045`` "Reach max stop order limit" beyond
(the simulator's README section cites it). A change that would need more is refused with
``CONDITIONAL_BUDGET`` before anything is sent: a set of legs half placed would be worse than none.

The count is the exchange's own list (``GET /fapi/v1/openAlgoOrders`` for every symbol, weight 40):
the live view holds only our own legs. The last count is the gauge
``quantum_exec_conditional_orders_open`` beside ``quantum_exec_conditional_orders_budget``.
"""

from __future__ import annotations

from typing import Final

from quantum_exec.errors import IntentRejected, ReasonCode
from quantum_exec.execution.entries.base import EntryContext
from quantum_exec.ops import metrics

MAX_CONDITIONAL_ORDERS: Final = 200


async def open_conditional(ctx: EntryContext) -> int:
    """Open conditional orders of the account now (ours and others), and the gauge set to it."""
    count = len(await ctx.gateway.open_algo_orders(None))  # the exchange lists the open ones
    metrics.CONDITIONAL_OPEN.set(count)
    return count


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
