"""The governor's Redis side: the state (compare-and-set, its event in the same script), the limits
changed at run time, the flatten's CLOSEs published once, the intent-rate counters.

* ``<prefix>:risk:state`` (hash): :class:`~.states.RiskState`. Every transition is one script: the
  ``seq`` it was planned from must still be there (two instances never overwrite each other's
  transition), a transition the governor makes must hold the account lease (fenced: a deposed
  holder changes nothing), and the event goes on ``QUANTUM_RISK_STREAM`` in the same script, so
  there is exactly one event per transition.
* ``<prefix>:risk:limits`` (hash): the limits set through the control API, over the settings.
* ``<prefix>:risk:day`` (hash): the lease holder's last day figures (:mod:`.dayfigure`).
* ``<prefix>:risk:once:<group>:<symbol>:<round>``: an intent of the governor's own (a flatten's
  CLOSE, a liquidation-distance reduction), claimed with ``SET NX`` in the script that appends it
  to the intent stream (under the account lease); ``<prefix>:risk:once:<group>:intents`` lists them.
* ``<prefix>:risk:once:<group>:nonce``: the group's secret (random, chosen once under the account
  lease with ``SET NX``): its intent ids derive from it, so no producer can predict one, and a new
  lease holder derives the same ids (:mod:`.rounds`). Never published, logged or shown.
* ``<prefix>:risk:own:<intent id>``: the digest of the intent the governor published under that id
  (same script): only a result of that intent counts as the governor's, and only that intent is
  admitted as the governor's (a foreign one re-using the id is a producer's like any other).
* ``<prefix>:risk:admitted``, ``<prefix>:risk:closing``: the entries admitted and not yet answered
  by the exchange, the door a restricting transition closes while they drain (:mod:`.admissions`).
* ``<prefix>:risk:rate:<source>:<minute>``: intents counted per producer and UTC minute;
  ``<prefix>:risk:rated:<intent id>`` the count an intent got, so a resumed attempt is not counted
  again (and gets the decision its first attempt got).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from quantum_exec.contracts.codec import dumps, isoformat
from quantum_exec.core.settings import Settings
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.admissions import DOOR_TTL_S, Admissions
from quantum_exec.risk.reservations import Reservations
from quantum_exec.risk.states import SEVERITY, Request, RiskState, TransitionRefused, plan
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)
UNSETTLED_DETAIL = "admitted entries without an exchange answer may reach it after the event's time"

RISK_EVENT_TYPE: Final = "risk.event"
RISK_EVENT_SOURCE: Final = "quantum-exec"
# A flatten's CLOSE ids stay claimed this long (far beyond any takeover or restart).
ONCE_TTL_S: Final = 7 * 24 * 3600
_RATE_TTL_S: Final = 120
# How long an intent's count is remembered (far beyond any resume of its attempt).
_RATED_TTL_S: Final = 24 * 3600
_CAS_TRIES: Final = 8

# KEYS: state hash, risk stream, fence key (the account lease, or the state hash when unfenced).
# ARGV: expected seq, held lease value ('' unfenced), maxlen, n state pairs, pairs..., event pairs...
# Returns the new seq, -1 when the lease is not ours, -2 when the state moved since it was read.
_TRANSITION: Final = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if seq ~= tonumber(ARGV[1]) then return -2 end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'seq', seq + 1, unpack(ARGV, 5, 4 + 2 * n))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 5 + 2 * n))
return seq + 1
"""

# KEYS: account lease, once key, intent stream, risk stream, the flatten's intent set, own key.
# ARGV: held value, ttl s, maxlen, intent id, intent digest, n intent pairs, pairs..., event pairs...
# Returns 1 published, 0 before, -1 not the holder.
_PUBLISH_ONCE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('SADD', KEYS[5], ARGV[4])
redis.call('EXPIRE', KEYS[5], ARGV[2])
redis.call('SET', KEYS[6], ARGV[5], 'EX', ARGV[2])
local n = tonumber(ARGV[6])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7, 6 + 2 * n))
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 7 + 2 * n))
return 1
"""

# KEYS: account lease, nonce key. ARGV: held value, ttl s, a fresh random nonce.
# Returns the group's nonce (the first one ever set), false when the lease is not ours.
_NONCE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[2])
return redis.call('GET', KEYS[2])
"""

