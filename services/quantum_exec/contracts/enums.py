"""The enumerations of the wire contracts."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """What the producer asks for: open/increase long (BUY), short (SELL), flatten (CLOSE, or part
    of the position), or change the open position's protection (MODIFY)."""

    BUY = "BUY"
    SELL = "SELL"
    CLOSE = "CLOSE"
    MODIFY = "MODIFY"


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
