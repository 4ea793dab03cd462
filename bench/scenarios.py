"""The benchmark scenarios. Each returns a plain dict for ``latest.json`` and the report."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.common import (
    API_KEY,
    API_SECRET,
    BENCH_SYMBOLS,
    INTENT_STREAM,
    RESULT_STREAM,
    Child,
    Sim,
    cpu_s,
    median,
    opens_workload,
    out,
    pct,
    rss_mb,
    start_child,
    whole_rounds,
    workload,
)
from quantum_exec.contracts import encode_intent_fields

RESULT_DEADLINE_S = 600.0


@dataclass
class Env:
    """What every scenario runs against: the work directory, Redis and how to start simulators."""

    workdir: Path
    redis_url: str
    r: redis.Redis
    seq: int = 0

    def next_tag(self, name: str) -> str:
        self.seq += 1
        return f"{name}{self.seq}-{int(time.time())}"

    def clean(self) -> None:
        """An empty Redis for the next run (streams, group, idempotency records, leases)."""
        self.r.flushall()


# -- the processes under test ------------------------------------------------------------------


def start_worker(
    env: Env, sim: Sim, *, pacing: bool, instrument: bool, tag: str, **overrides: Any
) -> tuple[Child, Path]:
    """One service process; ``overrides`` go to its config (consumer_name, lease_ttl_ms, ...)."""
    outfile = env.workdir / f"worker-{tag}.json"
    config = {
        **overrides,
        "sim_url": sim.url,
        "redis_url": env.redis_url,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "pacing": pacing,
        "instrument": instrument,
        "max_concurrency": 64,
        "out": str(outfile),
        "log": str(env.workdir / f"worker-{tag}.jsonl"),
    }
    path = env.workdir / f"worker-{tag}.config.json"
    path.write_bytes(orjson.dumps(config))
    child, _ = start_child(
        [os.environ.get("BENCH_WORKER", "bench.worker"), str(path)],
        env.workdir / f"worker-{tag}.stderr",
        "READY",
    )
    return child, outfile


def stop_worker(child: Child, outfile: Path) -> dict[str, Any]:
    code = child.stop(timeout=60)
    if code != 0 or not outfile.exists():
        tail = child.log_path.read_text()[-3000:] if child.log_path else ""
        raise RuntimeError(f"worker exited with {code}:\n{tail}")
    data: dict[str, Any] = orjson.loads(outfile.read_bytes())
    return data


def start_naive(env: Env, sim: Sim, count: int, tag: str) -> tuple[Child, Path]:
    outfile = env.workdir / f"naive-{tag}.json"
    config = {
        "sim_url": sim.url,
        "redis_url": env.redis_url,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "count": count,
        "out": str(outfile),
    }
    path = env.workdir / f"naive-{tag}.config.json"
    path.write_bytes(orjson.dumps(config))
    child, _ = start_child(["bench.naive", str(path)], env.workdir / f"naive-{tag}.stderr", "READY")
    return child, outfile


def finish_naive(child: Child, outfile: Path) -> list[list[Any]]:
    code = child.proc.wait(timeout=RESULT_DEADLINE_S)
    if code != 0 or not outfile.exists():
        tail = child.log_path.read_text()[-3000:] if child.log_path else ""
        raise RuntimeError(f"naive baseline exited with {code}:\n{tail}")
    records: list[list[Any]] = orjson.loads(outfile.read_bytes())["records"]
    return records


# -- publishing and collecting -----------------------------------------------------------------


def publish_paced(r: redis.Redis, intents: list[dict[str, Any]], rate: float) -> dict[str, float]:
    """XADD one intent every 1/rate s (open loop); stream id -> wall time taken just before the XADD."""
    sent: dict[str, float] = {}
    t0 = time.monotonic()
    for i, payload in enumerate(intents):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the load generator's schedule, not a settle wait
        fields = encode_intent_fields(payload, "bench")
        at = time.time()
        sid = r.xadd(INTENT_STREAM, fields)  # type: ignore[arg-type]
        sent[sid.decode()] = at
    return sent


def publish_burst(r: redis.Redis, intents: list[dict[str, Any]], batch: int = 500) -> tuple[float, str]:
    """XADD everything as fast as pipelines go; returns the wall time just before the first XADD
    and the last entry's id."""
    encoded = [encode_intent_fields(p, "bench") for p in intents]
    start = time.time()
    last = b""
    for i in range(0, len(encoded), batch):
        pipe = r.pipeline(transaction=False)
        for fields in encoded[i : i + batch]:
            pipe.xadd(INTENT_STREAM, fields)  # type: ignore[arg-type]
        last = pipe.execute()[-1]
    return start, last.decode()


