"""``python -m bench.final``: issue #29's figures in one command, a few minutes on a quiet machine.

Every figure of the service sits beside the naive bot's from the same minutes, so the ratios hold
on a loaded machine where the absolute times do not. Two service configurations, one after the
other on the same simulator and Redis:

- ``rest+after_fill``: REST orders, SL/TP after the fill (percentage triggers: the after-fill path);
- ``ws+with_entry``: the WebSocket API, SL/TP beside the entry (absolute triggers 2 % / 4 % from
  the reference, the same levels; the naive bot then uses them too).

Per RTT (0, 5, 50 ms) the light load (``--intents`` at 25/s over 50 symbols) for each
configuration, the naive bot one intent at a time; at RTT 0 also ``--intents`` at 200/s (the
overhead target names both rates) and the naive bot's burst. Then the throughput run (limits off,
RTT 0, ``--segments`` bursts of ``--per-segment``) for each configuration: intents/s, CPU and
Redis round trips per intent, RSS. One run of each (medians of 3 take ``--runs 3``, three times
as long). Prints one markdown table and writes ``bench/results/final.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import orjson

from bench import report, scenarios
from bench.__main__ import machine, simulator
from bench.common import median, out, redis_client, workdir, write_fixture
from quantum_exec.app.embedded import EmbeddedRedis

CONFIGS: dict[str, dict[str, str]] = {
    "rest+after_fill": {"BENCH_ORDER_TRANSPORT": "rest", "BENCH_PROTECTION_TIMING": "after_fill"},
    "ws+with_entry": {"BENCH_ORDER_TRANSPORT": "websocket", "BENCH_PROTECTION_TIMING": "with_entry"},
}
RESULTS = Path(__file__).resolve().parent / "results" / "final.json"


def _use(config: str) -> None:
    os.environ.update(CONFIGS[config])


def _runs(n: int, run: Any) -> dict[str, Any]:
    rows = [run() for _ in range(n)]
    return {"runs": rows, **report.median_of(rows)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "params": {k: str(v) for k, v in vars(args).items()}}
    started = time.monotonic()
    load = results["machine"]["loadavg_start"]
    out(f"bench.final on {results['machine']['cores']} cores, load average {load[0]:.2f}")
    latency: dict[str, dict[str, Any]] = {c: {} for c in CONFIGS}
    naive: dict[str, Any] = {}
    with workdir() as wd, EmbeddedRedis() as embedded:
        fixture = write_fixture(wd / "fixture")
        env = scenarios.Env(wd, embedded.url, redis_client(embedded.url))
        for rtt in args.rtt:
            with simulator(env, fixture, rtt, rate_limits=False) as sim:
                measured = sim.measure_rtt()
                sim.fresh(rate_limits=False)
                rates = (25.0, 200.0) if rtt == 0 else (25.0,)
                for config in CONFIGS:
                    _use(config)
                    for rate in rates:
                        out(f"[{time.monotonic() - started:5.0f}s] {config} RTT {rtt} ms, {rate:g}/s")
                        row = _runs(
                            args.runs,
                            lambda r=rate: scenarios.service_latency(env, sim, count=args.intents, rate=r),
                        )
                        row["measured_rtt_ms"] = measured[50]
                        latency[config][f"{rtt}@{rate:g}"] = row
                if rtt:
                    # Repeated opens on one symbol each: with_entry's legs beside every add-on too.
                    _use("ws+with_entry")
                    out(f"[{time.monotonic() - started:5.0f}s] ws+with_entry add-ons RTT {rtt} ms")
                    addons = _runs(
                        args.runs,
                        lambda: scenarios.service_latency(
                            env, sim, count=min(args.intents, 80), rate=25.0, mix="addons"
                        ),
                    )
                    addons["measured_rtt_ms"] = measured[50]
                    latency["ws+with_entry"][f"{rtt}@addons"] = addons
                _use("rest+after_fill")  # percentage triggers: the naive bot's classic sequence
                out(f"[{time.monotonic() - started:5.0f}s] naive RTT {rtt} ms")
                naive[str(rtt)] = _runs(
                    args.runs, lambda: scenarios.naive_latency(env, sim, count=args.naive_intents)
                )
                if rtt == 0:
                    bursts = [
                        scenarios.naive_throughput(env, sim, count=args.naive_burst) for _ in range(args.runs)
                    ]
                    naive["throughput"] = {
                        "intents_per_s": median([b["intents_per_s"] for b in bursts]),
                        "cpu_ms_per_intent": median([b["cpu_ms_per_intent"] for b in bursts]),
                    }
        throughput: dict[str, Any] = {}
        for config in CONFIGS:
            _use(config)
            with simulator(env, fixture, 0, rate_limits=False) as sim:
                out(f"[{time.monotonic() - started:5.0f}s] {config} throughput")
                throughput[config] = scenarios.sustained(
                    env, sim, segments=args.segments, per_segment=args.per_segment
                )
    results.update(latency=latency, naive=naive, throughput=throughput)
    results["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - started
    return results


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The issue's figures, each beside the naive bot's, with the targets."""
    lat, naive, tp = results["latency"], results["naive"], results["throughput"]
    rtts = sorted({int(k.split("@")[0]) for k in lat["rest+after_fill"]})
    lines = [
        f"Machine: {results['machine']['cores']} cores ({results['machine']['cpu']}), load average "
        f"{results['machine']['loadavg_start'][0]:.2f} at start, {results['loadavg_end'][0]:.2f} at end; "
        f"commit {results['machine']['commit']}; {results['elapsed_s']:.0f} s.",
        "",
        "| figure (p50 unless said; ms) | " + " | ".join(f"RTT {r}" for r in rtts) + " | target |",
        "|---|" + "---|" * len(rtts) + "---|",
    ]

    def row(name: str, values: list[str], target: str = "") -> None:
        lines.append(f"| {name} | " + " | ".join(values) + f" | {target} |")

    def q(table: dict[str, Any] | None, key: str, p: int = 50) -> float | None:
        if not table or key not in table:
            return None
        cell = table[key]
        return cell.get(p, cell.get(str(p)))

    row("measured RTT", [_f(lat["rest+after_fill"][f"{r}@25"]["measured_rtt_ms"]) for r in rtts])
    for config in CONFIGS:
        cells = lat[config]
        row(f"{config}: time to protected", [_f(q(cells[f"{r}@25"], "ttp_ms")) for r in rtts])
        row(
            f"{config}: time to protected ÷ measured RTT",
            [
                _f(q(cells[f"{r}@25"], "ttp_ms") / cells[f"{r}@25"]["measured_rtt_ms"]) if r else "-"  # type: ignore[operator]
                for r in rtts
            ],
            "≤ 1.2 at 5 and 50 (with_entry)" if config == "ws+with_entry" else "",
        )
        row(f"{config}: end to end, opens", [_f(q(cells[f"{r}@25"], "e2e_open_ms")) for r in rtts])
        ratio = []
        for r in rtts:
            ours, theirs = q(cells[f"{r}@25"], "e2e_open_ms"), q(naive.get(str(r)), "e2e_open_ms")
            ratio.append(f"**{ours / theirs:.2f}×**" if ours and theirs else "-")
        row(f"{config}: ours ÷ naive, end to end of opens", ratio, "≤ 0.4 at 0; ≤ 0.3 at 50 (with_entry)")
        for rate in ("25", "200"):
            cell = cells.get(f"0@{rate}")
            if cell:
                values = [f"{_f(q(cell, 'overhead_ms'))} / {_f(q(cell, 'overhead_ms', 99))}"] + ["-"] * (
                    len(rtts) - 1
                )
                row(f"{config}: service overhead p50 / p99 at {rate}/s", values, "≤ 1.0 / ≤ 3")
    addon_cells = lat["ws+with_entry"]
    row(
        "ws+with_entry, repeated opens (add-ons): time to protected ÷ measured RTT",
        [
            _f(q(addon_cells[f"{r}@addons"], "ttp_ms") / addon_cells[f"{r}@addons"]["measured_rtt_ms"])  # type: ignore[operator]
            if f"{r}@addons" in addon_cells
            else "-"
            for r in rtts
        ],
        "≤ 1.2 at 5 and 50",
    )
    row("naive bot: end to end of opens", [_f(q(naive.get(str(r)), "e2e_open_ms")) for r in rtts])
    lines += [
        "",
        "| throughput, RTT 0, limits off | intents/s | ÷ naive | CPU ms/intent | ÷ naive "
        "| Redis round trips/intent | RSS start → end (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    n_tp = naive.get("throughput", {})
    for config, t in tp.items():
        rate, cpu = t["intents_per_s"], t["cpu_ms_per_intent"]
        lines.append(
            f"| {config} | {rate:.0f} | **{rate / n_tp['intents_per_s']:.2f}×** | "
            f"{cpu:.2f} | {cpu / n_tp['cpu_ms_per_intent']:.2f} | "
            f"{t.get('redis_per_intent', float('nan')):.2f} | "
            f"{t['rss_start_mb']:.1f} → {t['rss_end_mb']:.1f} |"
        )
    lines.append(
        f"| naive bot | {n_tp['intents_per_s']:.0f} | 1 | {n_tp['cpu_ms_per_intent']:.2f} | 1 | - | - |"
    )
    lines.append("")
    lines.append(
        "Targets: throughput ≥ 3× the naive bot; every intent filled and protected: "
        + ", ".join(f"{c} {'yes' if t['all_ok'] else 'NO'}" for c, t in tp.items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.final", description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", default="0,5,50")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--intents", type=int, default=200)
    parser.add_argument("--naive-intents", type=int, default=40)
    parser.add_argument("--naive-burst", type=int, default=300)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--per-segment", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.rtt = [int(x) for x in args.rtt.split(",") if x.strip()]
    results = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    out()
    out(table(results))
    out(f"\nresults: {args.out}")


if __name__ == "__main__":
    main()
