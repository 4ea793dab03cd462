"""The floor of the service overhead on this machine: the order path's Redis shape with no work.

``python -m bench.floor`` runs a skeleton consumer in its own process (uvloop, redis-py's asyncio
client on a unix socket to a private Redis, the service's lane for the scripts: the same parts as
``quantum-exec serve``) that does nothing but what the order path's Redis shape asks: the
blocking XREADGROUP, a task per entry, then ``hops`` Lua scripts one after the other (the first a
SET NX as the lead-in's claim, the last the commit: XADD of a result, XACK, the record ``done``;
those between an HSET each, as the admission and the "opened" record). No exchange, no parsing,
no sizing. A producer in this process XADDs at a paced rate, as the bench's latency scenario does;
the floor is XADD → the commit's reply, the same span the scenario's "service overhead" measures
(which also leaves the exchange's time out).

The shapes: ``hops=0`` (read alone), 2 (issue #29's target shape: one script before the first
order, one after the last), 4 (today's order path at RTT 0: lead-in, admission, "opened", commit).
Whatever the service spends on top of its shape's floor is its own CPU.

``--exchange`` measures the other floor, the simulator's: an open's three orders (a MARKET entry
and its two closePosition legs, sent together as ``with_entry`` sends them) through the service's
own gateway and transport (``--transport``), nothing else running in the process, first send →
last answer, at the paced rate and the simulator's RTT (``--rtt``); each open is closed again,
untimed. No user stream is open, so the simulator does less than when the service runs: a lower
bound of its time. With the naive bot's end to end from the same machine, it bounds the issue's
ratios from below (docs/performance.md, "fifth pass").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from bench.common import (
    API_KEY,
    API_SECRET,
    BENCH_SYMBOLS,
    mark_of,
    median,
    pct,
    redis_client,
    start_sim,
    workdir,
    write_fixture,
)
from quantum_exec.app.embedded import EmbeddedRedis

STREAM = "floor:intents"
RESULTS = "floor:results"
GROUP = "floor"
CLAIM = "local r = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 60000) if r then return 1 end return 0"
MIDDLE = "return redis.call('HSET', KEYS[1], 'at', ARGV[1])"
COMMIT = (
    "redis.call('XADD', KEYS[1], '*', 'id', ARGV[1]) "
    "redis.call('XACK', KEYS[2], ARGV[2], ARGV[1]) "
    "redis.call('SET', KEYS[3], 'done', 'PX', 60000) return 1"
)


async def consume(url: str, hops: int, count: int, out: Path) -> None:
    """The skeleton consumer: ``count`` entries, each through ``hops`` scripts; stamps to ``out``."""
    import redis.asyncio as aioredis

    from quantum_exec.core import redis_lane

    client = aioredis.Redis.from_url(url, protocol=2)
    redis_lane.enable(client)
    lane = redis_lane.lane_of(client)
    assert lane is not None
    shas = [await client.script_load(s) for s in (CLAIM, MIDDLE, COMMIT)]
    done: dict[str, float] = {}
    finished = asyncio.Event()

    async def handle(stream_id: str) -> None:
        key = f"floor:key:{stream_id}"
        for hop in range(hops):
            if hop == 0 and hops > 1:
                await lane.call("EVALSHA", shas[0], 1, key, "in_flight")
            elif hop == hops - 1:
                await lane.call("EVALSHA", shas[2], 3, RESULTS, STREAM, key, stream_id, GROUP)
            else:
                await lane.call("EVALSHA", shas[1], 1, f"{key}:{hop}", stream_id)
        done[stream_id] = time.time()
        if len(done) >= count:
            finished.set()

    tasks: set[asyncio.Task[None]] = set()
    print("ready", flush=True)
    while not finished.is_set():
        reply: Any = await client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=16, block=200)
        for _, entries in reply or []:
            for raw_id, _fields in entries:
                task = asyncio.create_task(handle(bytes(raw_id).decode()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0)  # as the service: the workers' first command before the next read
        if not reply and len(done) >= count:
            break
    await client.aclose()
    out.write_bytes(orjson.dumps(done))  # noqa: ASYNC240 - once, after the measured part


def child_main(argv: list[str]) -> None:
    url, hops, count, out = argv[0], int(argv[1]), int(argv[2]), Path(argv[3])
    try:
        import uvloop

        uvloop.run(consume(url, hops, count, out))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(consume(url, hops, count, out))


def run_one(url: str, workdir: Path, hops: int, rate: float, count: int) -> list[float]:
    """One shape at one paced rate: XADD → commit answered, seconds, per entry."""
    r = redis_client(url)
    r.delete(STREAM, RESULTS)
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    out = workdir / f"floor-{hops}-{rate:g}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", "--child", url, str(hops), str(count), str(out)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"ready":
            raise RuntimeError("the skeleton consumer did not start")
        sent: dict[str, float] = {}
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, 0.002))
            at = time.time()
            sid = r.xadd(STREAM, {"i": str(i)})
            sent[sid.decode()] = at  # type: ignore[union-attr]
        if child.wait(timeout=60) != 0:
            raise RuntimeError("the skeleton consumer failed")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    done: dict[str, Any] = orjson.loads(out.read_bytes())
    return [done[sid] - at for sid, at in sent.items() if sid in done]


async def exchange_floor(url: str, transport: str, rate: float, count: int) -> list[float]:
    """An open's three orders sent together through the service's gateway: first send → last
    answer, seconds, per open (each closed again, untimed)."""
    from quantum_exec.core.settings import Settings
    from quantum_exec.exchange.gateway import BinanceGateway
    from quantum_exec.exchange.wire import OrderSide, OrderType

    settings = Settings(
        exchange="sim",
        binance_base_url=url,
        api_key=SecretStr(API_KEY),
        api_secret=SecretStr(API_SECRET),
        rate_limit_pacing=False,
        order_transport=transport,
    )
    gateway = BinanceGateway(settings, url)
    await gateway.start()
    spans: list[float] = []
    try:
        for i in range(count):
            index = i % 10
            symbol, mark = BENCH_SYMBOLS[index], mark_of(index)
            tag = f"fl{os.getpid()}-{i}"
            await asyncio.sleep(1 / rate)
            started = time.perf_counter()
            _entry, sl, tp = await asyncio.gather(
                gateway.place_market(symbol, OrderSide.BUY, Decimal(5), f"{tag}-e"),
                gateway.place_algo(
                    symbol,
                    OrderSide.SELL,
                    OrderType.STOP_MARKET,
                    mark * Decimal("0.98"),
                    f"{tag}-s",
                    quantity=None,
                    working_type="MARK_PRICE",
                    price_protect=False,
                ),
                gateway.place_algo(
                    symbol,
                    OrderSide.SELL,
                    OrderType.TAKE_PROFIT_MARKET,
                    mark * Decimal("1.04"),
                    f"{tag}-t",
                    quantity=None,
                    working_type="MARK_PRICE",
                    price_protect=False,
                ),
            )
            spans.append(time.perf_counter() - started)
            await gateway.cancel_algo(sl.algo_id)
            await gateway.cancel_algo(tp.algo_id)
            await gateway.place_market(symbol, OrderSide.SELL, Decimal(5), f"{tag}-c", reduce_only=True)
    finally:
        await gateway.close()
    return spans


def exchange_main(args: argparse.Namespace) -> None:
    import uvloop

    rtts = [int(x) for x in args.rtt.split(",")]
    print(
        f"the simulator's floor: an open's three orders sent together, {args.count} opens a run at "
        f"{args.rate:g}/s, median of {args.runs}; load {os.getloadavg()[0]:.2f}"
    )
    print("| RTT ms | transport | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    with workdir() as wd:
        info, state = write_fixture(wd / "fixture")
        for rtt in rtts:
            sim = start_sim(wd, info, state, rtt, rate_limits=False)
            try:
                for transport in args.transport.split(","):
                    p50s, p99s = [], []
                    for _ in range(args.runs):
                        sim.fresh(rate_limits=False)
                        spans = uvloop.run(exchange_floor(sim.url, transport, args.rate, args.count))
                        p50s.append(pct(spans, 50) * 1000)
                        p99s.append(pct(spans, 99) * 1000)
                    print(f"| {rtt} | {transport} | {median(p50s):.3f} | {median(p99s):.3f} |", flush=True)
            finally:
                sim.child.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--hops", default="0,2,4", help="scripts after the read, comma list")
    parser.add_argument("--rates", default="25,200", help="intents/s, comma list")
    parser.add_argument("--count", type=int, default=400, help="entries per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median of each percentile)")
    parser.add_argument("--exchange", action="store_true", help="the simulator's floor instead (see above)")
    parser.add_argument("--rtt", default="0,5", help="--exchange: simulator latency in ms, comma list")
    parser.add_argument("--rate", type=float, default=25.0, help="--exchange: opens/s")
    parser.add_argument("--transport", default="websocket,rest", help="--exchange: comma list")
    args = parser.parse_args(argv)
    if args.exchange:
        exchange_main(args)
        return
    hops = [int(h) for h in args.hops.split(",")]
    rates = [float(x) for x in args.rates.split(",")]
    load = os.getloadavg()[0]
    print(
        f"floor of the service overhead, {args.count} entries a run, median of {args.runs}; load {load:.2f}"
    )
    print("| shape | rate /s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    with EmbeddedRedis() as embedded:
        workdir = embedded.data_dir
        for rate in rates:
            for h in hops:
                p50s, p99s = [], []
                for _ in range(args.runs):
                    values = run_one(embedded.url, workdir, h, rate, args.count)
                    p50s.append(pct(values, 50) * 1000)
                    p99s.append(pct(values, 99) * 1000)
                name = "read alone" if h == 0 else f"read + {h} script{'s' if h > 1 else ''}"
                print(f"| {name} | {rate:g} | {median(p50s):.3f} | {median(p99s):.3f} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
