"""Typed errors (the Binance codes that map to them are in :mod:`quantum_exec.exchange.codes`).

Every failure the service can meet is one of three kinds, because each asks for a different move:

* **retryable** - nothing happened on the exchange; trying again later is safe;
* **permanent** - the request is wrong or impossible; trying again cannot help;
* **unknown outcome** - the request may or may not have taken effect; it must be *looked up*
  (by client id), never blindly re-sent.
"""

from __future__ import annotations

from enum import StrEnum


class QuantumError(Exception):
    """Base of every exception raised by quantum_exec."""


class ConfigError(QuantumError):
    """A setting is missing or invalid; raised at start, names the environment variable."""


class ExchangeError(QuantumError):
    """An error reported by (or on the way to) the exchange."""

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.message = message


class RetryableError(ExchangeError):
    """Nothing happened on the exchange; the same request may be sent again later."""


class PermanentError(ExchangeError):
    """The exchange refused the request for a reason a retry cannot fix."""


class UnknownOutcomeError(ExchangeError):
    """The request may have been executed: look it up by client id before anything else.

    ``sent_at`` is the monotonic time the request really left (after pacing and any 429 retry):
    "certainly absent" is counted from it, never from before the wait.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        sent_at: float | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.sent_at = sent_at


class ListenKeyGone(PermanentError):
    """The user data stream's listenKey no longer exists (``-1125``): create a new one."""


class RateLimitedError(RetryableError):
    """429 / 418 / -1003: the client must pause for ``retry_after_s``."""

    def __init__(self, message: str, *, code: int | None, http_status: int | None, retry_after_s: float):
        super().__init__(message, code=code, http_status=http_status)
        self.retry_after_s = retry_after_s


class ClockSkewError(RetryableError):
    """-1021: the request's timestamp is outside recvWindow; resync server time and retry once."""


class ReasonCode(StrEnum):
    """Our own reason codes for results that did not come from a Binance error code."""

    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    INVALID_FIELD = "INVALID_FIELD"
    STALE_INTENT = "STALE_INTENT"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    SYMBOL_NOT_TRADING = "SYMBOL_NOT_TRADING"
    CONTRACT_NOT_ALLOWED = "CONTRACT_NOT_ALLOWED"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    NOTIONAL_ABOVE_LIMIT = "NOTIONAL_ABOVE_LIMIT"
    LEVERAGE_ABOVE_LIMIT = "LEVERAGE_ABOVE_LIMIT"
    SL_TP_WRONG_SIDE = "SL_TP_WRONG_SIDE"
    SL_TP_TOO_CLOSE = "SL_TP_TOO_CLOSE"
    NO_POSITION = "NO_POSITION"
    # The account's open conditional orders (ours and others) plus those a change needs exceed the
    # exchange's budget (200): refused before anything is sent.
    CONDITIONAL_BUDGET = "CONDITIONAL_BUDGET"
    PRICE_OUT_OF_RANGE = "PRICE_OUT_OF_RANGE"
    ENTRY_EXPIRED = "ENTRY_EXPIRED"
    # A TWAP/sliced entry or a working LIMIT ended before all of it was sent or filled (a CLOSE
    # came, its stop fired, a later child was refused): what filled stands, protected.
    ENTRY_ENDED_EARLY = "ENTRY_ENDED_EARLY"
    OPPOSITE_POSITION = "OPPOSITE_POSITION"
    ENTRY_NOT_FILLED = "ENTRY_NOT_FILLED"
    PROTECTION_FAILED = "PROTECTION_FAILED"
    PROTECTION_REQUIRED = "PROTECTION_REQUIRED"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
    POISON_MESSAGE = "POISON_MESSAGE"
    INTENT_ID_CONFLICT = "INTENT_ID_CONFLICT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # The account's risk governor (quantum_exec.risk): a limit, the intent rate, the trading state.
    RISK_LIMIT = "RISK_LIMIT"
    RISK_RATE = "RISK_RATE"
    TRADING_REDUCING = "TRADING_REDUCING"
    TRADING_HALTED = "TRADING_HALTED"


class IntentRejected(QuantumError):
    """An intent failed validation or a pre-trade check; carries a reason code and a clear message."""

    def __init__(self, code: ReasonCode | str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
