"""The account's Redis side: the fenced account lease, position events published once, intent records.

* **Account lease** (``<prefix>:account:lease``): every instance follows the stream, exactly one at
  a time acts on it (cancels, replacements, position events, reconciliation). Each acquisition
  takes a new fencing token (``<prefix>:account:fence``); a holder that stops renewing loses it
  within ``ttl`` and another instance takes over.
* **Position events**: one script checks the lease, claims the event id (``SET NX``) and appends
  the entry, so a takeover that replays an event publishes nothing twice, and a holder that lost
  the lease publishes nothing at all.
* **Intent records** (``<prefix>:account:records:<symbol>``, a hash by the intent's id digest):
  written before an entry is sent, so the instance that sees the fill - maybe not the one that
  placed it - knows which intent it was, and the reconciliation knows which positions are ours and
  their triggers (the "recorded triggers" of the idempotency record). Every record command rides
  in the loop turn's one pipeline (:mod:`.record_batch`).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from quantum_exec.account.positions import POSITION_EVENT_TYPE, PositionEvent, dumps_position_event
from quantum_exec.account.protection_events import ProtectionChanged
from quantum_exec.account.record import Record, RecordChanging, merged_opened
from quantum_exec.account.record_batch import RecordBatch
from quantum_exec.contracts.codec import isoformat
from quantum_exec.core.redis_lane import lane_of
from quantum_exec.core.scripts import run_script
from quantum_exec.core.settings import Settings

# Keeps an event id claimed long after any replay could come (a week of restarts and takeovers).
EVENT_ID_TTL_S: Final = 7 * 24 * 3600
POSITION_EVENT_SOURCE: Final = "quantum-exec"
# The producer's model/strategy of an intent are kept this long for the ledger's round trips.
LABELS_TTL_S: Final = 90 * 24 * 3600

# KEYS: lease, fence. ARGV: owner, ttl ms. Returns the token held (0 when another instance holds it).
_TAKE: Final = """
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, '|', 1, true)
  if string.sub(held, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(held, 1, sep - 1))
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: held value. Deletes the lease only when it is still ours.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease, event id key, stream[, the batch's counter]. ARGV: held value, id ttl s, maxlen,
# the event's place in its batch (1, 2, ...; 0 alone), field/value pairs... Returns 1 published,
# 0 already published, -1 not the lease holder, -2 an event before it in the batch was not
# answered (the batch broke off there: this one waits, so the stream keeps the batch's order).
# The counter says how many of the batch were answered, in order: an event goes on only when
# every one before it did, whether it was published now or before.
_AFTER_UNPUBLISHED: Final = -2
_BATCH_TTL_S: Final = 60
_PUBLISH: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local place = tonumber(ARGV[4])
if place > 1 and tonumber(redis.call('GET', KEYS[4]) or '0') ~= place - 1 then return -2 end
local fresh = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2])
if place > 0 then redis.call('SET', KEYS[4], place, 'EX', ARGV[5]) end
if not fresh then return 0 end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 6))
return 1
"""

# KEYS: a symbol's records, the symbols set. ARGV: digest, the "opened" record's JSON, symbol,
# the record as read before ("" when none was), "1" when an opened record was seen before.
# Writes the record unless the one there is already "opened" (a redelivered intent's attempt
# writes it again, and a level's fill may have shrunk it since): then nothing is written and that
# record is returned, to be merged and written by compare-and-set (ARGV[4]: written only while
# the record there is that one). An opened record seen before and gone now was dropped (its
# position closed): it is not written again. Returns 1 written, 0 not written (ARGV[4] is no
# longer there), -1 gone, or the opened record found.
_PUT_OPENED: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] ~= '' then
  if old ~= ARGV[4] then return 0 end
elseif old then
  local ok, rec = pcall(cjson.decode, old)
  if ok and type(rec) == 'table' and rec['opened'] == true then return old end
elseif ARGV[5] == '1' then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""
_MERGE_TRIES: Final = 5

# KEYS: lease, a symbol's records. ARGV: held value, digest, the record as read, its new JSON
# ("" drops it). Returns 1 written, 0 the record changed since it was read, -1 not the holder.
_REPLACE_RECORD: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then return 0 end
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
end
return 1
"""

