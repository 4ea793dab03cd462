"""What the executor keeps in Redis beside the stream: sliced entries' plans and CLOSE signals.

``RedisPlans``: a TWAP's or a split order's plan (``execution.entries.slices.Plan``) is written before its
first child is sent, so a restart or another instance resumes the very same schedule. Its calls
are on the order path: while Redis is away they wait for it (the consumer's :class:`RedisLink`),
at most a lease's TTL, then raise :class:`UnknownOutcomeError` so the entry stays pending for the
next attempt (never a final failure for a dropped connection).

``CloseSignals``: a CLOSE intent waits behind the working entry of its symbol (per-symbol order);
the consumer that reads it announces it here, and publishes it in Redis once another instance
holds the symbol up for it (the lead-in of the CLOSE, or of an entry queued before it here, finds
the symbol's lease held there or an older entry of the symbol pending: a working entry of another
instance holds the lease and is pending), and the working entry (a resting LIMIT, a TWAP) ends
early so the CLOSE runs now rather than after ``QUANTUM_WORKING_ORDER_MAX_S``. A CLOSE never held
up that way has no working entry of another instance before it: nothing goes to Redis for it (a
round trip saved per CLOSE). Only entries published before the CLOSE are ended: stream ids order
them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from redis.asyncio import Redis

from quantum_exec.core.errors import UnknownOutcomeError
from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.entries import id_order, text
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.store import Keys

log = get_logger(__name__)

T = TypeVar("T")

# Plans outlive any schedule (at most a day) and a restart after it.
PLAN_TTL_S = 7 * 86_400


class RedisPlans:
    """Plans by intent key (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings, link: RedisLink) -> None:
        self._redis = redis
        self._keys = Keys(settings)
        self._link = link
        # The lease is kept while Redis answers: past its TTL another attempt may own the intent.
        self._within_s = settings.lease_ttl_ms / 1000

    async def load(self, key: str) -> bytes | None:
        found = await self._retry(lambda: self._redis.get(self._keys.plan(key)), "plan_load")
        if found is None:
            return None
        return found.encode() if isinstance(found, str) else bytes(found)

    async def save(self, key: str, plan: bytes) -> None:
        await self._retry(lambda: self._redis.set(self._keys.plan(key), plan, ex=PLAN_TTL_S), "plan_save")

    async def _retry(self, call: Callable[[], Awaitable[T]], where: str) -> T:
        try:
            return await self._link.retry(call, where, within_s=self._within_s)
        except REDIS_DOWN as exc:
            raise UnknownOutcomeError(
                f"Redis unreachable for {self._within_s:g}s ({where}): left for the next attempt"
            ) from exc


CLOSE_WAITING: Final = "a CLOSE of the symbol is waiting"


class CloseSignals:
    """CLOSEs announced per symbol (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings, link: RedisLink) -> None:
        self._redis = redis
        self._keys = Keys(settings)
        # EVALSHA (the script loaded once), not EVAL with its text on every CLOSE.
        self._set_newer = redis.register_script(_SET_NEWER)
        self._link = link
        self._ttl_s = max(60, int(settings.working_order_max_s * 2))
        self._newest: dict[str, str] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def announce(self, symbol: str, stream_id: str) -> None:
        """A CLOSE of ``symbol`` was read: this instance's working entry of it ends (the consumer
        calls this; it never blocks)."""
        if self._newer(stream_id, self._newest.get(symbol)):
            self._newest[symbol] = stream_id
        self._events.setdefault(symbol, asyncio.Event()).set()

    def publish(self, symbol: str, stream_id: str) -> None:
        """The announced CLOSE waits for another instance (see the module docstring): its working
        entry of ``symbol`` looks for it in Redis. Sent by a task (the caller never blocks)."""
        task = asyncio.get_running_loop().create_task(self._publish(symbol, stream_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, symbol: str, stream_id: str | None, timeout_s: float) -> str | None:
        """``CLOSE_WAITING`` once a CLOSE of ``symbol`` newer than ``stream_id`` is waiting (here
        or elsewhere), else None."""
        if self._newer(self._newest.get(symbol), stream_id):
            return CLOSE_WAITING
        try:
            # One try: the caller asks again on its next poll (a working entry polls the exchange
            # too and must not stall on Redis).
            remote = await self._link.retry(
                lambda: self._redis.get(self._keys.close_signal(symbol)), "close_signal", within_s=0
            )
        except REDIS_DOWN:
            remote = None  # the local signal still works; another instance's waits for the entry
        if remote is not None and self._newer(text(remote), stream_id):
            return CLOSE_WAITING
        if timeout_s > 0:
            event = self._events.setdefault(symbol, asyncio.Event())
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout_s)
        return CLOSE_WAITING if self._newer(self._newest.get(symbol), stream_id) else None

    async def _publish(self, symbol: str, stream_id: str) -> None:
        try:
            # Keep the newest: a CLOSE read late (a claim) must not hide a newer one. Worth
            # retrying while the signal would still be read (the working entries of other
            # instances wait for it).
            await self._link.retry(
                lambda: self._set_newer(
                    keys=[self._keys.close_signal(symbol)], args=[stream_id, self._ttl_s]
                ),
                "close_signal",
                within_s=self._ttl_s,
            )
        except REDIS_DOWN as exc:
            log.warning("close_signal.not_published", symbol=symbol, detail=str(exc))

    @staticmethod
    def _newer(candidate: str | None, than: str | None) -> bool:
        if candidate is None:
            return False
        return than is None or id_order(candidate) > id_order(than)


_SET_NEWER = """
local cur = redis.call('GET', KEYS[1])
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
if cur then
  local cm, cs = parts(cur)
  local nm, ns = parts(ARGV[1])
  if cm and nm and (cm > nm or (cm == nm and cs >= ns)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""
