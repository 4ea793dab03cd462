"""Long-form reliability soak: ``python scripts/soak.py`` (or ``make soak``).

Runs the scenarios of tests/reliability at length - SIGKILL cycles (default 200), every exchange
fault, the Redis faults, the hypothesis fuzzer (default 10,000 cases) - and prints the figures:
cycles, intents, fuzz cases, and the lost / duplicated / unprotected / orphan / leaked-secret
counts, which must all be zero. Exit code 0 when they are, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from reliability.crash import run_crash_cycles, run_crash_loop  # noqa: E402
from reliability.faults import run_exchange_faults, run_redis_fault  # noqa: E402
from reliability.fuzz import run_fuzz  # noqa: E402
from reliability.harness import Verdict  # noqa: E402


def _counts(v: Verdict | None) -> dict[str, int]:
    if v is None:
        return {"lost": -1}
    return {
        "lost": len(v.lost),
        "duplicated results": len(v.duplicated_results) + len(v.unexpected_results),
        "duplicated entries": len(v.duplicated_entries) + len(v.entry_mismatch) + len(v.foreign_orders),
        "unprotected": len(v.unprotected),
        "orphans": len(v.orphans),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200, help="SIGKILL/restart cycles")
    parser.add_argument("--fuzz", type=int, default=10_000, help="fuzz cases")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--redis-rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"quantum-exec soak: {args.cycles} kill cycles, {args.fuzz} fuzz cases, seed {args.seed}", flush=True
    )
    started = time.monotonic()
    rows: list[tuple[str, str, dict[str, int], list[str]]] = []
    with tempfile.TemporaryDirectory(prefix="quantum-soak-") as tmp:
        work = Path(tmp)

        print("\n[1/4] SIGKILL cycles", flush=True)
        (work / "crash").mkdir()
        crash = run_crash_cycles(work / "crash", args.cycles, seed=args.seed, progress=print)
        print(f"  kills by moment: {dict(crash.kills)}; narrow window really hit: {dict(crash.hits)}")
        print(f"  results: {dict(crash.statuses)}; protection: {dict(crash.protections)}")
        print(f"  errors: {dict(crash.errors)}; price moves while dead: {crash.price_moves}")
        v = crash.verdict
        assert v is not None
        print(
            f"  open positions at the end: {v.open_positions}, "
            f"loudly reported: {len(v.reported_unprotected)}, "
            f"surviving siblings awaiting the next intent: {v.explained_orphans}"
        )
        rows.append(
            (
                "SIGKILL cycles",
                f"{crash.cycles} cycles, {crash.intents} intents "
                f"(+{crash.duplicates_published} re-published)",
                _counts(v),
                crash.secrets_found,
            )
        )

        print("\n[1b] crash loop: 48 opens on 12 symbols, SIGKILL 0.05-0.7 s after each restart", flush=True)
        (work / "loop").mkdir()
        loop = run_crash_loop(work / "loop", args.cycles, opens=48, seed=args.seed)
        print(f"  results: {dict(loop.statuses)}; errors: {dict(loop.errors)}")
        print(f"  kills while work was left: {loop.kills_with_work} of {loop.cycles}")
        print(f"  positions not as expected: {loop.wrong_positions}")
        assert loop.verdict is not None
        rows.append(
            (
                "crash loop",
                f"{loop.cycles} cycles, {loop.intents} opens, {loop.kills_with_work} kills with work",
                {
                    **_counts(loop.verdict),
                    "poison": loop.errors.get("POISON_MESSAGE", 0),
                    "not filled": loop.intents - loop.statuses.get("filled", 0),
                    "wrong positions": len(loop.wrong_positions),
                },
                loop.secrets_found,
            )
        )

        print("\n[2/4] exchange faults", flush=True)
        (work / "exchange").mkdir()
        exch = run_exchange_faults(work / "exchange", progress=print)
        rows.append(
            (
                "exchange faults",
                f"{len(exch.rows)} faults, {exch.intents} intents",
                _counts(exch.verdict),
                exch.secrets_found,
            )
        )

        print("\n[3/4] Redis faults", flush=True)
        for scenario in ("restart", "drops", "stale_consumer"):
            (work / scenario).mkdir()
            red = run_redis_fault(work / scenario, scenario, rounds=args.redis_rounds)
            print(f"  {scenario}: {red.intents} intents, {red.events} events, {red.seconds:.0f}s")
            rows.append(
                (
                    f"Redis {scenario}",
                    f"{red.intents} intents, {red.events} events",
                    _counts(red.verdict),
                    red.secrets_found,
                )
            )

        print("\n[4/4] fuzzer", flush=True)
        (work / "fuzz").mkdir()
        fuzz = run_fuzz(
            work / "fuzz",
            args.fuzz,
            batch=100,
            seed=args.seed,
            progress=lambda m: print(m) if "000 " in m else None,
        )
        print(f"  reasons: {dict(fuzz.reasons)}")
        print(f"  first defect per case: {dict(fuzz.defects)}")
        rows.append(
            (
                "fuzzer",
                f"{fuzz.cases} cases ({fuzz.undecodable} undecodable -> DLQ, "
                f"{fuzz.rejected} rejected), exit {fuzz.exit_code}",
                {"lost": 0, "orders placed": 0},
                fuzz.secrets_found,
            )
        )

    print("\n" + "=" * 100)
    print(f"{'scenario':<24} {'volume':<52} violations")
    bad = 0
    for name, volume, counts, secrets in rows:
        total = sum(counts.values()) + len(secrets)
        bad += total
        detail = ", ".join(f"{k} {n}" for k, n in counts.items()) + f", secrets {len(secrets)}"
        print(f"{name:<24} {volume:<52} {detail}")
    print("=" * 100)
    print(
        f"TOTAL: {crash.cycles} kill cycles, {crash.intents + exch.intents} executed intents, "
        f"{fuzz.cases} fuzz cases; lost/duplicated/unprotected/orphans/secrets = {bad}; "
        f"{time.monotonic() - started:.0f}s"
    )
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
