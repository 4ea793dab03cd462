"""Retry policy as data: one exponential backoff (base, factor, cap, jitter) used by every loop."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of ``base_s * factor**n`` capped at ``cap_s``; ``jitter`` takes up to that fraction off.

    Jitter spreads the retries of several instances (or symbols) that failed at the same moment.
    """

    base_s: float
    cap_s: float
    factor: float = 2.0
    jitter: float = 0.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (0 for the first retry)."""
        wait = min(self.cap_s, self.base_s * self.factor ** min(attempt, 64))
        if self.jitter:
            wait *= 1.0 - self.jitter * random.random()
        return wait

    def delays(self) -> Iterator[float]:
        """The waits of successive retries, endlessly (the caller decides when to stop)."""
        attempt = 0
        while True:
            yield self.delay(attempt)
            attempt += 1