# KEYS: a symbol's records. ARGV: side ("1" long, "0" short, "" both), then digests to drop too
# (a CLOSE's own record). Drops the records that hold a position (opened) of that side and those;
# returns how many.
_DROP_OPENED: Final = """
local all = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then gone[#gone + 1] = ARGV[i] end
end
for i = 1, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i + 1])
  if ok and rec['opened'] == true then
    local long = rec['long']
    if ARGV[1] == '' or (ARGV[1] == '1' and long == true) or (ARGV[1] == '0' and long == false) then
      gone[#gone + 1] = all[i]
    end
  end
end
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
return #gone
"""


class AccountStore:
    """The Redis calls of the account follower (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings, owner: str | None = None) -> None:
        prefix = settings.key_prefix
        self._redis = redis
        self.owner = owner or f"{settings.consumer_name}:{uuid.uuid4().hex[:8]}"
        self.lease_key = f"{prefix}:account:lease"
        self._fence_key = f"{prefix}:account:fence"
        self.records_key = f"{prefix}:account:records"
        self._symbols_key = f"{prefix}:account:records:symbols"
        self._event_prefix = f"{prefix}:account:event:"
        # Each batch's counter key is its own: this store's tag and the batch's number.
        self._batch_tag = secrets.token_hex(6)
        self._batches = 0
        self._labels_prefix = f"{prefix}:ledger:intent:"
        self.position_stream = settings.position_stream
        self._maxlen = settings.result_maxlen
        self._ttl_ms = int(settings.account_lease_ttl_s * 1000)
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        self._publish = redis.register_script(_PUBLISH)
        self._drop_opened = redis.register_script(_DROP_OPENED)
        self._replace_record = redis.register_script(_REPLACE_RECORD)
        self._put_opened = redis.register_script(_PUT_OPENED)
        # Every record command goes through it: one pipeline per loop turn (:mod:`.record_batch`).
        self.batch = RecordBatch(redis)
        self.token = 0

    @property
    def held_value(self) -> str:
        return f"{self.token}|{self.owner}"

    async def load_scripts(self) -> None:
        """Load the scripts a fill's follow-up runs, so the first one after a start pays no
        NOSCRIPT round trips: a stop's record drop races the live OCO's read of the flat symbol
        (which asks REST when it still finds the record)."""
        for script in (self._publish, self._replace_record):
            await self._redis.script_load(script.script)

    async def take_lease(self) -> int:
        """Take or renew the account lease; the token held, 0 when another instance holds it."""
        self.token = int(
            await self._take(keys=[self.lease_key, self._fence_key], args=[self.owner, self._ttl_ms])
        )
        return self.token

    async def release_lease(self) -> None:
        if self.token:
            await self._release(keys=[self.lease_key], args=[self.held_value])
            self.token = 0

    async def publish_many(self, events: list[PositionEvent]) -> list[int]:
        """Publish each of ``events`` once under the lease, in order, in one round trip (one write
        of the publish-once script per event on the client's lane, a pipeline without one, each
        event checked and added on its own): per event 1 published, 0 published before, -1 lease
        lost.

        The write sends EVALSHA alone (no SCRIPT EXISTS ahead of it, as a pipeline that
        registers the script would: a second round trip per batch). A server without the script
        (a restart, a failover) answers NOSCRIPT; another client may load it while this batch is
        read (a large one arrives in several reads), so the events behind a NOSCRIPT could be
        published before it. The batch therefore counts its events in a key of its own, and the
        script takes an event only when every one before it was answered (else -2): from the
        first event not answered, the rest are published one after the other, loading the script."""
        if not events:
            return []
        if len(events) == 1:
            keys, args = self._publish_args(events[0])
            return [int(await run_script(self._publish, keys=keys, args=args))]
        self._batches += 1
        counter = f"{self._event_prefix}batch:{self._batch_tag}:{self._batches}"
        calls = []
        for place, event in enumerate(events, 1):
            keys, args = self._publish_args(event, place, counter)
            calls.append(("EVALSHA", self._publish.sha, len(keys), *keys, *args))
        lane = lane_of(self._redis)
        if lane is not None:  # the same one write, in order (core.redis_lane)
            replies = await lane.many(calls)
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.execute_command(*call)
                replies = await pipe.execute(raise_on_error=False)
        outcomes: list[int] = []
        for reply in replies:
            if isinstance(reply, NoScriptError):
                break
            if isinstance(reply, Exception):
                raise reply
            if int(reply) == _AFTER_UNPUBLISHED:
                break
            outcomes.append(int(reply))
        for event, reply in zip(events[len(outcomes) :], replies[len(outcomes) :], strict=True):
            if type(reply) is int and reply == 1:
                # Published by this call (the counter makes it impossible behind a break; were
                # it ever so, the answer still says what happened).
                outcomes.append(1)
                continue
            # In order, each alone (the one before it is answered by then); loads the script.
            keys, args = self._publish_args(event)
            outcomes.append(int(await run_script(self._publish, keys=keys, args=args)))
        return outcomes

    def _publish_args(
        self, event: PositionEvent, place: int = 0, counter: str | None = None
    ) -> tuple[list[str], list[Any]]:
        return self._script_args(
            event.event_id, POSITION_EVENT_TYPE, dumps_position_event(event), event.time, place, counter
        )

    def _script_args(
        self,
        event_id: str,
        event_type: str,
        payload: str | bytes,
        time: datetime,
        place: int = 0,
        counter: str | None = None,
    ) -> tuple[list[str], list[Any]]:
        """The publish script's keys and arguments for one entry of the position stream (a
        position event or a protection change): ``place`` in its batch (0 alone), the batch's
        ``counter`` key."""
        fields: list[str | bytes] = [
            "event_type",
            event_type,
            "payload",
            payload,
            "timestamp",
            isoformat(time),
            "source",
            POSITION_EVENT_SOURCE,
        ]
        keys = [self.lease_key, self._event_prefix + event_id, self.position_stream]
        if counter is not None:
            keys.append(counter)
        return keys, [self.held_value, EVENT_ID_TTL_S, self._maxlen, place, _BATCH_TTL_S, *fields]

    async def publish_protection(self, event: ProtectionChanged) -> int:
        """Publish a ``protection.changed`` entry once under the lease: 1 published, 0 published
        before, -1 lease lost."""
        keys, args = self._script_args(event.event_id, event.event_type, event.to_json(), event.time)
        return int(await self._publish(keys=keys, args=args))

    def _records_of(self, symbol: str) -> str:
        return f"{self.records_key}:{symbol}"

    async def put_record(self, record: Record, labels: dict[str, str] | None = None) -> None:
        """Write ``record``; ``labels`` (the producer's model/strategy) are kept for the ledger."""
        commands: list[tuple[Any, ...]] = [
            ("HSET", self._records_of(record.symbol), record.digest, record.to_json()),
            ("SADD", self._symbols_key, record.symbol),
        ]
        if labels and record.intent_id:
            commands.append(
                ("SET", self.labels_key(record.intent_id), orjson.dumps(labels), "EX", LABELS_TTL_S)
            )
        await self.batch.many(*commands)

    async def put_opened(self, record: Record, *, seen: bool = False) -> bool:
        """Write the ``opened`` ``record`` (``entry_filled`` set); over a record of the intent
        that already is ``opened`` (a redelivered intent's attempt), merged by compare-and-set:
        what fills took off it since stays off, and only what the entry filled beyond that
        record's ``entry_filled`` is added; one dropped meanwhile stays dropped. One script in the
        common case; False when nothing was written."""
        assert record.opened and record.entry_filled is not None
        keys = [self._records_of(record.symbol), self._symbols_key]
        # ``seen``: the caller read the record there before (a resumed attempt): gone, it stays gone.
        write, expected, was = record, b"", b"1" if seen else b""
        for _ in range(_MERGE_TRIES):
            args = [record.digest, write.to_json(), record.symbol, expected, was]
            answer = await self.batch.script(self._put_opened, keys, args)
            if answer == 1:
                return True
            if answer == -1:
                return False  # dropped since it was read: its position closed
            if answer == 0:
                # Changed since it was read (a fill's follow-up, a drop): read it again.
                write, expected = record, b""
                continue
            there = Record.from_json(record.digest, answer)
            merged = merged_opened(there, record)
            if merged is None:
                return False
            write, expected, was = merged, there.raw or b"", b"1"
        raise RecordChanging(f"the record of {record.intent_key} kept changing under its 'opened' write")

    def labels_key(self, intent_id: str) -> str:
        return f"{self._labels_prefix}{intent_id}"

    async def labels_many(self, intent_ids: list[str]) -> dict[str, dict[str, str]]:
        """The model/strategy the producer gave each intent, in one round trip (``{}`` unknown)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for intent_id in intent_ids:
                pipe.get(self.labels_key(intent_id))
            raws = await pipe.execute()
        return {i: dict(orjson.loads(raw)) if raw else {} for i, raw in zip(intent_ids, raws, strict=True)}

    async def get_record(self, symbol: str, digest: str) -> Record | None:
        raw = await self._redis.hget(self._records_of(symbol), digest)
        return Record.from_json(digest, raw) if raw is not None else None

    async def records_of(self, symbol: str) -> list[Record]:
        """The records of one symbol (kept apart so a fill reads only its own symbol's)."""
        # Read at once, beside the batch (a read of a record still queued is a race anyway: the
        # caller's own writes are awaited before it reads).
        raw: dict[Any, Any] = await self._redis.hgetall(self._records_of(symbol))
        return [Record.from_json(k.decode() if isinstance(k, bytes) else k, v) for k, v in raw.items()]

    async def records(self) -> list[Record]:
        """Every record (the reconciliation's input)."""
        symbols: Any = await self._redis.smembers(self._symbols_key)
        found: list[Record] = []
        for symbol in sorted(m.decode() if isinstance(m, bytes) else str(m) for m in symbols):
            found.extend(await self.records_of(symbol))
        return found

    async def drop_record(self, symbol: str, digest: str) -> None:
        # At once, beside the batch: the publisher's drop after a stop filled races the live OCO's
        # read of the flat symbol (which would otherwise ask REST before dropping it again).
        await self._redis.hdel(self._records_of(symbol), digest)

    async def replace_record(self, read: Record, new: Record | None) -> int:
        """``read`` (as read, with its ``raw``) becomes ``new`` (None: dropped), under the lease:
        1 written, 0 it changed since it was read (read it again), -1 not the holder."""
        assert read.raw is not None, "a record read from Redis"
        # At once on its own connection, not on the lane (written at the end of the loop turn):
        # a stop's drop races the live OCO's read of the flat symbol, sent at once too.
        return int(
            await self._replace_record(
                keys=[self.lease_key, self._records_of(read.symbol)],
                args=[self.held_value, read.digest, read.raw, b"" if new is None else new.to_json()],
            )
        )

    async def drop_records(self, symbol: str, digests: list[str]) -> None:
        """Drop these records of ``symbol`` (one command whatever their number)."""
        if digests:
            await self.batch.call("HDEL", self._records_of(symbol), *digests)

    async def drop_opened(self, symbol: str, long: bool | None, also: Collection[str] = ()) -> int:
        """Drop the records of ``symbol``'s position (of side ``long``, or every side), and the
        records ``also`` (digests), in one script: no read of the records first. How many were
        dropped."""
        side = "" if long is None else "1" if long else "0"
        return int(await self.batch.script(self._drop_opened, [self._records_of(symbol)], [side, *also]))
