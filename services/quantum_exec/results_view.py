"""Readable views of ExecutionResults for people (``results``, ``demo``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from quantum_exec.contracts import ExecutionResult, PayloadError, decode_result_fields
from quantum_exec.contracts.codec import payload_value
from quantum_exec.redis_client import connect
from quantum_exec.rules import fmt
from quantum_exec.settings import Settings

# How long one read of ``results --follow`` waits for new results.
_FOLLOW_BLOCK_MS = 5000

COLUMNS = (
    "intent",
    "symbol",
    "action",
    "status",
    "qty",
    "avg price",
    "SL",
    "TP",
    "protection",
    "fee",
    "detail",
)


def _num(value: Decimal | None) -> str:
    return fmt(value) if value is not None else "-"


def result_row(result: ExecutionResult) -> tuple[str, ...]:
    """One table row: the figures a trader looks at first."""
    detail = ""
    if result.error is not None:
        detail = f"{result.error.code}: {result.error.message}"
    elif result.realized_pnl:
        detail = f"realized PnL {fmt(result.realized_pnl)}"
    fee = f"{_num(result.commission)} {result.commission_asset or ''}".strip() if result.commission else "-"
    intent = result.intent_id if len(result.intent_id) <= 28 else result.intent_id[:27] + "…"
    return (
        intent,
        result.symbol,
        result.action.value if result.action else "-",
        result.status.value,
        _num(result.executed_quantity),
        _num(result.avg_price),
        _num(result.stop_loss.trigger_price) if result.stop_loss else "-",
        _num(result.take_profit.trigger_price) if result.take_profit else "-",
        result.protection.value,
        fee,
        detail if len(detail) <= 90 else detail[:89] + "…",
    )


def format_table(results: Iterable[ExecutionResult]) -> str:
    """A plain-text table, columns sized to their content."""
    return render_table(COLUMNS, [result_row(r) for r in results])


def render_table(columns: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    """Rows under a header and a rule, each column as wide as its widest cell."""
    rows = [tuple(columns), *(tuple(r) for r in body)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


Shown = tuple[str, ExecutionResult, bytes]


def _decode(entries: Sequence[tuple[Any, dict[Any, Any]]]) -> list[Shown]:
    """(stream id, result, the payload exactly as published) of each readable result entry."""
    out = []
    for stream_id, fields in entries:
        try:
            result = decode_result_fields(fields)
        except (PayloadError, ValueError):
            continue
        raw = payload_value(fields)
        wire = raw if isinstance(raw, bytes) else str(raw).encode()
        out.append((stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id), result, wire))
    return out


async def show_results(
    settings: Settings, redis_url: str | None, *, count: int, follow: bool, as_json: bool
) -> int:
    """Print the last ``count`` results, then (``follow``) every new one as it arrives."""
    client = connect(settings, redis_url, block_ms=_FOLLOW_BLOCK_MS)
    try:
        recent: Any = await client.xrevrange(settings.result_stream, count=count)
        decoded = list(reversed(_decode(recent)))
        _print(decoded, as_json=as_json, header=True)
        last_id = decoded[-1][0] if decoded else "$"
        if recent and not decoded:
            raw = recent[0][0]
            last_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        while follow:
            reply: Any = await client.xread(
                {settings.result_stream: last_id}, block=_FOLLOW_BLOCK_MS, count=100
            )
            for _stream, entries in reply or []:
                fresh = _decode(entries)
                if entries:
                    raw = entries[-1][0]
                    last_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                _print(fresh, as_json=as_json, header=False)
    finally:
        await client.aclose()
    return 0


def _print(results: list[Shown], *, as_json: bool, header: bool) -> None:
    if as_json:
        # The wire payload itself: exact JSON numbers, times as published, nothing re-encoded.
        for _stream_id, _result, wire in results:
            sys.stdout.buffer.write(wire + b"\n")
    elif results or header:
        table = format_table(r for _, r, _w in results)
        lines = table.splitlines()
        sys.stdout.write("\n".join(lines if header else lines[2:]) + "\n")
    sys.stdout.flush()
