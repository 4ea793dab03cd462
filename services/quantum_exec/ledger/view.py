"""The ledger for people: ``quantum-exec trades`` and ``summary`` tables, and CSV with exact decimals."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from quantum_exec.core.rules import fmt
from quantum_exec.core.table import render_table
from quantum_exec.ledger.trades import Trade

TRADE_COLUMNS = (
    "closed (UTC)",
    "symbol",
    "side",
    "qty",
    "entry",
    "exit",
    "reason",
    "net pnl",
    "duration",
    "model",
)
CSV_COLUMNS = (
    "trade_id",
    "symbol",
    "side",
    "status",
    "max_quantity",
    "closing_quantity",
    "entry_price",
    "exit_price",
    "opened_at",
    "closed_at",
    "duration_s",
    "exit_reason",
    "realized_pnl",
    "commission",
    "funding",
    "net_pnl",
    "intent_ids",
    "model",
    "strategy",
)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return fmt(value) if isinstance(value, Decimal) else str(value)


def _duration(seconds: Decimal | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_trades(trades: Iterable[Trade]) -> str:
    """One line per trade, newest first as given; open trades show ``open``."""
    rows = [
        (
            t.closed_at.strftime("%Y-%m-%d %H:%M:%S") if t.closed_at else "open",
            t.symbol,
            t.side,
            _num(t.max_quantity),
            _num(t.entry_price),  # exact, as the exchange booked them (0.15997 stays 0.15997)
            _num(t.exit_price),
            t.exit_reason or "-",
            _num(t.net_pnl),
            _duration(t.duration_s),
            t.model or "-",
        )
        for t in trades
    ]
    return render_table(TRADE_COLUMNS, rows) if rows else "no trades"


def percent(rate: Any, trades: Any) -> str:
    """A win rate as people read it (0.625 -> ``62.5 %``); ``-`` when no trade makes it defined."""
    if rate is None or not int(trades or 0):
        return "-"
    return f"{fmt(Decimal(rate) * 100)} %"


def format_summary(summary: dict[str, Any]) -> str:
    """The headline figures, then one line per symbol; ``-`` for a ratio no trade defines."""
    s = summary
    lines = [
        f"trades {s['total_trades']}  won {s['winning_trades']}  lost {s['losing_trades']}  "
        f"win rate {percent(s['win_rate'], s['total_trades'])}",
        f"net pnl {_num(s['net_pnl'])}  (gross {_num(s['gross_pnl'])}, commission {_num(s['commission'])}, "
        f"funding {_num(s['funding'])})",
        f"profit factor {_num(s['profit_factor'])}  expectancy {_num(s['expectancy'])}  "
        f"max drawdown {_num(s['max_drawdown'])}",
    ]
    by_symbol = s.get("by_symbol") or {}
    if by_symbol:
        rows = [
            (
                name,
                str(g["total_trades"]),
                percent(g["win_rate"], g["total_trades"]),
                _num(g["net_pnl"]),
                _num(g["max_drawdown"]),
            )
            for name, g in by_symbol.items()
        ]
        lines += ["", render_table(("symbol", "trades", "win rate", "net pnl", "max drawdown"), rows)]
    return "\n".join(lines)


def trades_csv(trades: Iterable[Trade]) -> str:
    """CSV with a header; decimals written exactly, times ISO-8601, intent ids joined by ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in trades:
        row = []
        for name in CSV_COLUMNS:
            value = getattr(t, name)
            if name == "intent_ids":
                value = ";".join(value)
            elif isinstance(value, Decimal):
                value = str(value)
            elif value is None:
                value = ""
            elif hasattr(value, "isoformat"):
                value = value.isoformat()
            row.append(value)
        writer.writerow(row)
    return out.getvalue()
