"""Client-side pacing, driven by a fake clock (no real waiting)."""

from __future__ import annotations

import pytest

from quantum_exec.exchange.pacing import SEND_BY, Limits, PacingDeadline, RateLimiter, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(limits: Limits, clock: FakeClock, headroom: float = 1.0) -> RateLimiter:
    return RateLimiter(limits, headroom=headroom, clock=clock, wall_clock=clock, sleep=clock.sleep)


async def test_orders_are_paced_within_the_10s_window() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=5, orders_1m=1000), clock)
    for _ in range(5):
        assert await limiter.acquire(weight=0, orders=1) == 0
    waited = await limiter.acquire(weight=0, orders=1)
    assert waited == pytest.approx(10.0)
    assert clock.slept == [pytest.approx(10.0)]


async def test_sends_in_any_10s_window_never_exceed_the_budget() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=300, orders_1m=1200), clock, headroom=0.9)
    stamps = []
    for _ in range(1000):
        await limiter.acquire(weight=1, orders=1)
        stamps.append(clock.now)
        clock.now += 0.001
    for i, start in enumerate(stamps):
        in_10s = sum(1 for t in stamps[i:] if t < start + 10.0)
        assert in_10s <= 270
    minute = [t for t in stamps if t < stamps[0] + 60.0]
    assert len(minute) <= 1080


async def test_an_order_pacing_would_hold_past_its_deadline_is_shed_without_waiting() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=2, orders_1m=1000), clock)
    token = SEND_BY.set(clock.now + 3.0)
    try:
        assert await limiter.acquire(weight=1, orders=1) == 0
        assert await limiter.acquire(weight=1, orders=1) == 0
        with pytest.raises(PacingDeadline) as shed:
            await limiter.acquire(weight=1, orders=1)  # the next slot is 10 s away, the deadline 3 s
        assert shed.value.wait_s == pytest.approx(10.0) and shed.value.late_s == pytest.approx(7.0)
        assert clock.slept == []  # shed at once: no time spent waiting for a slot it cannot use
        assert await limiter.acquire(weight=1) == 0  # a request that is not an order is not shed
    finally:
        SEND_BY.reset(token)
    # Without a deadline (a protective order, a close) the same request waits for its slot.
    assert await limiter.acquire(weight=1, orders=1) == pytest.approx(10.0)


async def test_weight_budget_uses_headroom() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=100, orders_10s=300, orders_1m=1200), clock, headroom=0.9)
    for _ in range(18):
        assert await limiter.acquire(weight=5) == 0
    assert await limiter.acquire(weight=5) > 0


async def test_retry_after_pauses_everything() -> None:
    clock = FakeClock()
    limiter = make(Limits(), clock)
    limiter.pause(7.5, reason="http_429")
    assert await limiter.acquire(weight=1) == pytest.approx(7.5)


async def test_external_usage_from_headers_is_respected() -> None:
    clock = FakeClock()
    clock.now = 6000.0  # a whole minute on the wall clock
    limiter = make(Limits(weight_1m=100, orders_10s=300, orders_1m=1200), clock)
    limiter.observe(used_weight_1m=98)  # someone else used the account's weight this minute
    waited = await limiter.acquire(weight=5)
    assert waited == pytest.approx(60.0)


async def test_disabled_pacing_still_obeys_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Limits(orders_10s=1), enabled=False, clock=clock, sleep=clock.sleep)
    limiter.pause(3.0, reason="http_429")
    assert await limiter.acquire(weight=1, orders=1) == pytest.approx(3.0)
    assert await limiter.acquire(weight=1, orders=1) == 0


async def test_disabled_limiter_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Limits(orders_10s=1), enabled=False, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        assert await limiter.acquire(weight=1, orders=1) == 0


def test_limits_from_exchange_info() -> None:
    raw = {
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ]
    }
    assert Limits.from_exchange_info(raw) == Limits(weight_1m=2400, orders_10s=300, orders_1m=1200)


async def test_two_instances_each_pace_to_half_of_the_budget() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=300, orders_1m=1200), clock, headroom=0.9)
    limiter.share(instances=2, others=Usage(), valid_s=3.0)
    for _ in range(135):  # 270 / 2
        assert await limiter.acquire(weight=1, orders=1) == 0
    assert await limiter.acquire(weight=1, orders=1) == pytest.approx(10.0)


async def test_four_instances_divide_the_weight_budget() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=2400, orders_10s=300, orders_1m=1200), clock, headroom=0.9)
    limiter.share(instances=4, others=Usage(), valid_s=3.0)
    for _ in range(54):  # 2160 / 4 = 540 weight, 10 per request
        assert await limiter.acquire(weight=10) == 0
    assert await limiter.acquire(weight=10) == pytest.approx(60.0)


async def test_the_share_shrinks_at_once_and_grows_only_after_the_window() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=100, orders_1m=10_000), clock)
    limiter.share(instances=2, others=Usage(), valid_s=3.0)
    assert limiter.instances(10.0) == 2
    clock.now += 5.0
    limiter.share(instances=1, others=Usage(), valid_s=3.0)  # the other instance left
    # Its requests of the last 10 s still count on the exchange: the 10 s share stays at half ...
    assert limiter.instances(10.0) == 2
    for _ in range(50):
        assert await limiter.acquire(weight=0, orders=1) == 0
    assert await limiter.acquire(weight=0, orders=1) == pytest.approx(10.0)
    # ... until the window has slid past the moment it left.
    assert limiter.instances(10.0) == 1
    clock.now += 10.0
    for _ in range(100):
        assert await limiter.acquire(weight=0, orders=1) == 0
    limiter.share(instances=3, others=Usage(), valid_s=3.0)  # a third joins: shrink now
    assert limiter.instances(10.0) == 3


async def test_usage_the_others_reported_counts_against_the_whole_budget() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=100, orders_1m=10_000), clock)
    # A joiner: the instance already there sent 90 orders in the last 10 s (before it shrank).
    limiter.share(instances=2, others=Usage(orders_10s=90, orders_1m=90), valid_s=3.0)
    for _ in range(10):
        assert await limiter.acquire(weight=0, orders=1) == 0
    # 10 + 90 = the whole budget: wait for the next report, not for a whole window.
    token = SEND_BY.set(clock.now + 0.5)
    try:
        with pytest.raises(PacingDeadline):
            await limiter.acquire(weight=0, orders=1)
    finally:
        SEND_BY.reset(token)
    clock.now += 1.0
    limiter.share(instances=2, others=Usage(orders_10s=40, orders_1m=90), valid_s=3.0)
    assert await limiter.acquire(weight=0, orders=1) == 0


async def test_a_report_not_renewed_is_ignored_and_the_share_still_holds() -> None:
    clock = FakeClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=100, orders_1m=10_000), clock)
    limiter.share(instances=2, others=Usage(orders_10s=100), valid_s=3.0)
    clock.now += 3.0  # no report since (Redis unreachable): only the share of 50 applies
    for _ in range(50):
        assert await limiter.acquire(weight=0, orders=1) == 0
    assert await limiter.acquire(weight=0, orders=1) == pytest.approx(10.0)


def test_usage_round_trips_through_the_heartbeat_form() -> None:
    usage = Usage(weight_1m=120, orders_10s=7, orders_1m=30)
    assert Usage.decode(usage.encode()) == usage
    assert Usage.decode(b"120,7,30") == usage
    assert Usage.decode("garbage") == Usage()
    assert usage + Usage(1, 2, 3) == Usage(121, 9, 33)
