"""The consumer-group loop: at-least-once delivery, exactly-once effects, per-symbol order.

Delivery. One consumer group, many instances, each with a stable consumer name. On start the
consumer re-reads its own pending entries (from id ``0``), then new ones (``>``, BLOCK). A
maintenance loop XAUTOCLAIMs entries idle longer than ``claim_idle_ms`` from dead consumers and
keeps the entries *this* consumer holds fresh (XCLAIM JUSTID to itself), so an entry that waits
for its turn or runs long is not stolen while its owner is alive.

Effects. The result is published, the idempotency record set to ``done`` and the entry acked in
one Lua script (:meth:`Store.commit`); an intent whose key is already ``done`` is only acked.
Every entry gets exactly one answer: undecodable and poison entries are dead-lettered *and*
answered with a rejected/failed result.

Order. Intents of one symbol run strictly in stream order across all instances: before running
entry E of symbol S, no entry of S with a smaller id may still be pending in the group (entries
are delivered in id order, so every smaller id is either pending or acked); then the symbol's
lease is taken with a fresh fencing token, checked again by the commit. Within one instance a
per-symbol worker takes its entries smallest id first, so it never waits on itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quantum_exec.contracts import (
    ErrorSource,
    ExecutionResult,
    PayloadError,
    ProtectionState,
    ResultError,
    ResultStatus,
    Side,
    TradeIntent,
    decode_entry,
    encode_result_fields,
    intent_key,
    parse_intent,
)
from quantum_exec.errors import IntentRejected, ReasonCode
from quantum_exec.execution import fencing
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.settings import Settings
from quantum_exec.stream.store import BeginState, CommitOutcome, CommitStatus, Lease, Store

log = get_logger(__name__)


class Handler(Protocol):
    """Executes one valid intent (the executor in production); never raises for business outcomes.

    ``resume`` is true when an earlier attempt may have placed orders (the idempotency record
    was already in flight, or the entry was delivered before): look orders up before placing.
    """

    def __call__(
        self, intent: TradeIntent, stream_id: str, received_at: datetime, *, resume: bool
    ) -> Awaitable[ExecutionResult]: ...


ProgressHook = Callable[[], None]
T = TypeVar("T")
# Stream entry fields as redis-py returns them (bytes keys and values with decode_responses off).
Fields = dict[Any, Any]

# Errors after which the client reconnects by itself on the next command.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_SYMBOL_CACHE_SIZE = 100_000
_PENDING_PAGE = 500
_WAIT_MIN_S = 0.02
_WAIT_MAX_S = 0.5
_LAG_SCAN_LIMIT = 10_000
# A lease confirmed by Redis this recently needs no renewal round trip before an order.
_FENCE_FRESH_S = 0.05
_KEEPER_EXIT_S = 1.0
_CANCEL_WAIT_S = 5.0
_INTENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def id_order(stream_id: str) -> tuple[int, int]:
    """Sort key of a stream id (``ms-seq``)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def id_time_s(stream_id: str) -> float:
    """The stream id's creation time in epoch seconds."""
    return id_order(stream_id)[0] / 1000.0


def raw_symbol(fields: Fields) -> str | None:
    """The symbol an entry names, normalised like ``parse_intent``; None when undecodable."""
    try:
        symbol = decode_entry(fields).get("symbol")
    except PayloadError:
        return None
    if not isinstance(symbol, str):
        return None
    return symbol.strip().upper()


@dataclass(eq=False)
class _Entry:
    stream_id: str
    fields: Fields
    deliveries: int
    received_at: datetime
    intent: TradeIntent | None = None
    started: bool = False  # past the point where it may be dropped (handler or commit under way)
    dropped: bool = False  # taken over by another consumer or acked elsewhere before starting


@dataclass(eq=False)
class _SymbolQueue:
    heap: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None


