"""Who sent this request: the HMAC scheme of signing producers and TradingView's shared secret.

HMAC: ``X-Quantum-Timestamp`` (Unix milliseconds) and ``X-Quantum-Signature`` = hex
HMAC-SHA256 of ``<timestamp>.<raw body>`` with the source's secret. A timestamp further than the
replay window from our clock (either way) is refused; a signature seen within the window is refused
by the caller (:class:`~quantum_exec.webhooks.intake.Intake` remembers each in Redis), so a captured
request cannot be sent again.

TradingView cannot sign: the secret travels in the body (``"secret"``) or the path. Every compare
is constant-time (``hmac.compare_digest``) so the answer's timing tells nothing of the secret.
Nothing here logs or returns a secret: a refusal says only which check failed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

from quantum_exec.webhooks.sources import Source

TIMESTAMP_HEADER: Final = "X-Quantum-Timestamp"
SIGNATURE_HEADER: Final = "X-Quantum-Signature"


class Refusal(Exception):
    """The request is refused with ``status``; ``reason`` is safe to show (never a secret)."""

    def __init__(
        self, status: int, code: str, reason: str, *, retry_after_s: int | None = None, close: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.retry_after_s = retry_after_s
        # The body was not read to its end: the connection cannot carry another request.
        self.close = close


def unauthenticated(reason: str) -> Refusal:
    return Refusal(401, "UNAUTHENTICATED", reason)


def sign(secret: str, timestamp_ms: int | str, body: bytes) -> str:
    """The signature a producer sends (hex HMAC-SHA256 of ``<timestamp>.<body>``)."""
    message = str(timestamp_ms).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_hmac(source: Source, headers: Mapping[str, str], body: bytes, now_ms: int, window_ms: int) -> str:
    """The request's signature when it is valid and fresh; raises :class:`Refusal` (401) otherwise."""
    raw_ts = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not raw_ts or not signature:
        raise unauthenticated(f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
    # ASCII first: str.isdigit() is also true for '²' (which int() refuses) and '٣' (which it reads).
    if not (raw_ts.isascii() and raw_ts.isdigit()) or len(raw_ts) > 16:
        raise unauthenticated(f"{TIMESTAMP_HEADER}: expected Unix milliseconds")
    skew_ms = now_ms - int(raw_ts)
    if abs(skew_ms) > window_ms:
        raise unauthenticated(
            f"{TIMESTAMP_HEADER}: {abs(skew_ms) / 1000:.1f}s {'old' if skew_ms > 0 else 'ahead'}, "
            f"outside the {window_ms / 1000:g}s replay window"
        )
    expected = sign(source.secret.get_secret_value(), raw_ts, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("ascii", "replace")):
        raise unauthenticated("bad signature")
    return expected


def check_secret(source: Source, given: str | None) -> None:
    """A TradingView source's shared secret; raises :class:`Refusal` (401) when absent or wrong."""
    if not given:
        raise unauthenticated('the source\'s secret is required (body field "secret" or the path)')
    if not hmac.compare_digest(given.encode("utf-8", "replace"), source.secret.get_secret_value().encode()):
        raise unauthenticated("wrong secret")
