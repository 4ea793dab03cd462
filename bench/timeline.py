"""Where one intent's time goes, step by step: ``bench.worker`` with a timeline of each intent.

``BENCH_WORKER=bench.timeline python -m bench --quick --only latency --rtt 0`` runs the latency
scenario with this worker instead of ``bench.worker``. Besides what that one records, it stamps
(``time.perf_counter``) for each intent: read and dispatched, its attempt started, each Redis
lane call (the script's short sha and its first key, or the command) and each lane flush, write
and reply read, each exchange request sent and answered (the endpoint), the legs beside the
entry, each user-stream event the follower handles, and the commit. On exit it writes
``timeline.json`` beside the worker's config (stream id -> [[label, ms since read], ...]) and
``python -m bench.timeline <that file>`` prints a few.

Stamps go to the intent whose entry was read or whose attempt started last, so they are exact at
a light paced load (one intent at a time) and mixed under a burst; lane stamps of the account's
own batches (user-stream events) land on the intent of the moment. Observation only: every
wrapper calls the original and returns what it returns.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from bench import worker
from quantum_exec.account.follower import AccountFollower
from quantum_exec.core import redis_lane
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.execution import legs as legs_module
from quantum_exec.execution.entries import market
from quantum_exec.stream.consumer import IntentConsumer
from quantum_exec.stream.runner import IntentRunner
from quantum_exec.stream.store import Store

TIMELINES: dict[str, list[tuple[str, float]]] = defaultdict(list)
_NOW = {"sid": ""}


def stamp(label: str, sid: str | None = None) -> None:
    sid = sid or _NOW["sid"]
    if sid:
        TIMELINES[sid].append((label, time.perf_counter()))


def _wrap_async(cls: Any, name: str, label: Any) -> None:
    original = getattr(cls, name)

    async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        stamp(label(args) if callable(label) else label)
        try:
            return await original(self, *args, **kwargs)
        finally:
            stamp((label(args) if callable(label) else label) + " done")

    setattr(cls, name, wrapped)


def _lane_label(args: tuple[Any, ...]) -> str:
    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    if name.upper() == "EVALSHA" and len(args) > 3:
        key = args[3].decode() if isinstance(args[3], bytes) else str(args[3])
        return f"redis EVALSHA {str(args[1])[:6]} {key[-24:]}"
    return f"redis {name}"


def install() -> None:
    dispatch = IntentConsumer._dispatch

    def timed_dispatch(self: IntentConsumer, stream_id: str, *args: Any) -> None:
        _NOW["sid"] = stream_id
        stamp("read", stream_id)
        dispatch(self, stream_id, *args)
        stamp("dispatched", stream_id)

    IntentConsumer._dispatch = timed_dispatch  # type: ignore[method-assign]

    run = IntentRunner.run

    async def timed_run(self: IntentRunner, entry: Any, *args: Any) -> Any:
        _NOW["sid"] = entry.stream_id
        stamp("attempt")
        return await run(self, entry, *args)

    IntentRunner.run = timed_run  # type: ignore[method-assign]

    call = redis_lane.Lane.call

    def timed_call(self: redis_lane.Lane, *args: Any) -> Any:
        stamp(_lane_label(args))
        return call(self, *args)

    redis_lane.Lane.call = timed_call  # type: ignore[method-assign]

    flush, write, read = redis_lane.Lane._flush, redis_lane.Lane._write, redis_lane.Lane._read

    def timed_flush(self: redis_lane.Lane) -> None:
        stamp("lane flush")
        flush(self)

    def timed_write(self: redis_lane.Lane, conn: Any) -> None:
        stamp("lane write")
        write(self, conn)

    async def timed_read(self: redis_lane.Lane, conn: Any) -> None:
        await read(self, conn)
        stamp("lane reply read")

    redis_lane.Lane._flush = timed_flush  # type: ignore[method-assign]
    redis_lane.Lane._write = timed_write  # type: ignore[method-assign]
    redis_lane.Lane._read = timed_read  # type: ignore[method-assign]

    _wrap_async(BinanceGateway, "_call", lambda args: f"exchange {getattr(args[0], 'path', args[0])}")
    _wrap_async(market.LegsBesideEntry, "place", "legs beside the entry")
    _wrap_async(legs_module.LegPlacer, "place", "leg")
    _wrap_async(Store, "commit", "commit")
    _wrap_async(AccountFollower, "_on_raw", lambda args: f"user event {args[0].get('e')}")


def dump(path: Path) -> None:
    out = {}
    for sid, marks in TIMELINES.items():
        start = marks[0][1]
        out[sid] = [(label, round((at - start) * 1000, 3)) for label, at in marks]
    path.write_bytes(orjson.dumps(out))


def show(path: Path, last: int = 3, skip: int = 0) -> None:
    """Print ``last`` timelines (``skip`` from the end first: the latency run's opens come before
    its CLOSEs)."""
    timelines = list(orjson.loads(path.read_bytes()).items())
    chosen = timelines[len(timelines) - skip - last : len(timelines) - skip]
    for sid, marks in chosen:
        print(sid)
        for label, ms in marks:
            print(f"  {ms:8.2f}  {label}")


def main() -> None:
    install()
    atexit.register(dump, Path(sys.argv[1]).with_name("timeline.json"))
    worker.main()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].endswith(".json") and Path(sys.argv[1]).name == "timeline.json":
        show(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:]))
    else:
        main()
