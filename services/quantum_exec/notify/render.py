"""Which events are notices, and their one line each (pure).

* results: every one that is not ``filled`` + ``protected`` (a filled CLOSE is told by the trade it
  closed), emergency closes and unprotected positions included;
* position events: a stop or a target that reduced a position (a partial fire) and liquidations /
  ADL; a stop or target that closed it is told by the closed trade, with its net PnL;
* closed trades (the ledger): how, the prices, and the trade's exact net PnL;
* dead letters, risk-state changes (``quantum:stream:risk.event``), the user data stream down.

Numbers are written exactly as booked (``fmt``: no exponent, no trailing zeros). A notice's
``event_id`` is stable (the same event gives the same id after a restart), so it is sent once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from quantum_exec.account.positions import PositionEvent, PositionKind, PositionReason
from quantum_exec.contracts import ExecutionResult, ProtectionState, ResultStatus, Side
from quantum_exec.contracts.codec import payload_value, truncate
from quantum_exec.core.rules import fmt
from quantum_exec.ledger.trades import Trade, trade_from_json

MESSAGE_CHARS: Final = 160
_FIRES: Final = {PositionReason.STOP_LOSS: "stop loss", PositionReason.TAKE_PROFIT: "take profit"}
_FORCED: Final = {PositionReason.LIQUIDATION: "LIQUIDATION", PositionReason.ADL: "ADL"}
_EXITS: Final = {
    "stop_loss": "by its stop loss",
    "take_profit": "by its take profit",
    "close_intent": "by a CLOSE",
    "reduce_intent": "by a reduce-only intent",
    "emergency": "by an EMERGENCY close",
    "liquidation": "by LIQUIDATION",
    "adl": "by ADL",
    "external": "outside quantum-exec",
    "opposite_entry": "by an opposite entry",
    "flip": "by a flip",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One event's line; ``kind`` names what it is about (for webhooks and tests)."""

    event_id: str
    kind: str
    text: str


def _n(value: Decimal | None) -> str:
    return "-" if value is None else fmt(value)


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + fmt(value)


def _loads(fields: Mapping[Any, Any]) -> Any:
    raw = payload_value(fields)
    if raw is None:
        return None
    return json.loads(bytes(raw) if isinstance(raw, memoryview | bytearray) else raw, parse_float=Decimal)


def result_notice(result: ExecutionResult) -> Notice | None:
    """A result that is not filled and protected (nor a filled CLOSE)."""
    filled = result.status is ResultStatus.FILLED
    if filled and (result.protection is ProtectionState.PROTECTED or result.action is Side.CLOSE):
        return None
    action = result.action.value if result.action else "?"
    parts = [f"{result.symbol} {action} {result.status.value}"]
    if result.executed_quantity:
        parts.append(f"{_n(result.executed_quantity)} @ {_n(result.avg_price)}")
    protection = result.protection
    if protection is ProtectionState.CLOSED_EMERGENCY and result.emergency_close is not None:
        close = result.emergency_close
        parts.append(f"EMERGENCY CLOSED {_n(close.executed_quantity)} @ {_n(close.avg_price)}")
    elif protection in (ProtectionState.UNPROTECTED, ProtectionState.PARTIAL):
        parts.append(f"{protection.value.upper()} POSITION")
    elif filled and protection is ProtectionState.NOT_REQUESTED:
        parts.append("no SL/TP requested")
    text = ", ".join(parts)
    if result.error is not None:
        text += f": {result.error.code} {truncate(result.error.message, MESSAGE_CHARS)}"
    return Notice(f"result:{result.intent_id}", "result", f"{text} [{result.intent_id}]")


def position_notice(event: PositionEvent) -> Notice | None:
    """A stop/target that reduced a position, or a liquidation / ADL fill."""
    forced = _FORCED.get(event.reason)
    fired = _FIRES.get(event.reason)
    if forced is None and (fired is None or event.kind is not PositionKind.REDUCED):
        return None
    what = forced or f"{fired} fired"
    text = (
        f"{event.symbol} {what}: {fmt(event.quantity)} @ {fmt(event.price)}, "
        f"realized {_signed(event.realized_pnl)}, fee {fmt(event.commission)}"
        f"{' ' + event.commission_asset if event.commission_asset else ''}, "
        f"position now {fmt(event.position_amount)}"
    )
    return Notice(f"position:{event.event_id}", "position", text)


def _duration(seconds: Decimal | None) -> str:
    if seconds is None:
        return ""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f" in {hours}h{minutes:02d}m" if hours else f" in {minutes}m{secs:02d}s"


def trade_notice(trade: Trade, quote_asset: str = "USDT") -> Notice | None:
    """A closed round trip with its exact net PnL (realized - commission + funding)."""
    if trade.status != "closed":
        return None
    how = _EXITS.get(trade.exit_reason or "", f"({trade.exit_reason})")
    text = (
        f"{trade.symbol} {trade.side} closed {how}: {fmt(trade.closing_quantity)} "
        f"@ {fmt(trade.entry_price)} -> {_n(trade.exit_price)}, "
        f"net PnL {_signed(trade.net_pnl)} {quote_asset} "
        f"(realized {_signed(trade.realized_pnl)}, fees {fmt(trade.commission)}, "
        f"funding {_signed(trade.funding)})"
        f"{_duration(trade.duration_s)}"
    )
    return Notice(f"trade:{trade.trade_id}", "trade", text)


