"""Redis keys in one place, idempotency records and per-symbol leases with fencing tokens.

Keys (``P`` is ``settings.key_prefix``):

* ``P:idem:<intent key>`` - hash: ``state`` (``in_flight`` then ``done``), ``owner``, ``token``,
  ``stream_id``, ``hash`` (of the normalized intent: a re-used id with another payload is a
  conflict), ``attempts`` (attempts that began executing: the first, and each resume that sent an
  order), ``fenced_at`` (ms, Redis clock: the last moment the attempt was allowed to send an
  order), ``repair`` (1: the poison repair began; 2: the read-only lookup that answers a poison
  intent whose repair died too began), ``received`` (ms, epoch: when the first attempt's
  entry was read: the result's ``first_received_at``), and once done ``result_id``. Expires after
  ``idempotency_ttl_days``.
* ``P:lease:<symbol>`` - ``<token>|<owner>``, SET with PX ``lease_ttl_ms``: only its holder
  executes intents of the symbol. Renewed while working, released by compare-and-delete.
* ``P:pacing:instances`` - sorted set: each live instance (consumer name) scored with the Redis
  time (ms) its heartbeat expires; ``P:pacing:usage`` - hash: what each of them last reported it
  sent (:mod:`quantum_exec.stream.shared_pacing`).
* ``P:fence:<symbol>`` - the last fencing token issued for the symbol (INCR, never expires: it is
  a counter, not a lock). The final commit checks it atomically, so a holder whose lease expired
  and was taken over cannot publish over the newer owner.

Every multi-key change is one Lua script (:mod:`.store_scripts`), so a reply lost on the way back
can be retried safely: the second run finds the record ``done`` and only acknowledges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis

from quantum_exec.core.scripts import run_script
from quantum_exec.core.settings import Settings
from quantum_exec.stream import store_scripts as scripts


class Keys:
    """Every Redis key and stream name the service uses."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.key_prefix
        self.intent_stream = settings.intent_stream
        self.consumer_group = settings.consumer_group
        self.result_stream = settings.result_stream
        self.dlq_stream = settings.dlq_stream

    def idempotency(self, intent_key: str) -> str:
        """Hash holding the in-flight / done record of one intent."""
        return f"{self.prefix}:idem:{intent_key}"

    def lease(self, symbol: str) -> str:
        """Per-symbol execution lease."""
        return f"{self.prefix}:lease:{symbol}"

    def fence(self, symbol: str) -> str:
        """Per-symbol fencing-token counter."""
        return f"{self.prefix}:fence:{symbol}"

    def plan(self, intent_key: str) -> str:
        """The child orders of a sliced entry or close (``execution.entries.slices.Plan``)."""
        return f"{self.prefix}:plan:{intent_key}"

    def pacing_instances(self) -> str:
        """The live instances sharing the account's pacing budget, scored by heartbeat expiry."""
        return f"{self.prefix}:pacing:instances"

    def pacing_usage(self) -> str:
        """Each live instance's reported usage of the rate-limit windows."""
        return f"{self.prefix}:pacing:usage"

    def close_signal(self, symbol: str) -> str:
        """The stream id of the newest CLOSE of ``symbol`` read by any consumer."""
        return f"{self.prefix}:close:{symbol}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A held per-symbol lease; ``token`` increases with every acquisition of the symbol."""

    symbol: str
    owner: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.token}|{self.owner}"


class BeginState(StrEnum):
    DONE = "done"  # a final result exists: only ack
    NEW = "new"  # first attempt
    RESUMED = "resumed"  # an earlier attempt started: the executor must look its orders up first
    CONFLICT = "conflict"  # the intent id was used before for a different intent


# The stages of a poison intent's answer, kept in its record's ``repair`` field.
REPAIR_BEGAN: Final = 1
LOOKUP_BEGAN: Final = 2


