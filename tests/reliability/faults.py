"""Exchange faults (the simulator's fault switch) and Redis faults against the running service.

Each exchange fault is installed, one intent is published on a symbol of its own, and the outcome
the service promises for that fault is asserted from the result *and* the simulator's state. The
Redis scenarios restart the server (persistent, as deployed), kill client connections, and freeze
one instance (SIGSTOP) so that another must claim its entries, then let the frozen one run on.
Every scenario ends with the global verdict (one result per intent, one entry per intent, every
open position protected, no orphan) and a scan for the API key and secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis

from quantum_exec.contracts import ExecutionResult
from quantum_exec.core.ids import client_order_id
from reliability.harness import (
    Rig,
    ServiceProcess,
    SimProcess,
    Streams,
    Verdict,
    find_secrets,
    secret_blobs,
    verdict,
    wait_until,
)

State = dict[str, Any]
Check = Callable[[ExecutionResult, State, str], None]


@dataclass
class FaultCase:
    name: str
    faults: list[dict[str, Any]]
    payload: dict[str, Any]
    expected: str
    check: Check
    clock_skew_ms: int | None = None


@dataclass
class FaultFigures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (fault, expected, observed)
    intents: int = 0
    secrets_found: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    seconds: float = 0.0


def _entries(state: State, intent_id: str, role: str = "entry") -> list[dict[str, Any]]:
    return [o for o in state["orders"] if o["clientOrderId"] == client_order_id(intent_id, role)]


def _position(state: State, symbol: str) -> Decimal:
    return sum((Decimal(p["positionAmt"]) for p in state["positions"] if p["symbol"] == symbol), Decimal(0))


def _open_legs(state: State, symbol: str) -> list[dict[str, Any]]:
    return [a for a in state["algoOrders"] if a["symbol"] == symbol and a["algoStatus"] == "NEW"]


def filled_protected(result: ExecutionResult, state: State, intent_id: str) -> None:
    assert result.status.value == "filled", (result.status, result.error)
    assert result.protection.value == "protected", (result.protection, result.error)
    [entry] = _entries(state, intent_id)
    assert entry["orderId"] == result.order_id and entry["status"] == "FILLED"
    legs = _open_legs(state, result.symbol)
    assert sorted(a["orderType"] for a in legs) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"], legs
    assert _position(state, result.symbol) != 0


def filled_unprotected_ok(result: ExecutionResult, state: State, intent_id: str) -> None:
    assert result.status.value == "filled", (result.status, result.error)
    assert len(_entries(state, intent_id)) == 1


def emergency_closed(result: ExecutionResult, state: State, intent_id: str) -> None:
    assert result.status.value == "failed" and result.protection.value == "closed_emergency", result
    assert result.error is not None and result.error.code == "PROTECTION_FAILED"
    assert len(_entries(state, intent_id)) == 1 and len(_entries(state, intent_id, "flatten")) == 1
    assert _position(state, result.symbol) == 0
    assert _open_legs(state, result.symbol) == []


def rejected_margin(result: ExecutionResult, state: State, intent_id: str) -> None:
    assert result.status.value == "rejected", result
    assert result.error is not None and result.error.code == "-2019", result.error
    assert _entries(state, intent_id) == [] and _position(state, result.symbol) == 0


def closed(result: ExecutionResult, state: State, intent_id: str) -> None:
    assert result.status.value == "filled", (result.status, result.error)
    assert len(_entries(state, intent_id, "close")) == 1
    assert _position(state, result.symbol) == 0 and _open_legs(state, result.symbol) == []


def _open(intent_id: str, symbol: str, side: str = "BUY", usd: int = 300) -> dict[str, Any]:
    return {
        "intent_id": intent_id,
        "symbol": symbol,
        "side": side,
        "position_size_usd": usd,
        "leverage": 3,
        "stop_loss_pct": 2,
        "take_profit_pct": 3,
    }


ORDER = {"method": "POST", "path": "/fapi/v1/order"}
ALGO = {"method": "POST", "path": "/fapi/v1/algoOrder"}


def exchange_cases(tag: str) -> list[FaultCase]:
    def cid(name: str) -> str:
        return f"{tag}-{name}"

    return [
        FaultCase(
            "latency spike 1.5 s on every request (x8)",
            [{"kind": "latency", "ms": 1500, "count": 8}],
            _open(cid("lat"), "BTCUSDT"),
            "filled, protected, 1 entry",
            filled_protected,
        ),
        FaultCase(
            "latency 4 s on the entry (> client timeout 3 s)",
            [{"kind": "latency", "ms": 4000, **ORDER, "count": 1}],
            _open(cid("lat4"), "ETHUSDT", "SELL"),
            "filled, protected, 1 entry (looked up)",
            filled_protected,
        ),
        FaultCase(
            "503 Unknown error after the entry was accepted",
            [{"kind": "unknown_after", **ORDER, "count": 1}],
            _open(cid("unk"), "SOLUSDT"),
            "filled, protected, 1 entry",
            filled_protected,
        ),
        FaultCase(
            "408 -1007 after the entry was accepted",
            [{"kind": "timeout_after", **ORDER, "count": 1}],
            _open(cid("1007"), "XRPUSDT", "SELL"),
            "filled, protected, 1 entry",
            filled_protected,
        ),
        FaultCase(
            "503 Service Unavailable before (x2)",
            [{"kind": "unavailable", **ORDER, "count": 2}],
            _open(cid("unav"), "LINKUSDT"),
            "filled, protected, 1 entry (re-sent)",
            filled_protected,
        ),
        FaultCase(
            "connection dropped before processing",
            [{"kind": "drop_before", **ORDER, "count": 1}],
            _open(cid("dropb"), "BNBUSDT"),
            "filled, protected, 1 entry",
            filled_protected,
        ),
        FaultCase(
            "connection dropped after processing",
            [{"kind": "drop_after", **ORDER, "count": 1}],
            _open(cid("dropa"), "DOGEUSDT", "SELL", 400),
            "filled, protected, 1 entry",
            filled_protected,
        ),
        FaultCase(
            "503 Unknown error after the stop was accepted",
            [{"kind": "unknown_after", **ALGO, "count": 1}],
            _open(cid("unkalgo"), "ADAUSDT", usd=400),
            "protected, exactly 2 legs",
            filled_protected,
        ),
        FaultCase(
            "429, 429 then 418 on the entry (Retry-After 1 s)",
            [
                {
                    "kind": "error",
                    **ORDER,
                    "status": 429,
                    "code": -1003,
                    "msg": "Too many requests.",
                    "retry_after_s": 1,
                    "count": 2,
                },
                {
                    "kind": "error",
                    **ORDER,
                    "status": 418,
                    "code": -1003,
                    "msg": "Way too many requests; banned.",
                    "retry_after_s": 1,
                    "count": 1,
                },
            ],
            _open(cid("storm"), "LTCUSDT"),
            "filled, protected, 1 entry (paused, then sent)",
            filled_protected,
        ),
        FaultCase(
            "clock skew +10 s (recvWindow 2 s)",
            [],
            _open(cid("skew"), "AVAXUSDT", "SELL"),
            "filled, protected (-1021, time resynced)",
            filled_protected,
            clock_skew_ms=10_000,
        ),
        FaultCase(
            "clock skew back to 0 (client now 10 s ahead)",
            [],
            _open(cid("skew0"), "DOTUSDT", usd=400),
            "filled, protected (-1021, time resynced)",
            filled_protected,
            clock_skew_ms=0,
        ),
        FaultCase(
            "-2021 on every protective order",
            [{"kind": "would_trigger", **ALGO, "count": 100}],
            _open(cid("2021"), "NEARUSDT", usd=400),
            "failed, closed_emergency, flat, no legs",
            emergency_closed,
        ),
        FaultCase(
            "-2019 insufficient margin on the entry",
            [{"kind": "insufficient_margin", **ORDER, "count": 1}],
            _open(cid("2019"), "APTUSDT", usd=400),
            "rejected -2019, no order",
            rejected_margin,
        ),
        FaultCase(
            "503 Unknown error after a CLOSE was accepted",
            [{"kind": "unknown_after", **ORDER, "count": 1}],
            {"intent_id": cid("close"), "symbol": "BTCUSDT", "side": "CLOSE"},
            "filled, flat, 1 close order, legs cancelled",
            closed,
        ),
    ]


def run_exchange_faults(work: Path, *, progress: Callable[[str], None] | None = None) -> FaultFigures:
    figures = FaultFigures()
    started = time.monotonic()
    with Rig(work) as rig:
        names, sim, streams = rig.names, rig.sim, rig.streams
        service = rig.service("rel-exch")
        intents: dict[str, dict[str, Any]] = {}
        service.start()
        for case in exchange_cases(names.tag):
            spec: dict[str, Any] = {}
            if case.clock_skew_ms is not None:
                spec["clock_skew_ms"] = case.clock_skew_ms
            sim.faults(case.faults, **spec)
            intent_id = case.payload["intent_id"]
            intents[intent_id] = case.payload
            streams.publish(case.payload)
            results = streams.wait_answered({intent_id}, 60)
            [result] = [r for r in results if r.intent_id == intent_id]
            sim.faults([])
            case.check(result, sim.state(), intent_id)
            observed = f"{result.status.value}/{result.protection.value}" + (
                f" {result.error.code}" if result.error else ""
            )
            figures.rows.append((case.name, case.expected, observed))
            if progress:
                progress(f"  {case.name}: {observed}")
        figures.secrets_found = find_secrets(
            {**secret_blobs(streams, [service]), "metrics": service.scrape_metrics()}
        )
        assert service.terminate() == 0
        figures.intents = len(intents)
        figures.verdict = verdict(intents, streams.results(), sim.state())
    figures.seconds = time.monotonic() - started
    return figures


# ---------------------------------------------------------------------------------------------
# Redis faults


@dataclass
class RedisFigures:
    scenario: str
    intents: int = 0
    events: int = 0  # restarts / connection kills / claims
    verdict: Verdict | None = None
    secrets_found: list[str] = field(default_factory=list)
    seconds: float = 0.0


WAVE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "LINKUSDT", "BNBUSDT")


def _wave(tag: str, n: int, close: bool) -> list[dict[str, Any]]:
    out = []
    for i, symbol in enumerate(WAVE_SYMBOLS[:n]):
        if close:
            out.append({"intent_id": f"{tag}-{symbol}-c", "symbol": symbol, "side": "CLOSE"})
        else:
            out.append(_open(f"{tag}-{symbol}", symbol, "BUY" if i % 2 else "SELL", 300))
    return out


def _publish_retrying(streams: Streams, payloads: list[dict[str, Any]], timeout_s: float = 30) -> None:
    """A producer that retries while Redis is away (the intent_id makes a doubled entry harmless)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            streams.publish_many(payloads)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_redis_fault(work: Path, scenario: str, *, rounds: int = 3) -> RedisFigures:
    """``restart`` | ``drops`` | ``stale_consumer``; ``rounds`` open+close waves (or restarts)."""
    figures = RedisFigures(scenario)
    started = time.monotonic()
    intents: dict[str, dict[str, Any]] = {}
    with Rig(work, persistent=True) as rig:
        names, sim, streams = rig.names, rig.sim, rig.streams
        a, b = rig.service("rel-a"), rig.service("rel-b")
        a.start()
        for r in range(rounds):
            for close in (False, True):
                wave = _wave(f"{names.tag}-{r}", len(WAVE_SYMBOLS), close)
                intents.update({p["intent_id"]: p for p in wave})
                if scenario == "restart":
                    _publish_retrying(streams, wave)
                    time.sleep(0.05 * (r + 1))  # a few ms into the wave: intents in flight
                    rig.redis.restart()
                    figures.events += 1
                elif scenario == "drops":
                    _publish_retrying(streams, wave)
                    for _ in range(5):
                        killed = streams.client.client_kill_filter(_type="normal", skipme=True)
                        figures.events += int(killed or 0)
                        time.sleep(0.03)
                elif scenario == "stale_consumer":
                    figures.events += _freeze_and_claim(sim, streams, a, b, wave)
                    a, b = b, a
                else:
                    raise ValueError(scenario)
                _wait_answered(streams, set(intents), a, b)
        for service in (a, b):
            if service.alive:
                assert service.terminate() == 0
        figures.intents = len(intents)
        figures.verdict = verdict(intents, streams.results(), sim.state())
        figures.secrets_found = find_secrets(secret_blobs(streams, [a, b]))
    figures.seconds = time.monotonic() - started
    return figures


