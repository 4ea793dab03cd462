"""Validation of one intent field each, and the table that drives the parser and the JSON Schema."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from quantum_exec.contracts.codec import show
from quantum_exec.contracts.enums import Side
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.settings import MarginType

# Numbers outside these bounds are typos or attacks, never prices or sizes.
MAX_MAGNITUDE: Final = Decimal("1e15")
MAX_SIGNIFICANT_DIGITS: Final = 24
MAX_DECIMAL_PLACES: Final = 20
MAX_LEVERAGE: Final = 125
# Epoch values below this are seconds (it is the year 5138 in seconds, 1973 in milliseconds).
EPOCH_SECONDS_BELOW: Final = Decimal(10**11)
EPOCH_MS_BELOW: Final = Decimal(10**14)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
INTENT_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SYMBOL_RE: Final = re.compile(r"[A-Z0-9_]{2,30}")
_NUMBER_RE: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_MAX_CHARS: Final = 48


def _reject(field: str, problem: str, value: Any) -> IntentRejected:
    return IntentRejected(ReasonCode.INVALID_FIELD, f"{field}: {problem} (got {show(value)})")


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
    if not isinstance(raw, str) or not INTENT_ID_RE.fullmatch(raw):
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
    "MODIFY": Side.MODIFY,
    "LONG": Side.BUY,
    "SHORT": Side.SELL,
}


def _side(field: str, raw: Any) -> Side:
    side = _SIDE_WORDS.get(raw.strip().upper()) if isinstance(raw, str) else None
    if side is None:
        raise _reject(field, "must be BUY, SELL, CLOSE or MODIFY", raw)
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


# STOP (stop-limit) and STOP_MARKET entries go through the Algo Order API and open a position
# when the market reaches stop_price.
ORDER_TYPES: Final = ("MARKET", "LIMIT", "STOP", "STOP_MARKET")
TIME_IN_FORCE: Final = ("GTC", "IOC", "FOK", "GTX")
MAX_EXPIRE_AFTER_S: Final = Decimal(86_400)


def _order_type(field: str, raw: Any) -> str:
    word = raw.strip().upper() if isinstance(raw, str) else None
    if word not in ORDER_TYPES:
        raise _reject(field, "must be MARKET, LIMIT, STOP or STOP_MARKET", raw)
    return word


def _time_in_force(field: str, raw: Any) -> str:
    word = raw.strip().upper() if isinstance(raw, str) else None
    if word not in TIME_IN_FORCE:
        raise _reject(field, "must be GTC, IOC, FOK or GTX (post-only)", raw)
    return word


def _expire_after(field: str, raw: Any) -> Decimal:
    value = _positive(field, raw)
    if value > MAX_EXPIRE_AFTER_S:
        raise _reject(field, f"must be at most {MAX_EXPIRE_AFTER_S} seconds", raw)
    return value


TWAP_MAX_SLICES: Final = 50
TWAP_MAX_INTERVAL_S: Final = Decimal(3600)


class Twap(BaseModel):
    """``execution: {"algo": "twap", "slices": N, "interval_s": S}``: N MARKET slices S apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algo: Literal["twap"] = "twap"
    slices: int
    interval_s: Decimal

    @property
    def duration_s(self) -> Decimal:
        """From the first slice to the last."""
        return self.interval_s * (self.slices - 1)


