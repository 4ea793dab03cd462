"""The moment of a transition that restricts trading (to REDUCING or HALTED), made exact across
instances: no entry order reaches the exchange after the time its risk event names.

An entry the gate admits is recorded in ``<prefix>:risk:admitted`` (a sorted set: the intent key,
scored with the Redis time its record expires) by the script that reads the state it is decided on
(:meth:`Admissions.admit`: one round trip, the state, the run-time limits and the day figures with
it), so no transition comes between the state read and the record; one that state refuses is not
recorded, and an entry the gate then refuses (a limit) releases its record. The record is removed
once the entry's first order has its answer from the
exchange, or the entry was refused before sending it (:meth:`settled`): off the order path, carried
by the next admission's script or sent within :data:`SETTLE_DELAY_S`, and only while the record
still holds its score (a newer admission of the same key is never removed by an older settle).
A restricting transition first closes the door: a token in ``<prefix>:risk:closing`` (scored with
its expiry) makes every admission wait; then it waits until no admitted entry is left (every one
has reached the exchange, its order's transaction time already in the past, or was refused), and
only then writes the state and its event (:meth:`.store.RiskStore.transition`) with that time, and
opens the door. The waiting entries read the new state and are refused.

An entry whose send ended without an answer (a timeout: the order may still arrive) keeps its
record until it expires (:data:`ADMITTED_TTL_MS`), and so does the record of an instance killed
before its settle left (between the answer and the settle, as before it); the transition waits at most
:data:`DRAIN_DEADLINE_S` and then goes ahead, its event saying how many entries were still unsettled
(``drain.unsettled``): the only case in which an entry order may reach the exchange after the
event's time... unless that entry has not left yet: a transition that goes ahead with entries
unsettled revokes their admissions (``<prefix>:risk:revoked:<intent key>``, in the transition's
path before its state is written), and the fence asked right before each order of an entry whose
first order has no answer yet (:func:`quantum_exec.exchange.fencing.ensure_owner`) refuses to send
one whose admission was revoked: the entry is rejected with the transition's reason (an instance
paused between admission and send, or killed there and resumed under the same lease, sends nothing
after the moment). An admission recorded again (a resumed attempt admitted afresh) clears its
revocation. The fence reads the revocation from Redis, unless this instance sent the admission's
script less than :data:`REVOKE_FRESH_S` ago (none can exist yet: :meth:`Admissions.revoked`).
Left after the moment: only an order already on the wire when the transition went ahead (a send
that timed out), as the event's ``drain`` says.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.core.scripts import run_script
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
# How long after an admission's script was sent its fence needs no read of its revocation. Only a
# transition revokes, once its door closed and it drained for DRAIN_DEADLINE_S of its own
# monotonic clock from then; an admission was recorded before that door closed (the script refuses
# while it is closed; one recorded after it opened again came after the revocation, and cleared
# it), so no revocation of it exists until DRAIN_DEADLINE_S after its script was sent. Half of it
# leaves the margin for the two clocks' rates (NTP slews by 0.05% at most, not 2x); an order leaves
# right after a check that found nothing, as after a read. A clock that stops with its host (a
# suspended VM) is trusted here as by the lease's FENCE_FRESH_S. A transition stalled past
# DOOR_TTL_S (its door lapsed, admissions came in) closes its door again and drains again before
# its revocations stand for it (store.transition, _REVOKE).
REVOKE_FRESH_S: Final = DRAIN_DEADLINE_S / 2
_POLL_S: Final = 0.005
# How long a settle waits for an admission's script to carry it before it is sent on its own.
SETTLE_DELAY_S: Final = 0.005

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


# The settled admissions carried by a script (ARGV pairs from ``first``: member, score):
# each removed only while it still holds the score it was recorded with, so a settle that arrives
# after the same key was admitted again never removes the newer record.
def _settling(admitted: str, first: int) -> str:
    return f"""
for i = {first}, #ARGV, 2 do
  local had = redis.call('ZSCORE', {admitted}, ARGV[i])
  if had and tonumber(had) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', {admitted}, ARGV[i])
  end
