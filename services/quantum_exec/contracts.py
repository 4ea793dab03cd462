"""Wire contracts: the TradeIntent we consume, the ExecutionResult we publish, and their codecs.

Pure: no I/O. Two layers, because they fail differently:

* :func:`decode_entry` turns a stream entry into a JSON object or raises :class:`PayloadError`
  (the entry is unreadable and goes to the dead-letter stream);
* :func:`parse_intent` validates that object or raises :class:`IntentRejected` (the producer
  gets a ``rejected`` result naming the field and the value).

Money is ``Decimal`` end to end. JSON floats become ``Decimal(repr(f))``: the shortest repr is
exactly what a Python producer's ``json.dumps`` wrote, so ``1.4943000000000002`` stays that.
Results are written with Decimals as exact JSON numbers and read back with
``parse_float=Decimal``, so a result survives the round trip unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from quantum_exec.errors import IntentRejected, QuantumError, ReasonCode
from quantum_exec.settings import ExchangeEnv, MarginType

INTENT_EVENT_TYPE: Final = "trade.intent"
RESULT_EVENT_TYPE: Final = "execution.result"
RESULT_SOURCE: Final = "execution-service"

# Field names that may carry the JSON object, in order of preference (design.md section 2).
PAYLOAD_FIELDS: Final = ("payload", "data", "json")
# A trade intent is a few hundred bytes; anything this large is not one, and parsing it would
# only cost memory. It is dead-lettered like any other undecodable entry.
MAX_PAYLOAD_BYTES: Final = 1 << 20
# Unknown fields are echoed back in the result's meta; these bounds keep a result under 16 KiB
# whatever a producer sends.
META_MAX_BYTES: Final = 8 * 1024
META_MAX_KEYS: Final = 64
META_MAX_KEY_CHARS: Final = 64
META_MAX_VALUE_CHARS: Final = 1024
META_MAX_DEPTH: Final = 16
META_TRUNCATED_KEY: Final = "_meta_truncated"
_META_MAX_NUMBER_DIGITS: Final = 40

# Numbers outside these bounds are typos or attacks, never prices or sizes.
MAX_MAGNITUDE: Final = Decimal("1e15")
MAX_SIGNIFICANT_DIGITS: Final = 24
MAX_DECIMAL_PLACES: Final = 20
MAX_LEVERAGE: Final = 125
# Epoch values below this are seconds (it is the year 5138 in seconds, 1973 in milliseconds).
EPOCH_SECONDS_BELOW: Final = Decimal(10**11)
EPOCH_MS_BELOW: Final = Decimal(10**14)

_SHOW_CHARS: Final = 60
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INTENT_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SYMBOL_RE: Final = re.compile(r"[A-Z0-9_]{2,30}")
_NUMBER_RE: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_MAX_CHARS: Final = 48


# Mapping keys are invariant: spell out the shapes redis-py returns (bytes, or str with
# decode_responses=True) so callers need no cast.
EntryFields = Mapping[bytes, bytes | str] | Mapping[str, bytes | str] | Mapping[bytes | str, bytes | str]


class Side(StrEnum):
    """What the producer asks for: open/increase long (BUY), short (SELL), or flatten (CLOSE)."""

    BUY = "BUY"
    SELL = "SELL"
    CLOSE = "CLOSE"


class ResultStatus(StrEnum):
    """Outcome of an intent as the existing consumers read it."""

    FILLED = "filled"
    PARTIAL = "partial"
    REJECTED = "rejected"
    FAILED = "failed"


class ProtectionState(StrEnum):
    """Whether the position ended up covered by exchange-side SL/TP orders."""

    PROTECTED = "protected"
    PARTIAL = "partial"
    UNPROTECTED = "unprotected"
    CLOSED_EMERGENCY = "closed_emergency"
    NOT_REQUESTED = "not_requested"


class ErrorSource(StrEnum):
    """Who produced a result's error: our validation, the exchange, or ourselves."""

    VALIDATION = "validation"
    EXCHANGE = "exchange"
    INTERNAL = "internal"


class PayloadError(QuantumError):
    """The stream entry cannot be decoded into a JSON object: dead-letter it."""


# --------------------------------------------------------------------------------------------
# Decoding stream entries