def _execution(field: str, raw: Any) -> Twap:
    if isinstance(raw, Twap):
        return raw
    if not isinstance(raw, dict):
        raise _reject(field, 'must be an object like {"algo": "twap", "slices": 5, "interval_s": 2}', raw)
    unknown = sorted(str(k) for k in raw if k not in ("algo", "slices", "interval_s"))
    if unknown:
        raise _reject(f"{field}.{unknown[0]}", "unknown key (algo, slices, interval_s)", raw[unknown[0]])
    algo = raw.get("algo")
    if not isinstance(algo, str) or algo.strip().lower() != "twap":
        raise _reject(f"{field}.algo", 'must be "twap"', algo)
    slices = raw.get("slices")
    if isinstance(slices, bool) or not isinstance(slices, int | str | Decimal | float):
        raise _reject(f"{field}.slices", f"must be a whole number 2..{TWAP_MAX_SLICES}", slices)
    count = _to_decimal(f"{field}.slices", slices)
    if count != count.to_integral_value() or not 2 <= count <= TWAP_MAX_SLICES:
        raise _reject(f"{field}.slices", f"must be a whole number 2..{TWAP_MAX_SLICES}", slices)
    if raw.get("interval_s") is None:
        raise _reject(f"{field}.interval_s", "required: seconds between slices", None)
    interval = _positive(f"{field}.interval_s", raw["interval_s"])
    if interval > TWAP_MAX_INTERVAL_S:
        raise _reject(
            f"{field}.interval_s", f"must be at most {TWAP_MAX_INTERVAL_S} seconds", raw["interval_s"]
        )
    return Twap(slices=int(count), interval_s=interval)


# One table serves the parser and the published JSON Schema, so they cannot drift apart.
_NUMBER_SCHEMA: Final[dict[str, Any]] = {"type": ["number", "string"]}
FIELDS: Final[dict[str, tuple[Callable[[str, Any], Any], dict[str, Any]]]] = {
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
            "description": "BUY, SELL, CLOSE or MODIFY, case-insensitive (LONG = BUY, SHORT = SELL)",
            "examples": ["BUY", "SELL", "CLOSE", "MODIFY"],
        },
    ),
    "action": (_side, {"type": "string", "description": "alias of side"}),
    "position_size_usd": (_positive, {**_NUMBER_SCHEMA, "description": "notional in the quote asset, > 0"}),
    "quantity": (
        _positive,
        {
            **_NUMBER_SCHEMA,
            "description": "base quantity, > 0; wins over position_size_usd; on a CLOSE: close this much",
        },
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
    "order_type": (
        _order_type,
        {"type": "string", "enum": list(ORDER_TYPES), "description": "entry order type; MARKET when absent"},
    ),
    "price": (
        _positive,
        {**_NUMBER_SCHEMA, "description": "LIMIT price, > 0 (rounded to the tick, passive side)"},
    ),
    "stop_price": (
        _positive,
        {**_NUMBER_SCHEMA, "description": "STOP / STOP_MARKET entries: the trigger price, > 0"},
    ),
    "limit_offset_pct": (
        _percent,
        {
            **_NUMBER_SCHEMA,
            "description": "LIMIT price this percent from the reference, toward the passive side",
        },
    ),
    "time_in_force": (
        _time_in_force,
        {"type": "string", "enum": list(TIME_IN_FORCE), "description": "LIMIT and STOP; GTC when absent"},
    ),
    "expire_after_s": (
        _expire_after,
        {
            **_NUMBER_SCHEMA,
            "description": "LIMIT and stop entries: the untriggered order or unfilled remainder is "
            "cancelled after this",
        },
    ),
    "execution": (
        _execution,
        {
            "type": "object",
            "properties": {
                "algo": {"const": "twap"},
                "slices": {"type": "integer", "minimum": 2, "maximum": TWAP_MAX_SLICES},
                "interval_s": {**_NUMBER_SCHEMA, "exclusiveMinimum": 0, "maximum": int(TWAP_MAX_INTERVAL_S)},
            },
            "required": ["algo", "slices", "interval_s"],
            "additionalProperties": False,
            "description": "TWAP: MARKET slices interval_s apart, quantities to the step summing exactly "
            "to the total (MARKET entries only)",
        },
    ),
    "reduce_only": (_reduce_only, {"type": ["boolean", "string"], "description": "true/false"}),
    "timestamp": (
        _timestamp,
        {"type": ["string", "integer", "number"], "description": "ISO-8601 (naive = UTC) or epoch ms / s"},
    ),
}
