"""Intents read and not yet answered: a LIMIT resting, a STOP armed, a TWAP between slices, or an
intent being executed this moment. Shown beside the results (``results``, ``/api/results``, the
console) with status ``working`` until their one result is published.

Read from Redis alone: the consumer group's pending entries whose idempotency record is
``in_flight`` (an entry whose record is ``done`` has its result and is only waiting for its ack).
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from quantum_exec.contracts import decode_entry, intent_key, parse_intent
from quantum_exec.core.errors import QuantumError
from quantum_exec.core.settings import Settings
from quantum_exec.stream.store import Keys

# At most this many pending entries are looked at (the service holds far fewer at once).
MAX_WORKING = 200


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def working_intents(client: Any, settings: Settings) -> list[dict[str, Any]]:
    """The working intents, newest first: intent_id, symbol, side, type, quantity or size, price,
    stop_price, stream_id, status ``working``. Numbers as the intent gave them (Decimal)."""
    try:
        rows: Any = await client.xpending_range(
            settings.intent_stream, settings.consumer_group, min="-", max="+", count=MAX_WORKING
        )
    except ResponseError as exc:
        if "NOGROUP" in str(exc):  # no service has read the stream yet: nothing is working
            return []
        raise
    keys = Keys(settings)
    found = []
    for row in reversed(rows):
        stream_id = _text(row["message_id"])
        entries: Any = await client.xrange(settings.intent_stream, stream_id, stream_id)
        if not entries:
            continue
        try:
            intent = parse_intent(decode_entry(entries[0][1]))
        except (QuantumError, ValueError):
            continue  # an undecodable entry is dead-lettered, not worked on
        key = intent_key(intent, stream_id)
        if _text(await client.hget(keys.idempotency(key), "state") or b"") != "in_flight":
            continue
        found.append(
            {
                "intent_id": key,
                "symbol": intent.symbol,
                "side": getattr(intent.side, "value", intent.side),
                "type": intent.order_type,
                "quantity": intent.quantity,
                "position_size_usd": intent.position_size_usd,
                "price": intent.price,
                "stop_price": intent.stop_price,
                "stream_id": stream_id,
                "status": "working",
            }
        )
    return found