def decode_entry(fields: EntryFields) -> dict[str, Any]:
    """Return the JSON object carried by a stream entry (envelope ``payload``, or ``data``/``json``).

    Keys and values may be ``bytes`` or ``str``. JSON floats become ``Decimal(repr(f))``.
    Raises :class:`PayloadError` (and nothing else) when there is no payload field, the value is
    too large, not UTF-8, not JSON, or not a JSON object.
    """
    raw = _payload_value(fields)
    if raw is None:
        names = ", ".join(_show_key(k) for k in list(fields)[:8])
        raise PayloadError(f"no payload field (expected one of payload, data, json; got {names or 'none'})")
    obj = _loads_object(raw)
    _floats_to_decimals(obj)
    return obj


def _payload_value(fields: Mapping[Any, Any]) -> Any:
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
        orjson.dumps(obj, default=_json_default)
    except UnicodeDecodeError:
        raise PayloadError("payload is not valid UTF-8") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise PayloadError(f"payload is not valid JSON: {_truncate(str(exc))}") from None
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


# --------------------------------------------------------------------------------------------
# TradeIntent


def _reject(field: str, problem: str, value: Any) -> IntentRejected:
    return IntentRejected(ReasonCode.INVALID_FIELD, f"{field}: {problem} (got {_show(value)})")


def _truncate(text: str, limit: int = _SHOW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    """A short, always-printable rendering of a rejected value for a message."""
    if isinstance(value, Decimal):
        return _truncate(str(value))
    if isinstance(value, str):
        return repr(_truncate(value))
    if isinstance(value, dict | list | tuple | set | bytes):
        return f"{type(value).__name__} of length {len(value)}"
    try:
        return _truncate(repr(value))
    except Exception:
        return f"<{type(value).__name__}>"


def _show_key(key: Any) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    return repr(_truncate(str(key), 32))


def _to_decimal(field: str, raw: Any) -> Decimal:
    """A finite, sane Decimal from a JSON number, a numeric string, or a Decimal."""
    if isinstance(raw, bool):
        raise _reject(field, "must be a number, not a boolean", raw)
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int):
        if abs(raw) > MAX_MAGNITUDE:
            raise _reject(field, f"magnitude above {MAX_MAGNITUDE:f}", raw)
        value = Decimal(int(raw))
    elif isinstance(raw, float):
        value = Decimal(repr(raw))
    elif isinstance(raw, str):
        text = raw.strip()
        if len(text) > _NUMBER_MAX_CHARS or not _NUMBER_RE.fullmatch(text):
            raise _reject(field, "must be a number", raw)
        value = Decimal(text)
    else:
        raise _reject(field, "must be a number", raw)
    if not value.is_finite():
        raise _reject(field, "must be a finite number", raw)
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, so never 'n'/'N'/'F'
    if len(digits) > MAX_SIGNIFICANT_DIGITS or exponent < -MAX_DECIMAL_PLACES:
        raise _reject(
            field, f"too many digits (at most {MAX_SIGNIFICANT_DIGITS}, {MAX_DECIMAL_PLACES} decimals)", raw
        )
    if abs(value) > MAX_MAGNITUDE:
        raise _reject(field, f"magnitude above {MAX_MAGNITUDE:f}", raw)
    return value


def _positive(field: str, raw: Any) -> Decimal:
    value = _to_decimal(field, raw)
    if value <= 0:
        raise _reject(field, "must be greater than 0", raw)
    return value


def _percent(field: str, raw: Any) -> Decimal:
    value = _positive(field, raw)
    if value >= 100:
        raise _reject(field, "must be a percentage below 100", raw)
    return value


def _intent_id(field: str, raw: Any) -> str:
    # Integer ids are accepted: their text is a valid id and some producers count.
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not _INTENT_ID_RE.fullmatch(raw):
        raise _reject(field, "must be 1-64 characters of [A-Za-z0-9._:-]", raw)
    return raw


def _symbol(field: str, raw: Any) -> str:
    # isascii first: str.upper() maps some non-ASCII letters onto ASCII ones ('ı' -> 'I').
    if not isinstance(raw, str) or not raw.isascii():
        raise _reject(field, "must be a symbol like BTCUSDT", raw)
    symbol = raw.strip().upper()
    if not _SYMBOL_RE.fullmatch(symbol):
        raise _reject(field, "must be a symbol like BTCUSDT", raw)
    return symbol


