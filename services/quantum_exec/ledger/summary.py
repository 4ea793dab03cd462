"""How are we doing: the summary of closed round trips.

Over the closed trades given (any filter applied before):

* ``winning_trades`` / ``losing_trades``: ``net_pnl`` > 0 / < 0 (a trade at exactly 0 is neither);
* ``win_rate`` = winners / total (a fraction, 0.6), 0 with no trades;
* ``gross_pnl`` = sum of realized PnL; ``commission``, ``funding`` summed; ``net_pnl`` = sum of
  net PnL (= gross - commission + funding);
* ``average_win`` / ``average_loss``: mean net PnL of winners / losers (None without any);
* ``profit_factor`` = sum of winners' net / |sum of losers' net| (None without losers);
* ``expectancy`` = net_pnl / total_trades (the average trade);
* ``max_drawdown``: the largest drop of cumulative net PnL from a running peak (starting at 0),
  trades in ``closed_at`` order, as a non-negative number;
* ``best_trade`` / ``worst_trade``: ``{"trade_id", "net_pnl"}`` of the highest / lowest net PnL;
* ``average_duration_s``: mean of the trades' durations;
* ``by_symbol`` / ``by_model``: the same figures per group (model None as ``unknown``);
* ``daily``: net PnL and count per UTC day of ``closed_at``, ascending.

Sums stay exact; the two ratios are rounded to 4 decimals (half even), the averages to the
figures' own precision by Decimal's context.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from quantum_exec.ledger.trades import Trade

ZERO: Final = Decimal(0)
RATIO: Final = Decimal("0.0001")


def _figures(trades: list[Trade]) -> dict[str, Any]:
    trades = sorted(trades, key=lambda t: (t.closed_at or t.opened_at, t.trade_id))
    total = len(trades)
    wins = [t.net_pnl for t in trades if t.net_pnl > 0]
    losses = [t.net_pnl for t in trades if t.net_pnl < 0]
    net = sum((t.net_pnl for t in trades), ZERO)
    peak = running = drawdown = ZERO
    for trade in trades:
        running += trade.net_pnl
        peak = max(peak, running)
        drawdown = max(drawdown, peak - running)
    durations = [t.duration_s for t in trades if t.duration_s is not None]
    best = max(trades, key=lambda t: t.net_pnl, default=None)
    worst = min(trades, key=lambda t: t.net_pnl, default=None)
    won, lost = sum(wins, ZERO), sum(losses, ZERO)
    return {
        "total_trades": total,
        "winning_trades": len(wins),
        "losing_trades": len(losses),
        "win_rate": (Decimal(len(wins)) / total).quantize(RATIO, ROUND_HALF_EVEN) if total else ZERO,
        "gross_pnl": sum((t.realized_pnl for t in trades), ZERO),
        "commission": sum((t.commission for t in trades), ZERO),
        "funding": sum((t.funding for t in trades), ZERO),
        "net_pnl": net,
        "average_win": won / len(wins) if wins else None,
        "average_loss": lost / len(losses) if losses else None,
        "profit_factor": (won / abs(lost)).quantize(RATIO, ROUND_HALF_EVEN) if losses else None,
        "expectancy": net / total if total else None,
        "max_drawdown": drawdown,
        "best_trade": {"trade_id": best.trade_id, "net_pnl": best.net_pnl} if best else None,
        "worst_trade": {"trade_id": worst.trade_id, "net_pnl": worst.net_pnl} if worst else None,
        "average_duration_s": sum(durations, ZERO) / len(durations) if durations else None,
    }


def summarize(trades: Iterable[Trade]) -> dict[str, Any]:
    """The summary of the closed trades among ``trades`` (see the module docstring)."""
    closed = [t for t in trades if t.status == "closed"]
    summary = _figures(closed)
    by_symbol: dict[str, list[Trade]] = {}
    by_model: dict[str, list[Trade]] = {}
    daily: dict[str, list[Trade]] = {}
    for trade in closed:
        by_symbol.setdefault(trade.symbol, []).append(trade)
        by_model.setdefault(trade.model or "unknown", []).append(trade)
        assert trade.closed_at is not None
        daily.setdefault(trade.closed_at.date().isoformat(), []).append(trade)
    summary["by_symbol"] = {k: _figures(v) for k, v in sorted(by_symbol.items())}
    summary["by_model"] = {k: _figures(v) for k, v in sorted(by_model.items())}
    summary["daily"] = [
        {"date": day, "net_pnl": sum((t.net_pnl for t in group), ZERO), "trades": len(group)}
        for day, group in sorted(daily.items())
    ]
    return summary
