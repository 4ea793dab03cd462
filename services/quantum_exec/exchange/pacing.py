"""Client-side pacing below Binance's limits, so the account is never rate-limited or banned.

Binance counts REQUEST_WEIGHT per minute and ORDERS per 10 s and per minute in fixed windows. We
keep a sliding log of what *we* sent: a sliding count is never below the fixed-window count, so
staying under the limits in the log keeps us under them on the exchange. The response headers
(``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S/1M``) add usage we did not send ourselves
(another process on the same account or IP), and a 429/418 ``Retry-After`` pauses everything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from quantum_exec.ops import metrics

# The monotonic time by which an order request must leave, or None. The executor sets it around an
# entry (its intent's TTL): an entry that pacing would hold past it is not sent at all (shed), so
# a burst above the exchange's order limits never executes an intent after it went stale.
# Protective orders and closes never carry one: they are never shed.
SEND_BY: ContextVar[float | None] = ContextVar("quantum_send_by", default=None)


class PacingDeadline(Exception):
    """Pacing would hold an order request past its :data:`SEND_BY`; nothing was sent."""

    def __init__(self, wait_s: float, late_s: float) -> None:
        super().__init__(f"pacing would wait {wait_s:.2f} s, {late_s:.2f} s past the deadline")
        self.wait_s = wait_s
        self.late_s = late_s


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-window budgets (Binance's published defaults; exchangeInfo ``rateLimits`` wins)."""

    weight_1m: int = 2400
    orders_10s: int = 300
    orders_1m: int = 1200

    @classmethod
    def from_exchange_info(cls, raw: dict[str, Any]) -> Limits:
        """Read ``rateLimits`` from exchangeInfo; missing entries keep the defaults."""
        found: dict[str, int] = {}
        for item in raw.get("rateLimits") or []:
            kind, interval = item.get("rateLimitType"), item.get("interval")
            seconds = {"SECOND": 1, "MINUTE": 60}.get(str(interval), 0) * int(item.get("intervalNum", 1))
            limit = int(item.get("limit", 0))
            if kind == "REQUEST_WEIGHT" and seconds == 60:
                found["weight_1m"] = limit
            elif kind == "ORDERS" and seconds == 10:
                found["orders_10s"] = limit
            elif kind == "ORDERS" and seconds == 60:
                found["orders_1m"] = limit
        return cls(**found)


class _Window:
    """Sliding sum of (time, amount) over ``span_s`` seconds."""

    __slots__ = ("_log", "_span_s", "total")

    def __init__(self, span_s: float) -> None:
        self._span_s = span_s
        self._log: deque[tuple[float, int]] = deque()
        self.total = 0

    def prune(self, now: float) -> None:
        horizon = now - self._span_s
        while self._log and self._log[0][0] <= horizon:
            self.total -= self._log.popleft()[1]

    def add(self, now: float, amount: int) -> None:
        if amount:
            self._log.append((now, amount))
            self.total += amount

    def free_at(self, now: float, need: int, budget: int) -> float:
        """Earliest time at which ``need`` more fits under ``budget``."""
        excess = self.total + need - budget
        for stamp, amount in self._log:
            excess -= amount
            if excess <= 0:
                return stamp + self._span_s
        return now + self._span_s


class RateLimiter:
    """Waits before a request when sending it now would cross ``headroom`` of a limit."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        headroom: float = 0.9,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.enabled = enabled
        self._headroom = headroom
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._weight = _Window(60.0)
        self._orders_10s = _Window(10.0)
        self._orders_1m = _Window(60.0)
        self._paused_until = 0.0
        # Usage reported by the exchange beyond our own log, valid until the window it came from ends.
        self._external_weight = 0
        self._external_until = 0.0
        self.set_limits(limits or Limits())

    def set_limits(self, limits: Limits) -> None:
        """Adopt the exchange's limits (from exchangeInfo)."""
        self.limits = limits
        self._budget_weight = max(1, int(limits.weight_1m * self._headroom))
        self._budget_10s = max(1, int(limits.orders_10s * self._headroom))
        self._budget_1m = max(1, int(limits.orders_1m * self._headroom))
        metrics.WEIGHT_LIMIT_1M.set(limits.weight_1m)
        metrics.ORDER_LIMIT_10S.set(limits.orders_10s)

    def _delay(self, now: float, weight: int, orders: int) -> float:
        for window in (self._weight, self._orders_10s, self._orders_1m):
            window.prune(now)
        external = self._external_weight if now < self._external_until else 0
        until = self._paused_until
        if self._weight.total + external + weight > self._budget_weight:
            if external and self._weight.total + weight <= self._budget_weight:
                until = max(until, self._external_until)
            else:
                until = max(until, self._weight.free_at(now, weight + external, self._budget_weight))
        if orders:
            if self._orders_10s.total + orders > self._budget_10s:
                until = max(until, self._orders_10s.free_at(now, orders, self._budget_10s))
            if self._orders_1m.total + orders > self._budget_1m:
                until = max(until, self._orders_1m.free_at(now, orders, self._budget_1m))
        return max(0.0, until - now)

    async def acquire(self, weight: int, orders: int = 0) -> float:
        """Reserve capacity for one request; returns the seconds spent waiting.

        With pacing disabled, the exchange's own Retry-After (see :meth:`pause`) is still obeyed:
        ignoring it is what turns a 429 into a 418 ban.
        """
        if not self.enabled:
            delay = self._paused_until - self._clock()
            deadline = SEND_BY.get() if orders else None
            if deadline is not None and delay > 0 and self._clock() + delay > deadline:
                metrics.ORDERS_SHED.inc()
                raise PacingDeadline(delay, self._clock() + delay - deadline)
            if delay > 0:
                await self._sleep(delay)
                return delay
            return 0.0
        waited = 0.0
        deadline = SEND_BY.get() if orders else None  # after the first wait: still within it
        while True:
            now = self._clock()
            delay = self._delay(now, weight, orders)
            if deadline is not None and now + delay > deadline:
                metrics.ORDERS_SHED.inc()
                raise PacingDeadline(waited + delay, now + delay - deadline)
            if delay <= 0:
                self._weight.add(now, weight)
                self._orders_10s.add(now, orders)
                self._orders_1m.add(now, orders)
                if waited:
                    metrics.RATE_LIMIT_PAUSED.labels(reason="pacing").inc(waited)
                return waited
            await self._sleep(delay)
            waited += delay

    def observe(self, used_weight_1m: int | None) -> None:
        """Account for weight the exchange reports beyond what we logged ourselves."""
        if used_weight_1m is None:
            return
        now = self._clock()
        self._weight.prune(now)
        beyond = used_weight_1m - self._weight.total
        if beyond > 0:
            # Binance's weight window is the wall-clock minute: the extra usage ends with it.
            wall = self._wall()
            self._external_weight = beyond
            self._external_until = now + (60.0 - wall % 60.0)

    def pause(self, seconds: float, reason: str) -> None:
        """Stop sending for ``seconds`` (the exchange's Retry-After after a 429/418)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until:
            metrics.RATE_LIMIT_PAUSED.labels(reason=reason).inc(
                until - max(self._paused_until, self._clock())
            )
            self._paused_until = until
