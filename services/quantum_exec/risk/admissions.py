"""The moment of a transition that restricts trading (to REDUCING or HALTED), made exact across
instances: no entry order reaches the exchange after the time its risk event names.

An entry the gate admits is recorded in ``<prefix>:risk:admitted`` (a sorted set: the intent key,
scored with the Redis time its record expires) in one script with the check that the state's
``seq`` is still the one the gate decided on; the record is removed once the entry's first order
has its answer from the exchange, or the entry was refused before sending it (:meth:`settled`).
A restricting transition first closes the door: a token in ``<prefix>:risk:closing`` (scored with
its expiry) makes every admission wait; then it waits until no admitted entry is left (every one
has reached the exchange, its order's transaction time already in the past, or was refused), and
only then writes the state and its event (:meth:`.store.RiskStore.transition`) with that time, and
opens the door. The waiting entries read the new state and are refused.

An entry whose send ended without an answer (a timeout: the order may still arrive) keeps its
record until it expires (:data:`ADMITTED_TTL_MS`); the transition waits at most
:data:`DRAIN_DEADLINE_S` and then goes ahead, its event saying how many entries were still unsettled
(``drain.unsettled``): the only case in which an entry order may reach the exchange after the
event's time... unless that entry has not left yet: a transition that goes ahead with entries
unsettled revokes their admissions (``<prefix>:risk:revoked:<intent key>``, in the transition's
path before its state is written), and the fence asked right before each order of an entry whose
first order has no answer yet (:func:`quantum_exec.exchange.fencing.ensure_owner`, never skipped
for it) refuses to send one whose admission was revoked: the entry is rejected with the
transition's reason (an instance paused between admission and send, or killed there and resumed
under the same lease, sends nothing after the moment). An admission recorded again (a resumed
attempt admitted afresh) clears its revocation. Left after the moment: only an order already on
the wire when the transition went ahead (a send that timed out), as the event's ``drain`` says.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Final

from redis.asyncio import Redis

from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

# How long an admitted entry's record lives without being settled (beyond any REST timeout).
ADMITTED_TTL_MS: Final = 30_000
# How long a restricting transition waits for the admitted entries to settle.
DRAIN_DEADLINE_S: Final = 10.0
# How long a closed door stays closed if its transition never opens it again (Redis lost meanwhile).
DOOR_TTL_S: Final = DRAIN_DEADLINE_S + 5
_POLL_S: Final = 0.005

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: state hash, admitted, closing, the member's revoked key. ARGV: seq decided on, member, ttl ms.
# Returns 1 recorded, 0 the state moved since it was read, -1 a transition is closing the door.
_ADMIT: Final = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) > 0 then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('DEL', KEYS[4])
return 1
"""
)

# KEYS: admitted. ARGV: revoked key prefix, why, ttl ms. Every admitted entry still unsettled is
# revoked (its fence refuses its send); returns how many.
_REVOKE: Final = (
    _NOW
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
for _, member in ipairs(members) do
  redis.call('SET', ARGV[1] .. member, ARGV[2], 'PX', ARGV[3])
end
return #members
"""
)

# KEYS: closing. ARGV: token, ttl ms.
_CLOSE: Final = _NOW + "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\nreturn 1\n"

# KEYS: admitted. Returns how many admitted entries are not settled (expired ones dropped).
_PENDING: Final = (
    _NOW + "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\nreturn redis.call('ZCARD', KEYS[1])\n"
)


class Admissions:
    """See the module docstring."""

    def __init__(self, redis: Redis, settings: Settings, state_key: str) -> None:
        prefix = settings.key_prefix
        self._redis = redis
        self._state_key = state_key
        self._admitted = f"{prefix}:risk:admitted"
        self._closing = f"{prefix}:risk:closing"
        self._revoked_prefix = f"{prefix}:risk:revoked:"
        self._admit = redis.register_script(_ADMIT)
        self._close = redis.register_script(_CLOSE)
        self._pending = redis.register_script(_PENDING)
        self._revoke = redis.register_script(_REVOKE)

    async def record(self, seq: int, key: str) -> int:
        """1 recorded, 0 the state moved since ``seq`` was read, -1 a transition is under way."""
        return int(
            await self._admit(
                keys=[self._state_key, self._admitted, self._closing, self._revoked_prefix + key],
                args=[seq, key, ADMITTED_TTL_MS],
            )
        )

    async def settled(self, key: str) -> None:
        """The entry's first order has its answer, or nothing was sent: it no longer holds a halt."""
        try:
            await self._redis.zrem(self._admitted, key)
        except REDIS_DOWN as exc:  # it expires on its own
            log.warning("risk.admission_not_settled", intent_id=key, error=str(exc))

    async def revoke(self, why: str) -> int:
        """Revoke every admission still unsettled (a transition goes ahead without them): their
        entries are refused with ``why`` right before their order would leave (:meth:`revoked`)."""
        return int(
            await self._revoke(keys=[self._admitted], args=[self._revoked_prefix, why, 2 * ADMITTED_TTL_MS])
        )

    async def revoked(self, key: str) -> str | None:
        """Why ``key``'s admission was revoked (``<state>|<reason>``), None while it stands."""
        raw = await self._redis.get(self._revoked_prefix + key)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def close_door(self) -> str:
        """Make every new admission wait; the token :meth:`open_door` takes."""
        token = secrets.token_hex(8)
        ttl_ms = int(DOOR_TTL_S * 1000)
        await self._close(keys=[self._closing], args=[token, ttl_ms])
        return token

    async def open_door(self, token: str) -> None:
        await self._redis.zrem(self._closing, token)

    async def unsettled(self) -> int:
        """How many admitted entries have no answer from the exchange yet (lapsed ones dropped)."""
        return int(await self._pending(keys=[self._admitted]))

    async def drain(self, deadline_s: float = DRAIN_DEADLINE_S) -> tuple[int, int]:
        """Wait until no admitted entry is unsettled or the deadline: (waited ms, still unsettled)."""
        start = time.monotonic()
        while True:
            left = await self.unsettled()
            waited = time.monotonic() - start
            if left == 0 or waited >= deadline_s:
                return int(waited * 1000), left
            await asyncio.sleep(_POLL_S)
