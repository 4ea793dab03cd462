"""Per-source rate limit: a token bucket of ``rate_per_min`` tokens refilled evenly over a minute.

A source may send a minute's allowance at once, then one request per ``60 / rate_per_min``
seconds; past that it gets 429 with ``Retry-After`` (whole seconds until the next token). The
buckets live in the gateway's process: one gateway per deployment (see the README).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimits:
    """Token buckets by source name."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, name: str, rate_per_min: int) -> int | None:
        """Take one token: None when allowed, else the seconds to wait (at least 1)."""
        now = self._clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(float(rate_per_min), now)
        per_s = rate_per_min / 60.0
        bucket.tokens = min(float(rate_per_min), bucket.tokens + (now - bucket.updated) * per_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / per_s))
