"""The TradeIntent we consume: :func:`parse_intent` validates a decoded payload or raises
:class:`IntentRejected` (the producer gets a ``rejected`` result naming the field and the value)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quantum_exec.contracts.codec import dumps, show
from quantum_exec.contracts.enums import Side
from quantum_exec.contracts.fields import FIELDS, Twap
from quantum_exec.contracts.meta import bounded_meta
from quantum_exec.contracts.stops import STOP_FIELDS, TakeProfitLevel, TrailingStop, check_stops
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.settings import MarginType

# Every field's validator and schema: the entry's and the stop-management ones.
ALL_FIELDS: Final = {**FIELDS, **STOP_FIELDS}


def _normalize_intent(payload: Mapping[Any, Any]) -> dict[str, Any]:
    """Validate and normalize a raw payload into TradeIntent field values (raises IntentRejected)."""
    values: dict[str, Any] = {}
    extras: dict[Any, Any] = {}
    for key, raw in payload.items():
        spec = ALL_FIELDS.get(key) if type(key) is str else None
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
        raise IntentRejected(
            ReasonCode.INVALID_FIELD, "side: required (BUY, SELL, CLOSE or MODIFY; alias action)"
        )
    if action is not None and action is not side:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD,
            f"side: {side.value} contradicts action {action.value} (send one of them)",
        )
    if "symbol" not in values:
        raise IntentRejected(ReasonCode.INVALID_FIELD, "symbol: required (e.g. BTCUSDT)")
    check_stops(values, side)
    if (
        side not in (Side.CLOSE, Side.MODIFY)
        and "quantity" not in values
        and "position_size_usd" not in values
    ):
        raise IntentRejected(
            ReasonCode.INVALID_FIELD, f"position_size_usd: required for {side.value} (or quantity)"
        )
    if side is not Side.MODIFY:
        _check_entry(values, side)
    values["meta"] = bounded_meta(extras) if extras else {}
    return values


def _check_entry(values: dict[str, Any], side: Side) -> None:
    """The entry fields agree with each other: a LIMIT has one way to its price, a STOP_MARKET a
    stop_price, a STOP both, a MARKET none of them."""
    order_type = values.get("order_type", "MARKET")
    limit_only = [n for n in ("price", "limit_offset_pct", "time_in_force", "expire_after_s") if n in values]
    if side is Side.CLOSE:
        extra: list[str] = [*limit_only, *(n for n in ("stop_price", "execution") if n in values)]
        if order_type != "MARKET" or extra:
            field = "order_type" if order_type != "MARKET" else extra[0]
            raise IntentRejected(ReasonCode.INVALID_FIELD, f"{field}: a CLOSE is always a MARKET order")
        return
    if "execution" in values and (order_type != "MARKET" or values.get("reduce_only")):
        raise IntentRejected(
            ReasonCode.INVALID_FIELD,
            "execution: TWAP slices are MARKET orders opening a position "
            + ("(not reduce_only)" if order_type == "MARKET" else f"(this entry is {order_type})"),
        )
    stop = order_type in ("STOP", "STOP_MARKET")
    if "stop_price" in values and not stop:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD,
            f"stop_price: only for STOP and STOP_MARKET entries (this one is {order_type})",
        )
    if stop and "stop_price" not in values:
        raise IntentRejected(ReasonCode.INVALID_FIELD, f"stop_price: required for a {order_type} entry")
    if stop and values.get("reduce_only"):
        raise IntentRejected(ReasonCode.INVALID_FIELD, f"reduce_only: a {order_type} entry opens a position")
    if order_type == "MARKET":
        if limit_only:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD, f"{limit_only[0]}: only for order_type LIMIT (this entry is MARKET)"
            )
        return
    if order_type == "STOP_MARKET":
        for name in ("price", "limit_offset_pct", "time_in_force"):
            if name in values:
                raise IntentRejected(
                    ReasonCode.INVALID_FIELD, f"{name}: a STOP_MARKET entry has no limit price (use STOP)"
                )
        return
    if order_type == "STOP":
        if "price" not in values or "limit_offset_pct" in values:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD,
                "price: a STOP entry needs its limit price (limit_offset_pct is for LIMIT entries)",
            )
        return
    has_price, has_offset = "price" in values, "limit_offset_pct" in values
    if has_price == has_offset:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD,
            "price: a LIMIT entry needs exactly one of price and limit_offset_pct"
            + (" (got both)" if has_price else ""),
        )


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
    order_type: str = "MARKET"
    price: Decimal | None = None
    stop_price: Decimal | None = None
    limit_offset_pct: Decimal | None = None
    time_in_force: str | None = None
    expire_after_s: Decimal | None = None
    execution: Twap | None = None
    take_profits: tuple[TakeProfitLevel, ...] | None = None
    break_even_after: int | None = None
    trailing_stop: TrailingStop | None = None
    close_pct: Decimal | None = None
    timestamp: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    # The stream entry's ``source`` (the gateway writes its producer's name there), never the
    # payload's: who published the intent, for the per-producer rate limit. Not part of the intent
    # (its digest, its dump).
    origin: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _validate_raw(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return _normalize_intent(data)
        return data

    @property
    def is_long(self) -> bool:
        """True for BUY, False for SELL; CLOSE and MODIFY have no direction and raise ValueError."""
        if self.side in (Side.CLOSE, Side.MODIFY):
            raise ValueError(f"a {self.side.value} intent has no direction")
        return self.side is Side.BUY


def parse_intent(payload: dict[str, Any]) -> TradeIntent:
    """Validate a decoded payload into a :class:`TradeIntent`.

    Raises :class:`IntentRejected` (and nothing else) with ``INVALID_PAYLOAD`` when the payload
    is not an object and ``INVALID_FIELD`` otherwise; the message names the field and the value.
    Unknown fields are kept in ``meta`` (bounded in size) and echoed in the result.
    """
    if not isinstance(payload, Mapping):
        raise IntentRejected(
            ReasonCode.INVALID_PAYLOAD, f"payload: must be a JSON object (got {show(payload)})"
        )
    return TradeIntent.model_construct(**_normalize_intent(payload))


def intent_key(intent: TradeIntent, stream_id: str) -> str:
    """The idempotency key of an intent: the producer's ``intent_id``, else the stream entry id."""
    return intent.intent_id or stream_id