def wait_results(r: redis.Redis, total: int, deadline_s: float = RESULT_DEADLINE_S) -> float:
    """Wait until the result stream holds ``total`` entries; returns the wall time it was seen.

    Only for runs below the service's result MAXLEN (100,000, trimmed approximately); long runs
    use :func:`wait_acked`.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if r.xlen(RESULT_STREAM) >= total:
            return time.time()
        time.sleep(0.01)
    raise TimeoutError(f"only {r.xlen(RESULT_STREAM)} of {total} results after {deadline_s:.0f}s")


def wait_acked(r: redis.Redis, last_id: str, deadline_s: float = RESULT_DEADLINE_S) -> float:
    """Wait until the group has delivered up to ``last_id`` and nothing is pending (every entry of
    the burst answered: the result is published and the entry acked in one script)."""
    deadline = time.monotonic() + deadline_s
    want = tuple(int(x) for x in last_id.split("-"))
    while time.monotonic() < deadline:
        for group in r.xinfo_groups(INTENT_STREAM):
            delivered = group["last-delivered-id"]
            delivered = delivered.decode() if isinstance(delivered, bytes) else str(delivered)
            if tuple(int(x) for x in delivered.split("-")) >= want and group["pending"] == 0:
                return time.time()
        time.sleep(0.01)
    raise TimeoutError(f"entries up to {last_id} not all answered after {deadline_s:.0f}s")


def read_results(r: redis.Redis, after: str = "-") -> tuple[list[dict[str, Any]], str]:
    """Every result payload after ``after`` (exclusive unless '-'); returns them and the last id."""
    found: list[dict[str, Any]] = []
    start = after
    while True:
        page = r.xrange(RESULT_STREAM, min=start, max="+", count=2000)
        if start != "-" and page and page[0][0].decode() == start:
            page = page[1:]
        if not page:
            break
        for sid, fields in page:
            found.append(orjson.loads(fields[b"payload"]))
            start = sid.decode()
    return found, start


def check_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of outcomes; every open must be filled+protected and every close filled."""
    outcomes: Counter[str] = Counter()
    orders = 0
    for res in results:
        action, status = res.get("action"), res.get("status")
        protection = res.get("protection")
        if action == "CLOSE":
            ok = status == "filled"
            orders += 1
        else:
            ok = status == "filled" and protection == "protected"
            orders += 3
        err = res.get("error") or {}
        outcomes["ok" if ok else f"{action}:{status}:{protection}:{err.get('code')}"] += 1
    return {"outcomes": dict(outcomes), "all_ok": set(outcomes) <= {"ok"}, "orders": orders}


# -- scenarios ---------------------------------------------------------------------------------


def warm_up(env: Env, symbols_intents: int = 100) -> None:
    """One open and one close per symbol: leverage, margin type and brackets are then known."""
    intents = workload(env.next_tag("warm"), symbols_intents)
    _, last = publish_burst(env.r, intents)
    wait_acked(env.r, last, 120)


