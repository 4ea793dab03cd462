"""``make bench`` / ``python -m bench [--quick] [--only latency,naive,...,scaling,scrapeflood]``.

Runs the service (its own process) against a real Redis server (EmbeddedRedis) and the Binance
simulator (its own process, bench fixture with 50 extra symbols), plus a naive baseline bot, and
prints a markdown table; machine-readable results go to ``bench/results/latest.json``.
See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench import report, scaling, scenarios, scrape_flood
from bench.common import (
    API_KEY,
    API_SECRET,
    Sim,
    median,
    out,
    redis_client,
    start_sim,
    workdir,
    write_fixture,
)
from bench.request_path import request_path
from quantum_exec.app.embedded import EmbeddedRedis, find_redis_server

SCENARIOS = ("latency", "naive", "requests", "throughput", "pacing", "limits", "scaling", "scrapeflood")
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, one run each")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--rtt", default="0,5,50", help="simulator latency in ms, comma list")
    parser.add_argument("--runs", type=int, help="runs per latency figure (default 3, quick 1)")
    parser.add_argument("--intents", type=int, help="intents per latency run (default 300, quick 100)")
    parser.add_argument("--rate", type=float, default=25.0, help="intents/s of the light load")
    parser.add_argument("--segments", type=int, help="throughput segments (default 20, quick 4)")
    parser.add_argument("--per-segment", type=int, help="intents per segment (default 5000, quick 2500)")
    parser.add_argument("--burst", type=int, help="pacing burst size (default 1000, quick 200)")
    parser.add_argument("--limits-seconds", type=float, help="limits run length (default 300, quick 60)")
    parser.add_argument("--limits-rates", default="8,11", help="intents/s of the limits runs, comma list")
    parser.add_argument(
        "--limits-mix",
        default="rounds",
        choices=("opens", "rounds"),
        help="limits workload: repeated opens on warm symbols (3 orders each) or open/close rounds",
    )
    parser.add_argument("--naive-intents", type=int, help="naive latency intents (default 80, quick 40)")
    parser.add_argument("--naive-burst", type=int, help="naive throughput burst (default 1000, quick 300)")
    parser.add_argument("--processes", default="1,2,4", help="scaling: service processes, comma list")
    parser.add_argument("--scale-burst", type=int, help="scaling burst per run (default 2000, quick 1000)")
    parser.add_argument("--scale-paced", type=int, help="scaling open-loop intents (default 300, quick 150)")
    parser.add_argument("--kill-intents", type=int, help="scaling SIGKILL run (default 600, quick 400)")
    parser.add_argument("--kill-rate", type=float, default=200.0, help="intents/s of the SIGKILL run")
    parser.add_argument("--requests", type=int, help="requests per kind and path (default 2000, quick 500)")
    parser.add_argument("--flood-rps", type=float, default=200.0, help="scrapeflood: /metrics requests/s")
    parser.add_argument("--flood-connections", type=int, default=32, help="scrapeflood: parallel scrapers")
    parser.add_argument("--flood-rtt", type=int, default=0, help="scrapeflood: simulator latency in ms")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "runs": 1 if quick else 3,
        "intents": 100 if quick else 300,
        "segments": 4 if quick else 20,
        "per_segment": 2500 if quick else 5000,
        "burst": 200 if quick else 1000,
        "naive_intents": 40 if quick else 80,
        "naive_burst": 300 if quick else 1000,
        "limits_seconds": 60.0 if quick else 300.0,
        "scale_burst": 1000 if quick else 2000,
        "scale_paced": 150 if quick else 300,
        "kill_intents": 400 if quick else 600,
        "requests": 500 if quick else 2000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.rtt = [int(x) for x in args.rtt.split(",") if x.strip()]
    args.processes = [int(x) for x in args.processes.split(",") if x.strip()]
    return args


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in (
        "quantum-exec",
        "python-binance",
        "redis",
        "hiredis",
        "aiohttp",
        "uvloop",
        "pydantic",
        "orjson",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        reply = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True, timeout=10)
        versions["redis-server"] = reply.stdout.split()[2].removeprefix("v=")
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


@contextlib.contextmanager
def simulator(
    env: scenarios.Env, fixture: tuple[Path, Path], latency_ms: int, rate_limits: bool
) -> Iterator[Sim]:
    sim = start_sim(env.workdir, *fixture, latency_ms, rate_limits)
    try:
        yield sim
    finally:
        sim.child.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "params": {}}
    results["params"] = {k: v for k, v in vars(args).items() if k != "out"}
    out(
        f"quantum-exec bench on {results['machine']['cores']} cores ({results['machine']['cpu']}), "
        f"load average {results['machine']['loadavg_start'][0]:.2f}"
    )
    started = time.monotonic()
    with workdir() as wd, EmbeddedRedis() as embedded:
        fixture = write_fixture(wd / "fixture")
        env = scenarios.Env(wd, embedded.url, redis_client(embedded.url))
        if "latency" in args.only or "naive" in args.only:
            latency: dict[str, Any] = {}
            naive: dict[str, Any] = {}
            for rtt in args.rtt:
                with simulator(env, fixture, rtt, rate_limits=False) as sim:
                    measured = sim.measure_rtt()
                    out(f"    measured RTT p50 {measured[50]:.2f} ms (GET /fapi/v1/time, kept-alive)")
                    sim.fresh(rate_limits=False)
                    if "latency" in args.only:
                        runs = []
                        for i in range(args.runs):
                            out(
                                f"[{time.monotonic() - started:5.0f}s] latency RTT {rtt} ms: "
                                f"run {i + 1}/{args.runs}, "
                                f"{args.intents} intents at {args.rate:g}/s"
                            )
                            runs.append(
                                scenarios.service_latency(env, sim, count=args.intents, rate=args.rate)
                            )
                            r = runs[-1]
                            out(
                                f"    time to protected p50 {r['ttp_ms'][50]:.2f} ms, overhead p50 "
                                f"{r['overhead_ms'][50]:.2f} / p99 {r['overhead_ms'][99]:.2f} ms"
                                + ("" if r["check"]["all_ok"] else f"  OUTCOMES {r['check']['outcomes']}")
                            )
                        latency[str(rtt)] = {
                            "runs": runs,
                            "measured_rtt_ms": measured,
                            **report.median_of(runs),
                        }
                    if "naive" in args.only:
                        out(
                            f"[{time.monotonic() - started:5.0f}s] naive baseline RTT {rtt} ms: "
                            f"{args.naive_intents} intents one at a time"
                        )
                        runs = [
                            scenarios.naive_latency(env, sim, count=args.naive_intents)
                            for _ in range(args.runs)
                        ]
                        naive[str(rtt)] = {"runs": runs, **report.median_of(runs)}
                        out(f"    naive time to protected p50 {naive[str(rtt)]['ttp_ms'][50]:.2f} ms")
                        if rtt == 0:
                            tp_runs = []
                            for i in range(args.runs):
                                out(
                                    f"[{time.monotonic() - started:5.0f}s] naive throughput: burst of "
                                    f"{args.naive_burst}, run {i + 1}/{args.runs}"
                                )
                                tp_runs.append(scenarios.naive_throughput(env, sim, count=args.naive_burst))
                                out(f"    {tp_runs[-1]['intents_per_s']:.0f} intents/s")
                            naive["throughput"] = {
                                "runs": tp_runs,
                                "intents_per_s": median([r["intents_per_s"] for r in tp_runs]),
                                "cpu_ms_per_intent": median([r["cpu_ms_per_intent"] for r in tp_runs]),
                            }
            results["latency"] = latency
            results["naive"] = naive
        if "throughput" in args.only:
            with simulator(env, fixture, 0, rate_limits=False) as sim:
                out(
                    f"[{time.monotonic() - started:5.0f}s] throughput + memory: {args.segments} segments of "
                    f"{args.per_segment} intents across 50 symbols, RTT 0, limits off"
                )
                results["throughput"] = scenarios.sustained(
                    env, sim, segments=args.segments, per_segment=args.per_segment
                )
        if "pacing" in args.only:
            with simulator(env, fixture, 0, rate_limits=True) as sim:
                out(
                    f"[{time.monotonic() - started:5.0f}s] pacing: burst of {args.burst} intents, "
                    "simulator enforcing 300 orders/10s, 1200/min, 2400 weight/min"
                )
                results["pacing"] = p = scenarios.pacing(env, sim, count=args.burst)
                out(
                    f"    {p['completed']}/{p['intents']} completed in {p['seconds']:.0f}s, "
                    f"429: {p['http_429']}, 418: {p['http_418']}, "
                    f"pacing wait {p['pacing_wait_total_s']:.1f}s"
                )
        if "limits" in args.only:
            results["limits"] = {}
            for rate in (float(r) for r in args.limits_rates.split(",")):
                with simulator(env, fixture, 0, rate_limits=True) as sim:
                    out(
                        f"[{time.monotonic() - started:5.0f}s] limits: {rate:g} intents/s "
                        f"({args.limits_mix}) for {args.limits_seconds:g}s, limits enforced, pacing on"
                    )
                    lim = scenarios.limits(
                        env, sim, seconds=args.limits_seconds, rate=rate, mix=args.limits_mix
                    )
                    results["limits"][f"{rate:g}"] = lim
                    out(
                        f"    {lim['opens_filled']}/{lim['opens']} opens filled "
                        f"({lim['opens_per_s']:.2f}/s), shed {lim['shed']}, "
                        f"stale {lim['rejected_stale']}, past TTL {lim['entries_past_ttl']}, "
                        f"densest 10 s / 60 s: {lim['orders_max_10s']} / {lim['orders_max_1m']} orders, "
                        f"429: {lim['http_429']}, 418: {lim['http_418']}"
                    )
        if "requests" in args.only:
            with simulator(env, fixture, 0, rate_limits=False) as sim:
                out(
                    f"[{time.monotonic() - started:5.0f}s] requests: {args.requests} signed GETs and "
                    "MARKET POSTs per path, python-binance's _request against the lean path, RTT 0"
                )
                paths = request_path(sim.url, API_KEY, API_SECRET, args.requests)
                results["requests"] = paths
                for name, row in paths.items():
                    out(f"    {name:20s} wall {row['wall_us']:7.0f} us, client CPU {row['cpu_us']:6.0f} us")
        if "scaling" in args.only:
            with simulator(env, fixture, 0, rate_limits=False) as sim:
                out(
                    f"[{time.monotonic() - started:5.0f}s] scaling: {args.processes} service processes "
                    "on one Redis and one simulator, RTT 0, limits off"
                )
                results["scaling"] = scaling.scaling(
                    env,
                    sim,
                    processes=args.processes,
                    burst=args.scale_burst,
                    paced=args.scale_paced,
                    rate=args.rate,
                    kill_count=args.kill_intents,
                    kill_rate=args.kill_rate,
                )
        if "scrapeflood" in args.only:
            with simulator(env, fixture, args.flood_rtt, rate_limits=False) as sim:
                out(
                    f"[{time.monotonic() - started:5.0f}s] scrapeflood: {args.intents} intents at "
                    f"{args.rate:g}/s, quiet then with /metrics flooded at {args.flood_rps:g} req/s over "
                    f"{args.flood_connections} connections, {args.runs} run(s), RTT {args.flood_rtt} ms"
                )
                results["scrapeflood"] = f = scrape_flood.scrape_flood(
                    env,
                    sim,
                    count=args.intents,
                    rate=args.rate,
                    flood_rps=args.flood_rps,
                    connections=args.flood_connections,
                    runs=args.runs,
                )
                out(
                    f"    end-to-end p50 quiet {f['quiet_p50_ms']:.2f} ms, flooded "
                    f"{f['flooded_p50_ms']:.2f} ms (x{f['ratio']:.2f}), control {f['control_p50_ms']:.2f} ms"
                )
    results["elapsed_s"] = time.monotonic() - started
    return results


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    out()
    out(report.markdown(results))
    out(f"\nresults: {args.out}  ({results['elapsed_s']:.0f}s)")


if __name__ == "__main__":
    main()
