"""The consumer-group loop: at-least-once delivery, exactly-once effects, per-symbol order.

Delivery. One consumer group, many instances, each with a stable consumer name. On start the
consumer re-reads its own pending entries (from id ``0``), then new ones (``>``, BLOCK); the
maintenance loop (:mod:`.claims`) keeps held entries fresh and claims the entries of dead
consumers.

Effects. Each valid intent runs under its symbol's lease (:mod:`.leases`) once no older entry of
its symbol is pending (:mod:`.ordering`), then its result is committed atomically (:mod:`.answers`,
:mod:`.store`); one attempt at it, from the lease to the commit, is :mod:`.runner`. Entries that
need no exchange (undecodable, invalid, poison) are answered directly. This module is the loop
that glues them: an entry read, dispatched, queued, given its turn and a slot, forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from quantum_exec.contracts import PayloadError, Side, decode_entry, parse_intent
from quantum_exec.core.aio import cancel_task
from quantum_exec.core.backoff import Backoff
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.settings import Settings
from quantum_exec.execution.parking import Release
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.answers import Answers
from quantum_exec.stream.claims import Claims
from quantum_exec.stream.drain import drain
from quantum_exec.stream.entries import (
    Entry,
    Fields,
    busy,
    named,
    raw_source,
    raw_symbol,
    read_entries,
)
from quantum_exec.stream.leases import Leases
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.ordering import HeldOrder, SymbolOrder, SymbolQueue
from quantum_exec.stream.recovery import RecoveryGate
from quantum_exec.stream.runner import Handler, IntentRunner
from quantum_exec.stream.store import ORDER_CHECK_PAGE, Store

log = get_logger(__name__)
ProgressHook = Callable[[], None]

CANCEL_WAIT_S = 5.0


class IntentConsumer:
    """Consumes the intent stream as one member of the consumer group.

    ``handler(intent, stream_id, received_at)`` executes a valid intent and returns its result
    (the executor in production); ``on_progress()`` is called whenever the read loop made progress
    or completed a blocking read (feed the systemd watchdog from it). ``survey`` reads what the
    exchange holds of a poison intent whose repair died too, for its answer (the executor's
    ``survey``; without it such an intent is answered without the exchange).
    """

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        handler: Handler,
        *,
        on_progress: ProgressHook | None = None,
        on_close: Callable[[str, str], None] | None = None,
        on_close_held: Callable[[str, str], None] | None = None,
        link: RedisLink | None = None,
        survey: Handler | None = None,
    ) -> None:
        self.redis = redis
        # Told of every CLOSE read (symbol, stream id): a working entry of the symbol ends early
        # (``on_close_held``: one of another instance, when that holds the CLOSE up: _held_up).
        self.on_close = on_close
        self.on_close_held = on_close_held
        self.settings = settings
        self.handler = handler
        self.on_progress = on_progress
        self.store = Store(redis, settings)
        self.keys = self.store.keys
        self.consumer = settings.consumer_name
        self._limit = settings.max_concurrency + settings.read_count
        self._held: dict[str, Entry] = {}
        self._held_order = HeldOrder()  # the held entries with a valid intent, by id
        self._queues: dict[str, SymbolQueue] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._space = asyncio.Event()
        self._stopping = asyncio.Event()
        # Set by a second stop signal: cancel what is in flight now instead of after the grace.
        self._hurry = asyncio.Event()
        self._group_ready = False
        # After a crash loop, the attempt that decides whether an intent is poison runs alone.
        self._recovery = RecoveryGate()
        # Shared with whatever else calls Redis on the order path (plans, close signals).
        self._link = link or RedisLink(settings.redis_reconnect_max_s)
        self._read_backoff = Backoff(base_s=0.05, cap_s=settings.redis_reconnect_max_s)
        self._order = SymbolOrder(redis, self.keys, self._link, on_held=self._held_up)
        self._leases = Leases(
            self.store,
            settings,
            self._link,
            self._stopping,
            other_symbols=self._older_of_other_symbols,
            on_held=self._held_up,
        )
        self._answers = Answers(redis, self.store, settings, self._link)
        self._claims = Claims(
            redis,
            self.keys,
            settings,
            self._link,
            held=self._held,
            limit=self._limit,
            dispatch=self._dispatch,
            forget=self._forget,
        )
        self._runner = IntentRunner(
            settings,
            handler,
            store=self.store,
            leases=self._leases,
            answers=self._answers,
            recovery=self._recovery,
            link=self._link,
            survey=survey,
        )
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
        self._runner.connected_at = time.monotonic()
        self._reader = asyncio.create_task(self._read_loop(), name="intent-reader")
        self._maintainer = asyncio.create_task(
            self._claims.run(self._stopping, lambda: self._group_ready), name="intent-maintenance"
        )
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
        await cancel_task(self._reader)
        for queue in self._queues.values():
            queue.wakeup.set()
        pending = self._work()
        if pending:
            late = await drain(pending, self._held, self.settings.shutdown_grace_s, self._hurry)
            self.drained = not late
            if late:
                log.warning("consumer.shutdown_cancelled", tasks=sorted(t.get_name() for t in late))
            while late:
                # Repeated: a cancellation can be swallowed by a library call under way.
                for task in late:
                    task.cancel()
                _done, late = await asyncio.wait(late, timeout=CANCEL_WAIT_S)
        await cancel_task(self._maintainer)
        await self._claims.hand_over(sorted(self._held))
        log.info("consumer.stopped", left_pending=len(self._held))

    def hurry(self) -> None:
        """Stop waiting for in-flight intents: they are cancelled and resumed after a restart."""
        self._hurry.set()

    def _work(self) -> set[asyncio.Task[Any]]:
        work = set(self._tasks)
        work.update(q.worker for q in self._queues.values() if q.worker is not None)
        return work

    def _in_flight(self) -> int:
        return sum(1 for e in self._held.values() if e.started)

    # reading

    async def _read_loop(self) -> None:
        own_pending_done = False
        waits = self._read_backoff.delays()
        while not self._stopping.is_set():
            try:
                await self._ensure_group()
                if not own_pending_done:
                    await self._claims.own_pending(self._stopping)
                    own_pending_done = True
                capacity = self._limit - busy(self._held)
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
                self._link.up()
                entries = read_entries(reply)
                for stream_id, fields in entries:
                    self._dispatch(stream_id, fields, 1)
                waits = self._read_backoff.delays()
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
                await self._pause(next(waits))
            except REDIS_DOWN as exc:
                self._link.lost(exc, "read")
                # Redis may come back as another server (a Sentinel failover): what it holds of
                # our pending list is read again, with the entries whose commit it lost.
                own_pending_done = False
                # Alive and retrying: keep feeding the watchdog (/readyz says not ready), so a
                # Redis outage does not turn into systemd restarts that burn the start limit.
                self._progress()
                await self._pause(next(waits))
            except Exception as exc:
                log.exception("consumer.read_failed", error=str(exc))
                await self._pause(next(waits))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

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

    # dispatching

    def _dispatch(self, stream_id: str, fields: Fields, deliveries: int) -> None:
        if stream_id in self._held or self._stopping.is_set():
            return  # when stopping, the entry stays pending for the next start or another consumer
        metrics.INTENTS_RECEIVED.inc()
        entry = Entry(stream_id, fields, deliveries, datetime.now(UTC))
        entry.outage_since = self._link.writes_maybe_lost_since()
        self._held[stream_id] = entry
        try:
            payload = decode_entry(fields)
        except PayloadError as exc:
            self._order.remember(stream_id, None)
            self._spawn(
                self._answer(entry, self._answers.invalid(entry, ReasonCode.INVALID_PAYLOAD, str(exc), None))
            )
            return
        try:
            intent = parse_intent(payload)
        except IntentRejected as exc:
            self._order.remember(stream_id, raw_symbol(fields))
            if deliveries > self.settings.max_deliveries:
                answer = self._answers.invalid(entry, ReasonCode.POISON_MESSAGE, exc.message, payload)
            else:
                answer = self._answers.rejected(entry, payload, exc)
            self._spawn(self._answer(entry, answer))
            return
        origin = raw_source(fields)
        entry.intent = intent if origin is None else intent.model_copy(update={"origin": origin})
        self._order.remember(stream_id, intent.symbol)
        self._held_order.add(stream_id, intent.symbol)
        if intent.side is Side.CLOSE and self.on_close is not None:
            self.on_close(intent.symbol, stream_id)
        queue = self._queues.get(intent.symbol)
        if queue is None:
            queue = self._queues[intent.symbol] = SymbolQueue()
        queue.push(stream_id)
        if queue.worker is None:
            queue.worker = asyncio.create_task(
                self._symbol_worker(intent.symbol, queue), name=f"symbol-{intent.symbol}"
            )
            queue.worker.add_done_callback(self._task_done)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """Every task the consumer spawns has its failure logged and counted, never lost."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            metrics.TASK_FAILURES.labels(task=task.get_name().split("-")[0]).inc()
            log.error("consumer.task_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")

    async def _answer(self, entry: Entry, answer: Coroutine[Any, Any, None]) -> None:
        try:
            await answer
        finally:
            self._forget(entry)

    def _older_of_other_symbols(self, entry: Entry, symbol: str) -> list[str]:
        """The entries this consumer holds that are older than ``entry`` and of another symbol
        (it read them, so their symbols are known): the lead-in's order check passes over them."""
        return self._held_order.older_of_other_symbols(entry.stream_id, symbol, ORDER_CHECK_PAGE)

    def _held_up(self, symbol: str) -> None:
        """An entry of ``symbol`` cannot start (told at each try): another instance holds its lease,
        or an older entry of it is pending (a working entry may wait for the market there). The
        CLOSEs of the symbol queued here, behind it or itself, go to Redis once, where a working
        entry looks for them (:mod:`.signals`); a CLOSE never held up costs no round trip."""
        queue = self._queues.get(symbol)
        if queue is not None and self.on_close_held is not None:
            for stream_id in queue.held_up(self._held):
                self.on_close_held(symbol, stream_id)

    def _forget(self, entry: Entry) -> None:
        if self._held.pop(entry.stream_id, None) is entry and entry.intent is not None:
            self._held_order.discard(entry.stream_id)
        self._order.forget(entry.stream_id)
        self._space.set()

    def _park(self, entry: Entry, free: Release) -> None:
        """The entry's attempt parked: its slot and its share of the read limit are free."""
        entry.parked = True
        free()
        self._space.set()
        log.info(
            "intent.working",
            stream_id=entry.stream_id,
            intent_id=named(entry.stream_id, entry),
            detail="waiting for the market (a LIMIT resting, a STOP armed, a TWAP between slices)",
        )

    # valid intents: one worker per symbol

    async def _symbol_worker(self, symbol: str, queue: SymbolQueue) -> None:
        try:
            while queue.heap and not self._stopping.is_set():
                stream_id = queue.heap[0][1]
                entry = self._held.get(stream_id)
                if entry is None or entry.dropped:
                    queue.remove(stream_id)
                    continue
                try:
                    # The slot is given back when the attempt ends, or earlier when it parks (a
                    # working entry waiting for the market holds none of them).
                    await self._slots.acquire()
                    free = _once(self._slots.release)
                    try:
                        older = await self._runner.run(entry, symbol, partial(self._park, entry, free))
                    finally:
                        entry.parked = False
                        free()
                    if older is not None:
                        # Older entries are pending in the group: wait (without a slot) until none
                        # of them is of this symbol, then run without asking again.
                        if await self._order.wait_turn(symbol, queue, entry, self._stopping, older):
                            entry.order_checked = True
                        continue  # run it now, or re-pick: a smaller id arrived, dropped, stopping
                except Exception as exc:
                    # Left pending: claimed again after claim_idle_ms (max_deliveries bounds it).
                    log.exception(
                        "intent.processing_failed", stream_id=stream_id, symbol=symbol, error=str(exc)
                    )
                queue.remove(stream_id)
                self._forget(entry)
        finally:
            queue.worker = None
            if self._queues.get(symbol) is queue and not queue.heap:
                del self._queues[symbol]


def _once(release: Release) -> Release:
    """``release``, made safe to call twice."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            release()

    return once
