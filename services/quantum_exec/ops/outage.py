"""Repeated failures of one kind (Redis down for a background loop) logged as an outage: one line
when it starts, one a minute while it lasts (with how many failures since the start), one when it
ends. A loop that retries every 200 ms would otherwise write five warnings a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quantum_exec.ops.logs import StructLogger

EVERY_S = 60.0


class OutageLog:
    """``failed()`` on every failure, ``ok()`` on every success; logs ``event`` and ``event``_ended."""

    def __init__(
        self,
        log: StructLogger,
        event: str,
        *,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._event = event
        self._every_s = every_s
        self._clock = clock
        self._since: float | None = None
        self._said_at = 0.0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, **fields: Any) -> None:
        now = self._clock()
        self._failures += 1
        if self._since is None:
            self._since = self._said_at = now
            self._log.warning(self._event, **fields)
        elif now - self._said_at >= self._every_s:
            self._said_at = now
            self._log.warning(
                self._event, ongoing_s=round(now - self._since, 1), failures=self._failures, **fields
            )

    def ok(self) -> None:
        if self._since is None:
            return
        self._log.info(
            f"{self._event}_ended", lasted_s=round(self._clock() - self._since, 1), failures=self._failures
        )
        self._since = None
        self._failures = 0
