"""Kill/restart cycles: SIGKILL the service at random and at chosen narrow moments.

Each cycle starts the service (one of two consumer names, so a dead consumer's entries must also
be *claimed* by the other), publishes a few intents across several symbols, and kills the process
with SIGKILL in one of these ways:

* ``random`` - at a random moment after publishing;
* ``startup`` - while it is starting (own pending list being re-read, leases being taken);
* ``entry_inflight`` - while the MARKET entry request sits in the exchange (latency fault on
  ``POST /fapi/v1/order``): the exchange fills the order *after* the process died;
* ``protect_window`` - right after the entry filled and before the SL/TP exist (latency fault on
  ``POST /fapi/v1/algoOrder``, kill as soon as the simulator shows an entry without its legs);
* ``after_result`` - right after a result was published (publish + done + XACK are one Lua
  script, so there is no moment between them; this kills with the next intent in flight).

While the service is dead the mark price of a symbol may move, so stops and targets fire and the
"sibling leg left over" case is exercised. At the end one clean service drains everything and the
verdict is computed from the simulator's full state and the result stream.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from quantum_exec.core.ids import client_order_id
from reliability.harness import (
    SYMBOLS,
    Rig,
    ServiceProcess,
    SimProcess,
    Streams,
    Verdict,
    find_secrets,
    secret_blobs,
    verdict,
)
from support.waiting import poll_until

MODES = ("random", "startup", "entry_inflight", "protect_window", "after_result")


@dataclass
class CrashFigures:
    cycles: int = 0
    intents: int = 0
    duplicates_published: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)  # the narrow window was really hit
    price_moves: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    protections: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    secrets_found: list[str] = field(default_factory=list)
    verdict: Verdict | None = None


class _Intents:
    """Intents per symbol alternating open (BUY/SELL with SL and TP) and CLOSE."""

    def __init__(self, rng: random.Random, tag: str) -> None:
        self.rng = rng
        self.tag = tag
        self.n = 0
        self.is_open: dict[str, bool] = dict.fromkeys(SYMBOLS, False)
        self.all: dict[str, dict[str, Any]] = {}

    def next(self) -> dict[str, Any]:
        rng = self.rng
        symbol = rng.choice(SYMBOLS)
        self.n += 1
        intent_id = f"{self.tag}-{self.n}"
        payload: dict[str, Any]
        if self.is_open[symbol]:
            payload = {"intent_id": intent_id, "symbol": symbol, "side": "CLOSE"}
        else:
            payload = {
                "intent_id": intent_id,
                "symbol": symbol,
                "side": rng.choice(("BUY", "SELL")),
                "position_size_usd": rng.choice((250, 300, 400, 500)),
                "leverage": rng.randint(1, 5),
                "stop_loss_pct": rng.choice((1, 1.5, 2, 3)),
                "take_profit_pct": rng.choice((1, 2, 3, 4)),
                "strategy": "reliability",
            }
        self.is_open[symbol] = not self.is_open[symbol]
        self.all[intent_id] = payload
        return payload


def run_crash_cycles(
    work: Path,
    cycles: int,
    *,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
    final_timeout_s: float = 180.0,
) -> CrashFigures:
    """Run ``cycles`` kill/restart cycles, drain, and return the figures with the verdict."""
    rng = random.Random(seed)
    figures = CrashFigures()
    started = time.monotonic()
    with Rig(work) as rig:
        names, sim, streams = rig.names, rig.sim, rig.streams
        gen = _Intents(rng, f"k{names.tag[:6]}")
        services = {c: rig.service(c) for c in ("rel-a", "rel-b")}
        base = {s: Decimal(sim.state()["markPrices"][s]) for s in SYMBOLS}
        current = services["rel-a"]
        for cycle in range(cycles):
            if rng.random() < 0.25:
                current = services["rel-b" if current.consumer == "rel-a" else "rel-a"]
            mode = rng.choice(MODES)
            figures.kills[mode] += 1
            batch = [gen.next() for _ in range(rng.randint(2, 5))]
            if gen.all and rng.random() < 0.1:
                # A producer retry: the same intent_id published again.
                batch.append(dict(gen.all[rng.choice(list(gen.all))]))
                figures.duplicates_published += 1
            hit = _cycle(rng, mode, current, sim, streams, batch)
            if hit:
                figures.hits[mode] += 1
            sim.faults([])
            if rng.random() < 0.3:
                symbol = rng.choice(SYMBOLS)
                sim.mark(
                    symbol,
                    (base[symbol] * Decimal(1 + rng.uniform(-0.035, 0.035))).quantize(Decimal("0.0001")),
                )
                figures.price_moves += 1
            figures.cycles += 1
            if progress and (cycle + 1) % 10 == 0:
                progress(
                    f"  {cycle + 1}/{cycles} cycles, {len(gen.all)} intents, {streams.result_count()} results"
                )
        # Drain with one clean instance; the other name's leftovers are claimed from it.
        sim.faults([])
        final = services["rel-a"].start()
        results = streams.wait_answered(set(gen.all), final_timeout_s)
        exit_code = final.terminate()
        assert exit_code == 0, f"clean stop exited {exit_code}"
        state = sim.state()
        figures.intents = len(gen.all)
        figures.statuses = Counter(r.status.value for r in results)
        figures.protections = Counter(r.protection.value for r in results)
        figures.errors = Counter(f"{r.status.value}:{r.error.code}" for r in results if r.error is not None)
        figures.verdict = verdict(gen.all, results, state)
        figures.secrets_found = find_secrets(secret_blobs(streams, list(services.values())))
    figures.seconds = time.monotonic() - started
    return figures


def _cycle(
    rng: random.Random,
    mode: str,
    service: ServiceProcess,
    sim: SimProcess,
    streams: Streams,
    batch: list[dict[str, Any]],
) -> bool:
    """One start - publish - kill; True when the chosen window was really hit."""
    ids = [p["intent_id"] for p in batch]
    if mode == "entry_inflight":
        sim.faults([{"kind": "latency", "ms": 700, "method": "POST", "path": "/fapi/v1/order"}])
    elif mode == "protect_window":
        sim.faults([{"kind": "latency", "ms": 700, "method": "POST", "path": "/fapi/v1/algoOrder"}])
    if mode == "startup":
        streams.publish_many(batch)
        service.start(wait_ready=False)
        time.sleep(rng.uniform(0.2, 2.0))  # a random instant inside the start, not a wait for a condition
        hit = not service.ready() if service.alive else False
        service.kill()
        return hit
    service.start()
    before = streams.result_count()
    streams.publish_many(batch)
    hit = True
    if mode == "random":
        time.sleep(rng.uniform(0.0, 1.0))  # the random instant itself
    elif mode == "entry_inflight":
        hit = poll_until(lambda: any(streams.idem_state(i) == "in_flight" for i in ids), 5)
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere inside the 700 ms the order request takes
    elif mode == "protect_window":
        entries = {client_order_id(i, "entry"): i for i in ids}

        def unprotected_entry() -> bool:
            state = sim.state()
            filled = {entries[o["clientOrderId"]] for o in state["orders"] if o["clientOrderId"] in entries}
            legs = {a["clientAlgoId"] for a in state["algoOrders"]}
            return any(client_order_id(i, "sl") not in legs for i in filled)

        hit = poll_until(unprotected_entry, 5, poll_s=0.01)
    elif mode == "after_result":
        hit = poll_until(lambda: streams.result_count() > before, 5, poll_s=0.005)
    service.kill()
    return hit


# --------------------------------------------------------------------------------------------
# The crash loop: systemd restarting a crashing unit, as an operator meets it

LOOP_SYMBOLS = (
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "DOTUSDT",
    "ARBUSDT",
    "NEARUSDT",
    "ADAUSDT",
    "LINKUSDT",
    "LTCUSDT",
    "AVAXUSDT",
)
# One order quantity per symbol (each above the symbol's minimum notional at the fixture marks).
LOOP_QUANTITY_USD = Decimal(300)


@dataclass
class LoopFigures:
    cycles: int = 0
    intents: int = 0
    kills_with_work: int = 0  # kills that landed while intents were still unanswered
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    wrong_positions: list[str] = field(default_factory=list)
    secrets_found: list[str] = field(default_factory=list)
    verdict: Verdict | None = None


def run_crash_loop(
    work: Path, cycles: int, *, opens: int = 48, seed: int = 1, latency_ms: int = 40
) -> LoopFigures:
    """``opens`` opens on 12 symbols published at once; the service is SIGKILLed 0.05-0.7 s after
    each restart for ``cycles`` cycles, then one clean run finishes.

    Every request to the simulator takes ``latency_ms``, so kills land while intents execute.
    Expected: every intent filled, its position exactly the sum of its opens, both legs
    covering it, no POISON_MESSAGE, no loss, no duplicate result or entry.
    """
    rng = random.Random(seed)
    figures = LoopFigures()
    started = time.monotonic()
    with Rig(work) as rig:
        sim, streams = rig.sim, rig.streams
        sim.faults([{"kind": "latency", "ms": latency_ms}])
        service = rig.service("rel-loop", intent_ttl_s=600)
        intents: dict[str, dict[str, Any]] = {}
        expected: dict[str, Decimal] = defaultdict(Decimal)
        for n in range(opens):
            symbol = LOOP_SYMBOLS[n % len(LOOP_SYMBOLS)]
            side = "BUY" if LOOP_SYMBOLS.index(symbol) % 2 == 0 else "SELL"
            intent_id = f"loop-{rig.names.tag[:6]}-{n}"
            intents[intent_id] = {
                "intent_id": intent_id,
                "symbol": symbol,
                "side": side,
                "position_size_usd": LOOP_QUANTITY_USD,
                "leverage": 2,
                "stop_loss_pct": 5,
                "take_profit_pct": 5,
            }
        streams.publish_many(list(intents.values()))
        for _cycle in range(cycles):
            service.start()
            time.sleep(rng.uniform(0.05, 0.7))  # the crash moment, chosen at random
            if streams.result_count() < len(intents):
                figures.kills_with_work += 1
            service.kill()
            figures.cycles += 1
        service.start()
        results = streams.wait_answered(set(intents), timeout_s=120)
        assert service.terminate() == 0
        state = sim.state()
        figures.intents = len(intents)
        figures.verdict = verdict(intents, results, state)
        for result in results:
            figures.statuses[result.status.value] += 1
            if result.error is not None:
                figures.errors[result.error.code] += 1
            if result.status.value == "filled" and result.executed_quantity is not None:
                sign = 1 if intents[result.intent_id]["side"] == "BUY" else -1
                expected[result.symbol] += sign * result.executed_quantity
        held: dict[str, Decimal] = defaultdict(Decimal)
        for p in state["positions"]:
            held[p["symbol"]] += Decimal(str(p["positionAmt"]))
        for symbol in LOOP_SYMBOLS:
            if held[symbol] != expected[symbol] or expected[symbol] == 0:
                figures.wrong_positions.append(f"{symbol}: held {held[symbol]}, expected {expected[symbol]}")
        figures.secrets_found = find_secrets(secret_blobs(streams, rig.services))
    figures.seconds = time.monotonic() - started
    return figures
