"""Binance's request-weight and order-count limits: fixed windows, 429 past a limit, 418 bans (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MINUTE_MS: Final = 60_000
TEN_SECONDS_MS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits exchangeInfo advertises, plus how long a client may ignore 429s before a ban."""

    weight_per_minute: int = 2400
    orders_per_10s: int = 300
    orders_per_minute: int = 1200
    ban_after_429s: int = 20
    ban_s: int = 120


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one request: counters for the headers and, when refused, the reply to send."""

    used_weight: int
    orders_10s: int
    orders_1m: int
    status: int = 200
    code: int = 0
    msg: str = ""
    retry_after_s: int = 0

    @property
    def allowed(self) -> bool:
        """True when the request may proceed."""
        return self.status == 200


@dataclass(slots=True)
class _Window:
    start: int = -1
    count: int = 0

    def add(self, now_ms: int, size_ms: int, amount: int) -> int:
        start = now_ms - now_ms % size_ms
        if start != self.start:
            self.start, self.count = start, 0
        self.count += amount
        return self.count

    def peek(self, now_ms: int, size_ms: int) -> int:
        return self.count if now_ms - now_ms % size_ms == self.start else 0


@dataclass(slots=True)
class _IpState:
    weight: _Window = field(default_factory=_Window)
    rejections: _Window = field(default_factory=_Window)
    banned_until_ms: int = 0


class RateLimiter:
    """Counts weight per IP and new orders per account, like Binance's fixed 1m / 10s windows."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._ips: dict[str, _IpState] = {}
        self._orders_10s = _Window()
        self._orders_1m = _Window()

    def reset(self) -> None:
        """Forget all counters and bans."""
        self._ips.clear()
        self._orders_10s = _Window()
        self._orders_1m = _Window()

    def check(self, ip: str, weight: int, *, is_order: bool, now_ms: int, enforce: bool = True) -> Verdict:
        """Count one request and decide whether it may proceed (always, when ``enforce`` is off)."""
        state = self._ips.get(ip)
        if state is None:
            state = self._ips[ip] = _IpState()
        limits = self.limits
        if enforce and state.banned_until_ms > now_ms:
            return Verdict(
                used_weight=state.weight.peek(now_ms, MINUTE_MS),
                orders_10s=self._orders_10s.peek(now_ms, TEN_SECONDS_MS),
                orders_1m=self._orders_1m.peek(now_ms, MINUTE_MS),
                status=418,
                code=-1003,
                msg=f"Way too many requests; IP({ip}) banned until {state.banned_until_ms}. "
                "Please use the websocket for live updates to avoid bans.",
                retry_after_s=-(-(state.banned_until_ms - now_ms) // 1000),
            )
        used = state.weight.add(now_ms, MINUTE_MS, weight)
        orders_10s = self._orders_10s.add(now_ms, TEN_SECONDS_MS, 1 if is_order else 0)
        orders_1m = self._orders_1m.add(now_ms, MINUTE_MS, 1 if is_order else 0)
        refusal = self._refusal(ip, used, orders_10s if is_order else 0, orders_1m if is_order else 0, now_ms)
        if not enforce or refusal is None:
            return Verdict(used, orders_10s, orders_1m)
        if state.rejections.add(now_ms, MINUTE_MS, 1) > limits.ban_after_429s:
            state.banned_until_ms = now_ms + limits.ban_s * 1000
            return self.check(ip, 0, is_order=False, now_ms=now_ms)
        code, msg, retry_after = refusal
        return Verdict(used, orders_10s, orders_1m, status=429, code=code, msg=msg, retry_after_s=retry_after)

    def _refusal(
        self, ip: str, used: int, orders_10s: int, orders_1m: int, now_ms: int
    ) -> tuple[int, str, int] | None:
        limits = self.limits
        refusal: tuple[int, str, int] | None = None
        if used > limits.weight_per_minute:
            refusal = (
                -1003,
                f"Too many requests; current limit of IP({ip}) is {limits.weight_per_minute} "
                "requests per minute. "
                "Please use the websocket for live updates to avoid polling the API.",
                _until_next(now_ms, MINUTE_MS),
            )
        elif orders_10s > limits.orders_per_10s:
            refusal = (
                -1015,
                f"Too many new orders; current limit is {limits.orders_per_10s} orders per TEN_SECONDS.",
                _until_next(now_ms, TEN_SECONDS_MS),
            )
        elif orders_1m > limits.orders_per_minute:
            refusal = (
                -1015,
                f"Too many new orders; current limit is {limits.orders_per_minute} orders per MINUTE.",
                _until_next(now_ms, MINUTE_MS),
            )
        return refusal


def _until_next(now_ms: int, size_ms: int) -> int:
    return max(1, -(-(size_ms - now_ms % size_ms) // 1000))
