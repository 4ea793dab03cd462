"""Medians across runs and the markdown report (targets of issues #7 and #16 marked met / missed)."""

from __future__ import annotations

import math
from typing import Any

from bench.common import median


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median across runs of every percentile table (``ttp_ms``, ``overhead_ms``, ``e2e_ms``)."""
    merged: dict[str, Any] = {}
    for key in ("ttp_ms", "overhead_ms", "e2e_ms", "e2e_open_ms"):
        tables = [r[key] for r in runs if key in r]
        if tables:
            merged[key] = {q: median([t[q] for t in tables]) for q in tables[0]}
    return merged


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("met" if flag else "**missed**")


def _q(table: dict[Any, Any] | None, q: int) -> Any:
    if not table:
        return None
    return table.get(q, table.get(str(q)))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, load average at start "
        f"{m['loadavg_start'][0]:.2f} (shared with other jobs); commit {m['commit']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
    ]
    latency = results.get("latency") or {}
    naive = results.get("naive") or {}
    rtts = sorted({int(k) for k in latency} | {int(k) for k in naive if k.isdigit()})
    if rtts:
        runs = results["params"]["runs"]
        lines += [
            f"Latency (light load, {results['params']['rate']:g} intents/s over 50 symbols; median of {runs} "
            "run(s) of each percentile; ms):",
            "",
            "| figure | " + " | ".join(f"RTT {r} ms" for r in rtts) + " | target |",
            "|---|" + "---|" * len(rtts) + "---|",
        ]

        def row(name: str, cells: list[str], target: str = "") -> None:
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")

        def lat(rtt: int) -> dict[str, Any]:
            return latency.get(str(rtt), {})

        row("measured RTT p50 (GET /fapi/v1/time)", [_f(_q(lat(r).get("measured_rtt_ms"), 50)) for r in rtts])
        for q in (50, 95, 99):
            row(f"time to protected p{q}", [_f(_q(lat(r).get("ttp_ms"), q)) for r in rtts])
        row(
            "time to protected p50 ÷ nominal RTT",
            [_f(_q(lat(r).get("ttp_ms"), 50) / r) if r and lat(r) else "-" for r in rtts],
        )
        row(
            "time to protected p50 ÷ measured RTT",
            [
                _f(_q(lat(r).get("ttp_ms"), 50) / _q(lat(r).get("measured_rtt_ms"), 50))
                if r and lat(r).get("measured_rtt_ms")
                else "-"
                for r in rtts
            ],
        )
        cells = []
        for r in rtts:
            p50 = _q(lat(r).get("ttp_ms"), 50)
            cells.append("-" if p50 is None else f"{_ok(p50 <= 2 * r + 1)} (≤ {2 * r + 1:.1f})")
        row("p50 ≤ 2 × RTT + 1 ms", cells, "2 × RTT + 1 ms")
        row("naive time to protected p50", [_f(_q(naive.get(str(r), {}).get("ttp_ms"), 50)) for r in rtts])
        row("naive time to protected p99", [_f(_q(naive.get(str(r), {}).get("ttp_ms"), 99)) for r in rtts])
        ratio_cells = []
        for r in rtts:
            ours, theirs = _q(lat(r).get("ttp_ms"), 50), _q(naive.get(str(r), {}).get("ttp_ms"), 50)
            ratio_cells.append(f"{theirs / ours:.2f}×" if ours and theirs else "-")
        row("naive ÷ ours, time to protected p50", ratio_cells)
        row(
            "end-to-end (XADD → result acked) p50, opens and CLOSEs",
            [_f(_q(lat(r).get("e2e_ms"), 50)) for r in rtts],
        )
        row("end-to-end p50, opens", [_f(_q(lat(r).get("e2e_open_ms"), 50)) for r in rtts])
        row(
            "naive end-to-end p50, opens",
            [_f(_q(naive.get(str(r), {}).get("e2e_open_ms"), 50)) for r in rtts],
        )
        e2e_cells = []
        for r in rtts:
            ours, theirs = _q(lat(r).get("e2e_open_ms"), 50), _q(naive.get(str(r), {}).get("e2e_open_ms"), 50)
            ratio = ours / theirs if ours and theirs else None
            e2e_cells.append(
                "-" if ratio is None else f"{ratio:.2f}×" + (f": {_ok(ratio <= 0.5)}" if r == 50 else "")
            )
        row("ours ÷ naive, end-to-end p50, opens", e2e_cells, "≤ 0.5× at 50 ms")
        row("service overhead p50", [_f(_q(lat(r).get("overhead_ms"), 50)) for r in rtts], "≤ 1 at RTT 0")
        row("service overhead p99", [_f(_q(lat(r).get("overhead_ms"), 99)) for r in rtts], "≤ 3 at RTT 0")
        if "0" in latency:
            o = latency["0"]["overhead_ms"]
            lines.append(
                f"| overhead targets at RTT 0 | {_ok(_q(o, 50) <= 1 and _q(o, 99) <= 3)} |"
                + " |" * (len(rtts) - 1)
                + " p50 ≤ 1, p99 ≤ 3 |"
            )
        lines.append("")
    tp = results.get("throughput")
    naive_tp = naive.get("throughput")
    if tp or naive_tp:
        lines += ["Throughput (RTT 0, simulator limits off, pacing off, 50 symbols, open/close mix):", ""]
        lines += ["| figure | quantum-exec | naive | target |", "|---|---|---|---|"]
        ours = tp["intents_per_s"] if tp else None
        theirs = naive_tp["intents_per_s"] if naive_tp else None
        lines.append(
            f"| intents/s (median of segments) | {_f(ours, 0)}"
            + (f" (min {tp['intents_per_s_min']:.0f}, max {tp['intents_per_s_max']:.0f})" if tp else "")
            + f" | {_f(theirs, 0)} | ≥ 300: {_ok(ours >= 300 if ours else None)} |"
        )
        lines.append(
            f"| exchange orders/s | {_f(tp['orders_per_s'] if tp else None, 0)} | - | "
            f"≥ 900: {_ok(tp['orders_per_s'] >= 900 if tp else None)} |"
        )
        lines.append(
            f"| CPU ms per intent (process under test) | {_f(tp['cpu_ms_per_intent'] if tp else None)} | "
            f"{_f(naive_tp['cpu_ms_per_intent'] if naive_tp else None)} | |"
        )
        if tp and tp.get("redis_per_intent_by_command"):
            top = ", ".join(
                f"{name} {n:.2f}"
                for name, n in list(tp["redis_per_intent_by_command"].items())[:8]
                if not name.startswith("script: ")
            )
            trips = tp["redis_per_intent"]
            lines.append(f"| Redis round trips per intent (service; {top}) | {trips:.2f} | - | |")
        if tp and tp.get("requests_per_intent_by_path"):
            paths = tp["requests_per_intent_by_path"]
            top = ", ".join(f"{name} {n:.2f}" for name, n in list(paths.items())[:6])
            lines.append(f"| REST requests per intent (service; {top}) | {sum(paths.values()):.2f} | - | |")
        lines.append(
            f"| ours ÷ naive, intents/s | {f'{ours / theirs:.2f}×' if ours and theirs else '-'} | | |"
        )
        if tp:
            lines.append(
                f"| RSS after warm-up → after {tp['intents_total']:,} intents (MB) | "
                f"{tp['rss_start_mb']:.1f} → {tp['rss_end_mb']:.1f} (max {tp['rss_max_mb']:.1f}) | | "
                f"< 150: {_ok(tp['rss_max_mb'] < 150)} |"
            )
            lines.append(f"| every intent filled / protected | {'yes' if tp['all_ok'] else '**no**'} | | |")
        lines.append("")
    p = results.get("pacing")
    if p:
        lines += [
            "Rate-limit pacing (RTT 0, simulator enforcing 300 orders/10 s, 1,200 orders/min, "
            "2,400 weight/min):",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| intents completed | {p['completed']} / {p['intents']} (all ok: {p['all_ok']}) | all |",
            f"| HTTP 429 / 418 received | {p['http_429']} / {p['http_418']} | 0 / 0: "
            f"{_ok(p['http_429'] == 0 and p['http_418'] == 0)} |",
            f"| burst drained in | {p['seconds']:.0f} s ({p['orders_per_min']:.0f} orders/min) | |",
            f"| requests held back by pacing | {p['paced_requests']} of {p['requests']} "
            f"(sum of their waits {p['pacing_wait_total_s']:.0f} s) | reported |",
            f"| pacing delay per intent p50 / p99 / max | {_f(_q(p['intent_pacing_wait_s'], 50), 2)} / "
            f"{_f(_q(p['intent_pacing_wait_s'], 99), 2)} / {_f(_q(p['intent_pacing_wait_s'], 100), 2)} s "
            f"({p['intents_paced']} of {p['intents']} intents waited) | reported |",
            "",
        ]
    lim = results.get("limits")
    if lim:
        lines += [
            "Sustained load, intents evenly spread, simulator enforcing Binance's limits, pacing on (RTT 0):",
            "",
            "| mix | intents/s published | opens filled/s | opens filled | shed (not sent) | rejected stale "
            "| entries placed past the TTL | densest 10 s / 60 s (orders) | 429 / 418 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rate, row in lim.items():
            clean = row["http_429"] == 0 and row["http_418"] == 0
            cells = [
                row.get("mix", "rounds"),
                f"{rate} for {row['seconds']:.0f} s",
                f"{row['opens_per_s']:.2f}",
                f"{row['opens_filled']} / {row['opens']}",
                row["shed"],
                row.get("rejected_stale", "-"),
                row.get("entries_past_ttl", "-"),
                f"{row.get('orders_max_10s', '-')} / {row.get('orders_max_1m', '-')}",
                f"{row['http_429']} / {row['http_418']}: {_ok(clean)}",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    req = results.get("requests")
    if req:
        lines += [
            "One signed request, sequential, RTT 0: python-binance's generic _request against the lean path:",
            "",
            "| request | python-binance wall / CPU (us) | lean wall / CPU (us) | CPU lean / generic |",
            "|---|---|---|---|",
        ]
        for kind, label in (("get", "GET /fapi/v1/order"), ("post", "POST /fapi/v1/order (MARKET)")):
            generic, lean = req.get(f"python-binance {kind}"), req.get(f"lean {kind}")
            if generic and lean:
                ratio = lean["cpu_us"] / generic["cpu_us"]
                lines.append(
                    f"| {label} | {generic['wall_us']:.0f} / {generic['cpu_us']:.0f} | "
                    f"{lean['wall_us']:.0f} / {lean['cpu_us']:.0f} | {ratio:.2f} |"
                )
        lines.append("")
    fl = results.get("scrapeflood")
    if fl:
        prm = fl["params"]
        lines += [
            f"Metrics port flooded (issue #25): {prm['rate']:g} intents/s, /metrics at "
            f"{prm['flood_rps']:g} req/s over {prm['connections']} connections from another process "
            "(control: the same flood at a bystander server):",
            "",
            "| phase | end-to-end p50 / p99 (ms) | service CPU | flood answered/s | statuses | flooder CPU |",
            "|---|---|---|---|---|---|",
        ]
        for ph in fl["phases"]:
            flood = ph["flood"] or {}
            lines.append(
                f"| {ph['phase']} | {_f(_q(ph['e2e_ms'], 50))} / {_f(_q(ph['e2e_ms'], 99))} "
                f"| {ph['service_cpu']:.2f} | {_f(flood.get('answered_per_s'), 0)} "
                f"| {flood.get('statuses', '-')} | {_f(flood.get('flooder_cpu'))} |"
            )
        lines += [
            "",
            f"p50 quiet {fl['quiet_p50_ms']:.2f} ms, flooded {fl['flooded_p50_ms']:.2f} ms "
            f"(x{fl['ratio']:.2f}, "
            f"target within 10 %: {_ok(fl['ratio'] <= 1.10)}), control {fl['control_p50_ms']:.2f} ms "
            f"(flooded / control x{fl['ratio_to_control']:.2f}).",
            "",
        ]
    sc = results.get("scaling")
    if sc:
        lines += [
            "Several service processes, one Redis, one simulator (RTT 0, limits off, pacing off):",
            "",
            "| processes | intents/s (burst) | CPU ms/intent | time to protected p50 / p99 (ms) "
            "| ordering violations | duplicate results | intents per process |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sc["runs"]:
            lines.append(
                f"| {r['processes']} | {r['intents_per_s']:.0f} | {_f(r['cpu_ms_per_intent'])} "
                f"| {_f(_q(r['ttp_ms'], 50))} / {_f(_q(r['ttp_ms'], 99))} | {r['ordering_violations']} "
                f"| {r['duplicate_results']} | {r['intents_per_process']} |"
            )
        k = sc["kill"]
        lines += [
            "",
            f"SIGKILL of one of 2 processes ({k['intents']} intents at {k['rate']:g}/s, leases and claims "
            f"after {k['takeover_ms']} ms): the victim held {k['victim_symbol_leases_at_kill']} symbol "
            f"leases (account lease: {k['victim_held_account_lease']}) and {k['victim_pending_at_kill']} "
            f"pending entries, all answered {k['victim_entries_answered_s_after_kill']:.1f} s after the "
            f"kill; lost {k['lost']}, duplicate results {k['duplicate_results']}, ordering violations "
            f"{k['ordering_violations']}, entry orders {k['entry_orders']} for {k['opens']} opens.",
            "",
        ]
    return "\n".join(lines)
