"""The gateway's Redis side: signatures seen within the replay window, and the idempotent XADD.

Keys (``P`` is the service's ``QUANTUM_KEY_PREFIX``, so a Redis Cluster's hash tag covers them):

* ``P:gateway:sig:<sha256 of the signature>`` - SET NX with the replay window as expiry: the
  second use of a signature is a replay (401), also after a gateway restart;
* ``P:gateway:intent:<intent_id>`` - the intent's digest, kept ``QUANTUM_IDEMPOTENCY_TTL_DAYS``.

Publishing is one script: an ``intent_id`` already taken through the gateway (or already known to
the service: its ``P:idem:<id>`` record) is a duplicate when the intent is the same and a
conflict when it is not; otherwise the entry is XADDed and the id recorded, atomically, so two
requests racing with the same id publish once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.contracts import TradeIntent, encode_intent_fields, intent_digest
from quantum_exec.core.settings import Settings
from quantum_exec.stream.store import Keys

# KEYS: gateway id record, service idempotency record, intent stream.
# ARGV: digest, ttl_s, then the entry's field/value pairs. Returns {status, stream id or ''}.
_PUBLISH: Final = """
local known = redis.call('GET', KEYS[1])
if not known then known = redis.call('HGET', KEYS[2], 'hash') end
if known then
  if known == ARGV[1] then return {'duplicate', ''} end
  return {'conflict', ''}
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {'published', id}
"""


class Published(StrEnum):
    PUBLISHED = "published"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Published
    intent_id: str
    stream_id: str | None = None


class Intake:
    """Replay memory and the idempotent publish of validated payloads."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings)
        self._prefix = settings.key_prefix
        self._ttl_s = settings.idempotency_ttl_days * 86_400
        self._publish = redis.register_script(_PUBLISH)

    async def first_use(self, signature: str, window_ms: int) -> bool:
        """False when this signature was used before within the window (a replay)."""
        digest = hashlib.sha256(signature.encode()).hexdigest()
        # Twice the window: a timestamp may be up to the window ahead as well as behind.
        stored = await self._redis.set(
            f"{self._prefix}:gateway:sig:{digest}", b"1", nx=True, px=2 * window_ms
        )
        return bool(stored)

    async def publish(self, payload: dict[str, Any], intent: TradeIntent, source: str) -> Outcome:
        """XADD ``payload`` once per intent id; ``intent`` is what :func:`parse_intent` made of it
        (with an ``intent_id``: the gateway names every intent it publishes)."""
        intent_id = intent.intent_id
        assert intent_id is not None
        fields = encode_intent_fields(payload, source)
        args: list[Any] = [intent_digest(intent), self._ttl_s]
        for name, value in fields.items():
            args.extend((name, value))
        keys = [
            f"{self._prefix}:gateway:intent:{intent_id}",
            self._keys.idempotency(intent_id),
            self._keys.intent_stream,
        ]
        status, stream_id = await self._publish(keys=keys, args=args)
        text = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
        return Outcome(
            Published(status.decode() if isinstance(status, bytes) else status), intent_id, text or None
        )