# LONG/SHORT are accepted because in one-way position mode (the only mode this service trades)
# they mean exactly BUY/SELL; nothing else is guessed.
_SIDE_WORDS: Final = {
    "BUY": Side.BUY,
    "SELL": Side.SELL,
    "CLOSE": Side.CLOSE,
    "LONG": Side.BUY,
    "SHORT": Side.SELL,
}


def _side(field: str, raw: Any) -> Side:
    side = _SIDE_WORDS.get(raw.strip().upper()) if isinstance(raw, str) else None
    if side is None:
        raise _reject(field, "must be BUY, SELL or CLOSE", raw)
    return side


_MARGIN_WORDS: Final = {
    "ISOLATED": MarginType.ISOLATED,
    "CROSSED": MarginType.CROSSED,
    "CROSS": MarginType.CROSSED,
}


def _margin_type(field: str, raw: Any) -> MarginType:
    margin = _MARGIN_WORDS.get(raw.strip().upper()) if isinstance(raw, str) else None
    if margin is None:
        raise _reject(field, "must be ISOLATED or CROSSED", raw)
    return margin


def _leverage(field: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise _reject(field, "must be a whole number, not a boolean", raw)
    if isinstance(raw, int):
        leverage = int(raw)
    else:
        value = _to_decimal(field, raw)
        if value != value.to_integral_value():
            raise _reject(field, f"must be a whole number 1..{MAX_LEVERAGE}", raw)
        leverage = int(value)
    if not 1 <= leverage <= MAX_LEVERAGE:
        raise _reject(field, f"must be between 1 and {MAX_LEVERAGE}", raw)
    return leverage


def _reduce_only(field: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in ("true", "false"):
            return word == "true"
    raise _reject(field, "must be true or false", raw)


def _timestamp(field: str, raw: Any) -> datetime:
    """ISO-8601 (naive means UTC), epoch milliseconds, or epoch seconds when clearly seconds."""
    if isinstance(raw, datetime):
        return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)
    if isinstance(raw, str) and not _NUMBER_RE.fullmatch(raw.strip()):
        if len(raw) > 64:
            raise _reject(field, "must be an ISO-8601 time or epoch milliseconds", raw)
        try:
            parsed = datetime.fromisoformat(raw.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise _reject(field, "must be an ISO-8601 time or epoch milliseconds", raw) from None
    epoch = _to_decimal(field, raw)
    if epoch <= 0:
        raise _reject(field, "must be a positive epoch time", raw)
    if epoch < EPOCH_SECONDS_BELOW:
        micros = epoch * 1_000_000
    elif epoch < EPOCH_MS_BELOW:
        micros = epoch * 1000
    else:
        raise _reject(field, "epoch value too large (expected milliseconds)", raw)
    return _EPOCH + timedelta(microseconds=int(micros))


# One table serves the parser and the published JSON Schema, so they cannot drift apart.
_NUMBER_SCHEMA: Final[dict[str, Any]] = {"type": ["number", "string"]}
_FIELDS: Final[dict[str, tuple[Callable[[str, Any], Any], dict[str, Any]]]] = {
    "intent_id": (
        _intent_id,
        {
            "type": ["string", "integer"],
            "pattern": "^[A-Za-z0-9._:-]{1,64}$",
            "description": "idempotency key; the stream entry id when absent",
        },
    ),
    "symbol": (
        _symbol,
        {"type": "string", "pattern": "^[A-Za-z0-9_]{2,30}$", "description": "case-insensitive"},
    ),
    "side": (
        _side,
        {
            "type": "string",
            "description": "BUY, SELL or CLOSE, case-insensitive (LONG = BUY, SHORT = SELL)",
            "examples": ["BUY", "SELL", "CLOSE"],
        },
    ),
    "action": (_side, {"type": "string", "description": "alias of side"}),
    "position_size_usd": (_positive, {**_NUMBER_SCHEMA, "description": "notional in the quote asset, > 0"}),
    "quantity": (
        _positive,
        {**_NUMBER_SCHEMA, "description": "base quantity, > 0; wins over position_size_usd"},
    ),
    "entry_price": (_positive, {**_NUMBER_SCHEMA, "description": "reference price for sizing, > 0"}),
    "leverage": (_leverage, {"type": ["integer", "number", "string"], "minimum": 1, "maximum": MAX_LEVERAGE}),
    "margin_type": (
        _margin_type,
        {"type": "string", "description": "ISOLATED or CROSSED (CROSS), case-insensitive"},
    ),
    "stop_loss": (_positive, {**_NUMBER_SCHEMA, "description": "absolute trigger price, > 0"}),
    "take_profit": (_positive, {**_NUMBER_SCHEMA, "description": "absolute trigger price, > 0"}),
    "stop_loss_pct": (
        _percent,
        {**_NUMBER_SCHEMA, "description": "percent from the fill price, 0 < pct < 100"},
    ),
    "take_profit_pct": (
        _percent,
        {**_NUMBER_SCHEMA, "description": "percent from the fill price, 0 < pct < 100"},
    ),
    "reduce_only": (_reduce_only, {"type": ["boolean", "string"], "description": "true/false"}),
    "timestamp": (
        _timestamp,
        {"type": ["string", "integer", "number"], "description": "ISO-8601 (naive = UTC) or epoch ms / s"},
    ),
}


def _normalize_intent(payload: Mapping[Any, Any]) -> dict[str, Any]:
    """Validate and normalize a raw payload into TradeIntent field values (raises IntentRejected)."""
    values: dict[str, Any] = {}
    extras: dict[Any, Any] = {}
    for key, raw in payload.items():
        spec = _FIELDS.get(key) if type(key) is str else None
        if spec is None:
            if key == "meta" and isinstance(raw, Mapping):
                # Our own meta coming back (model_dump -> TradeIntent): unfold it, do not nest it.
                extras.update(raw)
            else:
                extras[key] = raw
        elif raw is not None:  # null means absent, which is how many producers write optionals
            values[key] = spec[0](key, raw)

    action = values.pop("action", None)
    side = values.setdefault("side", action)
    if side is None:
        raise IntentRejected(ReasonCode.INVALID_FIELD, "side: required (BUY, SELL or CLOSE; alias action)")
    if action is not None and action is not side:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD,
            f"side: {side.value} contradicts action {action.value} (send one of them)",
        )
    if "symbol" not in values:
        raise IntentRejected(ReasonCode.INVALID_FIELD, "symbol: required (e.g. BTCUSDT)")
    if side is not Side.CLOSE and "quantity" not in values and "position_size_usd" not in values:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD, f"position_size_usd: required for {side.value} (or quantity)"
        )
    values["meta"] = _bounded_meta(extras) if extras else {}
    return values