def service_latency(env: Env, sim: Sim, *, count: int, rate: float, mix: str = "rounds") -> dict[str, Any]:
    """Light open-loop load: time to protected and service overhead per intent (one run).

    ``mix``: ``rounds`` (open/close over the 50 symbols) or ``addons`` (repeated opens on 10
    symbols, each after the first adding to the position: keep ``count`` ≤ 90, the account holds
    at most 200 open conditional orders)."""
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag(f"lat{sim.latency_ms}-")
    child, outfile = start_worker(env, sim, pacing=False, instrument=True, tag=tag)
    try:
        warm_up(env)
        already = env.r.xlen(RESULT_STREAM)
        if mix == "addons":
            intents = opens_workload(tag, count, BENCH_SYMBOLS[:10])
        else:
            intents = workload(tag, whole_rounds(count))
        sent = publish_paced(env.r, intents, rate)
        wait_results(env.r, already + len(intents))
    finally:
        data = stop_worker(child, outfile)
    results, _ = read_results(env.r)
    check = check_results(results[already:])
    records = {row[0]: row for row in data["records"]}
    ttp: list[float] = []
    overhead: list[float] = []
    e2e: list[float] = []
    e2e_open: list[float] = []
    opens = {sid for sid, payload in zip(sent, intents, strict=True) if payload["side"] != "CLOSE"}
    before: list[float] = []
    inside: list[float] = []
    after: list[float] = []
    lead: dict[str, list[float]] = {"read": [], "to_script": [], "script": [], "to_execute": []}
    for sid, xadd_at in sent.items():
        row = records.get(sid)
        if row is None:
            continue
        _, start, end, committed, busy, _paced, _calls, acks, stamps = row
        if committed:
            e2e.append(committed - xadd_at)
            if sid in opens:
                e2e_open.append(committed - xadd_at)
            overhead.append(committed - xadd_at - busy)
            before.append(start - xadd_at)
            inside.append(end - start - busy)
            after.append(committed - end)
            if stamps and stamps[2]:
                read, sent_at, answered = stamps
                lead["read"].append(read - xadd_at)
                lead["to_script"].append(sent_at - read)
                lead["script"].append(answered - sent_at)
                lead["to_execute"].append(start - answered)
        if len(acks) == 2:
            ttp.append(max(acks) - xadd_at)
    ms = 1000.0
    return {
        "intents": len(intents),
        "opens_protected": len(ttp),
        "ttp_ms": {q: pct(ttp, q) * ms for q in (50, 95, 99)},
        "overhead_ms": {q: pct(overhead, q) * ms for q in (50, 99)},
        "e2e_ms": {q: pct(e2e, q) * ms for q in (50, 99)},
        # Opens only (a CLOSE is a different job: cancels and one reduce-only order).
        "e2e_open_ms": {q: pct(e2e_open, q) * ms for q in (50, 99)},
        # Where the overhead goes: XADD -> executor called (delivery, order check, lease, idempotency
        # record), inside the executor minus exchange wait, executor return -> result committed.
        "breakdown_p50_ms": {
            "xadd_to_execute": pct(before, 50) * ms,
            "executor_own": pct(inside, 50) * ms,
            "result_to_commit": pct(after, 50) * ms,
        },
        # XADD -> executor in detail: the entry read and dispatched; dispatched -> the lead-in
        # script sent (worker start, parsing, digest); the script's round trip; its reply ->
        # the executor called.
        "lead_in_p50_ms": {name: pct(values, 50) * ms for name, values in lead.items() if values},
        # The executor's steps, mean ms per call (its per-step histogram; the exchange calls
        # inside a step count in it).
        "steps_mean_ms": {
            step: seconds / count * ms for step, (count, seconds) in data.get("steps", {}).items() if count
        },
        "check": check,
        "statuses": data["statuses"],
    }