@dataclass(frozen=True, slots=True)
class Begun:
    """What the begin script found: the state, how many attempts died executing, and when an
    earlier attempt was last allowed to send an order (ms of Redis's clock, 0 when unknown)."""

    state: BeginState
    attempts: int = 0
    fenced_at_ms: int = 0
    # 0, REPAIR_BEGAN or LOOKUP_BEGAN (see the ``repair`` field above).
    repair_stage: int = 0
    now_ms: int = 0
    # When the first attempt's entry was read (epoch ms; 0 when unknown): the intent's timings
    # run from here across redeliveries and restarts.
    received_ms: int = 0

    @property
    def first_received_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.received_ms / 1000, UTC) if self.received_ms else None


class CommitStatus(StrEnum):
    PUBLISHED = "published"
    DUPLICATE = "duplicate"
    FENCED = "fenced"
    HELD = "held"  # unfenced, and an attempt began the intent: the intent_id is another's


@dataclass(frozen=True, slots=True)
class Older:
    """Entries older than the one asking were pending in the group (nothing was taken).

    ``ids`` is the first page of them; ``complete`` is false when there may be more.
    """

    ids: list[str]
    complete: bool


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    status: CommitStatus
    result_id: str | None = None
    # The commit gave the symbol's lease back (or found it no longer ours): nothing to release.
    released: bool = False