def _bounded_meta(extras: Mapping[Any, Any]) -> dict[str, Any]:
    """Echo unknown fields, within a size budget: long strings are cut, unwritable or deep values
    replaced by a short description, and keys beyond the budget dropped (flagged)."""
    meta: dict[str, Any] = {}
    budget = META_MAX_BYTES
    truncated = False
    for raw_key, raw_value in extras.items():
        key = raw_key if isinstance(raw_key, str) else _safe_text(raw_key)
        key = key[:META_MAX_KEY_CHARS]
        value, cost = _bounded_value(raw_value)
        cost += len(key) + 4
        if cost > budget or len(meta) >= META_MAX_KEYS:
            truncated = True
            continue
        budget -= cost
        meta[key] = value
    if truncated:
        meta[META_TRUNCATED_KEY] = True
    return meta


def _bounded_value(value: Any) -> tuple[Any, int]:
    """(the value to echo, its serialized size estimate)."""
    if value is None or isinstance(value, bool):
        return value, 8
    if isinstance(value, int) and -(1 << 63) <= value < 1 << 64:
        return value, 24
    if isinstance(value, int | float):
        # Beyond orjson's 64-bit integers, or a float (kept exact, as money fields are).
        value = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, Decimal):
        _, digits, _ = value.as_tuple()
        if value.is_finite() and len(digits) <= _META_MAX_NUMBER_DIGITS:
            return value, 64
        # NaN/Infinity are not JSON numbers; a number with a million digits is not an echo.
        return _bounded_value(_truncate(str(value), 64))
    if isinstance(value, str):
        if len(value) > META_MAX_VALUE_CHARS:
            value = value[: META_MAX_VALUE_CHARS - 3] + "..."
        if value.isascii() and value.isprintable():
            # The common case, sized without serializing: only quote and backslash get escaped.
            return value, len(value) + 2 + value.count('"') + value.count("\\")
        try:
            return value, len(orjson.dumps(value))
        except orjson.JSONEncodeError:  # lone surrogates
            return _bounded_value(value.encode("utf-8", "replace").decode("utf-8"))
    if isinstance(value, dict | list) and not _deeper_than(value, META_MAX_DEPTH):
        try:
            text = orjson.dumps(value, default=_json_default)
        except (orjson.JSONEncodeError, TypeError):
            return f"<unserializable {type(value).__name__}>", 32
        if len(text) <= META_MAX_VALUE_CHARS:
            return value, len(text)
        return _bounded_value(text.decode("utf-8"))
    return f"<{type(value).__name__} omitted>", 32


