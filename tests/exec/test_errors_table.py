"""The Binance error classification, tested as a table."""

from __future__ import annotations

import pytest

from quantum_exec.core.errors import (
    ClockSkewError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UnknownOutcomeError,
)
from quantum_exec.exchange.codes import classify

CASES = [
    # (code, http status, message, expected kind)
    (
        -1007,
        408,
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        UnknownOutcomeError,
    ),
    (
        -1006,
        400,
        "An unexpected response was received from the message bus. Execution status unknown.",
        UnknownOutcomeError,
    ),
    (None, 503, "Unknown error, please check your request or try again later.", UnknownOutcomeError),
    (None, 503, "Service Unavailable.", RetryableError),
    (None, 502, "Bad Gateway", UnknownOutcomeError),
    (-1003, 429, "Too many requests; current limit is 2400 requests per minute.", RateLimitedError),
    (None, 418, "IP banned", RateLimitedError),
    (-1003, 400, "Way too many requests", RateLimitedError),
    (-1021, 400, "Timestamp for this request is outside of the recvWindow.", ClockSkewError),
    (-1001, 400, "Internal error; unable to process your request. Please try again.", RetryableError),
    (-1008, 400, "Server is currently overloaded with other requests.", RetryableError),
    (-2019, 400, "Margin is insufficient.", PermanentError),
    (-2021, 400, "Order would immediately trigger.", PermanentError),
    (
        -4164,
        400,
        "Order's notional must be no smaller than 100 (unless you choose reduce only).",
        PermanentError,
    ),
    (-1022, 400, "Signature for this request is not valid.", PermanentError),
    (-2015, 401, "Invalid API-key, IP, or permissions for action.", PermanentError),
    (-4120, 400, "Order type not supported for this endpoint.", PermanentError),
]


@pytest.mark.parametrize(("code", "status", "message", "expected"), CASES)
def test_classification(code: int | None, status: int, message: str, expected: type) -> None:
    assert classify(code, status, message) is expected


# For a request that places an order the same answers can leave the order in the matching engine.
ORDER_CASES = [
    (-1000, 400, "An unknown error occured while processing the request.", UnknownOutcomeError),
    (-1001, 400, "Internal error; unable to process your request. Please try again.", UnknownOutcomeError),
    (None, 503, "Service Unavailable.", UnknownOutcomeError),
    (None, 500, "Internal Server Error", UnknownOutcomeError),
    (-1007, 408, "Timeout waiting for response from backend server.", UnknownOutcomeError),
    (-1008, 400, "Server is currently overloaded with other requests.", RetryableError),
    (-1003, 429, "Too many requests.", RateLimitedError),
    (-2019, 400, "Margin is insufficient.", PermanentError),
]


@pytest.mark.parametrize(("code", "status", "message", "expected"), ORDER_CASES)
def test_order_request_classification(code: int | None, status: int, message: str, expected: type) -> None:
    assert classify(code, status, message, order=True) is expected


def test_kinds_are_distinct_branches() -> None:
    # A rate limit is retryable but must be told apart: it needs a pause, not a quick retry.
    assert issubclass(RateLimitedError, RetryableError)
    assert not issubclass(UnknownOutcomeError, RetryableError)
    assert not issubclass(PermanentError, RetryableError)
