"""Every Binance error code the service acts on, and what it means: one table, tested as a table.

NautilusTrader keeps its codes beside its HTTP client the same way; here they sit beside the
gateway, and the executor and gateway import the names instead of repeating numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from binance.exceptions import BinanceAPIException

from quantum_exec.core.errors import (
    ClockSkewError,
    ExchangeError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UnknownOutcomeError,
)

# Codes whose request certainly did not take effect and may be tried again (-1003 and -1021 are
# classified before this table: rate limited, clock skew).
RETRYABLE_CODES: frozenset[int] = frozenset({-1001, -1008, -1015})
# Codes that leave an order request's outcome unknown although a read may simply be retried:
# -1000 "An unknown error occurred while processing the request", -1001 "Internal error; unable
# to process your request" - the order may have reached the matching engine.
ORDER_UNKNOWN_CODES: frozenset[int] = frozenset({-1000, -1001})
# Binance codes after which the outcome of a state-changing request is unknown: look it up.
UNKNOWN_OUTCOME_CODES: frozenset[int] = frozenset({-1006, -1007})
# HTTP statuses that mean "rate limited / banned": pause, do not hammer.
RATE_LIMIT_STATUSES: frozenset[int] = frozenset({429, 418})
# Codes that mean the exchange rules we cached may be outdated: refresh exchangeInfo.
RULES_STALE_CODES: frozenset[int] = frozenset({-1111, -4014, -4023})
# Codes that mean success for an idempotent setting call.
ALREADY_DONE_CODES: frozenset[int] = frozenset({-4046})


# Pause after a 429/418 that carries no Retry-After header.
DEFAULT_RETRY_AFTER_S: Final = {429: 5.0, 418: 120.0}


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer response header, None when absent or not a number."""
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def typed_error(exc: BinanceAPIException, *, order: bool, sent_at: float) -> ExchangeError:
    """python-binance's API error as our typed error (``order``: the request places an order)."""
    code = int(exc.code) if isinstance(exc.code, int) and exc.code else None
    status = int(exc.status_code) if exc.status_code else None
    headers = getattr(exc.response, "headers", None) or {}
    return error_of(
        code,
        status,
        str(exc.message or ""),
        order=order,
        sent_at=sent_at,
        retry_after=header_int(headers, "Retry-After"),
    )


def error_of(
    code: int | None,
    status: int | None,
    message: str,
    *,
    order: bool,
    sent_at: float,
    retry_after: int | None = None,
) -> ExchangeError:
    """An exchange error (REST or WebSocket API: code, HTTP-like status, message) as our typed error."""
    message = message[:300]
    kind = classify(code, status, message, order=order)
    text = f"{message} (code {code}, HTTP {status})" if code else f"HTTP {status}: {message}"
    if kind is RateLimitedError:
        seconds = (
            float(retry_after) if retry_after is not None else DEFAULT_RETRY_AFTER_S.get(status or 0, 5.0)
        )
        return RateLimitedError(text, code=code, http_status=status, retry_after_s=seconds)
    if kind is UnknownOutcomeError:
        return UnknownOutcomeError(text, code=code, http_status=status, sent_at=sent_at)
    return kind(text, code=code, http_status=status)


def classify(
    code: int | None, http_status: int | None, message: str, *, order: bool = False
) -> type[ExchangeError]:
    """Map a Binance error (code, HTTP status, message) to the kind of error it is.

    503 with "Unknown error" means the request reached the matching engine and its outcome is
    unknown; 503 "Service Unavailable" means it was not processed - for a read. For an ``order``
    request (one that places an order) every 5xx arrives after the request left and ``-1000``/
    ``-1001`` do not say it was not executed: all are unknown outcomes, looked up, never re-sent.
    """
    if http_status in RATE_LIMIT_STATUSES or code == -1003:
        return RateLimitedError
    if code == -1021:
        return ClockSkewError
    if code in UNKNOWN_OUTCOME_CODES:
        return UnknownOutcomeError
    if order and (code in ORDER_UNKNOWN_CODES or (http_status is not None and http_status >= 500)):
        return UnknownOutcomeError
    if http_status is not None and http_status >= 500:
        if "service unavailable" in message.lower():
            return RetryableError
        return UnknownOutcomeError
    if code in RETRYABLE_CODES:
        return RetryableError
    return PermanentError


# The order or algo order does not exist (query or cancel): -2013 "Order does not exist",
# -2011 "Unknown order sent" (also a cancel of an algo order that is TRIGGERING).
NOT_FOUND_CODES: frozenset[int] = frozenset({-2013, -2011})
# The stop or take-profit would trigger at once: its trigger is already crossed.
IMMEDIATE_TRIGGER: Final = -2021
# The client order id was used before (the earlier order exists or existed).
DUPLICATE_CLIENT_ID: Final = -4116
# "An open stop or take profit order with GTE and closePosition in the direction is existing."
CLOSE_POSITION_EXISTS: Final = -4130
# The listenKey does not exist (expired, or closed by a DELETE): create a new one.
LISTEN_KEY_GONE: Final = -1125