def _deeper_than(root: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _safe_text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


JsonDecimal = Annotated[Decimal, WithJsonSchema({"type": "number"})]


class TradeIntent(BaseModel):
    """A validated trade intent. Build it from untrusted data with :func:`parse_intent`.

    ``quantity`` wins over ``position_size_usd``; absolute ``stop_loss``/``take_profit`` win over
    the ``*_pct`` variants. The constructor applies the same rules as :func:`parse_intent` (and
    raises :class:`IntentRejected`), so a ``model_dump()`` can be fed back in.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    intent_id: str | None = None
    symbol: str
    side: Side
    position_size_usd: Decimal | None = None
    quantity: Decimal | None = None
    entry_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    stop_loss_pct: Decimal | None = None
    take_profit_pct: Decimal | None = None
    leverage: int | None = None
    margin_type: MarginType | None = None
    reduce_only: bool = False
    timestamp: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _validate_raw(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return _normalize_intent(data)
        return data

    @property
    def is_long(self) -> bool:
        """True for BUY, False for SELL; CLOSE has no direction and raises ValueError."""
        if self.side is Side.CLOSE:
            raise ValueError("a CLOSE intent has no direction")
        return self.side is Side.BUY


def parse_intent(payload: dict[str, Any]) -> TradeIntent:
    """Validate a decoded payload into a :class:`TradeIntent`.

    Raises :class:`IntentRejected` (and nothing else) with ``INVALID_PAYLOAD`` when the payload
    is not an object and ``INVALID_FIELD`` otherwise; the message names the field and the value.
    Unknown fields are kept in ``meta`` (bounded in size) and echoed in the result.
    """
    if not isinstance(payload, Mapping):
        raise IntentRejected(
            ReasonCode.INVALID_PAYLOAD, f"payload: must be a JSON object (got {_show(payload)})"
        )
    return TradeIntent.model_construct(**_normalize_intent(payload))


def intent_key(intent: TradeIntent, stream_id: str) -> str:
    """The idempotency key of an intent: the producer's ``intent_id``, else the stream entry id."""
    return intent.intent_id or stream_id


def intent_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the TradeIntent payload this service accepts."""
    properties = {name: dict(schema) for name, (_, schema) in _FIELDS.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:quantum:trade.intent",
        "title": "TradeIntent",
        "description": (
            "Payload of a trade.intent stream entry. Unknown fields are allowed and echoed back in "
            "the result's meta. BUY/SELL need position_size_usd or quantity."
        ),
        "type": "object",
        "properties": properties,
        "required": ["symbol"],
        "anyOf": [{"required": ["side"]}, {"required": ["action"]}],
        "additionalProperties": True,
    }


# --------------------------------------------------------------------------------------------
# ExecutionResult


class ResultError(BaseModel):
    """Why an intent was not (fully) executed."""

    code: str  # Binance's numeric code as text ("-2019") or one of our ReasonCode values
    source: ErrorSource
    message: str


class ProtectiveOrder(BaseModel):
    """A STOP_MARKET or TAKE_PROFIT_MARKET algo order protecting the position."""

    order_type: str
    side: str
    algo_id: int | None = None
    client_algo_id: str
    trigger_price: JsonDecimal | None = None
    quantity: JsonDecimal | None = None
    close_position: bool = False
    state: str | None = None  # the algoStatus (NEW, TRIGGERED, ...) or None when never placed
    error: ResultError | None = None


class CloseFill(BaseModel):
    """The market order that closed the position when protection could not be placed."""

    order_id: int | None = None
    client_order_id: str
    side: str
    quantity: JsonDecimal | None = None
    executed_quantity: JsonDecimal | None = None
    avg_price: JsonDecimal | None = None
    status: str | None = None
    error: ResultError | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ExecutionResult(BaseModel):
    """Exactly one per intent. The first ten fields are what the existing consumers read."""

    model_config = ConfigDict(extra="ignore")

    symbol: str
    action: Side | None = None
    entry_price: JsonDecimal | None = None
    position_size_usd: JsonDecimal | None = None
    leverage: int | None = None
    timestamp: datetime = Field(default_factory=_utcnow)
    order_id: int | None = None
    status: ResultStatus
    slippage_pct: JsonDecimal | None = None
    fee_usd: JsonDecimal | None = None

    intent_id: str
    stream_id: str | None = None
    requested_quantity: JsonDecimal | None = None
    quantity: JsonDecimal | None = None
    executed_quantity: JsonDecimal | None = None
    avg_price: JsonDecimal | None = None
    notional: JsonDecimal | None = None
    reference_price: JsonDecimal | None = None
    client_order_id: str | None = None
    stop_loss: ProtectiveOrder | None = None
    take_profit: ProtectiveOrder | None = None
    protection: ProtectionState = ProtectionState.NOT_REQUESTED
    commission: JsonDecimal | None = None
    commission_asset: str | None = None
    realized_pnl: JsonDecimal | None = None
    emergency_close: CloseFill | None = None
    error: ResultError | None = None
    environment: ExchangeEnv | None = None
    received_at: datetime | None = None
    completed_at: datetime | None = None
    latency_ms: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


def _json_default(obj: Any) -> Any:
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


def dumps(obj: Any) -> bytes:
    """JSON bytes with Decimals as exact numbers, models as objects, datetimes ISO-8601 UTC."""
    return orjson.dumps(obj, default=_json_default, option=_DUMPS_OPTIONS)


def _isoformat(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def encode_result_fields(result: ExecutionResult) -> dict[str, bytes]:
    """The output stream entry for a result (envelope ``event_type/payload/timestamp/source``)."""
    return {
        "event_type": RESULT_EVENT_TYPE.encode(),
        "payload": dumps(result),
        "timestamp": _isoformat(result.timestamp).encode(),
        "source": RESULT_SOURCE.encode(),
    }


def decode_result_fields(fields: EntryFields) -> ExecutionResult:
    """Read a result entry back (numbers as exact Decimals). Raises :class:`PayloadError`."""
    raw = _payload_value(fields)
    if raw is None:
        raise PayloadError("no payload field in result entry")
    if isinstance(raw, memoryview | bytearray):
        raw = bytes(raw)
    try:
        # parse_float=Decimal keeps every digit we wrote; results are not on the hot path.
        obj = json.loads(raw, parse_float=Decimal)
        return ExecutionResult.model_validate(obj)
    except (ValueError, TypeError, RecursionError, InvalidOperation) as exc:
        if isinstance(exc, ValidationError):
            raise PayloadError(f"not an ExecutionResult: {_truncate(str(exc), 300)}") from None
        raise PayloadError(f"result payload is not valid JSON: {_truncate(str(exc))}") from None


def encode_intent_fields(payload: dict[str, Any], source: str) -> dict[str, bytes]:
    """An input stream entry for ``payload`` in the producers' envelope (used by ``submit``)."""
    return {
        "event_type": INTENT_EVENT_TYPE.encode(),
        "payload": dumps(payload),
        "timestamp": _isoformat(_utcnow()).encode(),
        "source": source.encode(),
    }


def result_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the ExecutionResult payload this service publishes."""
    schema = ExecutionResult.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:quantum:execution.result"
    return schema
