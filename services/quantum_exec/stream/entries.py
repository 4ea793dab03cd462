"""Stream entries as the consumer holds them, and small pure helpers over entries and ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quantum_exec.contracts import PayloadError, TradeIntent, decode_entry
from quantum_exec.contracts.fields import INTENT_ID_RE
from quantum_exec.core.errors import ReasonCode

# Stream entry fields as redis-py returns them (bytes keys and values with decode_responses off).
Fields = dict[Any, Any]


def text(value: object) -> str:
    """A Redis reply value as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def id_order(stream_id: str) -> tuple[int, int]:
    """Sort key of a stream id (``ms-seq``)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def raw_symbol(fields: Fields) -> str | None:
    """The symbol an entry names, normalised like ``parse_intent``; None when undecodable."""
    try:
        symbol = decode_entry(fields).get("symbol")
    except PayloadError:
        return None
    if not isinstance(symbol, str):
        return None
    return symbol.strip().upper()


def raw_source(fields: Fields) -> str | None:
    """The entry's ``source`` field (who published it, e.g. the gateway's producer name)."""
    value = fields.get(b"source", fields.get("source"))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value[:64] if isinstance(value, str) and value else None


def read_entries(reply: Any) -> list[tuple[str, Fields]]:
    """The entries of an XREADGROUP reply for one stream."""
    if not reply:
        return []
    return [(text(sid), fields) for sid, fields in reply[0][1]]


def payload_intent_id(payload: dict[str, Any] | None) -> str | None:
    """The producer's intent id when the payload carries a valid one."""
    if not isinstance(payload, dict):
        return None
    raw = payload.get("intent_id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    return raw if isinstance(raw, str) and INTENT_ID_RE.fullmatch(raw) else None


@dataclass(eq=False)
class Entry:
    """One delivered entry while this consumer holds it."""

    stream_id: str
    fields: Fields
    deliveries: int
    received_at: datetime
    intent: TradeIntent | None = None
    started: bool = False  # past the point where it may be dropped (handler or commit under way)
    dropped: bool = False  # taken over by another consumer or acked elsewhere before starting
    order_checked: bool = False  # no older entry of its symbol is pending any more (checked once)
    parked: bool = False  # a working entry waiting for the market: holds no slot, no read capacity
    signalled: bool = False  # a CLOSE held up by another instance: its signal went to Redis (once)
    # Read while an outage may have lost acknowledged writes (its start, monotonic): decided when
    # read, however long the entry then waits for a slot or its turn.
    outage_since: float | None = None


def dead_letter_fields(
    entry: Entry, reason: ReasonCode, message: str, consumer: str
) -> dict[bytes | str, bytes | str]:
    """The dead-letter entry: why, where from, and the original fields (prefixed ``orig.``)."""
    fields: dict[bytes | str, bytes | str] = {
        "reason": reason.value,
        "message": message[:1000],
        "stream_id": entry.stream_id,
        "deliveries": str(entry.deliveries),
        "consumer": consumer,
    }
    # The original fields, prefixed so they can never collide with ours.
    for name, value in entry.fields.items():
        fields[b"orig." + (name if isinstance(name, bytes) else name.encode())] = value
    return fields


def busy(held: dict[str, Entry]) -> int:
    """The held entries that count against the consumer's limit: all but the parked ones."""
    return sum(1 for entry in held.values() if not entry.parked)


def named(stream_id: str, entry: Entry) -> str:
    """How an operator knows the entry: its intent_id, else its stream id (the idempotency key)."""
    return (entry.intent.intent_id if entry.intent is not None else None) or stream_id