def dead_letter_notice(stream_id: str, fields: Mapping[str, str]) -> Notice:
    reason = fields.get("reason", "?")
    message = truncate(fields.get("message", ""), MESSAGE_CHARS)
    source = fields.get("stream_id", "?")
    return Notice(f"dlq:{stream_id}", "dead_letter", f"DEAD LETTER {reason}: {message} [entry {source}]")


def _value(value: Any) -> str:
    if value is None:
        return "default"
    return fmt(value) if isinstance(value, Decimal) and value.is_finite() else str(value)


def risk_notice(stream_id: str, fields: Mapping[str, str]) -> Notice:
    """A risk event (the governor's ``quantum:stream:risk.event``): a state change ``from -> to
    (reason) by who, limit``, or another kind (limits changed, a flatten's steps) with its reason;
    then the numbers as name=value. Read from the JSON ``payload`` or flat fields."""
    data: dict[str, Any] = dict(fields)
    try:
        loaded = _loads(fields)
    except ValueError:
        loaded = None
    if isinstance(loaded, dict):
        data = loaded
    kind = str(data.get("kind") or "transition")
    if "from" in data and "to" in data and data["from"] != data["to"]:
        head = f"RISK {data['from']} -> {data['to']}"
    elif kind == "limits":
        head = "RISK limits changed"
    else:
        head = f"RISK {kind.replace('_', ' ')}" + (f" {data['flatten']}" if data.get("flatten") else "")
    if data.get("reason"):
        head += f" ({truncate(str(data['reason']), MESSAGE_CHARS)})"
    who = data.get("by") or data.get("who")
    if who:
        head += f" by {truncate(str(who), 60)}"
    if data.get("limit"):
        head += f", limit {truncate(str(data['limit']), 60)}"
    numbers = data.get("numbers")
    shown = [f"{k}={_value(v)}" for k, v in numbers.items()] if isinstance(numbers, dict) else []
    shown += [
        f"{k}={_value(v)}"
        for k, v in data.items()
        if k not in _RISK_WORDS and isinstance(v, Decimal | int) and not isinstance(v, bool)
    ]
    return Notice(f"risk:{stream_id}", "risk", head + (": " + ", ".join(shown) if shown else ""))


# Fields of a risk event that are said in words, not listed as numbers.
_RISK_WORDS: Final = frozenset(
    {"kind", "seq", "from", "to", "reason", "by", "who", "limit", "numbers", "flatten", "force", "time"}
)


def user_stream_notice(down_since: datetime, now: datetime, *, back: bool) -> Notice:
    """The user data stream down for too long, or back after such an outage."""
    seconds = Decimal(int((now - down_since).total_seconds()))
    since_ms = int(down_since.timestamp() * 1000)
    if back:
        text = f"user data stream back after{_duration(seconds).removeprefix(' in')}"
        return Notice(f"userstream:up:{since_ms}", "user_stream", text)
    text = (
        f"USER DATA STREAM DOWN since {down_since.strftime('%H:%M:%S')} UTC ({int(seconds)} s): "
        "fills are read by REST only"
    )
    return Notice(f"userstream:down:{since_ms}", "user_stream", text)


def trade_from_entry(fields: Mapping[Any, Any]) -> Trade | None:
    """A ledger trade record (``<prefix>:ledger:trades``), None when unreadable."""
    try:
        data = _loads(fields)
        return trade_from_json(data) if isinstance(data, dict) else None
    except (ValueError, TypeError, KeyError):
        return None


def summary_notice(until: datetime, trades: list[Trade], quote_asset: str = "USDT") -> Notice:
    """The daily summary of the trades closed in the 24 hours to ``until`` (the summary hour)."""
    from quantum_exec.ledger.summary import summarize

    day = until.date().isoformat()
    head = f"Daily summary, 24 h to {day} {until.hour:02d}:00 UTC"
    s = summarize(trades)
    if not s["total_trades"]:
        return Notice(f"summary:{day}", "summary", f"{head}: no closed trades")
    text = (
        f"{head}: {s['total_trades']} trades, {s['winning_trades']} won, "
        f"{s['losing_trades']} lost, net PnL {_signed(s['net_pnl'])} {quote_asset} "
        f"(fees {fmt(s['commission'])}, funding {_signed(s['funding'])}), "
        f"max drawdown {fmt(s['max_drawdown'])}"
    )
    symbols = {t.trade_id: t.symbol for t in trades}
    for label in ("best_trade", "worst_trade"):
        pick = s[label]
        if pick is not None:
            text += f", {label.split('_')[0]} {_signed(pick['net_pnl'])} {symbols.get(pick['trade_id'], '')}"
    return Notice(f"summary:{day}", "summary", text)
