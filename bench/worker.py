"""The service under test in its own process: ``python -m bench.worker <config.json>``.

Runs ``quantum_exec.app.service.Service`` exactly as ``serve`` does (uvloop, JSON logs at INFO, the
real executor against the simulator over HTTP), optionally instrumented from the outside:

- ``Executor.execute`` is wrapped to give each intent a record in a context variable;
- ``BinanceGateway._call`` adds its wall time to the record as the *union* of concurrent calls
  (a counter of calls in flight; time counts while at least one is open), so SL and TP placed
  together count once;
- ``BinanceGateway.place_algo`` stamps each protective order's acknowledgement;
- ``Store.commit`` stamps when the result was published and the entry acked;
- ``IntentConsumer._dispatch`` stamps when the entry was read, ``Store.acquire_and_begin`` when
  the lead-in script (order check, lease, in-flight mark) was sent and answered.

Every HTTP status the gateway receives and every pacing wait is counted (also when not
instrumented: a dict increment per response). Nothing in the service is changed; the wrappers
only observe. Prints ``READY`` on stdout when consuming; on SIGTERM it drains, stops and writes
its records to the ``out`` path of the config.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from quantum_exec.app.service import Service
from quantum_exec.core import gc_tuning
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.pacing import RateLimiter
from quantum_exec.exchange.signed import RestSender
from quantum_exec.execution.executor import Executor
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import setup_logging
from quantum_exec.stream.consumer import IntentConsumer
from quantum_exec.stream.store import Store


class Rec:
    """What one intent did: times are epoch seconds except ``busy``/``paced`` (durations)."""

    __slots__ = ("acks", "active", "busy", "busy_since", "calls", "committed", "end", "paced", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.end = 0.0
        self.committed = 0.0
        self.active = 0
        self.busy_since = 0.0
        self.busy = 0.0
        self.paced = 0.0
        self.calls = 0
        self.acks: list[float] = []


CURRENT: ContextVar[Rec | None] = ContextVar("bench_record", default=None)
RECORDS: dict[str, Rec] = {}
STATUSES: Counter[int] = Counter()
# REST requests by "METHOD /path" (load-independent, like the round trips).
REQUESTS: Counter[str] = Counter()
PACING = {"requests": 0, "seconds": 0.0}
# Redis round trips by command (a pipeline counts once, as "pipeline"): load-independent.
REDIS_CALLS: Counter[str] = Counter()
# stream id -> [read and dispatched, lead-in script sent, its reply] (epoch seconds).
STAMPS: dict[str, list[float]] = {}
OPERATIONS = False


def count_responses() -> None:
    original = RestSender.received

    def received(self: RestSender, response: Any) -> None:
        STATUSES[int(response.status)] += 1
        original(self, response)

    RestSender.received = received  # type: ignore[method-assign]

    send = RestSender.send

    async def counted_send(self: RestSender, ep: Any, params: Any) -> Any:
        # By endpoint, counted as it is sent (the REST client's reply carries no request line).
        REQUESTS[f"{ep.method.upper()} /fapi/v{ep.version}/{ep.path}"] += 1
        return await send(self, ep, params)

    RestSender.send = counted_send  # type: ignore[method-assign]

    acquire = RateLimiter.acquire

    async def paced_acquire(self: RateLimiter, weight: int, orders: int = 0, *more: Any) -> float:
        waited = await acquire(self, weight, orders, *more)
        if waited:
            PACING["requests"] += 1
            PACING["seconds"] += waited
            rec = CURRENT.get()
            if rec is not None:
                rec.paced += waited
        return waited

    RateLimiter.acquire = paced_acquire  # type: ignore[method-assign]

    from redis.asyncio.client import Pipeline, Redis

    execute_command = Redis.execute_command

    async def counted_command(self: Redis, *args: Any, **options: Any) -> Any:
        name = args[0] if args else "?"
        REDIS_CALLS[name.decode() if isinstance(name, bytes) else str(name)] += 1
        return await execute_command(self, *args, **options)

    execute = Pipeline.execute

    async def counted_pipeline(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            REDIS_CALLS["pipeline"] += 1
        return await execute(self, *args, **kwargs)

    from redis.commands.core import AsyncScript

    script_call = AsyncScript.__call__

    def script_name(script: AsyncScript) -> str:
        """The script's first Lua line, enough to tell the service's scripts apart."""
        text = script.script.decode() if isinstance(script.script, bytes) else str(script.script)
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("--")]
        return lines[0][:60] if lines else "?"

    async def counted_script(self: AsyncScript, *args: Any, **kwargs: Any) -> Any:
        REDIS_CALLS[f"script: {script_name(self)}"] += 1
        return await script_call(self, *args, **kwargs)

    from quantum_exec.core.redis_lane import Lane

    lane_write = Lane._write

    def counted_lane_write(self: Lane, conn: Any) -> None:
        # One write of the scripts of a loop turn: one round trip; each command counted apart
        # as "lane: NAME" (not a round trip of its own).
        queued = [args for args, future in self._queued if not future.done()]
        if queued:
            REDIS_CALLS["lane write"] += 1
            for args in queued:
                name = args[0]
                REDIS_CALLS[f"lane: {name.decode() if isinstance(name, bytes) else name}"] += 1
        lane_write(self, conn)

    Lane._write = counted_lane_write  # type: ignore[method-assign]
    Redis.execute_command = counted_command  # type: ignore[method-assign]
    AsyncScript.__call__ = counted_script  # type: ignore[method-assign]
    Pipeline.execute = counted_pipeline  # type: ignore[method-assign]


def instrument() -> None:
    execute = Executor.execute

    async def timed_execute(self: Executor, intent: Any, **kwargs: Any) -> Any:
        rec = Rec(time.time())
        token = CURRENT.set(rec)
        try:
            return await execute(self, intent, **kwargs)
        finally:
            CURRENT.reset(token)
            rec.end = time.time()
            stream_id = kwargs.get("stream_id")
            if stream_id:
                RECORDS[stream_id] = rec

    call = BinanceGateway._call

    async def timed_call(self: BinanceGateway, *args: Any, **kwargs: Any) -> Any:
        rec = CURRENT.get()
        if rec is None:
            return await call(self, *args, **kwargs)
        if rec.active == 0:
            rec.busy_since = time.perf_counter()
        rec.active += 1
        rec.calls += 1
        try:
            return await call(self, *args, **kwargs)
        finally:
            rec.active -= 1
            if rec.active == 0:
                rec.busy += time.perf_counter() - rec.busy_since

    place_algo = BinanceGateway.place_algo

    async def timed_place_algo(self: BinanceGateway, *args: Any, **kwargs: Any) -> Any:
        order = await place_algo(self, *args, **kwargs)
        rec = CURRENT.get()
        if rec is not None:
            rec.acks.append(time.time())
        return order

    commit = Store.commit

    async def timed_commit(self: Store, **kwargs: Any) -> Any:
        outcome = await commit(self, **kwargs)
        rec = RECORDS.get(kwargs["stream_id"])
        if rec is not None:
            rec.committed = time.time()
        return outcome

    dispatch = IntentConsumer._dispatch

    def timed_dispatch(self: IntentConsumer, stream_id: str, *args: Any) -> None:
        STAMPS.setdefault(stream_id, [time.time(), 0.0, 0.0])
        dispatch(self, stream_id, *args)

    lead_in = Store.acquire_and_begin

    async def timed_lead_in(self: Store, *args: Any, **kwargs: Any) -> Any:
        stamps = STAMPS.get(args[3])
        if stamps is not None and not stamps[1]:
            stamps[1] = time.time()
        try:
            return await lead_in(self, *args, **kwargs)
        finally:
            if stamps is not None:
                stamps[2] = time.time()

    IntentConsumer._dispatch = timed_dispatch  # type: ignore[method-assign]
    Store.acquire_and_begin = timed_lead_in  # type: ignore[method-assign]
    Executor.execute = timed_execute  # type: ignore[method-assign]
    BinanceGateway._call = timed_call  # type: ignore[method-assign]
    BinanceGateway.place_algo = timed_place_algo  # type: ignore[method-assign]
    Store.commit = timed_commit  # type: ignore[method-assign]


async def object_census(every_s: float = 10.0) -> None:
    """BENCH_OBJECTS=1: the live objects by type every ``every_s`` (a leak shows as a growing type)."""
    import gc

    while True:
        await asyncio.sleep(every_s)
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        top = ", ".join(f"{name} {n}" for name, n in counts.most_common(25))
        sys.stderr.write(f"OBJECTS {time.time():.0f} {top}\n")
        sys.stderr.flush()


def step_totals() -> dict[str, list[float]]:
    """The executor's per-step histogram as {step: [count, seconds]} (where its own time goes)."""
    totals: dict[str, list[float]] = {}
    for family in metrics.STEP_LATENCY.collect():
        for sample in family.samples:
            step = sample.labels.get("step")
            if step is None:
                continue
            row = totals.setdefault(step, [0.0, 0.0])
            if sample.name.endswith("_count"):
                row[0] = sample.value
            elif sample.name.endswith("_sum"):
                row[1] = sample.value
    return totals


