"""Readable views of ExecutionResults for people (``results``, ``demo``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from quantum_exec.app.working import working_intents
from quantum_exec.contracts import ExecutionResult, PayloadError, decode_result_fields
from quantum_exec.contracts.codec import PAYLOAD_FIELDS, payload_value
from quantum_exec.core.redis_client import connect
from quantum_exec.core.rules import fmt
from quantum_exec.core.settings import Settings
from quantum_exec.core.table import render_table

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


def working_row(working: dict[str, Any]) -> tuple[str, ...]:
    """A row for an intent with no result yet (a LIMIT resting, a STOP armed): status ``working``."""
    at = working["stop_price"] if str(working["type"]).startswith("STOP") else working["price"]
    size = (
        f"qty {fmt(working['quantity'])}"
        if working["quantity"] is not None
        else f"{_num(working['position_size_usd'])} USDT"
    )
    where = f" at {fmt(at)}" if at is not None else ""
    intent = str(working["intent_id"])
    return (
        intent if len(intent) <= 28 else intent[:27] + "…",
        str(working["symbol"]),
        str(working["side"]),
        "working",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        f"{working['type']}{where}, {size}: no result yet",
    )


# ``results --follow`` prints rows as they come: every column at least this wide (an intent id is cut
# at 28), so later rows line up under the header printed first.
FOLLOW_WIDTHS = (28, 12, 6, 9, 12, 12, 12, 12, 11, 20, 0)


def format_table(
    results: Iterable[ExecutionResult],
    *,
    min_widths: Sequence[int] = (),
    working: Sequence[dict[str, Any]] = (),
) -> str:
    """A plain-text table, columns sized to their content (and at least ``min_widths``); the
    ``working`` intents last, below the newest result."""
    rows = [result_row(r) for r in results] + [working_row(w) for w in working]
    return render_table(COLUMNS, rows, min_widths=min_widths)


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
        # The table also lists what has no result yet; --json stays the published payloads alone.
        working = [] if as_json else await working_intents(client, settings)
        _print(decoded, as_json=as_json, header=True, aligned=follow, working=working)
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
                _print(fresh, as_json=as_json, header=False, aligned=True)
    finally:
        await client.aclose()
    return 0


def _print(
    results: list[Shown],
    *,
    as_json: bool,
    header: bool,
    aligned: bool = False,
    working: Sequence[dict[str, Any]] = (),
) -> None:
    if as_json:
        # The wire payload itself: exact JSON numbers, times as published, nothing re-encoded.
        for _stream_id, _result, wire in results:
            sys.stdout.buffer.write(wire + b"\n")
    elif results or header:
        table = format_table(
            (r for _, r, _w in results), min_widths=FOLLOW_WIDTHS if aligned else (), working=working
        )
        lines = table.splitlines()
        sys.stdout.write("\n".join(lines if header else lines[2:]) + "\n")
    sys.stdout.flush()


# How far back ``results --intent`` looks in the result and dead-letter streams when the intent's
# record (which points at its result) has expired.
_SCAN = 10_000


async def show_intent(settings: Settings, redis_url: str | None, intent_id: str, *, as_json: bool) -> int:
    """The one intent's result; else its dead letter (a re-used id, a payload never executed);
    else that it is still working. 1 with one line when nothing of it is found."""
    from quantum_exec.core.errors import QuantumError
    from quantum_exec.stream.store import Keys

    client = connect(settings, redis_url)
    try:
        record: Any = await client.hgetall(Keys(settings).idempotency(intent_id))
        record = {_text(k): _text(v) for k, v in (record or {}).items()}
        shown = await _result_of(client, settings, intent_id, record.get("result_id"))
        if shown is not None:
            _print([shown], as_json=as_json, header=True)
        # Also when it has a result: a later payload under the same id was dead-lettered.
        dead = await _dead_letters_of(client, settings, intent_id)
        for stream_id, fields in dead:
            line = {
                "intent_id": intent_id,
                "dead_lettered": stream_id,
                "reason": fields.get("reason"),
                "message": fields.get("message"),
                "intent_stream_id": fields.get("stream_id"),
            }
            sys.stdout.write(
                (
                    orjson.dumps(line).decode()
                    if as_json
                    else f"{intent_id}  dead-lettered ({stream_id}): {line['reason']}: {line['message']}"
                )
                + "\n"
            )
        if shown is not None or dead:
            return 0
        if record.get("state") == "in_flight":
            working = {"intent_id": intent_id, "state": "working", "stream_id": record.get("stream_id")}
            sys.stdout.write(
                (
                    orjson.dumps(working).decode()
                    if as_json
                    else f"{intent_id}  working: no result yet (an entry resting on the exchange, or being "
                    f"executed); entry {record.get('stream_id')}"
                )
                + "\n"
            )
            return 0
    finally:
        await client.aclose()
    raise QuantumError(
        f"no result, dead letter or record of intent {intent_id!r} in {settings.result_stream} "
        f"or {settings.dlq_stream} (the last {_SCAN} of each)"
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _result_of(client: Any, settings: Settings, intent_id: str, result_id: str | None) -> Shown | None:
    if result_id:
        found = _decode(await client.xrange(settings.result_stream, result_id, result_id))
        if found:
            return found[0]
    # The record expired (QUANTUM_IDEMPOTENCY_TTL_DAYS): look through the recent results.
    for shown in _decode(await client.xrevrange(settings.result_stream, count=_SCAN)):
        if shown[1].intent_id == intent_id:
            return shown
    return None


async def _dead_letters_of(
    client: Any, settings: Settings, intent_id: str
) -> list[tuple[str, dict[str, str]]]:
    """Dead letters of ``intent_id``: by the original payload's intent_id, or the entry's stream id
    (an intent without one is keyed by it)."""
    found = []
    for stream_id, raw in await client.xrevrange(settings.dlq_stream, count=_SCAN):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        raw_payload = next((fields[f"orig.{n}"] for n in PAYLOAD_FIELDS if f"orig.{n}" in fields), "{}")
        try:
            original = orjson.loads(raw_payload)
        except orjson.JSONDecodeError:
            original = {}
        named = isinstance(original, dict) and original.get("intent_id") == intent_id
        if named or fields.get("stream_id") == intent_id:
            found.append((_text(stream_id), fields))
    return found
