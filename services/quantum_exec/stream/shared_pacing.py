"""The pacing budget shared by the instances of one account, through Redis.

Binance's limits are per account (orders) and per IP (weight), not per process. Every second each
instance writes a heartbeat with what it sent in each window (``P:pacing:instances``, scored with
the Redis time its heartbeat expires, and ``P:pacing:usage``; see :class:`~quantum_exec.stream.
store.Keys`) and reads the others' in the same script. Its :class:`~.pacing.RateLimiter` then keeps
to ``budget / N`` of every window and counts the others' reported usage against the whole budget.
No request waits on Redis: the hot path reads only what the last heartbeat left in memory.

The trade-off: a burst on one instance while the others idle is capped at ``1/N`` of the budget,
because an instance cannot know, without a round trip per request, that the others will stay
idle for the rest of the window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from redis.asyncio import Redis

from quantum_exec.core.aio import cancel_task
from quantum_exec.exchange.pacing import RateLimiter, Usage
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.store import Keys

log = get_logger(__name__)

# A heartbeat every second; an instance not heard from for three is no longer counted.
HEARTBEAT_S: Final = 1.0
HEARTBEAT_TTL_S: Final = 3.0
# The two keys outlive the last instance by this long, so nothing is left behind for good.
KEYS_TTL_MS: Final = 120_000

# KEYS: instances (zset), usage (hash). ARGV: member, heartbeat ttl ms, usage, keys ttl ms.
# Drops the instances whose heartbeat expired (Redis's clock, so the hosts' clocks do not matter),
# renews ours and returns ours as it was before (a restarted instance's predecessor) and all usage.
_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('HDEL', KEYS[2], unpack(gone))
end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {previous or '', redis.call('HGETALL', KEYS[2])}
"""

# KEYS: instances, usage. ARGV: member. A clean stop leaves at once (the others' shares still grow
# only once its requests have left the windows).
_LEAVE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""


def tally(usage_by_member: Mapping[str, str], me: str, previous: str) -> tuple[int, Usage]:
    """The live instance count and the others' usage, from the usage hash after our heartbeat.

    ``previous`` is what our own entry held before this heartbeat when we have not reported yet
    (a restart within the heartbeat's TTL): our predecessor's requests are still in the windows
    and are in none of our logs, so they count as the others'.
    """
    others = Usage.decode(previous) if previous else Usage()
    for member, raw in usage_by_member.items():
        if member != me:
            others = others + Usage.decode(raw)
    return max(1, len(usage_by_member)), others


class SharedPacing:
    """This instance's heartbeat, and the limiter's share of the account's budget from it."""

    def __init__(self, redis: Redis, keys: Keys, member: str, limiter: RateLimiter) -> None:
        self._redis = redis
        self._keys = [keys.pacing_instances(), keys.pacing_usage()]
        self._member = member
        self._limiter = limiter
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._leave = redis.register_script(_LEAVE)
        self._reported = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Report once before the first intent (errors are logged: pacing then is per instance),
        then every second."""
        await self._beat_logged()
        self._task = asyncio.create_task(self._run(), name="pacing-heartbeat")

    async def beat(self) -> int:
        """One heartbeat: report our usage, adopt the share; returns the live instance count."""
        reply = await self._heartbeat(
            keys=self._keys,
            args=[self._member, int(HEARTBEAT_TTL_S * 1000), self._limiter.usage().encode(), KEYS_TTL_MS],
        )
        previous, flat = reply
        pairs = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        instances, others = tally(pairs, self._member, "" if self._reported else _text(previous))
        self._reported = True
        # Trusted until the next heartbeat is overdue: without one, only the share limits us.
        self._limiter.share(instances, others, valid_s=HEARTBEAT_TTL_S)
        return instances

    async def _beat_logged(self) -> None:
        try:
            await self.beat()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.TASK_FAILURES.labels(task="pacing").inc()
            log.warning("pacing.heartbeat_failed", error=type(exc).__name__, detail=str(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._beat_logged()

    async def stop(self) -> None:
        """Stop the heartbeat and leave the instance set; safe to call twice."""
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_task(task)
        try:
            await asyncio.wait_for(self._leave(keys=self._keys, args=[self._member]), LEAVE_TIMEOUT_S)
        except Exception as exc:
            log.warning("pacing.leave_failed", error=type(exc).__name__)


LEAVE_TIMEOUT_S = 1.0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
