"""The adversarial run of the order core: ``python scripts/adversarial.py [--rounds N] [--seed S]``.

Every entry shape (MARKET, LIMIT, STOP, TWAP, CLOSE) killed at each of its steps, a stalled
instance resumed after another took its intent over, user-stream events of different types in a
seeded random order, foreign orders resting on the same symbols, and with ``--failover`` a Redis
failover (Sentinel) while an entry is in flight; then one clean instance drains everything.
Prints the violations of the five promises counted from the simulator's own order history
(tests/reliability/adversary.py says how each is counted). Exit 0 when there are none.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from reliability.adversary import run_adversarial  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="rounds of one intent each")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-reorder", action="store_true", help="events in the simulator's own order")
    parser.add_argument(
        "--with-entry", action="store_true", help="QUANTUM_PROTECTION_TIMING=with_entry for the services"
    )
    parser.add_argument(
        "--fill-lag-ms",
        type=int,
        default=0,
        help="hold fills (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE) back this long behind the legs' updates",
    )
    parser.add_argument("--websocket", action="store_true", help="QUANTUM_ORDER_TRANSPORT=websocket")
    parser.add_argument(
        "--failover",
        action="store_true",
        help="Redis behind Sentinel (master + replica); add a step that SIGKILLs the master while an "
        "entry is in flight (the replica is promoted, the services ride it)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR and keep it (the simulator's and each service start's logs) instead of a "
        "temporary directory deleted at the end",
    )
    args = parser.parse_args(argv)
    env: dict[str, str] = {}
    if args.with_entry:
        env["protection_timing"] = "with_entry"
    if args.websocket:
        env["order_transport"] = "websocket"
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="quantum-adv-")))
        figures = run_adversarial(
            work,
            args.rounds,
            seed=args.seed,
            reorder=not args.no_reorder,
            service_env=env,
            progress=print,
            fill_lag_ms=args.fill_lag_ms,
            failover=args.failover,
        )
    verdict = figures.verdict
    assert verdict is not None
    print(f"\n{figures.rounds} rounds, {figures.intents} intents in {figures.seconds:.0f} s")
    print(
        "steps (hit/tried):",
        ", ".join(f"{k} {figures.hits[k]}/{n}" for k, n in sorted(figures.steps.items())),
    )
    print("results:", dict(figures.statuses), dict(figures.protections), dict(figures.errors))
    for line in figures.internal:
        print("  internal error:", line)
    print("violations:", verdict.counts(), f"(reported unprotected: {len(verdict.reported_unprotected)})")
    for promise, found in verdict.violations.items():
        for line in found:
            print(f"  {promise} {line}")
    return 1 if verdict.violations else 0


if __name__ == "__main__":
    sys.exit(main())
