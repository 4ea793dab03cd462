"""Client-side pacing, driven by a fake clock (no real waiting)."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from quantum_exec.exchange.pacing import SEND_BY, Limits, PacingDeadline, Priority, RateLimiter, Usage
from quantum_exec.ops import metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class VirtualClock:
    """Time that moves only when the test advances it: concurrent waiters sleep until then."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    async def advance(self, seconds: float) -> None:
        """Move to ``now + seconds``, waking every sleeper due on the way in time order."""
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _n, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not woken.done():
                woken.set_result(None)
            await settle()
        self.now = target
        await settle()


async def settle() -> None:
    """Let every task that can run, run (each woken waiter sends or sleeps again)."""
    for _ in range(10):
        await asyncio.sleep(0)


def make(limits: Limits, clock: FakeClock | VirtualClock, headroom: float = 1.0) -> RateLimiter:
    return RateLimiter(limits, headroom=headroom, clock=clock, wall_clock=clock, sleep=clock.sleep)


def held() -> float:
    return metrics.REGISTRY.get_sample_value("quantum_exec_pacing_held_orders") or 0.0


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


async def test_held_orders_go_legs_and_emergency_closes_first_then_closes_then_entries() -> None:
    clock = VirtualClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=2, orders_1m=1000), clock)
    for _ in range(2):
        assert await limiter.acquire(weight=0, orders=1) == 0  # the window is full until +10 s
    sent: list[str] = []

    async def send(name: str, priority: Priority) -> None:
        await limiter.acquire(weight=0, orders=1, priority=priority)
        sent.append(name)

    async with asyncio.TaskGroup() as group:
        for n in range(3):  # a burst of entries is held first ...
            group.create_task(send(f"entry-{n}", Priority.ENTRY))
        await settle()
        # ... then a close, a protective leg and an emergency close are asked for
        group.create_task(send("close", Priority.CLOSE))
        group.create_task(send("sl", Priority.PROTECT))
        group.create_task(send("flatten", Priority.PROTECT))
        await settle()
        assert sent == [] and held() == 6
        windows = []
        for _ in range(3):  # two slots free every 10 s
            await clock.advance(10.0)
            windows.append(set(sent[2 * len(windows) :]))
    assert windows == [{"sl", "flatten"}, {"close", "entry-0"}, {"entry-1", "entry-2"}]
    assert held() == 0
    assert limiter.usage().orders_10s == 2  # never more than the budget in any 10 s


async def test_a_held_entry_is_shed_before_its_deadline_once_legs_go_ahead_of_it() -> None:
    clock = VirtualClock()
    limiter = make(Limits(weight_1m=10_000, orders_10s=4, orders_1m=1000), clock)
    for _ in range(2):
        await limiter.acquire(weight=0, orders=1)  # 2 slots free at 1010 ...
    await clock.advance(5.0)
    for _ in range(2):
        await limiter.acquire(weight=0, orders=1)  # ... and 2 at 1015
    sent: list[str] = []

    async def send(name: str, priority: Priority, send_by: float | None = None) -> None:
        token = SEND_BY.set(send_by)
        try:
            await limiter.acquire(weight=0, orders=1, priority=priority)
        finally:
            SEND_BY.reset(token)
        sent.append(name)

    entry = asyncio.create_task(send("entry", Priority.ENTRY, send_by=1013.0))  # fits at 1010
    await settle()
    assert not entry.done()
    legs = [asyncio.create_task(send(leg, Priority.PROTECT)) for leg in ("sl", "tp")]
    await settle()
    # The legs take the slots of 1010: the entry's turn moves to 1015, past its deadline.
    late = asyncio.create_task(send("late entry", Priority.ENTRY, send_by=1013.0))
    await settle()
    with pytest.raises(PacingDeadline):
        await late  # shed on arrival: two legs are held before it
    await clock.advance(5.0)
    await asyncio.gather(*legs)
    with pytest.raises(PacingDeadline) as shed:
        await entry
    assert clock.now == 1010.0 and sent == ["sl", "tp"]
    assert shed.value.late_s == pytest.approx(2.0)


async def test_the_send_by_deadline_is_on_the_wall_clock() -> None:
    clock = FakeClock()  # monotonic, near 1000
    wall = 1_700_000_000.0
    limiter = RateLimiter(
        Limits(weight_1m=10_000, orders_10s=1, orders_1m=1000),
        headroom=1.0,
        clock=clock,
        wall_clock=lambda: wall,
        sleep=clock.sleep,
    )
    assert await limiter.acquire(weight=0, orders=1) == 0
    token = SEND_BY.set(wall + 3.0)  # the intent's TTL ends 3 s from now on the wall clock
    try:
        with pytest.raises(PacingDeadline):
            await limiter.acquire(weight=0, orders=1)  # the next slot is 10 s away
    finally:
        SEND_BY.reset(token)
    token = SEND_BY.set(wall + 11.0)
    try:
        assert await limiter.acquire(weight=0, orders=1) == pytest.approx(10.0)
    finally:
        SEND_BY.reset(token)