end
"""


# KEYS: state hash, limits hash, day hash, admitted, closing, the member's revoked key, the last
# score issued (a string: scores strictly increase across every admission, so a settle re-sent
# after its record was removed and the same key admitted again in the same millisecond can never
# match the newer record's score).
# ARGV: member ('': read only, nothing recorded), ttl ms, '1' the entry only reduces, settled pairs...
# Returns {-1} while a transition is closing the door (nothing recorded, nothing read); else
# {score recorded (0: none), state fields, limits fields, day fields}. The score is above any
# earlier record of the member's, so it names this admission alone. An entry the state refuses
# whatever else holds (HALTED: every one; REDUCING: one that does not only reduce) is not recorded:
# it is never sent, and its record would hold back a flatten (and the next transition) for nothing.
_ADMIT: Final = (
    _NOW
    + _settling("KEYS[4]", 4)
    + """
local score = 0
if ARGV[1] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  if redis.call('ZCARD', KEYS[5]) > 0 then return {-1} end
  local state = redis.call('HGET', KEYS[1], 'state') or 'ACTIVE'
  if state == 'HALTED' or (state == 'REDUCING' and ARGV[3] ~= '1') then
    return {0, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
  end
  score = now + tonumber(ARGV[2])
  local old = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]) or '0')
  local last = tonumber(redis.call('GET', KEYS[7]) or '0')
  if last > old then old = last end
  if old >= score then score = old + 1 end
  redis.call('SET', KEYS[7], score)
  redis.call('ZADD', KEYS[4], score, ARGV[1])
  redis.call('DEL', KEYS[6])
end
return {score, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""
)

# KEYS: admitted. ARGV: settled pairs... (those no admission carried).
_SETTLE: Final = _settling("KEYS[1]", 1) + "return 1\n"

# KEYS: admitted, closing. ARGV: revoked key prefix, why, ttl ms, the transition's door token.
# Every admitted entry still unsettled is revoked (its fence refuses its send); returns {how many,
# 1 when the door lapsed meanwhile (the transition stalled past DOOR_TTL_S), else 0}. After a lapse
# the entries admitted during it are less than DRAIN_DEADLINE_S old, which the fence's freshness
# (REVOKE_FRESH_S) relies on: the transition closes its door again, drains again and revokes again.
_REVOKE: Final = (
    _NOW
    + """
local door = redis.call('ZSCORE', KEYS[2], ARGV[4])
local lapsed = 0
if not door or tonumber(door) <= now then lapsed = 1 end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
for _, member in ipairs(members) do
  redis.call('SET', ARGV[1] .. member, ARGV[2], 'PX', ARGV[3])
end
return {#members, lapsed}
"""
)

# KEYS: closing. ARGV: token, ttl ms.
_CLOSE: Final = _NOW + "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\nreturn 1\n"