class IntentConsumer:
    """Consumes the intent stream as one member of the consumer group.

    ``handler(intent, stream_id, received_at)`` executes a valid intent and returns its result
    (the executor in production); ``on_progress()`` is called whenever the read loop made progress
    or completed a blocking read (feed the systemd watchdog from it).
    """

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        handler: Handler,
        *,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.handler = handler
        self.on_progress = on_progress
        self.store = Store(redis, settings)
        self.keys = self.store.keys
        self.consumer = settings.consumer_name
        self._limit = settings.max_concurrency + settings.read_count
        self._held: dict[str, _Entry] = {}
        self._queues: dict[str, _SymbolQueue] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._space = asyncio.Event()
        self._stopping = asyncio.Event()
        self._symbols: OrderedDict[str, str | None] = OrderedDict()
        self._claim_cursor = "0-0"
        self._group_ready = False
        self._redis_down = False
        self._reader: asyncio.Task[None] | None = None
        self._maintainer: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self.drained = True  # False when stop() had to cancel work after the grace period
        if settings.claim_interval_s * 1000 * 2 > settings.claim_idle_ms:
            # Held entries are refreshed once per claim interval: slower than half the idle bound
            # lets other consumers claim entries this one is still working on.
            log.warning(
                "consumer.claim_interval_too_long",
                claim_interval_s=settings.claim_interval_s,
                claim_idle_ms=settings.claim_idle_ms,
            )

    # lifecycle

    async def start(self) -> None:
        """Create the group (so readiness means it exists), then start the read and maintenance loops.

        The read loop creates it again after a Redis restart that lost it.
        """
        if self._reader is not None:
            return
        await self._ensure_group()
        self._reader = asyncio.create_task(self._read_loop(), name="intent-reader")
        self._maintainer = asyncio.create_task(self._maintenance_loop(), name="intent-maintenance")
        log.info("consumer.started", consumer=self.consumer, stream=self.keys.intent_stream)

    async def stop(self) -> None:
        """Stop reading, let in-flight intents finish within the grace period, cancel the rest.

        Safe to call twice (and concurrently): later calls wait for the first.
        """
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop())
        await asyncio.shield(self._stop_task)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` has finished."""
        return self._stop_task is not None and self._stop_task.done()

    @property
    def running(self) -> bool:
        """True while the read loop runs and no stop was asked for (a readiness check)."""
        return self._reader is not None and not self._reader.done() and not self._stopping.is_set()

    async def _stop(self) -> None:
        self._stopping.set()
        log.info("consumer.stopping", in_flight=self._in_flight(), held=len(self._held))
        await _cancel(self._reader)
        for queue in self._queues.values():
            queue.wakeup.set()
        pending = self._work()
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
            self.drained = not late
            if late:
                log.warning("consumer.shutdown_cancelled", tasks=sorted(t.get_name() for t in late))
            while late:
                # Repeated: a cancellation can be swallowed by a library call under way.
                for task in late:
                    task.cancel()
                _done, late = await asyncio.wait(late, timeout=_CANCEL_WAIT_S)
        await _cancel(self._maintainer)
        log.info("consumer.stopped", left_pending=len(self._held))

    def _work(self) -> set[asyncio.Task[Any]]:
        work = set(self._tasks)
        work.update(q.worker for q in self._queues.values() if q.worker is not None)
        return work

    def _in_flight(self) -> int:
        return sum(1 for e in self._held.values() if e.started)

    # reading

    async def _read_loop(self) -> None:
        own_pending_done = False
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                await self._ensure_group()
                if not own_pending_done:
                    await self._read_own_pending()
                    own_pending_done = True
                capacity = self._limit - len(self._held)
                if capacity <= 0:
                    self._space.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._space.wait(), self.settings.block_ms / 1000)
                    self._progress()
                    continue
                reply = await self.redis.xreadgroup(
                    self.keys.consumer_group,
                    self.consumer,
                    {self.keys.intent_stream: ">"},
                    count=min(capacity, self.settings.read_count),
                    block=self.settings.block_ms,
                )
                self._redis_up()
                entries = _entries(reply)
                for stream_id, fields in entries:
                    self._dispatch(stream_id, fields, deliveries=1)
                backoff = 0.05
                self._progress()
                if entries:
                    # Let the symbol workers just started send their first command before this
                    # loop packs and sends the next blocking read: it is on their critical path.
                    await asyncio.sleep(0)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream or group vanished (Redis restarted without persistence, or
                    # someone deleted it): recreate it and look at our pending list again.
                    log.warning("consumer.group_missing", stream=self.keys.intent_stream)
                    self._group_ready = False
                    own_pending_done = False
                    continue
                log.exception("consumer.read_failed", error=str(exc))
                backoff = await self._pause(backoff)
            except REDIS_DOWN as exc:
                self._redis_lost(exc, "read")
                # Alive and retrying: keep feeding the watchdog (/readyz says not ready), so a
                # Redis outage does not turn into systemd restarts that burn the start limit.
                self._progress()
                backoff = await self._pause(backoff)
            except Exception as exc:
                log.exception("consumer.read_failed", error=str(exc))
                backoff = await self._pause(backoff)

    async def _pause(self, backoff_s: float) -> float:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), backoff_s)
        return min(backoff_s * 2, self.settings.redis_reconnect_max_s)

    def _redis_lost(self, exc: BaseException, where: str) -> None:
        if not self._redis_down:
            self._redis_down = True
            metrics.REDIS_RECONNECTS.inc()
            log.warning("redis.connection_lost", where=where, error=str(exc))

    def _redis_up(self) -> None:
        if self._redis_down:
            self._redis_down = False
            log.info("redis.connection_restored")

    def _progress(self) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress()
            except Exception:
                log.exception("consumer.progress_hook_failed")

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(
                self.keys.intent_stream, self.keys.consumer_group, id="0", mkstream=True
            )
            log.info("consumer.group_created", group=self.keys.consumer_group, stream=self.keys.intent_stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _read_own_pending(self) -> None:
        """Re-process what this consumer name was given before a crash or restart."""
        last = "0"
        while not self._stopping.is_set():
            reply = await self.redis.xreadgroup(
                self.keys.consumer_group,
                self.consumer,
                {self.keys.intent_stream: last},
                count=self.settings.read_count,
            )
            entries = _entries(reply)
            if not entries:
                return
            counts = await self._delivery_counts(entries[0][0], entries[-1][0], self.consumer)
            deleted = [sid for sid, fields in entries if not fields]
            if deleted:
                await self._ack_deleted(deleted, "own_pending")
            for stream_id, fields in entries:
                if fields and stream_id not in self._held:
                    metrics.REDELIVERIES.inc()
                    self._dispatch(stream_id, fields, deliveries=counts.get(stream_id, 2))
            log.info("consumer.own_pending", entries=len(entries), deleted=len(deleted))
            last = entries[-1][0]

    async def _delivery_counts(self, first: str, last: str, consumer: str | None) -> dict[str, int]:
        rows = await self.redis.xpending_range(
            self.keys.intent_stream,
            self.keys.consumer_group,
            min=first,
            max=last,
            count=self._limit + self.settings.claim_page_size,
            consumername=consumer,
        )
        return {_text(row["message_id"]): int(row["times_delivered"]) for row in rows}

    async def _ack_deleted(self, stream_ids: list[str], where: str) -> None:
        metrics.CLAIM_DELETED.inc(len(stream_ids))
        log.warning(
            "consumer.pending_deleted", where=where, stream_ids=stream_ids[:20], count=len(stream_ids)
        )
        await self.redis.xack(self.keys.intent_stream, self.keys.consumer_group, *stream_ids)

    # dispatching

    def _dispatch(self, stream_id: str, fields: Fields, *, deliveries: int) -> None:
        if stream_id in self._held or self._stopping.is_set():
            return  # when stopping, the entry stays pending for the next start or another consumer
        metrics.INTENTS_RECEIVED.inc()
        entry = _Entry(stream_id, fields, deliveries, datetime.now(UTC))
        self._held[stream_id] = entry
        try:
            payload = decode_entry(fields)
        except PayloadError as exc:
            self._remember_symbol(stream_id, None)
            self._spawn(self._answer_invalid(entry, ReasonCode.INVALID_PAYLOAD, str(exc), payload=None))
            return
        try:
            intent = parse_intent(payload)
        except IntentRejected as exc:
            self._remember_symbol(stream_id, raw_symbol(fields))
            if deliveries > self.settings.max_deliveries:
                self._spawn(self._answer_invalid(entry, ReasonCode.POISON_MESSAGE, exc.message, payload))
            else:
                self._spawn(self._answer_rejected(entry, payload, exc))
            return
        entry.intent = intent
        self._remember_symbol(stream_id, intent.symbol)
        queue = self._queues.get(intent.symbol)
        if queue is None:
            queue = self._queues[intent.symbol] = _SymbolQueue()
        heapq.heappush(queue.heap, (id_order(stream_id), stream_id))
        queue.wakeup.set()
        if queue.worker is None:
            queue.worker = asyncio.create_task(
                self._symbol_worker(intent.symbol, queue), name=f"symbol-{intent.symbol}"
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, entry: _Entry) -> None:
        self._held.pop(entry.stream_id, None)
        self._space.set()

    def _remember_symbol(self, stream_id: str, symbol: str | None) -> None:
        self._symbols[stream_id] = symbol
        if len(self._symbols) > _SYMBOL_CACHE_SIZE:
            self._symbols.popitem(last=False)

    # answers that need no exchange: invalid, rejected, poison

    async def _answer_invalid(
        self, entry: _Entry, reason: ReasonCode, message: str, payload: dict[str, Any] | None
    ) -> None:
        """Dead-letter the entry and answer it with a rejected (undecodable) or failed (poison) result."""
        entry.started = True
        poison = reason is ReasonCode.POISON_MESSAGE
        key = _payload_intent_id(payload) or entry.stream_id
        symbol = raw_symbol(entry.fields) or ""
        result = ExecutionResult(
            symbol=symbol,
            status=ResultStatus.FAILED if poison else ResultStatus.REJECTED,
            intent_id=key,
            stream_id=entry.stream_id,
            error=ResultError(
                code=reason.value,
                source=ErrorSource.INTERNAL if poison else ErrorSource.VALIDATION,
                message=message,
            ),
            received_at=entry.received_at,
            completed_at=datetime.now(UTC),
            meta={},
        )
        dead_letter = _dead_letter_fields(entry, reason, message, self.consumer)
        try:
            await self._commit(entry, key, result, lease=None, dead_letter=dead_letter)
        finally:
            self._forget(entry)

    async def _answer_rejected(self, entry: _Entry, payload: dict[str, Any], exc: IntentRejected) -> None:
        entry.started = True
        key = _payload_intent_id(payload) or entry.stream_id
        side = payload.get("side", payload.get("action"))
        result = ExecutionResult(
            symbol=raw_symbol(entry.fields) or "",
            status=ResultStatus.REJECTED,
            intent_id=key,
            stream_id=entry.stream_id,
            error=ResultError(code=exc.code, source=ErrorSource.VALIDATION, message=exc.message),
            received_at=entry.received_at,
            completed_at=datetime.now(UTC),
            meta={"side": side} if isinstance(side, str) else {},
        )
        try:
            await self._commit(entry, key, result, lease=None)
        finally:
            self._forget(entry)

    # valid intents: one worker per symbol

    async def _symbol_worker(self, symbol: str, queue: _SymbolQueue) -> None:
        try:
            while queue.heap and not self._stopping.is_set():
                stream_id = queue.heap[0][1]
                entry = self._held.get(stream_id)
                if entry is None or entry.dropped:
                    heapq.heappop(queue.heap)
                    continue
                try:
                    if not await self._wait_turn(symbol, queue, entry):
                        continue  # a smaller id arrived, the entry was dropped, or stopping
                    async with self._slots:
                        await self._run(entry, symbol)
                except Exception as exc:
                    # Left pending: claimed again after claim_idle_ms (max_deliveries bounds it).
                    log.exception(
                        "intent.processing_failed", stream_id=stream_id, symbol=symbol, error=str(exc)
                    )
                queue.heap = [item for item in queue.heap if item[1] != stream_id]
                heapq.heapify(queue.heap)
                self._forget(entry)
        finally:
            queue.worker = None
            if self._queues.get(symbol) is queue and not queue.heap:
                del self._queues[symbol]

    async def _wait_turn(self, symbol: str, queue: _SymbolQueue, entry: _Entry) -> bool:
        """Wait until no smaller entry of ``symbol`` is pending in the group; False to re-pick."""
        stream_id = entry.stream_id
        delay = _WAIT_MIN_S
        logged = False
        while not self._stopping.is_set():
            if entry.dropped or queue.heap[0][1] != stream_id:
                return False
            try:
                blockers = await self._pending_before(symbol, stream_id)
            except REDIS_DOWN as exc:
                self._redis_lost(exc, "order_check")
                blockers = ["redis-down"]
            if not blockers:
                return True
            if not logged:
                log.info("intent.waiting_for_order", stream_id=stream_id, symbol=symbol, before=blockers[:5])
                logged = True
            queue.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.wakeup.wait(), delay)
            delay = min(delay * 2, _WAIT_MAX_S)
        return False

    async def _pending_before(self, symbol: str, stream_id: str) -> list[str]:
        """Ids of entries of ``symbol`` older than ``stream_id`` still pending in the group."""
        older: list[str] = []
        start = "-"
        while True:
            rows = await self.redis.xpending_range(
                self.keys.intent_stream,
                self.keys.consumer_group,
                min=start,
                max=f"({stream_id}",
                count=_PENDING_PAGE,
            )
            older += [_text(row["message_id"]) for row in rows]
            if len(rows) < _PENDING_PAGE:
                break
            start = f"({older[-1]}"
        unknown = [sid for sid in older if sid not in self._symbols]
        if unknown:
            # Entries are immutable: look each one up once and remember its symbol.
            pipe = self.redis.pipeline(transaction=False)
            for sid in unknown:
                pipe.xrange(self.keys.intent_stream, sid, sid, count=1)
            for sid, found in zip(unknown, await pipe.execute(), strict=True):
                self._remember_symbol(sid, raw_symbol(found[0][1]) if found else None)
        return [sid for sid in older if self._symbols.get(sid) == symbol]

    async def _run(self, entry: _Entry, symbol: str) -> None:
        """Take the lease, then execute (or dead-letter a poison entry) and commit under it."""
        intent = entry.intent
        assert intent is not None
        key = intent_key(intent, entry.stream_id)
        poison = entry.deliveries > self.settings.max_deliveries
        # Sent before the lease request: the lease is ours at least from here for lease_ttl_ms.
        confirmed_at = time.monotonic()
        taken = await self._acquire_lease(entry, symbol, None if poison else key)
        if taken is None:
            return
        lease, begun = taken
        released = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(lease, released), name=f"lease-{symbol}")
        try:
            if begun is None:
                await self._answer_poison(entry, intent, key, lease)
                return
            entry.started = True
            if begun is BeginState.DONE:
                await self._retry_redis(lambda: self._ack_duplicate(entry, key), "ack")
                return
            # Orders are sent only after the in-flight mark, so an entry delivered before whose mark
            # was never written cannot have orders: it runs as new, without waiting out lookups.
            resume = begun is BeginState.RESUMED

            async def still_owner() -> bool:
                # Right before each order (see fencing.py). A lease Redis confirmed moments ago
                # cannot have expired, and a takeover needs expiry (or a restart under our own
                # name): within _FENCE_FRESH_S the round trip would only add latency to every order.
                nonlocal confirmed_at
                asked_at = time.monotonic()
                if asked_at - confirmed_at < _FENCE_FRESH_S:
                    return True
                owned = await self._retry_redis(lambda: self.store.renew_lease(lease), "fence")
                if owned:
                    confirmed_at = asked_at
                return owned

            metrics.IN_FLIGHT.inc()
            fence = fencing.set_check(still_owner)
            try:
                result = await self.handler(intent, entry.stream_id, entry.received_at, resume=resume)
            except Exception as exc:
                # A bug, not a business outcome: leave the entry pending so it is claimed again
                # after claim_idle_ms; max_deliveries turns a repeating failure into a dead letter.
                log.exception(
                    "intent.handler_failed", stream_id=entry.stream_id, intent_id=key, error=str(exc)
                )
                return
            finally:
                fencing.reset_check(fence)
                metrics.IN_FLIGHT.dec()
            await self._commit(entry, key, result, lease=lease)
        finally:
            # An event, not cancel(): a cancellation landing inside a Redis call can be lost in the
            # client library, and the keeper would then renew forever.
            released.set()
            await asyncio.wait({keeper}, timeout=_KEEPER_EXIT_S)
            keeper.cancel()
            with contextlib.suppress(*REDIS_DOWN):  # else it expires by itself after lease_ttl_ms
                await self.store.release_lease(lease)

    async def _acquire_lease(
        self, entry: _Entry, symbol: str, begin_key: str | None
    ) -> tuple[Lease, BeginState | None] | None:
        """Wait for the symbol's lease; with ``begin_key`` also mark that intent in flight."""
        delay = _WAIT_MIN_S
        while not self._stopping.is_set() and not entry.dropped:
            taken: tuple[Lease, BeginState | None] | None
            try:
                if begin_key is None:
                    lease = await self.store.acquire_lease(symbol, self.consumer)
                    taken = (lease, None) if lease is not None else None
                else:
                    taken = await self.store.acquire_and_begin(
                        symbol, self.consumer, begin_key, entry.stream_id
                    )
            except REDIS_DOWN as exc:
                self._redis_lost(exc, "lease")
                taken = None
            if taken is not None:
                return taken
            await asyncio.sleep(delay)
            delay = min(delay * 2, _WAIT_MAX_S)
        return None

    async def _keep_lease(self, lease: Lease, released: asyncio.Event) -> None:
        interval_s = self.settings.lease_ttl_ms / 3000
        while not released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), interval_s)
            if released.is_set():
                return
            try:
                if not await self.store.renew_lease(lease):
                    log.warning("lease.lost", symbol=lease.symbol, token=lease.token)
                    return
            except REDIS_DOWN as exc:
                self._redis_lost(exc, "lease_renew")
            except Exception:
                log.exception("lease.renew_failed", symbol=lease.symbol)

    async def _ack_duplicate(self, entry: _Entry, key: str) -> None:
        await self.redis.xack(self.keys.intent_stream, self.keys.consumer_group, entry.stream_id)
        metrics.DUPLICATES.inc()
        log.info("intent.duplicate", stream_id=entry.stream_id, intent_id=key)

    async def _answer_poison(self, entry: _Entry, intent: TradeIntent, key: str, lease: Lease) -> None:
        entry.started = True
        message = f"delivered {entry.deliveries} times (max_deliveries={self.settings.max_deliveries})"
        protection = ProtectionState.NOT_REQUESTED
        state = await self._retry_redis(
            lambda: self.redis.hget(self.keys.idempotency(key), "state"), "poison"
        )
        if state is not None and _text(state) == "in_flight" and intent.side is not Side.CLOSE:
            # An earlier attempt began executing: it may have filled the entry without SL/TP.
            protection = ProtectionState.UNPROTECTED
            message += (
                f"; an earlier attempt began executing and may have opened a {intent.symbol} position "
                "that is not protected: check it"
            )
            log.error("position.unverified", intent_id=key, symbol=intent.symbol, stream_id=entry.stream_id)
        result = ExecutionResult(
            symbol=intent.symbol,
            action=intent.side,
            status=ResultStatus.FAILED,
            protection=protection,
            intent_id=key,
            stream_id=entry.stream_id,
            error=ResultError(
                code=ReasonCode.POISON_MESSAGE.value, source=ErrorSource.INTERNAL, message=message
            ),
            received_at=entry.received_at,
            completed_at=datetime.now(UTC),
            meta=intent.meta,
        )
        dead_letter = _dead_letter_fields(entry, ReasonCode.POISON_MESSAGE, message, self.consumer)
        await self._commit(entry, key, result, lease=lease, dead_letter=dead_letter)

    # committing

    async def _commit(
        self,
        entry: _Entry,
        key: str,
        result: ExecutionResult,
        *,
        lease: Lease | None,
        dead_letter: dict[bytes | str, bytes | str] | None = None,
    ) -> None:
        """Publish + done + (dead letter) + XACK atomically, retrying while Redis is away."""
        fields = encode_result_fields(result)
        outcome: CommitOutcome = await self._retry_redis(
            lambda: self.store.commit(
                intent_key=key,
                stream_id=entry.stream_id,
                result_fields=fields,
                lease=lease,
                dead_letter=dead_letter,
            ),
            "commit",
        )
        reason = result.error.code if result.error is not None else "ok"
        if outcome.status is CommitStatus.PUBLISHED:
            metrics.RESULTS_PUBLISHED.inc()
            metrics.INTENTS_EXECUTED.labels(status=result.status.value, reason=reason).inc()
            metrics.INTENT_LATENCY.observe(max(0.0, time.time() - id_time_s(entry.stream_id)))
            if dead_letter is not None:
                metrics.DEAD_LETTERS.labels(reason=_text(dead_letter["reason"])).inc()
                log.warning("intent.dead_lettered", stream_id=entry.stream_id, intent_id=key, reason=reason)
            log.info(
                "intent.result_published",
                stream_id=entry.stream_id,
                intent_id=key,
                symbol=result.symbol,
                status=result.status.value,
                reason=reason,
                result_id=outcome.result_id,
            )
        elif outcome.status is CommitStatus.DUPLICATE:
            metrics.DUPLICATES.inc()
            log.info("intent.duplicate", stream_id=entry.stream_id, intent_id=key)
        else:
            log.warning(
                "intent.commit_fenced", stream_id=entry.stream_id, intent_id=key, symbol=result.symbol
            )

    async def _retry_redis(self, call: Callable[[], Awaitable[T]], where: str) -> T:
        """Run a Redis call until it gets through; safe because every call here is idempotent."""
        delay = 0.05
        while True:
            try:
                value = await call()
            except REDIS_DOWN as exc:
                self._redis_lost(exc, where)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.redis_reconnect_max_s)
                continue
            self._redis_up()
            return value

    # maintenance: keep held entries fresh, claim from the dead, gauges

    async def _maintenance_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._group_ready:
                    await self._refresh_held()
                    await self._autoclaim()
                    await self._update_gauges()
            except REDIS_DOWN as exc:
                self._redis_lost(exc, "maintenance")
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("consumer.maintenance_failed", error=str(exc))
            except Exception as exc:
                log.exception("consumer.maintenance_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.claim_interval_s)

    async def _refresh_held(self) -> None:
        """Reset the idle time of entries we still own; drop unstarted ones we no longer own.

        Also acks entries in our pending list that were deleted from the stream (on Redis 6.2
        XAUTOCLAIM reports them without their id).
        """
        # Only entries held before asking: one read concurrently may not be in the reply yet.
        snapshot = dict(self._held)
        rows = await self.redis.xpending_range(
            self.keys.intent_stream,
            self.keys.consumer_group,
            min="-",
            max="+",
            count=self._limit + self.settings.claim_page_size * self.settings.claim_max_pages,
            consumername=self.consumer,
        )
        owned = {_text(row["message_id"]) for row in rows}
        for stream_id, entry in snapshot.items():
            if stream_id not in owned and not entry.started:
                entry.dropped = True
                self._forget(entry)
                log.info("intent.dropped_not_owned", stream_id=stream_id)
        fresh: list[Any] = [sid for sid in snapshot if sid in owned and sid in self._held]
        if fresh:
            await self.redis.xclaim(
                self.keys.intent_stream, self.keys.consumer_group, self.consumer, 0, fresh, justid=True
            )
        orphans = [sid for sid in owned if sid not in self._held]
        if orphans:
            pipe = self.redis.pipeline(transaction=False)
            for sid in orphans:
                pipe.xrange(self.keys.intent_stream, sid, sid, count=1)
            deleted = [sid for sid, found in zip(orphans, await pipe.execute(), strict=True) if not found]
            if deleted:
                await self._ack_deleted(deleted, "refresh")

    async def _autoclaim(self) -> None:
        for _page in range(self.settings.claim_max_pages):
            if self._stopping.is_set() or len(self._held) >= self._limit:
                return
            reply: Any = await self.redis.xautoclaim(
                self.keys.intent_stream,
                self.keys.consumer_group,
                self.consumer,
                self.settings.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self.settings.claim_page_size,
            )
            # Redis >= 7: [cursor, entries, deleted ids]; 6.2: [cursor, entries] with deleted
            # entries as (None, None), left in our pending list for _refresh_held to ack.
            self._claim_cursor = _text(reply[0])
            live = [(_text(sid), fields) for sid, fields in reply[1] if sid is not None and fields]
            deleted = [_text(sid) for sid in reply[2]] if len(reply) > 2 else []
            if deleted:
                await self._ack_deleted(deleted, "autoclaim")
            if live:
                metrics.CLAIMED.inc(len(live))
                log.info("consumer.claimed", count=len(live), first=live[0][0], last=live[-1][0])
                counts = await self._delivery_counts(live[0][0], live[-1][0], self.consumer)
                for stream_id, fields in live:
                    if stream_id not in self._held:
                        metrics.REDELIVERIES.inc()
                        self._dispatch(stream_id, fields, deliveries=counts.get(stream_id, 2))
            if self._claim_cursor == "0-0":
                return

    async def _update_gauges(self) -> None:
        groups = await self.redis.xinfo_groups(self.keys.intent_stream)
        for group in groups:
            if _text(group["name"]) != self.keys.consumer_group:
                continue
            metrics.PENDING.set(int(group["pending"]))
            lag = group.get("lag")
            if lag is None:
                # Redis 6.2 has no lag field: count what lies after the last delivered id (bounded).
                last = _text(group["last-delivered-id"])
                rest: Any = await self.redis.xrange(
                    self.keys.intent_stream, f"({last}", "+", count=_LAG_SCAN_LIMIT
                )
                lag = len(rest)
            metrics.CONSUMER_LAG.set(int(lag))


def _entries(reply: Any) -> list[tuple[str, Fields]]:
    if not reply:
        return []
    return [(_text(sid), fields) for sid, fields in reply[0][1]]


def _payload_intent_id(payload: dict[str, Any] | None) -> str | None:
    if not isinstance(payload, dict):
        return None
    raw = payload.get("intent_id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    return raw if isinstance(raw, str) and _INTENT_ID_RE.fullmatch(raw) else None


def _dead_letter_fields(
    entry: _Entry, reason: ReasonCode, message: str, consumer: str
) -> dict[bytes | str, bytes | str]:
    fields: dict[bytes | str, bytes | str] = {
        "reason": reason.value,
        "message": message[:1000],
        "stream_id": entry.stream_id,
        "deliveries": str(entry.deliveries),
        "consumer": consumer,
    }
    # The original fields, prefixed so they can never collide with ours.
    for name, value in entry.fields.items():
        fields[b"orig." + (name if isinstance(name, bytes) else name.encode())] = value
    return fields


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel and wait, cancelling again if a library call under way swallowed the first one."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_WAIT_S)
