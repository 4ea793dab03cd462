"""The notifier's Redis state: one outbox of rendered notices, the cursors, and a lease.

Keys (``P`` is ``QUANTUM_KEY_PREFIX``):

* ``P:notify:lease`` - the one notifier allowed to write and send (SET NX PX, renewed); a second
  instance waits as a standby and takes over when the first dies;
* ``P:notify:cursors`` - hash: per followed stream, the last entry turned into notices;
* ``P:notify:outbox`` - stream of notices (``event_id``, ``kind``, ``text``), trimmed to ~100,000;
* ``P:notify:seen:<event_id>`` - a notice already in the outbox (kept 7 days): a trade the ledger
  writes again (late funding) or an outage seen again after a restart is not told twice;
* ``P:notify:sent:<channel>`` - the last outbox entry the channel delivered;
* ``P:notify:inflight:<channel>`` - the last entry of the message being sent.

Moving a cursor and adding its notices is one script, and so is recording a delivery, both
refused when the lease is no longer ours: each event gets its notice exactly once, and each notice
is delivered once per channel, except when a send's answer is lost (a crash or a timeout while
the request was out): that message is sent again, marked as possibly repeated, rather than lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.notify.render import Notice

SEEN_TTL_S: Final = 7 * 86_400
OUTBOX_MAXLEN: Final = 100_000
LEASE_TTL_MS: Final = 10_000

# KEYS: lease, cursors, outbox, then one seen key per notice. ARGV: owner, seen ttl, number of
# cursor pairs, the pairs (stream, id), then triples (event_id, kind, text) in the order of their
# seen keys. Returns the notices added, -1 when the lease is not ours.
_APPEND: Final = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local i = 4
for c = 1, tonumber(ARGV[3]) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local added = 0
for k = 4, #KEYS do
  if redis.call('SET', KEYS[k], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', '"""
    + str(OUTBOX_MAXLEN)
    + """', '*',
      'event_id', ARGV[i], 'kind', ARGV[i + 1], 'text', ARGV[i + 2])
    added = added + 1
  end
  i = i + 3
end
return added
"""
)

# KEYS: lease, sent, inflight. ARGV: owner, outbox id. Returns 1, or -1 when the lease is not ours.
_SENT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
return 1
"""

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


@dataclass(frozen=True, slots=True)
class Queued:
    """A notice in the outbox."""

    outbox_id: str
    event_id: str
    kind: str
    text: str


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Outbox:
    """The scripts and reads above; ``owner`` is this process's lease value."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.owner = uuid.uuid4().hex
        self.lease_key = f"{prefix}:notify:lease"
        self.cursors_key = f"{prefix}:notify:cursors"
        self.outbox_key = f"{prefix}:notify:outbox"
        self._seen_prefix = f"{prefix}:notify:seen:"
        self._prefix = prefix
        self._append = redis.register_script(_APPEND)
        self._sent = redis.register_script(_SENT)
        self._renew = redis.register_script(_RENEW)

    def sent_key(self, channel: str) -> str:
        return f"{self._prefix}:notify:sent:{channel}"

    def inflight_key(self, channel: str) -> str:
        return f"{self._prefix}:notify:inflight:{channel}"

    async def hold_lease(self) -> bool:
        """Take or renew the lease; True while it is ours."""
        return bool(await self._renew(keys=[self.lease_key], args=[self.owner, LEASE_TTL_MS]))

    async def release_lease(self) -> None:
        if _s(await self._redis.get(self.lease_key) or b"") == self.owner:
            await self._redis.delete(self.lease_key)

    async def start_cursors(self, streams: Iterable[str]) -> dict[str, str]:
        """The cursors; a stream followed for the first time starts at its current end (the
        notifier tells what happens from now on, not the history), recorded at once."""
        for stream in streams:
            if not await self._redis.hexists(self.cursors_key, stream):
                last = await self._redis.xrevrange(stream, count=1)
                await self._redis.hsetnx(self.cursors_key, stream, _s(last[0][0]) if last else "0-0")
        raw = await self._redis.hgetall(self.cursors_key)
        return {_s(k): _s(v) for k, v in raw.items()}

    async def append(self, cursors: Mapping[str, str], notices: list[Notice]) -> int:
        """Move the cursors and add the notices (those not seen before); -1 when not the lease holder."""
        args: list[Any] = [self.owner, SEEN_TTL_S, len(cursors)]
        for stream, stream_id in cursors.items():
            args.extend((stream, stream_id))
        keys = [self.lease_key, self.cursors_key, self.outbox_key]
        for notice in notices:
            keys.append(self._seen_prefix + notice.event_id)
            args.extend((notice.event_id, notice.kind, notice.text))
        return int(await self._append(keys=keys, args=args))

    async def delivered(self, channel: str) -> str:
        """The last outbox id the channel delivered ("0-0": none; a new channel starts at the end)."""
        value = await self._redis.get(self.sent_key(channel))
        if value is not None:
            return _s(value)
        last = await self._redis.xrevrange(self.outbox_key, count=1)
        start = _s(last[0][0]) if last else "0-0"
        await self._redis.set(self.sent_key(channel), start, nx=True)
        return _s(await self._redis.get(self.sent_key(channel)) or start)

    async def inflight(self, channel: str) -> str | None:
        value = await self._redis.get(self.inflight_key(channel))
        return None if value is None else _s(value)

    async def mark_inflight(self, channel: str, outbox_id: str) -> None:
        await self._redis.set(self.inflight_key(channel), outbox_id)

    async def mark_sent(self, channel: str, outbox_id: str) -> bool:
        keys = [self.lease_key, self.sent_key(channel), self.inflight_key(channel)]
        return int(await self._sent(keys=keys, args=[self.owner, outbox_id])) == 1

    async def after(self, outbox_id: str, *, count: int, block_ms: int) -> list[Queued]:
        """Notices after ``outbox_id`` (waiting up to ``block_ms`` for one)."""
        found: Any = await self._redis.xread({self.outbox_key: outbox_id}, count=count, block=block_ms)
        rows = found[0][1] if found else []
        return [
            Queued(
                _s(sid),
                _s(fields.get(b"event_id", b"")),
                _s(fields.get(b"kind", b"")),
                _s(fields.get(b"text", b"")),
            )
            for sid, fields in rows
        ]


async def sleep_or(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True
