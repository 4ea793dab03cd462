"""The ExecutionResult we publish, exactly one per intent, and its stream entry codec."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from quantum_exec.contracts.codec import (
    RESULT_EVENT_TYPE,
    RESULT_SOURCE,
    EntryFields,
    PayloadError,
    dumps,
    isoformat,
    payload_value,
    truncate,
    utcnow,
)
from quantum_exec.contracts.enums import ErrorSource, ProtectionState, ResultStatus, Side
from quantum_exec.core.settings import ExchangeEnv

JsonDecimal = Annotated[Decimal, WithJsonSchema({"type": "number"})]


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
    level: int | None = None  # a take-profit ladder's level (1..5); None for a single leg
    # A TRAILING_STOP_MARKET: its callbackRate, activatePrice, and whether it tracks the price yet.
    callback_pct: JsonDecimal | None = None
    activation_price: JsonDecimal | None = None
    activated: bool | None = None


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


class ChildOrder(BaseModel):
    """One child of an entry or close sent as several orders (TWAP slices, maxQty parts)."""

    number: int
    client_order_id: str
    order_id: int | None = None
    quantity: JsonDecimal
    executed_quantity: JsonDecimal | None = None
    avg_price: JsonDecimal | None = None
    status: str  # the order's status, or NOT_SENT when the schedule ended before it
    scheduled_at: datetime
    updated_at: datetime | None = None


class ExecutionResult(BaseModel):
    """Exactly one per intent. The first ten fields are what the existing consumers read."""

    model_config = ConfigDict(extra="ignore")

    symbol: str
    action: Side | None = None
    entry_price: JsonDecimal | None = None
    position_size_usd: JsonDecimal | None = None
    leverage: int | None = None
    timestamp: datetime = Field(default_factory=utcnow)
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
    # A take-profit ladder's levels (take_profit is then its last level, for older consumers).
    take_profits: list[ProtectiveOrder] | None = None
    trailing_stop: ProtectiveOrder | None = None
    # A MODIFY (or a partial CLOSE that resized the legs): our legs on the symbol before and after.
    legs_before: list[ProtectiveOrder] | None = None
    legs_after: list[ProtectiveOrder] | None = None
    protection: ProtectionState = ProtectionState.NOT_REQUESTED
    commission: JsonDecimal | None = None
    commission_asset: str | None = None
    realized_pnl: JsonDecimal | None = None
    emergency_close: CloseFill | None = None
    # The child orders when the entry or close was sent as several (TWAP, above maxQty).
    children: list[ChildOrder] | None = None
    error: ResultError | None = None
    environment: ExchangeEnv | None = None
    received_at: datetime | None = Field(default=None, description="When this attempt's entry was read.")
    completed_at: datetime | None = None
    latency_ms: float | None = Field(default=None, description="This attempt, from its start to its result.")
    # The whole intent across redeliveries and restarts (a resting entry or a restart included).
    first_received_at: datetime | None = Field(
        default=None,
        description="When the intent's first attempt was read, across redeliveries and restarts.",
    )
    total_ms: float | None = Field(
        default=None, description="From first_received_at to completed_at: the whole intent, in ms."
    )
    meta: dict[str, Any] = Field(default_factory=dict)


def encode_result_fields(result: ExecutionResult) -> dict[str, bytes]:
    """The output stream entry for a result (envelope ``event_type/payload/timestamp/source``)."""
    return {
        "event_type": RESULT_EVENT_TYPE.encode(),
        "payload": dumps(result),
        "timestamp": isoformat(result.timestamp).encode(),
        "source": RESULT_SOURCE.encode(),
    }


def decode_result_fields(fields: EntryFields) -> ExecutionResult:
    """Read a result entry back (numbers as exact Decimals). Raises :class:`PayloadError`."""
    raw = payload_value(fields)
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
            raise PayloadError(f"not an ExecutionResult: {truncate(str(exc), 300)}") from None
        raise PayloadError(f"result payload is not valid JSON: {truncate(str(exc))}") from None


def result_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the ExecutionResult payload this service publishes."""
    schema = ExecutionResult.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:quantum:execution.result"
    return schema
