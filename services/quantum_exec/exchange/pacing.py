"""Client-side pacing below Binance's limits, so the account is never rate-limited or banned.

Binance counts REQUEST_WEIGHT per minute and ORDERS per 10 s and per minute in fixed windows. We
keep a sliding log of what *we* sent: a sliding count is never below the fixed-window count, so
staying under the limits in the log keeps us under them on the exchange. The response headers
(``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S/1M``) add usage we did not send ourselves
(another process on the same account or IP), and a 429/418 ``Retry-After`` pauses everything.

Several instances on one account share the budget (:meth:`RateLimiter.share`, fed every second
by :mod:`quantum_exec.stream.shared_pacing`): each keeps its own log under ``budget / N`` of every
window, where ``N`` is the largest number of live instances seen within that window (it shrinks at
once when an instance joins, and grows only once a departed instance's requests have left the
window), and the usage the others reported with their heartbeat counts against the whole budget
beside our own.

When the order budget is short, the order requests held go out by :class:`Priority` (protective
legs and the emergency close first, then closes, then entries; the same priority in arrival order):
each request counts the orders held before it as already sent, so a protective leg asked for in a
burst of entries takes the next free slot and the entries wait behind it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from quantum_exec.core.ids import Role
from quantum_exec.ops import metrics

# The wall-clock time (epoch seconds) by which an order request must leave, or None. The executor
# sets it around an entry: its intent's TTL counted from the origin the TTL guard uses
# (``Run.send_by``), on the same wall clock. An entry that pacing would hold past it is not sent at
# all (shed), so a burst above the exchange's order limits never executes an intent after it went
# stale. Protective orders and closes never carry one: they are never shed.
SEND_BY: ContextVar[float | None] = ContextVar("quantum_send_by", default=None)


class Priority(IntEnum):
    """Which held order request pacing lets go first (the lowest value)."""

    PROTECT = 0  # a protective leg or the emergency close: a position is exposed until it leaves
    CLOSE = 1  # a CLOSE's order: exposure the producer asked to end
    ENTRY = 2  # a new entry: it opens exposure, and is shed at its intent's TTL


# An order's priority by the role its client id names (:func:`quantum_exec.core.ids.role_of`).
ROLE_PRIORITY: Final[Mapping[Role, Priority]] = {
    "flatten": Priority.PROTECT,
    "sl": Priority.PROTECT,
    "tp": Priority.PROTECT,
    "trail": Priority.PROTECT,
    "close": Priority.CLOSE,
    "entry": Priority.ENTRY,
}


class PacingDeadline(Exception):
    """Pacing would hold an order request past its :data:`SEND_BY`; nothing was sent."""

    def __init__(self, wait_s: float, late_s: float) -> None:
        super().__init__(f"pacing would wait {wait_s:.2f} s, {late_s:.2f} s past the deadline")
        self.wait_s = wait_s
        self.late_s = late_s


# Checks against the others' reported usage, which changes only with their next report, wait at
# most this long before looking again (the heartbeat period of the shared pacing).
RECHECK_S = 1.0
# The longest window: an instance count older than this no longer limits any window.
LONGEST_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What was sent within each window: weight in the last minute, orders in 10 s and in a minute."""

    weight_1m: int = 0
    orders_10s: int = 0
    orders_1m: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.weight_1m + other.weight_1m,
            self.orders_10s + other.orders_10s,
            self.orders_1m + other.orders_1m,
        )

    def encode(self) -> str:
        """The compact form an instance's heartbeat carries: ``weight,orders10s,orders1m``."""
        return f"{self.weight_1m},{self.orders_10s},{self.orders_1m}"

    @classmethod
    def decode(cls, raw: str | bytes) -> Usage:
        """Parse :meth:`encode`; anything unreadable counts as nothing sent."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            weight, orders_10s, orders_1m = (max(0, int(x)) for x in text.split(","))
        except ValueError:
            return cls()
        return cls(weight, orders_10s, orders_1m)


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
        # Instance counts as (since, N), oldest first; the first entry is in force before the others.
        self._instances: deque[tuple[float, int]] = deque([(float("-inf"), 1)])
        # What the other instances reported they sent, and until when that report is trusted.
        self._others = Usage()
        self._others_until = 0.0
        # The order requests waiting for a slot as (priority, arrival, orders), in the order they go.
        self._held: list[tuple[int, int, int]] = []
        self._arrivals = itertools.count()
        self.set_limits(limits or Limits())

    def set_limits(self, limits: Limits) -> None:
        """Adopt the exchange's limits (from exchangeInfo)."""
        self.limits = limits
        self._budget_weight = max(1, int(limits.weight_1m * self._headroom))
        self._budget_10s = max(1, int(limits.orders_10s * self._headroom))
        self._budget_1m = max(1, int(limits.orders_1m * self._headroom))
        metrics.WEIGHT_LIMIT_1M.set(limits.weight_1m)
        metrics.ORDER_LIMIT_10S.set(limits.orders_10s)

    def share(self, instances: int, others: Usage, valid_s: float) -> None:
        """Share the budget with ``instances`` live instances (this one included).

        ``others`` is what the other instances reported they sent in each window; it is trusted
        for ``valid_s`` (a report not renewed by then, e.g. while Redis is down, is ignored and
        only the share limits this instance).
        """
        now = self._clock()
        instances = max(1, instances)
        if instances != self._instances[-1][1]:
            self._instances.append((now, instances))
        horizon = now - LONGEST_WINDOW_S
        while len(self._instances) > 1 and self._instances[1][0] <= horizon:
            self._instances.popleft()
        self._others = others
        self._others_until = now + valid_s
        metrics.PACING_INSTANCES.set(instances)

    def instances(self, span_s: float = LONGEST_WINDOW_S) -> int:
        """The largest instance count in force within the last ``span_s`` seconds.

        A window's share is its budget divided by this: an instance that left still has requests
        in the window until it has slid past them, so the share grows only after that.
        """
        horizon = self._clock() - span_s
        found = 1
        counts = list(self._instances)
        for i, (_since, n) in enumerate(counts):
            ends = counts[i + 1][0] if i + 1 < len(counts) else float("inf")
            if ends > horizon:
                found = max(found, n)
        return found

    def usage(self) -> Usage:
        """What this instance sent within each window (its own log)."""
        now = self._clock()
        for window in (self._weight, self._orders_10s, self._orders_1m):
            window.prune(now)
        return Usage(self._weight.total, self._orders_10s.total, self._orders_1m.total)

    def _delay(self, now: float, weight: int, orders: int) -> float:
        for window in (self._weight, self._orders_10s, self._orders_1m):
            window.prune(now)
        external = self._external_weight if now < self._external_until else 0
        others = self._others if now < self._others_until else Usage()
        until = self._paused_until
        if self._weight.total + external + weight > self._budget_weight:
            if external and self._weight.total + weight <= self._budget_weight:
                until = max(until, self._external_until)
            else:
                until = max(until, self._weight.free_at(now, weight + external, self._budget_weight))
        checks = [(self._weight, weight, self._budget_weight, others.weight_1m, 60.0)]
        if orders:
            checks.append((self._orders_10s, orders, self._budget_10s, others.orders_10s, 10.0))
            checks.append((self._orders_1m, orders, self._budget_1m, others.orders_1m, 60.0))
        for window, need, budget, reported, span_s in checks:
            if not need:
                continue
            share = max(1, budget // self.instances(span_s))
            if window.total + need > share:
                until = max(until, window.free_at(now, need, share))
            if window.total + reported + need > budget:
                # The others' usage changes only with their next report: look again by then.
                until = max(until, min(window.free_at(now, need + reported, budget), now + RECHECK_S))
        return max(0.0, until - now)

    async def acquire(self, weight: int, orders: int = 0, priority: Priority = Priority.ENTRY) -> float:
        """Reserve capacity for one request; returns the seconds spent waiting.

        An order request (``orders`` > 0) goes after the order requests held with a higher
        ``priority``, or the same one and held longer; one with a :data:`SEND_BY` deadline that
        it would miss is shed (:class:`PacingDeadline`) as soon as that is known, without waiting.
        With pacing disabled, the exchange's own Retry-After (see :meth:`pause`) is still obeyed:
        ignoring it is what turns a 429 into a 418 ban.
        """
        deadline = SEND_BY.get() if orders else None
        if not self.enabled:
            delay = self._paused_until - self._clock()
            if deadline is not None and delay > 0:
                self._check_deadline(deadline, delay, 0.0)
            if delay > 0:
                await self._sleep(delay)
                return delay
            return 0.0
        waited = 0.0
        place = (int(priority), next(self._arrivals)) if orders else None
        held: tuple[int, int, int] | None = None
        try:
            while True:
                now = self._clock()
                ahead = self._ahead(place) if place is not None else 0
                delay = self._delay(now, weight, orders + ahead)
                if deadline is not None:
                    self._check_deadline(deadline, delay, waited)
                if delay <= 0:
                    self._weight.add(now, weight)
                    self._orders_10s.add(now, orders)
                    self._orders_1m.add(now, orders)
                    if waited:
                        metrics.RATE_LIMIT_PAUSED.labels(reason="pacing").inc(waited)
                    return waited
                if place is not None and held is None:
                    held = (*place, orders)
                    insort(self._held, held)
                    metrics.PACING_HELD.set(len(self._held))
                await self._sleep(delay)
                waited += delay
        finally:
            if held is not None:
                self._held.remove(held)
                metrics.PACING_HELD.set(len(self._held))

    def _ahead(self, place: tuple[int, int]) -> int:
        """The orders held before ``place`` (priority, arrival): they take the next slots."""
        held = self._held
        if not held:
            return 0
        return sum(item[2] for item in held[: bisect_left(held, place)])

    def _check_deadline(self, deadline: float, delay: float, waited: float) -> None:
        """Shed a request that would leave after ``deadline`` (wall clock, like :data:`SEND_BY`)."""
        late = self._wall() + delay - deadline
        if late > 0:
            metrics.ORDERS_SHED.inc()
            raise PacingDeadline(waited + delay, late)

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