ORDER_CHECK_PAGE = 200


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    """Idempotency records, leases and the atomic publish + done + ack commit."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings)
        self._lease_ttl_ms = settings.lease_ttl_ms
        self._ttl_s = settings.idempotency_ttl_days * 86_400
        self._result_maxlen = settings.result_maxlen
        self._acquire = redis.register_script(scripts.ACQUIRE)
        self._renew = redis.register_script(scripts.RENEW)
        self._release = redis.register_script(scripts.RELEASE)
        self._acquire_and_begin = redis.register_script(scripts.ACQUIRE_AND_BEGIN)
        self._fence = redis.register_script(scripts.FENCE)
        self._dead_letter_only = redis.register_script(scripts.DEAD_LETTER_ONLY)
        self._commit = redis.register_script(scripts.COMMIT)

    async def acquire_lease(self, symbol: str, owner: str) -> Lease | None:
        """Take the symbol's lease with a fresh fencing token, or None when another owner holds it."""
        token = await run_script(
            self._acquire,
            keys=[self.keys.lease(symbol), self.keys.fence(symbol)],
            args=[owner, self._lease_ttl_ms],
        )
        if token is None:
            return None
        return Lease(symbol=symbol, owner=owner, token=int(token))

    async def renew_lease(self, lease: Lease) -> bool:
        """Extend the lease; False when it was lost (expired, maybe taken by someone else)."""
        renewed = await run_script(
            self._renew, keys=[self.keys.lease(lease.symbol)], args=[lease.value, self._lease_ttl_ms]
        )
        return bool(renewed)

    async def release_lease(self, lease: Lease) -> None:
        """Delete the lease only if it is still ours."""
        await run_script(self._release, keys=[self.keys.lease(lease.symbol)], args=[lease.value])

    async def acquire_and_begin(
        self,
        symbol: str,
        owner: str,
        intent_key: str,
        stream_id: str,
        intent_hash: str,
        *,
        received_at: datetime | None = None,
        order_check: bool = True,
        other_symbols: Sequence[str] = (),
    ) -> tuple[Lease, Begun] | Older | None:
        """Check the order, take the symbol's lease and mark the intent in flight under it, atomically.

        :class:`Older` when ``order_check`` found older entries pending in the group (the caller
        sorts out whether one is of this symbol); None when another owner holds the lease;
        ``received_at`` (when the entry was read, now by default) is kept as the first attempt's;
        otherwise the lease and what the record says (done, new, resumed with its attempt count
        and last fence time, or an id conflict). ``other_symbols``: older entries known to be of
        other symbols, which the order check passes over.
        """
        reply = await run_script(
            self._acquire_and_begin,
            keys=[
                self.keys.lease(symbol),
                self.keys.fence(symbol),
                self.keys.idempotency(intent_key),
                self.keys.intent_stream,
            ],
            args=[
                owner,
                self._lease_ttl_ms,
                stream_id,
                self._ttl_s,
                intent_hash,
                self.keys.consumer_group if order_check else "",
                ORDER_CHECK_PAGE,
                int((received_at or datetime.now(UTC)).timestamp() * 1000),
                *(other_symbols if order_check else ()),
            ],
        )
        if reply is None:
            return None
        if int(reply[0]) == -1:
            ids = [_text(v) for v in reply[2:]]
            return Older(ids, complete=not int(reply[1]))
        token, state, attempts, fenced_at, repair, now_ms, received_ms = (int(v) for v in reply)
        begun = Begun(
            (BeginState.DONE, BeginState.NEW, BeginState.RESUMED, BeginState.CONFLICT)[state],
            attempts=attempts,
            fenced_at_ms=fenced_at,
            repair_stage=repair,
            now_ms=now_ms,
            received_ms=received_ms,
        )
        return Lease(symbol=symbol, owner=owner, token=token), begun

    async def fence(self, lease: Lease, intent_key: str, *, count_attempt: bool) -> bool:
        """Renew the lease right before an order and record the time; False when it was lost."""
        renewed = await run_script(
            self._fence,
            keys=[self.keys.lease(lease.symbol), self.keys.idempotency(intent_key)],
            args=[lease.value, self._lease_ttl_ms, "1" if count_attempt else "0"],
        )
        return bool(renewed)

    async def mark_repair(self, intent_key: str, stage: int = 1) -> None:
        """Record that the one repair of a poison intent began (``REPAIR_BEGAN``), or the one
        lookup that answers it once the repair died too (``LOOKUP_BEGAN``): a crash skips it."""
        await self.redis.hset(self.keys.idempotency(intent_key), "repair", str(stage))

    async def dead_letter_only(self, stream_id: str, dead_letter: Mapping[bytes | str, bytes | str]) -> None:
        """Dead-letter an entry and ack it, publishing no result (its intent already has one)."""
        args: list[bytes | str] = [self.keys.consumer_group, stream_id]
        for name, value in dead_letter.items():
            args += [name, value]
        keys = [self.keys.intent_stream, self.keys.dlq_stream]
        await run_script(self._dead_letter_only, keys=keys, args=args)

    async def is_done(self, intent_key: str) -> bool:
        """True when the intent already has a published final result."""
        state = await self.redis.hget(self.keys.idempotency(intent_key), "state")
        return state is not None and _text(state) == "done"

    async def commit(
        self,
        *,
        intent_key: str,
        stream_id: str,
        result_fields: dict[str, bytes],
        lease: Lease | None,
        dead_letter: Mapping[bytes | str, bytes | str] | None = None,
        release: bool = False,
    ) -> CommitOutcome:
        """Publish the result, record it as done, dead-letter if asked and XACK - atomically.

        With a ``lease`` the commit is refused (FENCED) when a newer token was issued for the
        symbol. When the intent is already done, nothing is published and the entry is only acked.
        Without one it is refused (HELD) when an attempt began the intent: nothing is written.
        ``release``: a published or duplicate commit also gives ``lease`` back if still ours
        (:attr:`CommitOutcome.released`).
        """
        symbol = lease.symbol if lease is not None else ""
        result_args: list[bytes | str] = []
        for name, value in result_fields.items():
            result_args += [name, value]
        dlq_args: list[bytes | str] = []
        for dlq_name, dlq_value in (dead_letter or {}).items():
            dlq_args += [dlq_name, dlq_value]
        args: list[Any] = [
            str(lease.token) if lease is not None else "0",
            self.keys.consumer_group,
            stream_id,
            self._result_maxlen,
            self._ttl_s,
            len(result_args),
            lease.value if lease is not None and release else "",
            *result_args,
            *dlq_args,
        ]
        reply = await run_script(
            self._commit,
            keys=[
                self.keys.idempotency(intent_key),
                self.keys.fence(symbol),
                self.keys.result_stream,
                self.keys.intent_stream,
                self.keys.dlq_stream,
                self.keys.lease(symbol),
            ],
            args=args,
        )
        status = CommitStatus(_text(reply[0]))
        done = status in (CommitStatus.PUBLISHED, CommitStatus.DUPLICATE)
        released = release and lease is not None and done
        return CommitOutcome(status, _text(reply[1]) if len(reply) > 1 else None, released)