# KEYS: admitted. Returns how many admitted entries are not settled (expired ones dropped).
_PENDING: Final = (
    _NOW + "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\nreturn redis.call('ZCARD', KEYS[1])\n"
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(flat: Any) -> dict[str, str]:
    """A hash as HGETALL answers it inside a script (a flat list), decoded."""
    items = [_text(v) for v in flat or []]
    return dict(zip(items[::2], items[1::2], strict=True))


@dataclass(frozen=True, slots=True)
class Read:
    """What :meth:`Admissions.admit` read with its record: the state's, the run-time limits' and
    the day figures' fields; ``recorded``: an admission now holds back a restricting transition."""

    recorded: bool
    state: dict[str, str]
    limits: dict[str, str]
    day: dict[str, str]


class Admissions:
    """See the module docstring."""

    def __init__(
        self, redis: Redis, settings: Settings, state_key: str, limits_key: str, day_key: str
    ) -> None:
        prefix = settings.key_prefix
        self._redis = redis
        self._state_key = state_key
        self._limits_key = limits_key
        self._day_key = day_key
        self._admitted = f"{prefix}:risk:admitted"
        self._closing = f"{prefix}:risk:closing"
        self._revoked_prefix = f"{prefix}:risk:revoked:"
        self._last_score = f"{prefix}:risk:admitted:last"
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._close = redis.register_script(_CLOSE)
        self._pending = redis.register_script(_PENDING)
        self._revoke = redis.register_script(_REVOKE)
        # This instance's records not settled yet: the score each was recorded with, and the
        # monotonic time taken right before its script was sent (:meth:`revoked`).
        self._held: dict[str, tuple[int, float]] = {}
        # Settled, not yet removed in Redis: (member, score) pairs, flat.
        self._settles: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    async def admit(self, key: str | None, *, reduces: bool = False) -> Read | None:
        """Read the state (with the run-time limits and the day figures) and record ``key``'s
        admission under it, atomically (``None`` key: read only; not recorded either when the state
        refuses the entry: HALTED, or REDUCING and it does not only ``reduces``); None while a
        restricting transition closes the door (nothing recorded). Carries the settles waiting."""
        pairs, self._settles = self._settles, []
        keys = [
            self._state_key,
            self._limits_key,
            self._day_key,
            self._admitted,
            self._closing,
            self._revoked_prefix + (key or ""),
            self._last_score,
        ]
        try:
            args = [key or "", ADMITTED_TTL_MS, "1" if reduces else "0", *pairs]
            sent_at = time.monotonic()
            reply: Any = await run_script(self._admit, keys=keys, args=args)
        except BaseException:
            if pairs:  # sent again (harmless if they did land: a settle removes its own record only)
                self._settles = pairs + self._settles
                self._flush_soon()
            raise
        score = int(reply[0])
        if score < 0:
            return None
        if score > 0 and key is not None:
            self._held[key] = (score, sent_at)
        return Read(score > 0, _fields(reply[1]), _fields(reply[2]), _fields(reply[3]))

    async def settled(self, key: str) -> None:
        """The entry's first order has its answer, or nothing was sent: it no longer holds a halt.
        Returns at once; the record is removed off the order path (see the module docstring)."""
        held = self._held.pop(key, None)
        if held is None:
            return  # nothing of this instance's holds it (never recorded, or settled already)
        self._settles += [key, str(held[0])]
        self._flush_soon()

    def forget(self, key: str) -> None:
        """The entry has its result: a record not settled by now lapses (its order may travel)."""
        self._held.pop(key, None)

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later(), name="risk-settles")

    async def _flush_later(self) -> None:
        await asyncio.sleep(SETTLE_DELAY_S)  # the next admission may carry them meanwhile
        await self.flush()

    async def close(self) -> None:
        """At shutdown: the settles still waiting are sent now (else they lapse)."""
        flusher = self._flusher
        if flusher is not None:
            await flusher  # within SETTLE_DELAY_S and a round trip
        await self.flush()

    async def flush(self) -> None:
        """Send the settles no admission carried (also at shutdown)."""
        while self._settles:
            pairs, self._settles = self._settles, []
            try:
                await run_script(self._settle, keys=[self._admitted], args=pairs)
            except REDIS_DOWN as exc:  # they expire on their own
                log.warning("risk.admission_not_settled", entries=len(pairs) // 2, error=str(exc))

    async def revoke(self, why: str, token: str) -> tuple[int, bool]:
        """Revoke every admission still unsettled (a transition goes ahead without them): their
        entries are refused with ``why`` right before their order would leave (:meth:`revoked`).
        How many, and whether the door ``token`` closed lapsed meanwhile: then the caller closes it
        again, drains again and revokes again (see ``_REVOKE``)."""
        reply = await run_script(
            self._revoke,
            keys=[self._admitted, self._closing],
            args=[self._revoked_prefix, why, 2 * ADMITTED_TTL_MS, token],
        )
        return int(reply[0]), bool(int(reply[1]))

    async def revoked(self, key: str) -> str | None:
        """Why ``key``'s admission was revoked (``<state>|<reason>``), None while it stands.

        Not read while this instance's admission of ``key`` was sent less than
        :data:`REVOKE_FRESH_S` ago (none can exist yet); read from Redis otherwise: a resumed
        attempt, one that waited long between admission and send, one admitted elsewhere."""
        held = self._held.get(key)
        if held is not None and time.monotonic() - held[1] < REVOKE_FRESH_S:
            return None
        raw = await self._redis.get(self._revoked_prefix + key)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def close_door(self) -> str:
        """Make every new admission wait; the token :meth:`open_door` takes."""
        token = secrets.token_hex(8)
        ttl_ms = int(DOOR_TTL_S * 1000)
        await run_script(self._close, keys=[self._closing], args=[token, ttl_ms])
        return token

    async def open_door(self, token: str) -> None:
        await self._redis.zrem(self._closing, token)

    async def unsettled(self) -> int:
        """How many admitted entries have no answer from the exchange yet (lapsed ones dropped)."""
        return int(await run_script(self._pending, keys=[self._admitted]))

    async def drain(self, deadline_s: float = DRAIN_DEADLINE_S) -> tuple[int, int]:
        """Wait until no admitted entry is unsettled or the deadline: (waited ms, still unsettled)."""
        start = time.monotonic()
        while True:
            left = await self.unsettled()
            waited = time.monotonic() - start
            if left == 0 or waited >= deadline_s:
                return int(waited * 1000), left
            await asyncio.sleep(_POLL_S)