def _wait_answered(streams: Streams, ids: set[str], *services: ServiceProcess) -> None:
    def done() -> bool:
        for s in services:
            if s.proc is not None and s.starts and not s.alive and s.proc.returncode not in (0, -9):
                raise AssertionError(f"service {s.consumer} died: {s.tail()}")
        try:
            have = {r.intent_id for r in streams.results()}
            return ids <= have and streams.pending() == 0
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return False

    wait_until(done, 90, f"{len(ids)} intents answered", poll_s=0.1)


def _freeze_and_claim(
    sim: SimProcess, streams: Streams, live: ServiceProcess, other: ServiceProcess, wave: list[dict[str, Any]]
) -> int:
    """Freeze ``live`` mid-protection; ``other`` must claim and finish; then ``live`` runs on."""
    sim.faults([{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/*"}])
    streams.publish_many(wave)
    ids = [p["intent_id"] for p in wave]
    wait_until(lambda: any(streams.idem_state(i) == "in_flight" for i in ids), 10, "an intent in flight")
    live.pause()  # SIGSTOP: alive, holding its entries and its leases, but silent
    sim.faults([])
    if not other.alive:
        other.start()
    wait_until(
        lambda: all(streams.idem_state(i) == "done" for i in ids) and streams.pending() == 0,
        60,
        "the other instance to claim and finish the frozen one's entries",
        poll_s=0.1,
    )
    live.resume()  # the stale instance wakes up with requests and commits in flight
    # It drains what it held: its commits are fenced or answered as duplicates, never published.
    assert live.terminate() == 0
    return 1
