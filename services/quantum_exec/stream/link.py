"""The consumer's view of its Redis connection: lost and restored, and retries while it is away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quantum_exec.backoff import Backoff
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
# Errors after which the client reconnects by itself on the next command.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisLink:
    """Tracks whether Redis is reachable (logged and counted once per outage) and retries calls."""

    def __init__(self, reconnect_max_s: float) -> None:
        self.down = False
        self.retry_policy = Backoff(base_s=0.05, cap_s=reconnect_max_s)

    def lost(self, exc: BaseException, where: str) -> None:
        """A call failed for want of Redis."""
        if not self.down:
            self.down = True
            metrics.REDIS_RECONNECTS.inc()
            log.warning("redis.connection_lost", where=where, error=str(exc))

    def up(self) -> None:
        """A call went through."""
        if self.down:
            self.down = False
            log.info("redis.connection_restored")

    async def retry(self, call: Callable[[], Awaitable[T]], where: str) -> T:
        """Run a Redis call until it gets through; only for idempotent calls."""
        waits = self.retry_policy.delays()
        while True:
            try:
                value = await call()
            except REDIS_DOWN as exc:
                self.lost(exc, where)
                await asyncio.sleep(next(waits))
                continue
            self.up()
            return value