# KEYS: the intent's rated key, the producer's minute counter. ARGV: counter ttl s, rated ttl s.
# Returns the count the intent got when first counted (counted once, however often it is resumed).
_COUNT_ONCE: Final = """
local had = redis.call('GET', KEYS[1])
if had then return tonumber(had) end
local count = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], count, 'EX', ARGV[2])
return count
"""

Fence = tuple[str, str]  # (the account lease's key, the value we hold)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(fields: dict[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


class RiskStore:
    """The Redis calls of the governor (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        prefix = settings.key_prefix
        self._redis = redis
        self.state_key = f"{prefix}:risk:state"
        self.limits_key = f"{prefix}:risk:limits"
        self.day_key = f"{prefix}:risk:day"
        self._once_prefix = f"{prefix}:risk:once:"
        self._rate_prefix = f"{prefix}:risk:rate:"
        self._rated_prefix = f"{prefix}:risk:rated:"
        self._own_prefix = f"{prefix}:risk:own:"
        self.stream = settings.risk_stream
        self.intent_stream = settings.intent_stream
        self._maxlen = settings.result_maxlen
        self._transition = redis.register_script(_TRANSITION)
        self._publish_once = redis.register_script(_PUBLISH_ONCE)
        self._nonce = redis.register_script(_NONCE)
        self._count_once = redis.register_script(_COUNT_ONCE)
        self.reservations = Reservations(redis, settings)
        self.admissions = Admissions(redis, settings, self.state_key, self.limits_key, self.day_key)

    async def read(self) -> tuple[RiskState, dict[str, str]]:
        """The state and the limits set at run time, in one round trip."""
        state, limits, _day = await self.read_with_day()
        return state, limits

    async def read_with_day(self) -> tuple[RiskState, dict[str, str], dict[str, str]]:
        """The state, the limits set at run time and the holder's day figures, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.state_key)
            pipe.hgetall(self.limits_key)
            pipe.hgetall(self.day_key)
            state_raw, limits_raw, day_raw = await pipe.execute()
        state = RiskState.from_fields({_text(k): _text(v) for k, v in state_raw.items()})
        limits = {_text(k): _text(v) for k, v in limits_raw.items()}
        return state, limits, {_text(k): _text(v) for k, v in day_raw.items()}

    async def save_day(self, fields: dict[str, str]) -> None:
        """The lease holder's day figures (:mod:`.dayfigure`), for every instance's admissions."""
        await self._redis.hset(self.day_key, mapping=fields)  # type: ignore[arg-type]

    def _event(self, payload: dict[str, Any], now: datetime) -> dict[str, str]:
        return {
            "event_type": RISK_EVENT_TYPE,
            "payload": dumps(payload).decode(),
            "timestamp": isoformat(now),
            "source": RISK_EVENT_SOURCE,
        }

    async def transition(
        self,
        request: Request,
        *,
        fence: Fence | None = None,
        numbers: dict[str, Any] | None = None,
        limit: str | None = None,
    ) -> tuple[RiskState, RiskState] | None:
        """Make ``request`` (before, after); None when nothing changes or the fence is lost;
        :class:`TransitionRefused` when it may not be made.

        A transition that restricts trading (to REDUCING, to HALTED) is made once every entry
        admitted before it has reached the exchange or was refused (:mod:`.admissions`): its event's
        ``time`` is that moment, ``drain`` says how long it waited and what was left unsettled."""
        current, _limits = await self.read()
        first = plan(current, request, datetime.now(UTC))
        if first is None:
            return None
        if SEVERITY[first.state] <= SEVERITY[current.state]:
            return await self._transition_cas(request, fence, numbers, limit, None)
        token = await self.admissions.close_door()
        try:
            waited_ms = 0
            while True:
                waited, unsettled = await self.admissions.drain()
                waited_ms += waited
                if not unsettled:
                    break
                # Those not sent yet are refused at their fence with this transition's reason.
                _revoked, lapsed = await self.admissions.revoke(f"{first.state.value}|{first.reason}", token)
                if not lapsed:
                    log.error(
                        "risk.transition_unsettled_entries",
                        to=first.state.value,
                        unsettled=unsettled,
                        waited_ms=waited_ms,
                        detail=UNSETTLED_DETAIL,
                    )
                    break
                # This transition stalled past its door's TTL: entries were admitted since, too
                # fresh for their revocation to be seen (their fences skip the read within
                # admissions.REVOKE_FRESH_S): those admitted before are revoked already; close the
                # door again, drain again and revoke again.
                log.warning("risk.transition_door_lapsed", to=first.state.value, waited_ms=waited_ms)
                token = await self.admissions.close_door()
            drain = {"waited_ms": waited_ms, "unsettled": unsettled}
            return await self._transition_cas(request, fence, numbers, limit, drain)
        finally:
            try:
                await self.admissions.open_door(token)
            except REDIS_DOWN as exc:
                # Never in place of the error that got here: the door's token expires on its own.
                log.warning("risk.door_not_opened", error=type(exc).__name__, expires_s=DOOR_TTL_S)

    async def _transition_cas(
        self,
        request: Request,
        fence: Fence | None,
        numbers: dict[str, Any] | None,
        limit: str | None,
        drain: dict[str, int] | None,
    ) -> tuple[RiskState, RiskState] | None:
        for _ in range(_CAS_TRIES):
            current, _limits = await self.read()
            now = datetime.now(UTC)
            after = plan(current, request, now)
            if after is None:
                return None
            payload = {
                "kind": "transition",
                "seq": after.seq,
                "from": current.state.value,
                "to": after.state.value,
                "reason": after.reason,
                "by": after.by,
                "limit": limit,
                "numbers": numbers or {},
                "flatten": after.flatten or None,
                "force": request.force,
                "time": isoformat(now),
            }
            if drain is not None:
                payload["drain"] = drain
            if await self._apply(current.seq, after.to_fields(), payload, now, fence):
                metrics.RISK_TRANSITIONS.labels(state=after.state.value).inc()
                log.warning(
                    "risk.transition",
                    seq=after.seq,
                    state_from=current.state.value,
                    state_to=after.state.value,
                    reason=after.reason,
                    by=after.by,
                    limit=limit,
                    flatten=after.flatten or None,
                    numbers=orjson.dumps(numbers or {}, default=str).decode(),
                )
                return current, after
            if fence is not None and await self._redis.get(fence[0]) != fence[1].encode():
                return None  # deposed: the next holder decides
        raise TransitionRefused("the trading state kept changing under this request: ask again")

    async def holds(self, fence: Fence) -> bool:
        """Is the account lease of ``fence`` still held under its value (the flatten's own fence)?"""
        return bool(await self._redis.get(fence[0]) == fence[1].encode())

    async def finish_flatten(self, flatten_id: str, fence: Fence, numbers: dict[str, Any]) -> bool:
        """Mark ``flatten_id`` done (its event ``flatten_done``); False when it is not the one under way."""
        for _ in range(_CAS_TRIES):
            current, _limits = await self.read()
            if current.flatten != flatten_id:
                return False
            now = datetime.now(UTC)
            payload = {
                "kind": "flatten_done",
                "seq": current.seq + 1,
                "from": current.state.value,
                "to": current.state.value,
                "reason": "every position closed and every conditional order of ours cancelled",
                "by": "governor",
                "numbers": numbers,
                "flatten": flatten_id,
                "time": isoformat(now),
            }
            if await self._apply(current.seq, {"flatten": ""}, payload, now, fence):
                log.warning(
                    "risk.flatten_done", flatten=flatten_id, **{k: str(v) for k, v in numbers.items()}
                )
                return True
        return False

    async def _apply(
        self, seq: int, fields: dict[str, str], payload: dict[str, Any], now: datetime, fence: Fence | None
    ) -> bool:
        fence_key, held = fence if fence is not None else (self.state_key, "")
        args: list[str | int] = [
            seq,
            held,
            self._maxlen,
            len(fields),
            *_pairs(fields),
            *_pairs(self._event(payload, now)),
        ]
        outcome = int(await self._transition(keys=[self.state_key, self.stream, fence_key], args=args))
        return outcome > 0

    async def set_limits(self, changes: dict[str, str], removed: list[str], by: str) -> None:
        """Write run-time limits (``removed`` fall back to the settings) and publish the change."""
        now = datetime.now(UTC)
        payload = {
            "kind": "limits",
            "by": by,
            "numbers": {**changes, **dict.fromkeys(removed)},
            "time": isoformat(now),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            if changes:
                pipe.hset(self.limits_key, mapping=changes)  # type: ignore[arg-type]
            if removed:
                pipe.hdel(self.limits_key, *removed)
            pipe.xadd(self.stream, self._event(payload, now), maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()
        log.warning("risk.limits_changed", by=by, changes=orjson.dumps(payload["numbers"]).decode())

    def _group_key(self, group: str) -> str:
        return f"{self._once_prefix}{group}:intents"

    async def group_intents(self, group: str) -> list[str]:
        """The ids of the intents a group (a flatten, the day's liquidation reductions) published."""
        members: Any = await self._redis.smembers(self._group_key(group))
        return sorted(_text(m) for m in members)

    async def published(self, group: str, symbol: str, round_: int) -> bool:
        return bool(await self._redis.exists(f"{self._once_prefix}{group}:{symbol}:{round_}"))

    async def publish_once(
        self,
        group: str,
        symbol: str,
        round_: int,
        fence: Fence,
        intent_id: str,
        digest: str,
        intent_fields: dict[str, str],
        event: dict[str, Any],
    ) -> int:
        """Append a governor's intent (``digest``: its :func:`~quantum_exec.contracts.intent.intent_digest`)
        and its event once (1), 0 if done before, -1 deposed."""
        now = datetime.now(UTC)
        args: list[str | int] = [
            fence[1],
            ONCE_TTL_S,
            self._maxlen,
            intent_id,
            digest,
            len(intent_fields),
            *_pairs(intent_fields),
            *_pairs(self._event({**event, "time": isoformat(now)}, now)),
        ]
        keys = [
            fence[0],
            f"{self._once_prefix}{group}:{symbol}:{round_}",
            self.intent_stream,
            self.stream,
            self._group_key(group),
            self.own_key(intent_id),
        ]
        return int(await self._publish_once(keys=keys, args=args))

    def own_key(self, intent_id: str) -> str:
        return f"{self._own_prefix}{intent_id}"

    async def own_digest(self, intent_id: str) -> str | None:
        """The digest of the intent the governor published under ``intent_id`` (None: not its id)."""
        value = await self._redis.get(self.own_key(intent_id))
        return None if value is None else _text(value)

    async def group_nonce(self, group: str, fence: Fence) -> str | None:
        """The group's secret, chosen once under the account lease (None: the lease is not ours)."""
        value = await self._nonce(
            keys=[fence[0], f"{self._once_prefix}{group}:nonce"],
            args=[fence[1], ONCE_TTL_S, secrets.token_hex(16)],
        )
        return None if value is None else _text(value)

    async def count_intent(self, source: str, intent_key: str, now: datetime) -> int:
        """This producer's intents in the current UTC minute, this one included, each counted once:
        a resumed attempt gets the count its first attempt got."""
        key = f"{self._rate_prefix}{source}:{int(now.timestamp()) // 60}"
        rated = f"{self._rated_prefix}{intent_key}"
        return int(await self._count_once(keys=[rated, key], args=[_RATE_TTL_S, _RATED_TTL_S]))
