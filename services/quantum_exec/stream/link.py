"""The consumer's view of its Redis connection: lost and restored, and retries while it is away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quantum_exec.core.backoff import Backoff
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
# Errors after which the client reconnects by itself on the next command.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# After an outage, for this long an intent whose begin record is missing may have lost it with
# the outage (an asynchronous failover, a restart that lost the last second of writes): its
# orders are looked up before the first send. Redeliveries after the outage arrive within it.
LOST_WRITES_WINDOW_S = 60.0


class RedisLink:
    """Tracks whether Redis is reachable (logged and counted once per outage) and retries calls."""

    def __init__(self, reconnect_max_s: float) -> None:
        self.down = False
        self.retry_policy = Backoff(base_s=0.05, cap_s=reconnect_max_s)
        # Monotonic times: when this process first saw the last outage, and when it ended.
        self.lost_at: float | None = None
        self.restored_at: float | None = None

    def lost(self, exc: BaseException, where: str) -> None:
        """A call failed for want of Redis."""
        if isinstance(exc, MaxConnectionsError):
            # The client's own pool is exhausted: Redis is fine and lost nothing (the caller
            # retries); taking it for an outage would send every intent of the next minute to
            # look its orders up first.
            log.warning("redis.pool_exhausted", where=where)
            return
        if not self.down:
            self.down = True
            self.lost_at = time.monotonic()
            metrics.REDIS_RECONNECTS.inc()
            log.warning("redis.connection_lost", where=where, error=str(exc))

    def up(self) -> None:
        """A call went through."""
        if self.down:
            self.down = False
            self.restored_at = time.monotonic()
            log.info("redis.connection_restored")

    def writes_maybe_lost_since(self) -> float | None:
        """Start of a recent outage that may have lost acknowledged writes, or None.

        Every order of an attempt is sent within ``FENCE_FRESH_S`` of a fence confirmed by Redis
        (:meth:`.leases.Leases.owner_check`), so the orders of an attempt whose records the outage
        lost left no later than its start plus ``FENCE_FRESH_S``: the caller adds that window
        (:func:`.recovery.attempt_of`), this is the outage's start alone.
        """
        if self.lost_at is None:
            return None
        if self.down or (
            self.restored_at is not None and time.monotonic() - self.restored_at < LOST_WRITES_WINDOW_S
        ):
            return self.lost_at
        return None

    async def retry(
        self, call: Callable[[], Awaitable[T]], where: str, *, within_s: float | None = None
    ) -> T:
        """Run a Redis call until it gets through; only for idempotent calls.

        ``within_s``: Redis's last error is raised once the call has failed for that long (a
        caller bounded by its lease leaves its entry pending instead of waiting on).
        """
        waits = self.retry_policy.delays()
        give_up_at = None if within_s is None else time.monotonic() + within_s
        while True:
            try:
                value = await call()
            except REDIS_DOWN as exc:
                self.lost(exc, where)
                wait = next(waits)
                if give_up_at is not None:
                    left = give_up_at - time.monotonic()
                    if left <= 0:
                        raise
                    wait = min(wait, left)
                await asyncio.sleep(wait)
                continue
            self.up()
            return value