def intent_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the TradeIntent payload this service accepts."""
    properties = {name: dict(schema) for name, (_, schema) in ALL_FIELDS.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:quantum:trade.intent",
        "title": "TradeIntent",
        "description": (
            "Payload of a trade.intent stream entry. Unknown fields are allowed and echoed back in "
            "the result's meta. BUY/SELL need position_size_usd or quantity; a CLOSE may take "
            "quantity or close_pct (a partial close); a MODIFY changes the open position's "
            "stop_loss(_pct), take_profit(_pct), take_profits, trailing_stop or break_even_after."
        ),
        "type": "object",
        "properties": properties,
        "required": ["symbol"],
        "anyOf": [{"required": ["side"]}, {"required": ["action"]}],
        "additionalProperties": True,
    }


def intent_digest(intent: TradeIntent) -> str:
    """A hash of the normalized intent: two payloads that mean the same intent hash the same.

    The ``timestamp`` is left out: a producer that re-sends the same intent stamped anew is
    retrying, not re-using the id for another trade. The stop-management fields count only when
    set, so an intent without them hashes as it did before they existed.
    """
    fields = {
        name: _normalized(value)
        for name, value in intent.model_dump(exclude={"timestamp"}).items()
        if value is not None or name not in STOP_FIELDS
    }
    return hashlib.sha256(dumps(fields, sort_keys=True)).hexdigest()[:32]


def _normalized(value: Any) -> Any:
    """Decimals as their normalized text (100 == 100.0), inside lists and objects too."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalized(v) for v in value]
    return value
