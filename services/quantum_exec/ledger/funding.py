"""When the ledger asks ``GET /fapi/v1/income`` for FUNDING_FEE rows, and which rows are new.

The user stream reports a settlement (an ACCOUNT_UPDATE whose reason is FUNDING_FEE), but Binance's
income history is eventually consistent: the row can be listed seconds or minutes after that
update. So a report stays owed until the history has listed a row of its settlement (one at most
``SETTLEMENT_SLACK_MS`` older than the report), and the history is asked again on
``FUNDING_RECHECK`` meanwhile. The cursor is the latest row time the history returned, never the
time the stream reported. Each request starts ``SETTLEMENT_SLACK_MS`` before that cursor, so a row
listed after the others of its settlement is still read; the ids of the rows in that window are
kept (with the ledger's state) so none is taken twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from quantum_exec.core.backoff import Backoff
from quantum_exec.exchange.wire import Income
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

# The rows of one settlement are stamped around its time, the stream's report of it a little
# later; settlements are an hour or more apart, so this cannot mix two of them.
SETTLEMENT_SLACK_MS: Final = 300_000
# While a reported settlement is not listed (weight 30 a request: at most 60 a minute at the cap).
FUNDING_RECHECK: Final = Backoff(base_s=0.5, cap_s=30.0)
_FIRST_LOOKBACK_MS: Final = 86_400_000
_PAGE: Final = 1000  # the request's limit: a full page means more rows are waiting

FundingSource = Callable[[int], Awaitable[list[Income]]]


class FundingReader:
    """The income history's cursor and what is owed to it; see the module docstring."""

    def __init__(self, source: FundingSource, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self.reported_ms = 0  # the latest settlement the stream reported
        self.answered_ms = 0  # the latest report the history has listed a row for
        self.through_ms = 0  # the latest row time the history returned
        self._window: dict[str, int] = {}  # tranId -> time, of the rows the next request reads again
        # Rows at or before this time were taken by a ledger that kept no ids (a state from before).
        self._taken_to_ms = 0
        self._attempt = 0
        self._next_try = 0.0

    def to_record(self) -> dict[str, Any]:
        return {
            "reported_ms": self.reported_ms,
            "answered_ms": self.answered_ms,
            "through_ms": self.through_ms,
            "window": self._window,
            "taken_to_ms": self._taken_to_ms,
        }

    def load(self, record: dict[str, Any] | None) -> None:
        """Resume from :meth:`to_record`'s output; ``{"fetched_ms": N}`` is the cursor of a state
        written before this reader (it had taken every row up to N, and kept no ids)."""
        record = record or {}
        if "fetched_ms" in record:
            fetched = int(record["fetched_ms"])
            record = {
                "reported_ms": fetched,
                "answered_ms": fetched,
                "through_ms": fetched,
                "taken_to_ms": fetched,
            }
        self.reported_ms = int(record.get("reported_ms", 0))
        self.answered_ms = int(record.get("answered_ms", 0))
        self.through_ms = int(record.get("through_ms", 0))
        self._window = {str(k): int(v) for k, v in (record.get("window") or {}).items()}
        self._taken_to_ms = int(record.get("taken_to_ms", 0))
        self._attempt, self._next_try = 0, 0.0

    async def new_rows(self, seen_ms: int) -> list[Income] | None:
        """The rows not taken before, oldest first, when a report is owed and a request is due;
        None when nothing was asked. ``seen_ms``: the stream's latest FUNDING_FEE report."""
        self.reported_ms = max(self.reported_ms, seen_ms)
        if self.reported_ms <= self.answered_ms or self._clock() < self._next_try:
            return None
        if self.through_ms:
            start = self.through_ms - SETTLEMENT_SLACK_MS
        else:
            start = self.reported_ms - _FIRST_LOOKBACK_MS
        rows = sorted(await self._source(start), key=lambda r: r.time_ms)
        fresh = [r for r in rows if r.tran_id not in self._window and r.time_ms > self._taken_to_ms]
        before = self.through_ms
        self.through_ms = max([self.through_ms, *(r.time_ms for r in rows)])
        floor = self.through_ms - SETTLEMENT_SLACK_MS
        self._window = {k: t for k, t in self._window.items() if t >= floor}
        self._window.update((r.tran_id, r.time_ms) for r in fresh if r.time_ms >= floor)
        if len(rows) >= _PAGE and self.through_ms > before:
            self._next_try = 0.0  # a full page: read on at once
        elif self.through_ms >= self.reported_ms - SETTLEMENT_SLACK_MS:
            self.answered_ms, self._attempt, self._next_try = self.reported_ms, 0, 0.0
        else:
            wait = FUNDING_RECHECK.delay(self._attempt)
            self._attempt += 1
            self._next_try = self._clock() + wait
            log.info("ledger.funding_not_listed", reported_ms=self.reported_ms, retry_in_s=wait)
        return fresh