def naive_latency(env: Env, sim: Sim, *, count: int) -> dict[str, Any]:
    """The naive bot, one intent at a time (closed loop): time to protected from the XADD."""
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag(f"naive{sim.latency_ms}-")
    intents = workload(tag, whole_rounds(count, symbols=10), symbols=_first(10))
    child, outfile = start_naive(env, sim, len(intents), tag)
    sent: dict[str, float] = {}
    for i, payload in enumerate(intents):
        fields = encode_intent_fields(payload, "bench")
        at = time.time()
        sid = env.r.xadd(INTENT_STREAM, fields)  # type: ignore[arg-type]
        sent[sid.decode()] = at
        wait_results(env.r, i + 1, 60)
    records = finish_naive(child, outfile)
    ttp = [row[2] - sent[row[0]] for row in records if row[2]]
    failed = sum(1 for row in records if not row[4])
    # XADD -> its (two-field) result published, as for the service; opens alone too.
    opens = {sid for sid, payload in zip(sent, intents, strict=True) if payload["side"] != "CLOSE"}
    e2e = [row[3] - sent[row[0]] for row in records if row[3]]
    e2e_open = [row[3] - sent[row[0]] for row in records if row[3] and row[0] in opens]
    return {
        "intents": len(intents),
        "failed": failed,
        "ttp_ms": {q: pct(ttp, q) * 1000 for q in (50, 95, 99)},
        "e2e_ms": {q: pct(e2e, q) * 1000 for q in (50, 99)},
        "e2e_open_ms": {q: pct(e2e_open, q) * 1000 for q in (50, 99)},
    }


def naive_throughput(env: Env, sim: Sim, *, count: int) -> dict[str, Any]:
    """The naive bot draining a burst of intents across the 50 symbols."""
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag("naivetp-")
    intents = workload(tag, whole_rounds(count))
    child, outfile = start_naive(env, sim, len(intents), tag)
    cpu0 = cpu_s(child.pid)
    start, _ = publish_burst(env.r, intents)
    done = wait_results(env.r, len(intents))
    cpu1 = cpu_s(child.pid)
    records = finish_naive(child, outfile)
    failed = sum(1 for row in records if not row[4])
    rate = len(intents) / (done - start)
    return {
        "intents": len(intents),
        "failed": failed,
        "intents_per_s": rate,
        "cpu_ms_per_intent": (cpu1 - cpu0) / len(intents) * 1000,
    }


def sustained(env: Env, sim: Sim, *, segments: int, per_segment: int) -> dict[str, Any]:
    """Throughput and memory: ``segments`` bursts of ``per_segment`` intents through one instance.

    Exchange limits off in the simulator, pacing off in the service, 0 ms RTT. Between segments
    every position is closed and the simulator's account is reset (its trade list would otherwise
    grow without bound and slow its own userTrades scans; the service keeps running).
    """
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag("tp-")
    child, outfile = start_worker(env, sim, pacing=False, instrument=False, tag=tag)
    per_segment = whole_rounds(per_segment)
    rows: list[dict[str, Any]] = []
    last_id = "-"
    total = 0
    try:
        warm_up(env)
        total = env.r.xlen(RESULT_STREAM)
        _, last_id = read_results(env.r)
        rss_start = rss_mb(child.pid)
        for seg in range(segments):
            intents = workload(f"{tag}s{seg}", per_segment)
            cpu0 = cpu_s(child.pid)
            start, last = publish_burst(env.r, intents)
            total += len(intents)
            done = wait_acked(env.r, last)
            cpu1 = cpu_s(child.pid)
            results, last_id = read_results(env.r, last_id)
            check = check_results(results)
            elapsed = done - start
            rows.append(
                {
                    "intents": len(intents),
                    "seconds": elapsed,
                    "intents_per_s": len(intents) / elapsed,
                    "orders_per_s": check["orders"] / elapsed,
                    "cpu_ms_per_intent": (cpu1 - cpu0) / len(intents) * 1000,
                    "rss_mb": rss_mb(child.pid),
                    "check": check,
                }
            )
            out(
                f"    segment {seg + 1}/{segments}: {rows[-1]['intents_per_s']:.0f} intents/s, "
                f"{rows[-1]['cpu_ms_per_intent']:.2f} ms CPU/intent, RSS {rows[-1]['rss_mb']:.1f} MB"
                + ("" if check["all_ok"] else f"  OUTCOMES {check['outcomes']}")
            )
            sim.fresh(rate_limits=False)
    finally:
        data = stop_worker(child, outfile)
    measured = rows[1:] if len(rows) > 2 else rows  # the first segment warms caches and the JIT-less heap
    return {
        "segments": rows,
        "intents_total": sum(r["intents"] for r in rows),
        "intents_per_s": median([r["intents_per_s"] for r in measured]),
        "intents_per_s_min": min(r["intents_per_s"] for r in measured),
        "intents_per_s_max": max(r["intents_per_s"] for r in measured),
        "orders_per_s": median([r["orders_per_s"] for r in measured]),
        "cpu_ms_per_intent": median([r["cpu_ms_per_intent"] for r in measured]),
        "rss_start_mb": rss_start,
        "rss_end_mb": rows[-1]["rss_mb"],
        "rss_max_mb": max(r["rss_mb"] for r in rows),
        "all_ok": all(r["check"]["all_ok"] for r in rows),
        "statuses": data["statuses"],
        # Every intent the service answered (warm-up included): round trips are load-independent.
        **redis_round_trips(data.get("redis_calls", {}), total),
        "requests_per_intent_by_path": {
            path: n / total for path, n in sorted(data.get("requests", {}).items(), key=lambda kv: -kv[1])
        }
        if total
        else {},
    }


