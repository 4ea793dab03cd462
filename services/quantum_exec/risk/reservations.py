"""What admitted entries hold of the exposure limits until their result, shared by every instance.

The exchange's positions show an entry only once it has filled; two entries admitted while the
other's order travels would each see the book without the other and together cross
``max_gross_notional_usd`` / ``max_open_positions``. So an entry admitted under an exposure limit
reserves what it adds (its symbol, signed quantity, price) until its result, and the check counts
the book *and* every reservation:

* ``<prefix>:risk:reserved`` (hash): intent key -> ``symbol|signed quantity|price``;
  ``<prefix>:risk:reserved:until`` (sorted set): intent key scored with its expiry (Redis time, ms);
  ``<prefix>:risk:reserved:epoch``: incremented by every reservation and release.
* The check is optimistic and exact: read the epoch and the reservations (:meth:`snapshot`), then
  the exchange's positions, decide with Decimals, and reserve in one script only if the epoch is
  still the one read (:meth:`reserve`); else read again. Two concurrent entries: the second's script
  sees the first's reservation move the epoch and decides again, counting it. A release between the
  book's read and the reservation moves the epoch too (the released entry's position may be missing
  from the book read before its fill).
* Released exactly once (:meth:`release`: ``HDEL`` says whether it was still there) when the entry
  has its result, filled or not. Lease-bound: the instance renews its own reservations
  (:meth:`renew`, from the governor's loop); a killed instance's lapse after :data:`LEASE_MS` and are
  dropped by the next snapshot (which moves the epoch). A resumed attempt that finds its entry
  already on the exchange (working, or a TWAP with children left) holds it again at once
  (:meth:`adopt`, unconditionally: the order is there whatever was decided since), so it never
  lapses while the entry can still fill.

Until its release an entry that filled is counted twice (its position and its reservation): a
conservative error of at most one entry's result time (a LIMIT entry: while it works).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.limits import Holding
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

# How long a reservation lives without its instance renewing it.
LEASE_MS: Final = 30_000

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: hash, until, epoch. Drops lapsed reservations (the epoch moves); returns {epoch, hash pairs}.
_SNAPSHOT: Final = (
    _NOW
    + """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #lapsed > 0 then
  redis.call('ZREM', KEYS[2], unpack(lapsed))
  redis.call('HDEL', KEYS[1], unpack(lapsed))
  redis.call('INCR', KEYS[3])
end
return {tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: hash, until, epoch. ARGV: epoch read, key, value, lease ms. 1 reserved, 0 the epoch moved.
_RESERVE: Final = (
    _NOW
    + """
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[2])
redis.call('INCR', KEYS[3])
return 1
"""
)

# KEYS: hash, until, epoch. ARGV: key, value, lease ms. Unconditional: an entry already on the
# exchange (a resumed attempt's) is counted whatever was decided since.
_ADOPT: Final = (
    _NOW
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""
)

# KEYS: hash, until, epoch. ARGV: key. 1 released now, 0 not held (released before, or lapsed).
_RELEASE: Final = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""

# KEYS: until. ARGV: lease ms, keys... (only those still reserved are extended).
_RENEW: Final = (
    _NOW
    + """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return 1
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse(raw: str) -> Holding:
    symbol, amount, price = raw.split("|")
    return Holding(symbol, Decimal(amount), Decimal(price))


class Reservations:
    """See the module docstring; :attr:`held` are this instance's (renewed by :meth:`renew`)."""

    def __init__(self, redis: Redis, settings: Settings, lease_ms: int = LEASE_MS) -> None:
        prefix = settings.key_prefix
        self._lease_ms = lease_ms
        self._keys = [
            f"{prefix}:risk:reserved",
            f"{prefix}:risk:reserved:until",
            f"{prefix}:risk:reserved:epoch",
        ]
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)
        self._adopt = redis.register_script(_ADOPT)
        self._renew = redis.register_script(_RENEW)
        self.held: set[str] = set()

    async def snapshot(self, without: str) -> tuple[int, list[Holding]]:
        """The epoch and every live reservation but ``without``'s (a resumed entry's own)."""
        epoch, flat = await self._snapshot(keys=self._keys)
        pairs = [_text(v) for v in flat]
        found = [parse(pairs[i + 1]) for i in range(0, len(pairs), 2) if pairs[i] != without]
        return int(epoch), found

    async def reserve(self, epoch: int, key: str, holding: Holding) -> bool:
        """Reserve ``holding`` (signed amount) for ``key`` if nothing moved since ``epoch``."""
        value = f"{holding.symbol}|{holding.amount}|{holding.mark_price}"
        if int(await self._reserve(keys=self._keys, args=[epoch, key, value, self._lease_ms])) != 1:
            return False
        self.held.add(key)
        return True

    async def adopt(self, key: str, holding: Holding) -> None:
        """Hold ``holding`` for ``key`` without the epoch check: a resumed attempt found its entry
        already working on the exchange (its first attempt's reservation lapses with the dead
        instance's lease); it is counted from now on, and renewed and released by this instance."""
        value = f"{holding.symbol}|{holding.amount}|{holding.mark_price}"
        await self._adopt(keys=self._keys, args=[key, value, self._lease_ms])
        self.held.add(key)

    async def release(self, key: str) -> bool:
        """Free ``key``'s reservation; True when it was held (each reservation is freed once)."""
        self.held.discard(key)
        try:
            return int(await self._release(keys=self._keys, args=[key])) == 1
        except REDIS_DOWN as exc:  # it lapses with its lease
            log.warning("risk.reservation_not_released", intent_id=key, error=str(exc))
            return False

    def forget(self, key: str) -> None:
        """Stop renewing ``key`` (its attempt is left to a later one): it lapses unless reserved again."""
        self.held.discard(key)

    async def renew(self) -> None:
        if self.held:
            await self._renew(keys=self._keys[1:2], args=[self._lease_ms, *sorted(self.held)])
