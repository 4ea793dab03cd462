"""Commission and realized PnL of an intent's orders, from the account's trades.

Order responses carry no commission; ``userTrades`` does (weight 5 per call).
"""

from __future__ import annotations

import asyncio

from quantum_exec.backoff import Backoff
from quantum_exec.exchange.wire import Fees
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.run import Run
from quantum_exec.rules import SymbolRules

TRADE_LOOKUPS = 4
# The trade list can trail the order by a moment.
TRADES_TRAIL = Backoff(base_s=0.05, cap_s=0.4)


async def record_fees(gateway: Gateway, run: Run, rules: SymbolRules, order_ids: list[int]) -> None:
    """Set the run's commission, its asset, the fee in USD (quote-asset fees) and realized PnL."""
    symbol, out = run.intent.symbol, run.out
    trades = []
    for order_id in order_ids:
        waits = TRADES_TRAIL.delays()
        for attempt in range(TRADE_LOOKUPS):
            found = await gateway.user_trades(symbol, order_id)
            if found or attempt == TRADE_LOOKUPS - 1:
                trades.extend(found)
                break
            await asyncio.sleep(next(waits))
    fees = Fees.from_trades(trades)
    out.commission = fees.commission
    out.commission_asset = fees.commission_asset
    out.realized_pnl = fees.realized_pnl
    if fees.commission_asset == rules.quote_asset:
        out.fee_usd = fees.commission