def redis_round_trips(calls: dict[str, int], intents: int) -> dict[str, Any]:
    """The service's Redis round trips per intent (a pipeline once), in all and by command."""
    per = {name: n / intents for name, n in sorted(calls.items(), key=lambda kv: -kv[1])} if intents else {}
    # "script: ..." rows say which script each EVALSHA ran, "lane: ..." which commands a lane
    # write carried (core.redis_lane: one round trip for all of them): not round trips of their own.
    trips = sum(n for name, n in per.items() if not name.startswith(("script: ", "lane: ")))
    return {"redis_per_intent": trips, "redis_per_intent_by_command": per}


def pacing(env: Env, sim: Sim, *, count: int) -> dict[str, Any]:
    """A burst with the simulator enforcing Binance's limits and the service pacing itself."""
    env.clean()
    sim.fresh(rate_limits=True)
    tag = env.next_tag("pace-")
    child, outfile = start_worker(env, sim, pacing=True, instrument=True, tag=tag)
    intents = workload(tag, whole_rounds(count))
    try:
        start, last = publish_burst(env.r, intents)
        done = wait_acked(env.r, last, 900)
    finally:
        data = stop_worker(child, outfile)
    results, _ = read_results(env.r)
    check = check_results(results)
    paced = [row[5] for row in data["records"]]
    # Time to protected of each open of the burst, from the burst's first XADD (every intent is
    # published at once): the later of its two protective orders acknowledged.
    protected = [max(row[7]) - start for row in data["records"] if row[7] and len(row[7]) >= 2]
    statuses = {int(k): v for k, v in data["statuses"].items()}
    minutes = (done - start) / 60
    return {
        "time_to_protected_s": {q: pct(protected, q) for q in (50, 90, 99, 100)} if protected else {},
        "opens_protected": len(protected),
        "intents": len(intents),
        "completed": len(results),
        "all_ok": check["all_ok"],
        "outcomes": check["outcomes"],
        "http_429": statuses.get(429, 0),
        "http_418": statuses.get(418, 0),
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "seconds": done - start,
        "orders_per_min": check["orders"] / minutes,
        "pacing_wait_total_s": data["pacing"]["seconds"],
        "paced_requests": data["pacing"]["requests"],
        "intent_pacing_wait_s": {q: pct(paced, q) for q in (50, 99, 100)},
        "intents_paced": sum(1 for p in paced if p > 0),
    }