async def serve(settings: Settings, out: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The operations server (metrics, health, API) only where a scenario measures it (scrape_flood).
    service = Service(settings, operations=OPERATIONS)
    await service.start()
    gc_tuning.tune()  # as serve's on_ready does
    census: asyncio.Task[None] | None = None
    if os.environ.get("BENCH_OBJECTS") == "1":
        census = asyncio.create_task(object_census())
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await stop.wait()
    if census is not None:
        census.cancel()
    drained = await service.stop()
    if tracemalloc.is_tracing():
        # BENCH_TRACEMALLOC=1: where the memory that is still held was allocated (largest first).
        top = tracemalloc.take_snapshot().statistics("traceback")[:15]
        for stat in top:
            sys.stderr.write(f"TRACEMALLOC {stat.size / 1e6:.1f} MB in {stat.count} blocks\n")
            for line in stat.traceback.format()[-12:]:
                sys.stderr.write(f"    {line}\n")
        sys.stderr.flush()
    records = [
        [sid, r.start, r.end, r.committed, r.busy, r.paced, r.calls, r.acks, STAMPS.get(sid)]
        for sid, r in RECORDS.items()
    ]
    await asyncio.to_thread(
        out.write_bytes,
        orjson.dumps(
            {
                "drained": drained,
                "records": records,
                "statuses": {str(k): v for k, v in STATUSES.items()},
                "redis_calls": dict(REDIS_CALLS),
                "requests": dict(REQUESTS),
                "pacing": PACING,
                "steps": step_totals(),
            }
        ),
    )


def main() -> None:
    if os.environ.get("BENCH_TRACEMALLOC") == "1":
        tracemalloc.start(12)
    config = orjson.loads(Path(sys.argv[1]).read_bytes())
    settings = Settings(
        exchange="sim",
        binance_base_url=config["sim_url"],
        redis_url=config["redis_url"],
        api_key=SecretStr(config["api_key"]),
        api_secret=SecretStr(config["api_secret"]),
        consumer_name=config.get("consumer_name", "bench-worker"),
        max_concurrency=config.get("max_concurrency", 64),
        # The scaling scenario's SIGKILL run: a dead instance's leases and entries are taken over
        # after these (the defaults, 30 s and 60 s, are for production).
        lease_ttl_ms=config.get("lease_ttl_ms", 30_000),
        claim_idle_ms=config.get("claim_idle_ms", 60_000),
        claim_interval_s=config.get("claim_interval_s", 5.0),
        rate_limit_pacing=config["pacing"],
        metrics_host="127.0.0.1",
        metrics_port=config.get("metrics_port", 0),
        log_format="json",
        log_level="INFO",
        watchdog=False,
        # BENCH_USER_STREAM=0 measures the service without following the account (wave 1's REST path).
        user_stream=os.environ.get("BENCH_USER_STREAM", "1") != "0",
        # BENCH_PROTECTION_TIMING=with_entry sends the SL/TP beside the entry (the workload then
        # carries absolute triggers, see bench.common.workload).
        protection_timing=os.environ.get("BENCH_PROTECTION_TIMING", "after_fill"),
        # BENCH_ORDER_TRANSPORT=websocket sends the orders over the simulator's WebSocket API.
        order_transport=os.environ.get("BENCH_ORDER_TRANSPORT", "rest"),
        # BENCH_INTENT_TTL_S: entries pacing would hold past it are shed (the limits scenario).
        intent_ttl_s=float(os.environ.get("BENCH_INTENT_TTL_S", "120")),
    )
    global OPERATIONS
    OPERATIONS = bool(config.get("operations", False))
    with Path(config["log"]).open("a") as log:
        setup_logging(settings, stream=log)
        count_responses()
        if config.get("instrument", True):
            instrument()
        runner: Any = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            pass
        runner(serve(settings, Path(config["out"])))


if __name__ == "__main__":
    main()
