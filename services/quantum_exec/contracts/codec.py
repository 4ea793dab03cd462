"""Stream entries and JSON: decoding producers' entries (lenient about their JSON), writing
Decimals as exact JSON numbers, and short renderings of bad values for messages.

Money is ``Decimal`` end to end. JSON floats become ``Decimal(repr(f))``: the shortest repr is
exactly what a Python producer's ``json.dumps`` wrote, so ``1.4943000000000002`` stays that.
Results are written with Decimals as exact JSON numbers and read back with
``parse_float=Decimal``, so a result survives the round trip unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson
from pydantic import BaseModel

from quantum_exec.core.errors import QuantumError
from quantum_exec.ops.logs import redact

INTENT_EVENT_TYPE: Final = "trade.intent"
RESULT_EVENT_TYPE: Final = "execution.result"
RESULT_SOURCE: Final = "execution-service"

# Field names that may carry the JSON object, in order of preference (design.md section 2).
PAYLOAD_FIELDS: Final = ("payload", "data", "json")
# A trade intent is a few hundred bytes; anything this large is not one, and parsing it would
# only cost memory. It is dead-lettered like any other undecodable entry.
MAX_PAYLOAD_BYTES: Final = 1 << 20


# Mapping keys are invariant: spell out the shapes redis-py returns (bytes, or str with
# decode_responses=True) so callers need no cast.
EntryFields = Mapping[bytes, bytes | str] | Mapping[str, bytes | str] | Mapping[bytes | str, bytes | str]


class PayloadError(QuantumError):
    """The stream entry cannot be decoded into a JSON object: dead-letter it."""


def decode_entry(fields: EntryFields) -> dict[str, Any]:
    """Return the JSON object carried by a stream entry (envelope ``payload``, or ``data``/``json``).

    Keys and values may be ``bytes`` or ``str``. JSON floats become ``Decimal(repr(f))``.
    Raises :class:`PayloadError` (and nothing else) when there is no payload field, the value is
    too large, not UTF-8, not JSON, or not a JSON object.
    """
    raw = payload_value(fields)
    if raw is None:
        names = ", ".join(show_key(k) for k in list(fields)[:8])
        raise PayloadError(f"no payload field (expected one of payload, data, json; got {names or 'none'})")
    obj = _loads_object(raw)
    _floats_to_decimals(obj)
    return obj


def payload_value(fields: Mapping[Any, Any]) -> Any:
    try:
        for name in PAYLOAD_FIELDS:
            value = fields.get(name.encode())
            if value is None:
                value = fields.get(name)
            if value is not None:
                return value
    except Exception as exc:  # a Mapping that misbehaves is still just an undecodable entry
        raise PayloadError(f"unreadable entry fields: {type(exc).__name__}") from None
    return None


def _loads_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, memoryview | bytearray):
        raw = bytes(raw)
    if not isinstance(raw, bytes | str):
        raise PayloadError(f"payload must be bytes or str (got {type(raw).__name__})")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload too large ({len(raw)} bytes > {MAX_PAYLOAD_BYTES})")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = _loads_lenient(raw)
    if not isinstance(obj, dict):
        raise PayloadError(f"payload must be a JSON object (got {_json_type(obj)})")
    return obj


def _loads_lenient(raw: bytes | str) -> Any:
    """Second chance for JSON that orjson refuses but Python producers write: NaN, Infinity, 1e400.

    Such an intent is decodable; its money field is then rejected by validation with a clear
    message instead of the whole entry being dead-lettered. Everything else orjson refuses
    (invalid UTF-8, lone surrogates, trailing garbage) stays undecodable.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        obj = json.loads(text, parse_float=Decimal, parse_constant=Decimal, parse_int=_lenient_int)
        # Whatever we accept must be writable again (in meta, in the result): lone surrogates
        # and nesting beyond orjson's limit are not.
        orjson.dumps(obj, default=json_default)
    except UnicodeDecodeError:
        raise PayloadError("payload is not valid UTF-8") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise PayloadError(f"payload is not valid JSON: {truncate(str(exc))}") from None
    return obj


def _lenient_int(text: str) -> int | Decimal:
    # orjson writes 64-bit integers only; larger ones are kept exactly as Decimal.
    return int(text) if len(text) < 19 else Decimal(text)


def _floats_to_decimals(root: dict[str, Any]) -> None:
    # Iterative: orjson accepts nesting deeper than Python's recursion limit.
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is float:
                node[key] = Decimal(repr(value))
            elif kind is dict or kind is list:
                stack.append(value)


def _json_type(obj: Any) -> str:
    if isinstance(obj, list):
        return "array"
    if isinstance(obj, str):
        return "string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    return "number"


SHOW_CHARS: Final = 60


def truncate(text: str, limit: int = SHOW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: Any) -> str:
    """A short, always-printable rendering of a rejected value for a message.

    Known secrets are redacted before the value is cut: the cut would leave a prefix of a secret
    that no longer matches it whole.
    """
    if isinstance(value, Decimal):
        return truncate(str(value))
    if isinstance(value, str):
        return repr(truncate(redact(value)))
    if isinstance(value, dict | list | tuple | set | bytes):
        return f"{type(value).__name__} of length {len(value)}"
    try:
        return truncate(redact(repr(value)))
    except Exception:
        return f"<{type(value).__name__}>"


def show_key(key: Any) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    return repr(truncate(redact(str(key)), 32))


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        # Exact text, never through float; non-finite values (only possible in echoed meta)
        # are not JSON numbers, so they go out as strings.
        if not obj.is_finite():
            return str(obj)
        # Plain digits for the values a consumer expects (1E-7 as 0.0000001); exponent notation,
        # still a JSON number, where plain digits would run long.
        return orjson.Fragment(format(obj, "f") if abs(obj.adjusted()) <= 40 else str(obj))
    if isinstance(obj, BaseModel):
        # A model's __dict__ holds exactly its fields in declaration order: much faster than
        # model_dump(), and orjson handles the nested values through this same hook.
        return obj.__dict__
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


_DUMPS_OPTIONS: Final = orjson.OPT_NAIVE_UTC


def dumps(obj: Any, *, sort_keys: bool = False) -> bytes:
    """JSON bytes with Decimals as exact numbers, models as objects, datetimes ISO-8601 UTC."""
    option = _DUMPS_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _DUMPS_OPTIONS
    return orjson.dumps(obj, default=json_default, option=option)


def isoformat(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def encode_intent_fields(payload: dict[str, Any], source: str) -> dict[str, bytes]:
    """An input stream entry for ``payload`` in the producers' envelope (used by ``submit``)."""
    return {
        "event_type": INTENT_EVENT_TYPE.encode(),
        "payload": dumps(payload),
        "timestamp": isoformat(utcnow()).encode(),
        "source": source.encode(),
    }


def stream_id_time_s(stream_id: str) -> float | None:
    """The time a Redis stream id was assigned (its milliseconds part), None when not an id."""
    millis = stream_id.partition("-")[0]
    return int(millis) / 1000 if millis.isdigit() else None