def limits(env: Env, sim: Sim, *, seconds: float, rate: float, mix: str = "rounds") -> dict[str, Any]:
    """Intents evenly spread at ``rate``/s for ``seconds``, the simulator enforcing Binance's limits
    and the service pacing itself: what the order-count bound lets through, 429/418 (must be 0),
    how many entries were shed rather than sent past their TTL (``BENCH_INTENT_TTL_S``), and, from
    the exchange's own order times, that no entry was placed after its intent went stale.

    ``mix``: ``rounds`` (every symbol opened, then every symbol closed: 4 orders per round, and the
    protective orders never pile up) or ``opens`` (repeated opens on warm symbols, 3 orders each;
    each open adds two conditional orders, so the account's 200 stop in after 100 opens)."""
    env.clean()
    sim.fresh(rate_limits=True)
    tag = env.next_tag("limits-")
    child, outfile = start_worker(env, sim, pacing=True, instrument=True, tag=tag)
    count = int(seconds * rate)
    intents = opens_workload(tag, count) if mix == "opens" else workload(tag, whole_rounds(count))
    ttl_s = float(os.environ.get("BENCH_INTENT_TTL_S", "120"))
    try:
        started = time.monotonic()
        sent = publish_paced(env.r, intents, rate)
        wait_results(env.r, len(intents), 900)
        elapsed = time.monotonic() - started
    finally:
        data = stop_worker(child, outfile)
    results, _ = read_results(env.r)
    statuses = {int(k): v for k, v in data["statuses"].items()}
    opens = [r for r in results if r.get("action") in ("BUY", "SELL")]
    filled = [r for r in opens if r.get("status") in ("filled", "partial")]
    shed = [r for r in results if "not sent" in str((r.get("error") or {}).get("message", ""))]
    stale = [r for r in results if (r.get("error") or {}).get("code") == "STALE_INTENT" and r not in shed]
    # The exchange's time of each filled entry against its intent's XADD: never past the TTL.
    state = sim.state()
    placed_ms = {o["orderId"]: o["time"] for o in state["orders"] if "time" in o}
    ages = [
        placed_ms[r["order_id"]] / 1000 - sent[r["stream_id"]]
        for r in filled
        if r.get("order_id") in placed_ms and r.get("stream_id") in sent
    ]
    windows = _busiest_windows(state)
    return {
        "mix": mix,
        "seconds": elapsed,
        "published": len(sent),
        "rate": rate,
        "ttl_s": ttl_s,
        "opens": len(opens),
        "opens_filled": len(filled),
        "opens_per_s": len(filled) / elapsed,
        "shed": len(shed),
        "rejected_stale": len(stale),
        "entry_age_at_exchange_s": {"50": pct(ages, 50), "99": pct(ages, 99), "max": max(ages, default=0.0)},
        "entries_past_ttl": sum(1 for age in ages if age > ttl_s),
        "orders_max_10s": windows[0],
        "orders_max_1m": windows[1],
        "outcomes": dict(
            Counter(f"{r.get('status')} {(r.get('error') or {}).get('code', '')}".strip() for r in results)
        ),
        "http_429": statuses.get(429, 0),
        "http_418": statuses.get(418, 0),
        "pacing_wait_total_s": data["pacing"]["seconds"],
    }


def _busiest_windows(state: dict[str, Any]) -> tuple[int, int]:
    """The most orders (regular and conditional) the exchange stamped within any 10 s and any 60 s."""
    times = sorted(
        [o["time"] for o in state["orders"] if "time" in o]
        + [a["createTime"] for a in state["algoOrders"] if a.get("createTime")]
    )
    return _densest(times, 10_000), _densest(times, 60_000)


def _densest(times: list[int], span_ms: int) -> int:
    best, low = 0, 0
    for high, at in enumerate(times):
        while times[low] <= at - span_ms:
            low += 1
        best = max(best, high - low + 1)
    return best


def _first(n: int) -> tuple[str, ...]:
    from bench.common import BENCH_SYMBOLS

    return BENCH_SYMBOLS[:n]
