"""Commission and realized PnL of an intent's orders: from the fill events, else the account's trades.

Order responses carry no commission. With the user data stream up, every fill's ORDER_TRADE_UPDATE
carries it (and the realized profit), so no request is made; while the stream is down (or an
order's final event is late) ``userTrades`` answers (weight 5 per call).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from quantum_exec.core.backoff import Backoff
from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import Fees
from quantum_exec.execution.ports import AccountView, Gateway
from quantum_exec.execution.run import Run

TRADE_LOOKUPS = 4
# The trade list can trail the order by a moment.
TRADES_TRAIL = Backoff(base_s=0.05, cap_s=0.4)


async def record_fees(
    gateway: Gateway,
    run: Run,
    rules: SymbolRules,
    order_ids: list[int],
    account: AccountView | None = None,
) -> None:
    """Set the run's commission, its asset, the fee in USD (quote-asset fees) and realized PnL."""
    symbol, out = run.intent.symbol, run.out
    if account is not None and await _from_events(account, run, rules, order_ids):
        return
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


async def _from_events(account: AccountView, run: Run, rules: SymbolRules, order_ids: list[int]) -> bool:
    """The fees from the live view; False (use REST) when it is stale or an order's fills are late."""
    summaries = []
    for order_id in order_ids:
        found = await account.fills(run.intent.symbol, order_id)
        if found is None:
            return False
        summaries.append(found)
    assets = {s.commission_asset for s in summaries if s.commission_asset}
    out = run.out
    out.commission = sum((s.commission for s in summaries), Decimal(0))
    out.commission_asset = assets.pop() if len(assets) == 1 else ("MIXED" if assets else None)
    out.realized_pnl = sum((s.realized_pnl for s in summaries), Decimal(0))
    if out.commission_asset == rules.quote_asset:
        out.fee_usd = out.commission
    return True
