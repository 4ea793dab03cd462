"""How long our fills stand without their SL/TP: measured, counted over a bound, shown while it lasts.

Each protection of a fill runs inside :meth:`Exposure.naked`, from the fill's own exchange time
(the entry's ``updateTime``: a fill that came while this instance was down, recovering or busy
counts from when it happened, not from when it was seen) to its legs standing, the position closed
or the attempt ended. Every such span is observed in ``quantum_exec_unprotected_seconds``; one
longer than ``QUANTUM_UNPROTECTED_ALERT_S`` is counted in
``quantum_exec_unprotected_over_bound_total`` (an alert) and logged, and while one lasts past the
bound it is in ``quantum_exec_unprotected_now`` (an alert too) and on the console
(:meth:`Exposure.status`).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

from quantum_exec.exchange.wire import Order
from quantum_exec.execution.run import Run
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


class Exposure:
    """The fills of this process being protected now, and how many stood naked past the bound."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self._naked: dict[str, tuple[str, float]] = {}  # intent key -> (symbol, since: epoch s)
        self.over_bound_total = 0
        _EXPOSURES.add(self)

    @contextlib.contextmanager
    def naked(self, run: Run, entry: Order) -> Iterator[None]:
        """Around the protection of ``entry``'s fill: from its fill time until the block ends."""
        now = time.time()
        since = min(now, entry.update_time_ms / 1000) if entry.update_time_ms else now
        self._naked[run.key] = (run.intent.symbol, since)
        try:
            yield
        finally:
            self._naked.pop(run.key, None)
            naked_s = max(0.0, time.time() - since)
            metrics.UNPROTECTED_SECONDS.observe(naked_s)
            if naked_s > self.bound_s:
                self.over_bound_total += 1
                metrics.UNPROTECTED_OVER_BOUND.inc()
                log.warning(
                    "position.unprotected_too_long",
                    intent_id=run.key,
                    symbol=run.intent.symbol,
                    naked_s=round(naked_s, 3),
                    bound_s=self.bound_s,
                )

    def over_bound(self) -> list[dict[str, Any]]:
        """The fills naked past the bound right now, longest first."""
        now = time.time()
        rows = [
            {"intent_id": key, "symbol": symbol, "naked_s": round(now - since, 1)}
            for key, (symbol, since) in self._naked.items()
            if now - since > self.bound_s
        ]
        return sorted(rows, key=lambda row: -float(row["naked_s"]))

    def status(self) -> dict[str, Any]:
        """For the console: the bound, the fills over it now, and how many were since the start."""
        return {"bound_s": self.bound_s, "now": self.over_bound(), "over_bound_total": self.over_bound_total}


_EXPOSURES: weakref.WeakSet[Exposure] = weakref.WeakSet()


def _over_bound_now() -> float:
    return float(sum(len(exposure.over_bound()) for exposure in list(_EXPOSURES)))


metrics.UNPROTECTED_NOW.set_function(_over_bound_now)
