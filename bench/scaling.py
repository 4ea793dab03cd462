"""Several service processes on one Redis and one simulator (``--only scaling``).

For 1, 2 and 4 processes (distinct consumer names, one consumer group): a burst drained
(intents/s), then an open-loop load (time to protected p50/p99 from the XADD, merged over the
processes), and per-symbol ordering checked on the result stream: the results of one symbol must
come in the order of their intents. A short separate run SIGKILLs one of two processes under load
and counts what the survivor took over: the victim's pending entries (claimed), the per-symbol
leases it held (taken once they expire) and the account lease; nothing lost, nothing twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from bench.common import (
    INTENT_STREAM,
    RESULT_STREAM,
    Sim,
    cpu_s,
    out,
    pct,
    redis_client,
    whole_rounds,
    workload,
)
from bench.scenarios import (
    Env,
    check_results,
    publish_burst,
    publish_paced,
    read_results,
    start_worker,
    stop_worker,
    wait_acked,
    wait_results,
    warm_up,
)
from quantum_exec.core.settings import Settings

DEFAULTS = Settings()
# In the SIGKILL run a dead instance's leases expire and its entries are claimed after this long.
TAKEOVER_MS = 3000


def _sid(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def ordering_violations(results: list[dict[str, Any]]) -> int:
    """Results (in result-stream order) whose intent came before an already answered one of its symbol."""
    latest: dict[str, tuple[int, int]] = {}
    violations = 0
    for result in results:
        symbol, stream_id = result.get("symbol"), result.get("stream_id")
        if not symbol or not stream_id:
            continue
        here = _sid(stream_id)
        if symbol in latest and here < latest[symbol]:
            violations += 1
        else:
            latest[symbol] = here
    return violations


def duplicates(results: list[dict[str, Any]]) -> int:
    """Results beyond the first for the same intent_id (0 unless a failover re-published one)."""
    counts = Counter(r.get("intent_id") for r in results)
    return sum(n - 1 for n in counts.values() if n > 1)


def _workers(env: Env, sim: Sim, n: int, tag: str, **overrides: Any) -> list[tuple[Any, Any]]:
    return [
        start_worker(
            env, sim, pacing=False, instrument=True, tag=f"{tag}w{i}", consumer_name=f"bench-{i}", **overrides
        )
        for i in range(n)
    ]


def run(env: Env, sim: Sim, *, processes: int, burst: int, paced: int, rate: float) -> dict[str, Any]:
    """One process count: burst throughput, open-loop time to protected, ordering."""
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag(f"scale{processes}-")
    workers = _workers(env, sim, processes, tag)
    data: list[dict[str, Any]] = []
    try:
        warm_up(env)
        cpu0 = sum(cpu_s(child.pid) for child, _ in workers)
        intents = workload(f"{tag}b", whole_rounds(burst))
        start, last = publish_burst(env.r, intents)
        done = wait_acked(env.r, last)
        cpu1 = sum(cpu_s(child.pid) for child, _ in workers)
        already = env.r.xlen(RESULT_STREAM)
        load = workload(f"{tag}l", whole_rounds(paced))
        sent = publish_paced(env.r, load, rate)
        wait_results(env.r, already + len(load))
    finally:
        data = [stop_worker(child, outfile) for child, outfile in workers]
    results, _ = read_results(env.r)
    records: dict[str, list[Any]] = {}
    per_process: list[int] = []
    for worker in data:
        per_process.append(len(worker["records"]))
        records.update({row[0]: row for row in worker["records"]})
    acks = {sid: records[sid][7] for sid in sent if sid in records}
    ttp = [max(acks[sid]) - at for sid, at in sent.items() if len(acks.get(sid, [])) == 2]
    check = check_results(results)
    return {
        "processes": processes,
        "burst": len(intents),
        "intents_per_s": len(intents) / (done - start),
        "cpu_ms_per_intent": (cpu1 - cpu0) / len(intents) * 1000,
        "paced": len(load),
        "rate": rate,
        "ttp_ms": {q: pct(ttp, q) * 1000 for q in (50, 99)},
        "ordering_violations": ordering_violations(results),
        "duplicate_results": duplicates(results),
        "intents_per_process": per_process,
        "all_ok": check["all_ok"],
        "outcomes": check["outcomes"],
    }


def kill_run(env: Env, sim: Sim, *, count: int, rate: float) -> dict[str, Any]:
    """Two processes under an open-loop load; one is SIGKILLed once a third of it is answered.

    The rate is high enough that the victim has entries in hand and symbol leases held when it dies.
    """
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag("kill-")
    overrides = {"lease_ttl_ms": TAKEOVER_MS, "claim_idle_ms": TAKEOVER_MS, "claim_interval_s": 0.5}
    workers = _workers(env, sim, 2, tag, **overrides)
    victim, victim_name = workers[1][0], "bench-1"
    prefix = DEFAULTS.key_prefix
    try:
        warm_up(env)
        base = env.r.xlen(RESULT_STREAM)
        load = workload(f"{tag}l", whole_rounds(count))
        published: dict[str, Any] = {}

        def publish() -> None:
            published["sent"] = publish_paced(redis_client(env.redis_url), load, rate)

        publisher = threading.Thread(target=publish, name="bench-publisher")
        publisher.start()
        deadline = time.monotonic() + 120
        while env.r.xlen(RESULT_STREAM) < base + len(load) // 3:
            if time.monotonic() > deadline:
                raise TimeoutError("a third of the load was not answered in 120 s")
            time.sleep(0.01)
        victim.proc.kill()
        killed_at = time.time()
        victim.proc.wait(timeout=30)
        pending = env.r.xpending_range(
            INTENT_STREAM, DEFAULTS.consumer_group, "-", "+", 10_000, consumername=victim_name
        )
        pending_ids = {p["message_id"].decode() for p in pending}
        leases = [
            key.decode()
            for key in env.r.scan_iter(match=f"{prefix}:lease:*", count=1000)
            if (value := env.r.get(key)) is not None and value.decode().endswith(f"|{victim_name}")
        ]
        account = env.r.get(f"{prefix}:account:lease")
        account_held = account is not None and account.decode().endswith(f"|{victim_name}")
        answered_at = None
        deadline = time.monotonic() + 120
        while answered_at is None:
            answers = {r.get("stream_id") for r in read_results(env.r)[0]}
            if pending_ids <= answers:
                answered_at = time.time()
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending_ids - answers)} of the victim's entries unanswered")
            else:
                time.sleep(0.02)
        publisher.join(timeout=300)
        last = env.r.xrevrange(INTENT_STREAM, count=1)[0][0].decode()
        wait_acked(env.r, last)
    finally:
        survivor = stop_worker(*workers[0])
    results, _ = read_results(env.r)
    load_ids = {p["intent_id"] for p in load}
    answered = {r.get("intent_id") for r in results} & load_ids
    opens = sum(1 for p in load if p["side"] != "CLOSE")
    entries = sum(1 for o in sim.state()["orders"] if str(o.get("clientOrderId", "")).startswith("qxe-"))
    survivor_log = (env.workdir / f"worker-{tag}w0.jsonl").read_text()
    return {
        "intents": len(load),
        "rate": rate,
        "takeover_ms": TAKEOVER_MS,
        "victim_pending_at_kill": len(pending_ids),
        "victim_symbol_leases_at_kill": len(leases),
        "victim_held_account_lease": account_held,
        "claimed_log_lines": survivor_log.count('"consumer.claimed"'),
        "victim_entries_answered_s_after_kill": answered_at - killed_at,
        "lost": len(load_ids - answered),
        "duplicate_results": duplicates(results),
        "ordering_violations": ordering_violations(results),
        # Every open of the warm-up (50) and of the load sends exactly one entry order.
        "entry_orders": entries,
        "opens": opens + 50,
        "survivor_intents": len(survivor["records"]),
        "all_ok": check_results(results)["all_ok"],
    }


def scaling(
    env: Env,
    sim: Sim,
    *,
    processes: list[int],
    burst: int,
    paced: int,
    rate: float,
    kill_count: int,
    kill_rate: float,
) -> dict[str, Any]:
    """The process counts one after the other, then the SIGKILL run."""
    rows = []
    for n in processes:
        out(f"    {n} process(es): burst of {burst}, then {paced} intents at {rate:g}/s")
        rows.append(run(env, sim, processes=n, burst=burst, paced=paced, rate=rate))
        r = rows[-1]
        out(
            f"      {r['intents_per_s']:.0f} intents/s, time to protected p50 {r['ttp_ms'][50]:.2f} / "
            f"p99 {r['ttp_ms'][99]:.2f} ms, ordering violations {r['ordering_violations']}, "
            f"per process {r['intents_per_process']}" + ("" if r["all_ok"] else f"  OUTCOMES {r['outcomes']}")
        )
    out(f"    SIGKILL one of 2 processes under {kill_count} intents at {kill_rate:g}/s")
    kill = kill_run(env, sim, count=kill_count, rate=kill_rate)
    out(
        f"      victim held {kill['victim_symbol_leases_at_kill']} symbol leases and "
        f"{kill['victim_pending_at_kill']} pending entries; all answered "
        f"{kill['victim_entries_answered_s_after_kill']:.1f} s after the kill; lost {kill['lost']}, "
        f"duplicate results {kill['duplicate_results']}, entry orders {kill['entry_orders']} "
        f"for {kill['opens']} opens"
    )
    return {"runs": rows, "kill": kill}
